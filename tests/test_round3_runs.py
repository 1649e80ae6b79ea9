"""Issue 32, runs and inputs, through the CLI in new processes from other working directories: a base model given as a
relative folder with no slash and a relative class_data_dir are stored absolute (sampling and resuming elsewhere find
them, nothing is regenerated under the new cwd); a class_data_dir inside the photos is refused before anything is
written; a concepts list is the photos."""
import json, shutil
from pathlib import Path
import pytest
import yaml
from tests.conftest import run_cli

def _photos(tmp_path) -> Path:
    from dreambooth_nb.data import sample_subject_dir
    return Path(shutil.copytree(sample_subject_dir(), tmp_path / 'photos'))

def _train(*extra, cwd):
    return run_cli('train', '--resolution', '64', '--train_batch_size', '1', '--learning_rate', '1e-4',
                   '--instance_prompt', 'a photo of sks dog', '--validation_steps', '100', *extra, cwd=cwd)

@pytest.fixture(scope='module')
def made_in_cwd(tmp_path_factory):
    "A run trained from `first/` with --pretrained_model_name_or_path reltiny and --class_data_dir bank, both relative."
    from dreambooth_nb.load import tiny
    root = tmp_path_factory.mktemp('r3'); first = root / 'first'; first.mkdir()
    tiny('sd15').save_pretrained(first / 'reltiny')
    res = _train('--pretrained_model_name_or_path', 'reltiny', '--instance_data_dir', _photos(root), '--output_dir', 'run',
                 '--with_prior_preservation', '--class_prompt', 'a photo of dog', '--class_data_dir', 'bank', '--num_class_images', '2',
                 '--sample_batch_size', '2', '--prior_num_inference_steps', '1', '--max_train_steps', '2', '--checkpointing_steps', '1',
                 cwd=first)
    assert res.returncode == 0, res.stderr[-2000:]
    return root

def test_relative_paths_are_stored_absolute(made_in_cwd):
    run = made_in_cwd / 'first' / 'run'
    for cfg_file in [run / 'config.yaml', *run.glob('checkpoint-*/config.yaml')]:
        stored = yaml.safe_load(cfg_file.read_text())
        assert stored['pretrained_model_name_or_path'] == str((made_in_cwd / 'first' / 'reltiny').resolve()), cfg_file
        assert stored['class_data_dir'] == str((made_in_cwd / 'first' / 'bank').resolve()), cfg_file

def test_sample_and_resume_from_another_directory(made_in_cwd):
    other = made_in_cwd / 'elsewhere'; other.mkdir()
    run = made_in_cwd / 'first' / 'run'
    res = run_cli('sample', '--run', run, '--prompt', 'a photo of sks dog', '--seeds', '0', '--num_inference_steps', '1', cwd=other)
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_cli('train', '--config', run / 'config.yaml', '--resume_from_checkpoint', 'latest', '--max_train_steps', '3', cwd=other)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (other / 'bank').exists() and not (other / 'reltiny').exists()      # nothing made again under the new cwd
    assert [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3]

@pytest.mark.parametrize('inside', ['', 'priors'])
def test_class_data_dir_in_the_photos_is_refused(tmp_path, inside):
    photos = _photos(tmp_path); before = sorted(p.name for p in photos.iterdir())
    res = _train('--pretrained_model_name_or_path', 'tiny:sd15', '--instance_data_dir', photos, '--output_dir', tmp_path / 'run',
                 '--with_prior_preservation', '--class_prompt', 'a photo of dog', '--class_data_dir', photos / inside,
                 '--max_train_steps', '1', cwd=tmp_path)
    assert res.returncode != 0 and 'would be trained as photos of the subject' in res.stderr, res.stderr[-2000:]
    assert 'Traceback' not in res.stderr and res.stderr.strip().startswith('error:'), res.stderr[-2000:]
    assert sorted(p.name for p in photos.iterdir()) == before and not (tmp_path / 'run').exists()

def test_a_concepts_list_is_the_photos(tmp_path):
    "ShivamShrirao's format: every concept with its own instance_data_dir, no --instance_data_dir (a real model folder, not tiny:)."
    from dreambooth_nb.load import tiny
    tiny('sd15').save_pretrained(tmp_path / 'model')
    concepts = [{'instance_prompt': 'a photo of sks dog', 'class_prompt': 'a photo of dog', 'instance_data_dir': str(_photos(tmp_path))}]
    (tmp_path / 'concepts.json').write_text(json.dumps(concepts))
    res = run_cli('train', '--pretrained_model_name_or_path', 'model', '--concepts_list', 'concepts.json', '--output_dir', 'out',
                  '--resolution', '64', '--max_train_steps', '1', '--validation_steps', '100', cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / 'out' / 'checkpoint-1').is_dir() or (tmp_path / 'out' / 'model_index.json').is_file()

def test_resume_that_switches_prior_preservation_finishes(tmp_path):
    "The loss plot skips records without a part: a run resumed with priors switched on (or off) finishes, with its plot."
    common = ('--pretrained_model_name_or_path', 'tiny:sd15', '--output_dir', tmp_path / 'run', '--checkpointing_steps', '2',
              '--class_prompt', 'a photo of dog', '--num_class_images', '2', '--sample_batch_size', '2', '--prior_num_inference_steps', '1')
    assert (res := _train(*common, '--max_train_steps', '2', cwd=tmp_path)).returncode == 0, res.stderr[-2000:]
    res = _train(*common, '--max_train_steps', '4', '--with_prior_preservation', '--resume_from_checkpoint', 'latest', cwd=tmp_path)
    assert res.returncode == 0 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    recs = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
    assert [('prior_loss' in r) for r in recs] == [False, False, True, True] and (tmp_path / 'run' / 'loss.png').is_file()
