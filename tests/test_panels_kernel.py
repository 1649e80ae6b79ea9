"""The panels in a real Jupyter kernel (ipykernel, as JupyterLab runs it): Kernel -> Interrupt while the Sample panel's
thread samples stops it (the finished images kept, the kernel usable); and Kernel -> Restart between training and Resume:
the studio reopened in the new kernel resumes the run and samples its checkpoint."""
import json, time
import pytest

def _run(kc, code: str, timeout: float = 300) -> str:
    "Execute `code` in the kernel; its stdout, or an AssertionError with the kernel's traceback."
    out = []
    def hook(msg):
        if msg['msg_type'] == 'stream': out.append(msg['content']['text'])
        if msg['msg_type'] == 'error': out.append('\n'.join(msg['content']['traceback']))
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    assert reply['content']['status'] == 'ok', ''.join(out)
    return ''.join(out)

def _state(kc) -> dict:
    return json.loads(_run(kc, "import json; print(json.dumps(dict(busy=sp.busy, phase=sp.phase.name, status=sp.status.value, n=len(sp.images))))"))

def test_kernel_interrupt_stops_sampling(tmp_path):
    jupyter_client = pytest.importorskip('jupyter_client')
    from dreambooth_nb.run import tiny_config, train
    run = tmp_path / 'run'
    train(tiny_config(run, max_train_steps=1, with_prior_preservation=False, train_text_encoder=False, validation_steps=100,
                      num_validation_images=1, num_inference_steps=1).replace(pretrained_model_name_or_path='tiny:sd15'))
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name='python3', env={'TRANSFORMERS_VERBOSITY': 'error', 'OMP_NUM_THREADS': '1'})
    try:
        _run(kc, f"from dreambooth_nb.widgets_sample import SamplePanel\nsp = SamplePanel({str(run)!r})\n"
                 "sp.seeds.value, sp.steps.value = '0-63', 50\nsp.generate_button.click()")
        deadline = time.time() + 120
        while 'denoising step' not in (state := _state(kc))['phase'] and time.time() < deadline: time.sleep(0.5)
        assert state['busy'], state                                    # sampling runs in its thread, the kernel is idle
        time.sleep(1)                                                  # the kernel has finished the last request (idle, as a user sees it)
        km.interrupt_kernel()
        deadline = time.time() + 60
        while (state := _state(kc))['busy'] and time.time() < deadline: time.sleep(0.5)
        assert not state['busy'], f'the job survived the interrupt: {state}'
        assert 'Stopped' in state['status'] and state['n'] < 64, state
        assert _run(kc, "print(1 + 1)").strip() == '2'                 # the kernel itself was not hurt
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)

def _kernel(jupyter_client):
    return jupyter_client.manager.start_new_kernel(kernel_name='python3', env={'TRANSFORMERS_VERBOSITY': 'error', 'OMP_NUM_THREADS': '1'})

STUDIO = """from dreambooth_nb.widgets import studio
from dreambooth_nb.run import tiny_config
st = studio(tiny_config({run!r}, max_train_steps={steps}, with_prior_preservation=True, num_class_images=2, sample_batch_size=2,
                        prior_num_inference_steps=1, train_text_encoder=False, checkpointing_steps=2, validation_steps=100,
                        num_validation_images=1, num_inference_steps=1).replace(pretrained_model_name_or_path='tiny:sd15'))"""

def test_restart_kernel_between_training_and_resume(tmp_path):
    jupyter_client = pytest.importorskip('jupyter_client')
    run = tmp_path / 'run'
    km, kc = _kernel(jupyter_client)
    try:
        _run(kc, STUDIO.format(run=str(run), steps=2) + "\nst.train.train_button.click()\nassert st.train.wait(300)\nprint(st.train.status.value)")
        km.restart_kernel(now=True); kc.wait_for_ready(timeout=120)
        _run(kc, "from dreambooth_nb.widgets import studio\nst = studio({!r})\nprint(st.train.status.value)".format(str(run)))
        out = _run(kc, "st.train.form['max_train_steps'].value = 4\nst.train.resume_button.click()\nassert st.train.wait(300)\n"
                       "print('TRAIN', st.train.status.value)\nst.selected_index = 2\nst.sample.steps.value = 1\n"
                       "st.sample.generate_button.click()\nassert st.sample.wait(300)\nprint('SAMPLE', st.sample.status.value, st.sample.width.value)")
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)
    train_line = next(l for l in out.splitlines() if l.startswith('TRAIN'))
    sample_line = next(l for l in out.splitlines() if l.startswith('SAMPLE'))
    assert 'Finished: 4 steps; the checkpoint checkpoint-4' in train_line, out
    assert 'dbnb-ok' in sample_line and 'image(s)' in sample_line and sample_line.endswith(' 64'), out   # the run's size
    assert [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3, 4]
