"Bad input: one clear line on stderr, exit status 2, no traceback, nothing written. Disk, memory and Ctrl-C: one line too."
import errno, os, signal, subprocess, sys, time
import pytest
from dreambooth_nb.data import sample_subject_dir
from tests.conftest import mounted_tmpfs, run_cli

PHOTOS = ['--instance_data_dir', sample_subject_dir()]

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
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', 'tiny:sd15', '--instance_data_dir', tmp_path / 'nope',
                                '--output_dir', tmp_path / 'r', '--resolution', '64'),
                        'instance image folder', 'does not exist')

def test_folder_without_images(tmp_path):
    (tmp_path / 'photos').mkdir(); (tmp_path / 'photos' / 'a.jpg').write_bytes(b'not an image')
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', 'tiny:sd15', '--instance_data_dir', tmp_path / 'photos',
                                '--output_dir', tmp_path / 'r', '--resolution', '64'),
                        'only files PIL cannot read')

def test_model_folder_that_is_not_diffusers(tmp_path):
    (tmp_path / 'model').mkdir()
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', tmp_path / 'model', *PHOTOS, '--output_dir', tmp_path / 'r'),
                        'not a diffusers model folder')

def test_uncached_hub_model_offline(tmp_path):
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', 'nobody-here/no-model', *PHOTOS, '--output_dir', tmp_path / 'r'),
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
    run_cli('train', '--pretrained_model_name_or_path', tmp_path / 'model', *PHOTOS, '--output_dir', tmp_path / 'r')
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

# ---- a run needs a model and photos -----------------------------------------------------------------------------
def test_train_without_model_and_photos_is_refused(tmp_path):
    res = run_cli('train', '--output_dir', tmp_path / 'r')
    _assert_clean_error(res, 'train needs --pretrained_model_name_or_path', 'and --instance_data_dir', 'dreambooth-nb demo')
    assert not (tmp_path / 'r').exists()

def test_train_with_a_real_model_but_no_photos_is_refused(tmp_path):
    _assert_clean_error(run_cli('train', '--pretrained_model_name_or_path', 'me/my-model', '--output_dir', tmp_path / 'r'),
                        'train needs --instance_data_dir')
    _assert_clean_error(run_cli('train', '--preset', 'sd15-t4', '--output_dir', tmp_path / 'r'), 'train needs --instance_data_dir')
    assert not (tmp_path / 'r').exists()

# ---- sampling and export flags: refused when parsed, before a model loads ------------------------------------------
def _assert_one_error_line(res, status=None, *needles):
    assert res.returncode != 0 and (status is None or res.returncode == status), (res.returncode, res.stderr[-2000:])
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1, res.stderr
    for n in needles: assert n in errors[0], errors[0]
    return errors[0]

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp('runs') / 'lora'
    res = run_cli('train', *TINY_RUN, '--rank', '4', '--output_dir', run)
    assert res.returncode == 0, res.stderr[-3000:]
    return run

@pytest.mark.parametrize('flags,needle', [
    (['--seeds', '3-1'], "range '3-1' is empty: write the smaller seed first (1-3)"),
    (['--seeds', '0-99999999'], 'asks for 100000000 images per prompt; at most 10000'),
    (['--seeds', '0-999999999999999999999999'], 'seeds are 32-bit'),
    (['--width', '0'], '--width 0 is out of range'), (['--height', '0'], '--height 0 is out of range'),
    (['--num_inference_steps', '0'], '--num_inference_steps 0 is out of range'),
    (['--guidance_scale', '-1'], '--guidance_scale -1 is out of range'), (['--guidance_scale', 'nan'], 'must be a finite number'),
])
def test_bad_sample_flags(tiny_run, tmp_path, flags, needle):
    t0 = time.time()
    _assert_one_error_line(run_cli('sample', '--run', tiny_run, *flags, '--out', tmp_path / 'o'), 2, needle)
    assert not (tmp_path / 'o').exists()

@pytest.mark.parametrize('rank', ['0', '100000', '-3'])
def test_absurd_export_rank(tiny_run, tmp_path, rank):
    _assert_one_error_line(run_cli('export', '--run', tiny_run, '--format', 'lora', '--rank', rank, '--out', tmp_path / 'e'), 2,
                           f'--rank {rank} is out of range: it must be between 1 and 1024')

# ---- the disk says no ---------------------------------------------------------------------------------------------
def test_out_under_a_regular_file(tiny_run, tmp_path):
    (tmp_path / 'file').write_text('x')
    line = _assert_one_error_line(run_cli('sample', '--run', tiny_run, '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 'file' / 'o'), 1)
    assert str(tmp_path / 'file') in line and 'not a folder' in line, line
    line = _assert_one_error_line(run_cli('export', '--run', tiny_run, '--format', 'lora', '--out', tmp_path / 'file' / 'sub' / 'e'), 1)
    assert 'not a folder' in line, line
    line = _assert_one_error_line(run_cli('train', *TINY_RUN, '--output_dir', tmp_path / 'file' / 'r'), 1)
    assert str(tmp_path / 'file') in line and 'not a folder' in line, line

@pytest.mark.skipif(os.geteuid() == 0, reason='root ignores directory permissions; EACCES is covered by the injected-error test')
def test_read_only_folder(tiny_run, tmp_path):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    try: line = _assert_one_error_line(run_cli('sample', '--run', tiny_run, '--seeds', '0', '--out', ro / 'o'), 1)
    finally: ro.chmod(0o755)
    assert 'permission denied' in line, line

@pytest.fixture
def small_tmpfs(tmp_path):
    "A 64 KiB tmpfs, when this process may mount one."
    yield from mounted_tmpfs(tmp_path, '64k', 'ENOSPC is covered by the injected-error test')

def test_full_disk(tiny_run, small_tmpfs):
    (small_tmpfs / 'filler').write_bytes(b'\0' * 60 * 1024)
    res = run_cli('sample', '--run', tiny_run, '--seeds', '0-3', '--num_inference_steps', '1', '--out', small_tmpfs / 'o')
    line = _assert_one_error_line(res, 1, 'no space left on device — free space or choose another folder')
    assert str(small_tmpfs) in line, line

# Errors injected in a real `main` process: the same handler whatever command meets them.
INJECT = ("import errno, sys, dreambooth_nb.cli as c\n"
          "def boom(args): raise {exc}\n"
          "c.cmd_tiny = boom\n"
          "sys.exit(c.main(['tiny', '--out', 'x']))\n")

@pytest.mark.parametrize('exc,status,needle', [
    ("OSError(errno.ENOSPC, 'No space left on device', '/data/run/priors/0001.png')", 1,
     'error: /data/run/priors/0001.png: no space left on device — free space or choose another folder'),
    ("OSError(errno.EROFS, 'Read-only file system', '/mnt/ro/run')", 1, 'error: /mnt/ro/run: read-only file system'),
    ("PermissionError(errno.EACCES, 'Permission denied', '/root/run')", 1, 'error: /root/run: permission denied'),
    ("MemoryError()", 1, 'error: out of memory (MemoryError): lower --resolution'),
    ("KeyboardInterrupt()", 130, 'error: interrupted (Ctrl-C)'),
    ("type('OutOfMemoryError', (RuntimeError,), {})('CUDA out of memory. Tried to allocate 20.00 GiB')", 1, 'error: out of GPU memory'),
])
def test_injected_failures_are_one_line(exc, status, needle):
    res = subprocess.run([sys.executable, '-c', INJECT.format(exc=exc)], capture_output=True, text=True, timeout=120)
    line = _assert_one_error_line(res, status)
    assert line.startswith(needle), line

def test_ctrl_c_while_sampling(tiny_run, tmp_path):
    out = tmp_path / 'o'
    proc = subprocess.Popen(['dreambooth-nb', 'sample', '--run', str(tiny_run), '--seeds', '0-9999', '--num_inference_steps', '1000', '--out', str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not out.exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert 'Traceback' not in err and [l for l in err.splitlines() if l.startswith('error: ')] == [
        'error: interrupted (Ctrl-C); every file written so far is complete (writes are atomic); a training run continues with --resume_from_checkpoint latest.'], err

# ---- tiny --out: never over someone's model (issue 32, item 4) ------------------------------------------------------
def test_tiny_refuses_a_folder_holding_another_model(tmp_path):
    other = tmp_path / 'my-model'; other.mkdir()
    (other / 'model_index.json').write_text('{"_class_name": "StableDiffusionPipeline", "mine": true}')
    (other / 'unet').mkdir(); (other / 'unet' / 'config.json').write_text('{}')
    before = sorted((p.relative_to(other), p.read_bytes() if p.is_file() else None) for p in other.rglob('*'))
    _assert_one_error_line(run_cli('tiny', '--out', other), 2, str(other), 'not written by `dreambooth-nb tiny`')
    assert sorted((p.relative_to(other), p.read_bytes() if p.is_file() else None) for p in other.rglob('*')) == before
    assert run_cli('tiny', '--out', tmp_path / 'new').returncode == 0
    again = run_cli('tiny', '--out', tmp_path / 'new', '--family', 'sd21')            # our own earlier tiny folder: rewritten
    assert again.returncode == 0, again.stderr
    assert '"prediction_type": "v_prediction"' in (tmp_path / 'new' / 'scheduler' / 'scheduler_config.json').read_text()
