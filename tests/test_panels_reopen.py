"""The panels after a kernel restart: a run trained in one process is reopened in a fresh one (another hash seed, another
working directory, the model config missing keys newer diffusers added), resumed with Resume and sampled with Generate."""
import json, os, subprocess, sys, textwrap
from pathlib import Path

REOPEN = textwrap.dedent('''
    import sys, time
    from dreambooth_nb.widgets import studio
    st = studio(sys.argv[1])
    st.train.form['max_train_steps'].value = 4
    st.train.resume_button.click()
    assert st.train.wait(300), 'resume did not finish'
    print('TRAIN:', st.train.status.value)
    st.sample.refresh(); st.sample.steps.value = 1; st.sample.width.value = st.sample.height.value = 64
    st.sample.generate_button.click()
    assert st.sample.wait(300), 'sampling did not finish'
    print('SAMPLE:', st.sample.status.value)
''')

def test_reopen_in_a_fresh_process_resume_and_sample(tmp_path):
    from dreambooth_nb.load import tiny
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.data import sample_subject_dir
    from dreambooth_nb.run import train
    from dreambooth_nb.checkpoint import latest_checkpoint
    model = tiny('sd15').save_pretrained(tmp_path / 'model')
    cfg_path = model / 'unet' / 'config.json'
    unet_cfg = json.loads(cfg_path.read_text())
    for key in ('addition_embed_type', 'class_embed_type', 'upcast_attention'): unet_cfg.pop(key)
    cfg_path.write_text(json.dumps(unet_cfg))
    run = tmp_path / 'run'
    train(TrainConfig(pretrained_model_name_or_path=str(model), instance_data_dir=str(sample_subject_dir()), output_dir=str(run),
                      resolution=64, max_train_steps=2, checkpointing_steps=2, validation_steps=100, with_prior_preservation=True,
                      num_class_images=2, prior_num_inference_steps=2, num_inference_steps=1))
    (tmp_path / 'reopen.py').write_text(REOPEN)
    elsewhere = tmp_path / 'elsewhere'; elsewhere.mkdir()
    env = {**os.environ, 'PYTHONHASHSEED': '7', 'OMP_NUM_THREADS': '1'}
    res = subprocess.run([sys.executable, str(tmp_path / 'reopen.py'), str(run)], capture_output=True, text=True, env=env,
                         cwd=elsewhere, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    train_status = next(l for l in res.stdout.splitlines() if l.startswith('TRAIN:'))
    sample_status = next(l for l in res.stdout.splitlines() if l.startswith('SAMPLE:'))
    assert 'different model' not in res.stdout and 'other weights' not in res.stdout, res.stdout
    assert latest_checkpoint(run).name == 'checkpoint-4', train_status
    assert 'dbnb-ok' in sample_status and 'image(s)' in sample_status, sample_status           # the checkpoint was accepted and sampled
    assert 'dbnb-ok' in train_status, train_status
    assert [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3, 4]
