"`dreambooth-nb sample`: PNGs and grids from a run, reproducible seeds, LoRA strength, clear errors."
import numpy as np
import pytest
from PIL import Image
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def lora_run(tmp_path_factory):
    from dreambooth_nb.run import demo
    out = tmp_path_factory.mktemp('runs') / 'lora'
    demo(out, max_train_steps=3, mode='lora', rank=2, num_class_images=2, validation_steps=100, num_validation_images=1,
         prior_num_inference_steps=2, num_inference_steps=2)
    return out

SAMPLE = ['--seeds', '0,1', '--num_inference_steps', '3']

def test_writes_one_png_per_prompt_and_seed_and_a_grid(lora_run, tmp_path):
    res = run_cli('sample', '--run', lora_run, *SAMPLE, '--prompt', 'a {identifier} {class_name} on the beach', '--out', tmp_path / 'a')
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'a').iterdir()) == ['00-seed0.png', '00-seed1.png', 'grid.png']
    assert Image.open(tmp_path / 'a' / 'grid.png').size[0] == 128
    again = run_cli('sample', '--run', lora_run, *SAMPLE, '--prompt', 'a {identifier} {class_name} on the beach', '--out', tmp_path / 'b')
    assert again.returncode == 0
    for name in ('00-seed0.png', '00-seed1.png'):                       # same seed, same image
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()

def test_lora_scale_zero_is_the_base_model(lora_run, tmp_path):
    res = run_cli('sample', '--run', lora_run, *SAMPLE, '--lora_scale', '0', '--compare', '--out', tmp_path / 'c')
    assert res.returncode == 0, res.stderr[-2000:]
    grid = np.asarray(Image.open(tmp_path / 'c' / 'compare.png'))
    rows = 4                                                              # instance and class prompt, base then fine-tuned
    row = (grid.shape[0] - 14) // rows                                    # image + label strip (labels wrap, so it is measured)
    assert row > 64 and (grid.shape[0] - 14) % rows == 0
    base, tuned = grid[14 + row - 64:14 + row], grid[14 + 2 * row - 64:14 + 2 * row]
    assert np.array_equal(base, tuned)

def test_default_prompts_and_eval_prompts(lora_run, tmp_path):
    res = run_cli('sample', '--run', lora_run, '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 'd')
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'd').iterdir()) == ['00-seed0.png', '01-seed0.png', 'grid.png']   # instance + class prompt

def test_defaults_come_from_the_run(lora_run, tmp_path):
    "No size or steps given: the run's training resolution (64 px) and its sample-grid steps, said in the summary line."
    res = run_cli('sample', '--run', lora_run, '--seeds', '0', '--out', tmp_path / 'f')
    assert res.returncode == 0, res.stderr[-2000:]
    assert Image.open(tmp_path / 'f' / '00-seed0.png').size == (64, 64)
    assert '64x64, 2 steps, guidance 3.0' in res.stdout, res.stdout

@pytest.mark.parametrize('args,needle', [(['--width', '500'], 'multiple of 8'), (['--seeds', 'x'], 'whole numbers'),
                                         (['--checkpoint', 'checkpoint-999'], 'does not exist')])
def test_bad_input(lora_run, tmp_path, args, needle):
    res = run_cli('sample', '--run', lora_run, *args, '--out', tmp_path / 'e')
    assert res.returncode == 2 and needle in res.stderr and 'Traceback' not in res.stderr, res.stderr[-2000:]
