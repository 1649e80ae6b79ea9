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
