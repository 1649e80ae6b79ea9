"`dreambooth-nb sample`: PNGs and grids from a run, reproducible seeds, LoRA strength, clear errors; each call's own numbered files, written as made, with their record."
import numpy as np
import pytest
from PIL import Image
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def lora_run(tmp_path_factory):
    from dreambooth_nb.run import tiny_demo
    out = tmp_path_factory.mktemp('runs') / 'lora'
    tiny_demo(out, max_train_steps=3, mode='lora', rank=2, num_class_images=2, validation_steps=100, num_validation_images=1,
         prior_num_inference_steps=2, num_inference_steps=2)
    return out

SAMPLE = ['--seeds', '0,1', '--num_inference_steps', '3']

def test_writes_one_png_per_prompt_and_seed_and_a_grid(lora_run, tmp_path):
    res = run_cli('sample', '--run', lora_run, *SAMPLE, '--prompt', 'a {identifier} {class_name} on the beach', '--out', tmp_path / 'a')
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'a').iterdir()) == ['001-00-seed0.png', '001-00-seed1.png', '001-grid.png']
    assert Image.open(tmp_path / 'a' / '001-grid.png').size[0] == 128
    again = run_cli('sample', '--run', lora_run, *SAMPLE, '--prompt', 'a {identifier} {class_name} on the beach', '--out', tmp_path / 'b')
    assert again.returncode == 0
    for name in ('001-00-seed0.png', '001-00-seed1.png'):                       # same seed, same image (the records' times differ)
        assert np.array_equal(np.asarray(Image.open(tmp_path / 'a' / name)), np.asarray(Image.open(tmp_path / 'b' / name)))

def test_lora_scale_zero_is_the_base_model(lora_run, tmp_path):
    res = run_cli('sample', '--run', lora_run, *SAMPLE, '--lora_scale', '0', '--compare', '--out', tmp_path / 'c')
    assert res.returncode == 0, res.stderr[-2000:]
    grid = np.asarray(Image.open(tmp_path / 'c' / '001-compare.png'))
    rows = 4                                                              # instance and class prompt, base then fine-tuned
    row = (grid.shape[0] - 14) // rows                                    # image + label strip (labels wrap, so it is measured)
    assert row > 64 and (grid.shape[0] - 14) % rows == 0
    base, tuned = grid[14 + row - 64:14 + row], grid[14 + 2 * row - 64:14 + 2 * row]
    assert np.array_equal(base, tuned)

def test_default_prompts_and_eval_prompts(lora_run, tmp_path):
    res = run_cli('sample', '--run', lora_run, '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 'd')
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'd').iterdir()) == ['001-00-seed0.png', '001-01-seed0.png', '001-grid.png']   # instance + class prompt

def test_defaults_come_from_the_run(lora_run, tmp_path):
    "No size or steps given: the run's training resolution (64 px) and its sample-grid steps, said in the summary line."
    res = run_cli('sample', '--run', lora_run, '--seeds', '0', '--out', tmp_path / 'f')
    assert res.returncode == 0, res.stderr[-2000:]
    assert Image.open(tmp_path / 'f' / '001-00-seed0.png').size == (64, 64)
    assert '64x64, 2 steps, guidance 3.0' in res.stdout, res.stdout

@pytest.mark.parametrize('args,needle', [(['--width', '500'], 'multiple of 8'), (['--seeds', 'x'], 'whole numbers'),
                                         (['--checkpoint', 'checkpoint-999'], 'does not exist')])
def test_bad_input(lora_run, tmp_path, args, needle):
    res = run_cli('sample', '--run', lora_run, *args, '--out', tmp_path / 'e')
    assert res.returncode == 2 and needle in res.stderr and 'Traceback' not in res.stderr, res.stderr[-2000:]


# ---- issue 32 ---------------------------------------------------------------------------------------------------------
def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob('*'))

def test_a_folder_that_is_not_a_run_is_refused_and_nothing_written(tmp_path):
    "The photos folder, a model folder, a missing path: one error line, no samples/cli inside, the missing path not created."
    from dreambooth_nb.data import find_images, sample_subject_dir
    photos = tmp_path / 'photos'; photos.mkdir()
    for p in find_images(sample_subject_dir())[:2]: (photos / p.name).write_bytes(p.read_bytes())
    assert run_cli('tiny', '--out', tmp_path / 'model').returncode == 0
    for folder, needle in ((photos, 'is a folder of images, not a run'), (tmp_path / 'model', 'is a diffusers model, not a run'),
                           (tmp_path / 'missing', 'does not exist')):
        before = _tree(tmp_path)
        res = run_cli('sample', '--run', folder, '--seeds', '0', '--num_inference_steps', '1')
        errors = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
        assert res.returncode == 2 and len(errors) == 1 and needle in errors[0] and 'Traceback' not in res.stderr, res.stderr[-2000:]
        assert 'resume_from_checkpoint' not in errors[0] and '--output_dir' in errors[0], errors[0]
        assert _tree(tmp_path) == before                                # nothing created: no samples/cli, no missing/

def test_each_call_its_own_files_with_their_record_and_a_bar(lora_run, tmp_path):
    from dreambooth_nb.priors import read_record
    out = tmp_path / 'o'
    first = run_cli('sample', '--run', lora_run, *SAMPLE, '--prompt', 'a {identifier} {class_name} on the beach', '--out', out)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = _tree(out)
    again = run_cli('sample', '--run', lora_run, *SAMPLE, '--prompt', 'a {identifier} {class_name} in the snow', '--out', out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ['001-00-seed0.png', '001-00-seed1.png', '001-grid.png',
                                                    '002-00-seed0.png', '002-00-seed1.png', '002-grid.png']
    assert all(item in _tree(out) for item in kept)                    # the first call's files untouched
    rec = read_record(out / '002-00-seed1.png')
    assert rec['prompt'] == 'a olis dog in the snow' and rec['seed'] == 1 and rec['checkpoint'] == 'final-state' and rec['step'] == 3, rec   # a 3-step run off its checkpoint schedule ends in final-state
    assert rec['num_inference_steps'] == 3 and rec['mode'] == 'lora' and rec['width'] == 64 and rec['created'], rec
    assert read_record(out / '002-grid.png')['seeds'] == [0, 1]
    assert 'sample: 100%' in again.stderr and '2/2' in again.stderr, again.stderr[-1000:]   # the tqdm bar
    assert 'call 002' in again.stdout, again.stdout

def test_ctrl_c_keeps_the_images_already_made(lora_run, tmp_path):
    import signal, subprocess, time
    from dreambooth_nb.priors import read_record
    out = tmp_path / 'o'
    proc = subprocess.Popen(['dreambooth-nb', 'sample', '--run', str(lora_run), '--seeds', '0-999', '--num_inference_steps', '1', '--out', str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while len(list(out.glob('001-*-seed*.png'))) < 4 and proc.poll() is None and time.time() < deadline: time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'Traceback' not in err, err[-2000:]
    made = sorted(out.glob('001-*-seed*.png'))
    assert len(made) >= 4, err[-2000:]                                 # written as they were made, kept after Ctrl-C
    assert all(read_record(p)['seed'] == int(p.stem.split('seed')[1]) for p in made)

def test_identifier_in_a_prompt_of_a_concepts_run_is_filled_per_concept(tmp_path):
    "Issue 32: `{identifier}` on a --concepts_list run rendered the config's default ('olis dog'), neither subject."
    import yaml
    from dreambooth_nb.data import find_images, load_image, sample_subject_dir
    from dreambooth_nb.priors import read_record
    photos = find_images(sample_subject_dir())
    for name, files in (('dog', photos[:2]), ('cat', photos[2:3])):
        (tmp_path / name).mkdir()
        for i, p in enumerate(files): load_image(p).resize((64, 64)).save(tmp_path / name / f'{i}.jpg')
    (tmp_path / 'concepts.yaml').write_text(yaml.safe_dump([
        dict(instance_prompt='a photo of zwx dog', class_prompt='a photo of dog', instance_data_dir='dog'),
        dict(instance_prompt='a photo of qwx cat', class_prompt='a photo of cat', instance_data_dir='cat')]))
    res = run_cli('train', '--pretrained_model_name_or_path', 'tiny:sd15', '--concepts_list', tmp_path / 'concepts.yaml', '--resolution', '64',
                  '--max_train_steps', '1', '--validation_steps', '100', '--num_inference_steps', '1', '--num_validation_images', '1',
                  '--rank', '2', '--output_dir', tmp_path / 'run')
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli('sample', '--run', tmp_path / 'run', '--seeds', '0', '--num_inference_steps', '1',
                  '--prompt', 'a {identifier} {class_name} on the beach', '--out', tmp_path / 'o')
    assert res.returncode == 0, res.stderr[-2000:]
    prompts = [read_record(p)['prompt'] for p in sorted((tmp_path / 'o').glob('001-*-seed0.png'))]
    assert prompts == ['a zwx dog on the beach', 'a qwx cat on the beach'], prompts
