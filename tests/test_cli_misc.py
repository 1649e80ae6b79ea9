"""Issue 32's smaller CLI items, each through `dreambooth-nb` in a new process: the end-of-run summary counts the run's
own class banks wherever they live; resuming a run folder needs no --config; a run that cannot fit its disk is refused."""
from pathlib import Path
import yaml
from tests.conftest import run_cli

TINY = ['--pretrained_model_name_or_path', 'tiny:sd15', '--resolution', '64', '--train_batch_size', '1', '--validation_steps', '100',
        '--num_validation_images', '1', '--num_inference_steps', '1']

def _train(out, *extra, steps=2, cwd=None):
    return run_cli('train', *TINY, '--output_dir', out, '--max_train_steps', str(steps), *extra, cwd=cwd)

def _two_concepts(root: Path) -> Path:
    "concepts.yaml naming dog/ and cat/ (one bundled photo each, 64 px)."
    from dreambooth_nb.data import find_images, load_image, sample_subject_dir
    photos = find_images(sample_subject_dir())
    for name, p in (('dog', photos[0]), ('cat', photos[1])):
        (root / name).mkdir(parents=True); load_image(p).resize((64, 64)).save(root / name / '0.jpg')
    (root / 'concepts.yaml').write_text(yaml.safe_dump([
        dict(instance_prompt='a photo of olis dog', class_prompt='a photo of dog', instance_data_dir=str(root / 'dog')),
        dict(instance_prompt='a photo of qwx cat', class_prompt='a photo of cat', instance_data_dir=str(root / 'cat'))]))
    return root / 'concepts.yaml'

PRIORS = ['--with_prior_preservation', '--num_class_images', '2', '--sample_batch_size', '2', '--prior_num_inference_steps', '1']

def test_summary_counts_class_images_in_another_folder(tmp_path):
    res = _train(tmp_path / 'run', *PRIORS, '--class_data_dir', tmp_path / 'bank')
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [l for l in res.stdout.splitlines() if 'class-prior images' in l]
    assert lines == [f"  {tmp_path / 'bank'}/ 2 class-prior images (seed and prompt inside each PNG)"], res.stdout   # was "priors/ 0 ..."

def test_summary_counts_each_concepts_bank(tmp_path):
    res = _train(tmp_path / 'run', *PRIORS, '--concepts_list', _two_concepts(tmp_path / 'photos'), steps=1)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [l.split() for l in res.stdout.splitlines() if 'class-prior images' in l]
    assert [l[:2] + l[4:6] for l in lines] == [['priors/olis/', '2', 'of', 'olis'], ['priors/qwx/', '2', 'of', 'qwx']], res.stdout

def test_resume_with_output_dir_alone_takes_the_runs_config(tmp_path):
    import json
    run = tmp_path / 'run'
    res = _train(run, '--checkpointing_steps', '1', '--learning_rate', '3e-4', '--mode', 'lora', '--rank', '2')
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_cli('train', '--output_dir', run, '--resume_from_checkpoint', 'latest', '--max_train_steps', '3', cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]                     # was: "train needs --pretrained_model_name_or_path ..."
    assert [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3]
    cfg = yaml.safe_load((run / 'config.yaml').read_text())
    assert (cfg['pretrained_model_name_or_path'], cfg['learning_rate'], cfg['rank'], cfg['max_train_steps']) == ('tiny:sd15', 3e-4, 2, 3)

def _local_tiny(tmp_path) -> Path:
    "A tiny SD folder on disk: the planner counts its own parameters (a `tiny:` name is planned as the full-size model)."
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path / 'tiny-sd15')

def test_a_run_that_cannot_fit_its_disk_is_refused(tmp_path):
    from dreambooth_nb.data import sample_subject_dir
    out = tmp_path / 'run'
    res = run_cli('train', *TINY, '--pretrained_model_name_or_path', _local_tiny(tmp_path), '--instance_data_dir', sample_subject_dir(), '--output_dir', out,
                  '--max_train_steps', '1e12', '--checkpointing_steps', '10', timeout=180)   # today's code trains on
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith('error:')]
    assert len(errors) == 1 and 'GiB free' in errors[0] and '--checkpoints_total_limit' in errors[0], res.stderr   # was: training began
    assert 'Traceback' not in res.stderr and not out.exists()

def test_disk_check_uses_the_free_space_of_output_dirs_disk(tmp_path, monkeypatch):
    import shutil, warnings
    from types import SimpleNamespace
    import pytest
    from dreambooth_nb.config import ConfigError, TrainConfig
    from dreambooth_nb.run import train
    seen = []
    def fake(free):
        def usage(path): seen.append(Path(path)); return SimpleNamespace(total=10**12, used=10**12 - free, free=free)
        return usage
    cfg = TrainConfig(pretrained_model_name_or_path=str(_local_tiny(tmp_path)), output_dir=str(tmp_path / 'new' / 'run'), resolution=64,
                      max_train_steps=4, checkpointing_steps=1, validation_steps=100, num_validation_images=1, num_inference_steps=1)
    monkeypatch.setattr(shutil, 'disk_usage', fake(10**6))                      # 1 MB free: a few tiny checkpoints do not fit
    with pytest.raises(ConfigError, match='GiB free'): train(cfg)
    assert seen[-1] == tmp_path and not (tmp_path / 'new').exists()           # the nearest existing folder's disk; nothing written
    monkeypatch.setattr(shutil, 'disk_usage', fake(10**12 // 20))              # fits, leaving under 10% free: a warning, then the run
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); train(cfg.replace(max_train_steps=1))
    assert any('leaving' in str(x.message) for x in w) and (tmp_path / 'new' / 'run' / 'checkpoint-1').is_dir()
