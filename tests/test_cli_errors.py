"Bad input: one clear line on stderr, exit status 2, no traceback, nothing written."
import pytest
from tests.conftest import run_cli

def _assert_clean_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert 'Traceback' not in res.stderr, res.stderr[-2000:]
    line = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert line, res.stderr
    for n in needles: assert n in line[0], line[0]

def test_unknown_flag_names_the_closest(tmp_path):
    _assert_clean_error(run_cli('train', '--learning_rat', '1e-4', '--output_dir', tmp_path / 'r'), "Did you mean --learning_rate?")
    assert not (tmp_path / 'r').exists()

def test_resolution_not_multiple_of_8(tmp_path):
    _assert_clean_error(run_cli('train', '--resolution', '500', '--output_dir', tmp_path / 'r'), 'resolution=500', 'multiple of 8')
    assert not (tmp_path / 'r').exists()

def test_missing_instance_folder(tmp_path):
    _assert_clean_error(run_cli('train', '--instance_data_dir', tmp_path / 'nope', '--output_dir', tmp_path / 'r', '--resolution', '64'),
                        'instance image folder', 'does not exist')

def test_folder_without_images(tmp_path):
    (tmp_path / 'photos').mkdir(); (tmp_path / 'photos' / 'a.jpg').write_bytes(b'not an image')
    _assert_clean_error(run_cli('train', '--instance_data_dir', tmp_path / 'photos', '--output_dir', tmp_path / 'r', '--resolution', '64'),
                        'only files PIL cannot read')

def test_model_folder_that_is_not_diffusers(tmp_path):
    (tmp_path / 'model').mkdir()
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', tmp_path / 'model', '--output_dir', tmp_path / 'r'),
                        'not a diffusers model folder')

def test_uncached_hub_model_offline(tmp_path):
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', 'nobody-here/no-model', '--output_dir', tmp_path / 'r'),
                        'not in the local Hugging Face cache')

def test_unknown_yaml_key(tmp_path):
    (tmp_path / 'run.yaml').write_text('resolutoin: 256\n')
    _assert_clean_error(run_cli('train', '--config', tmp_path / 'run.yaml'), "resolutoin", "Did you mean 'resolution'?")

@pytest.mark.parametrize('flag,value', [('--learning_rate', '0'), ('--max_train_steps', '-5'), ('--train_batch_size', '0')])
def test_non_positive_numbers(tmp_path, flag, value):
    _assert_clean_error(run_cli('train', flag, value, '--output_dir', tmp_path / 'r'), f"{flag[2:]}={value}", 'must be a positive')
    assert not (tmp_path / 'r').exists()

def test_prior_preservation_without_class_prompt(tmp_path):
    _assert_clean_error(run_cli('train', '--with_prior_preservation', '--class_prompt', 'none', '--output_dir', tmp_path / 'r'),
                        'class_prompt is empty')
    assert not (tmp_path / 'r').exists()

def test_nothing_written_when_the_model_is_wrong(tmp_path):
    (tmp_path / 'model').mkdir()
    run_cli('train', '--pretrained_model_name_or_path', tmp_path / 'model', '--output_dir', tmp_path / 'r')
    assert not (tmp_path / 'r').exists()

# Inputs that work but deserve a warning: one tiny training step each.
TINY_RUN = ['--pretrained_model_name_or_path', 'tiny:sd15', '--resolution', '64', '--max_train_steps', '1',
            '--validation_steps', '100', '--num_inference_steps', '1', '--num_validation_images', '1']

def test_mixed_folder_small_images_and_missing_identifier_warn(tmp_path):
    from PIL import Image
    photos = tmp_path / 'photos'; photos.mkdir()
    for i in range(3): Image.new('RGB', (48, 48), (40 * i, 90, 160)).save(photos / f'{i}.png')
    (photos / 'notes.docx').write_bytes(b'PK not an image')
    res = run_cli('train', *TINY_RUN, '--instance_data_dir', photos, '--instance_prompt', 'a photo of a dog',
                  '--identifier', 'olis', '--output_dir', tmp_path / 'r')
    assert res.returncode == 0, res.stderr[-3000:]
    warnings = [l for l in res.stderr.splitlines() if l.startswith('warning: ')]
    assert any('Skipped 1 unreadable file' in w and 'notes.docx' in w for w in warnings), warnings
    assert any('smaller than 64 px and will be upscaled' in w for w in warnings), warnings
    assert any('does not contain the identifier' in w for w in warnings), warnings
    assert 'Traceback' not in res.stderr

def test_known_bad_identifier_from_a_diffusers_command_line_warns(tmp_path):
    res = run_cli('train', *TINY_RUN, '--instance_prompt', 'a photo of sks dog', '--class_prompt', 'a photo of dog',
                  '--output_dir', tmp_path / 'r', '--enable_xformers_memory_efficient_attention')
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Identifier 'sks' is an SKS rifle" in res.stderr
    assert 'notice: --enable_xformers_memory_efficient_attention' in res.stderr
