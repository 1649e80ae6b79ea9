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
