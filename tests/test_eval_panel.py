"""The Eval panel on a tiny 2-checkpoint run: Evaluate in the background, the plot, table and best shown, Stop keeping the
scored checkpoint, and "Use this checkpoint" reaching the Results tab of the studio."""
import json, shutil, time
from tests.test_eval import PROMPTS, run2      # the same tiny 2-checkpoint run (a module fixture: trained once here)

def _set_fields(panel, steps):
    from dreambooth_nb.widgets_eval import MY_PROMPTS
    panel.prompt_set.value, panel.prompts.value = MY_PROMPTS, '\n'.join(PROMPTS)
    panel.images_per_prompt.value, panel.steps.value = 2, steps
    panel.image_encoder.value = panel.clip_model.value = 'tiny'

def _scored(run): return [json.loads(l)['checkpoint'] for l in (run / 'eval' / 'scores.jsonl').read_text().splitlines()]

def test_stop_midway_keeps_the_scored_checkpoint_and_evaluate_finishes_it(run2):
    from dreambooth_nb.widgets_eval import EvalPanel
    shutil.rmtree(run2 / 'eval', ignore_errors=True)
    panel = EvalPanel(run2); _set_fields(panel, steps=8)
    panel.evaluate_button.click()
    deadline = time.time() + 900                                       # a loaded CI machine is slow
    while 'checkpoint-4' not in panel.phase.name and panel.busy and time.time() < deadline: time.sleep(0.005)
    assert panel.stop_button.disabled is False
    panel.stop_button.click(); assert panel.wait(120)
    assert 'Stopped: 1 checkpoint(s)' in panel.status.value and 'continues where it stopped' in panel.status.value, panel.status.value
    assert _scored(run2) == ['checkpoint-2'] and [r['checkpoint'] for r in panel.records] == ['checkpoint-2']
    assert panel.plot.value[:4] == b'\x89PNG' and 'checkpoint-2' in panel.best.value and panel.chosen.options == ('checkpoint-2',)
    panel.evaluate_button.click(); assert panel.wait(300)
    assert 'Scored 2 checkpoint(s)' in panel.status.value, panel.status.value
    assert _scored(run2) == ['checkpoint-2', 'checkpoint-4'] and (panel.phase.done, panel.phase.total) == (12, 12)

def test_studio_eval_tab_evaluates_and_hands_the_checkpoint_to_results(run2):
    from dreambooth_nb.widgets import studio
    shutil.rmtree(run2 / 'eval', ignore_errors=True)
    st = studio(run2); st.selected_index = 3
    assert st.titles[3] == 'Eval' and 'none scored yet' in st.eval.status.value, st.eval.status.value
    _set_fields(st.eval, steps=2)
    st.eval.evaluate_button.click(); assert st.eval.wait(300)
    assert 'Scored 2 checkpoint(s); best: checkpoint-' in st.eval.status.value, st.eval.status.value
    assert st.eval.plot.value[:4] == b'\x89PNG' and st.eval.table.value.count('<tr') == 3 and '<b>Best: checkpoint-' in st.eval.best.value
    assert st.eval.chosen.options == ('checkpoint-2', 'checkpoint-4') and st.eval.chosen.value in st.eval.chosen.options
    st.selected_index = 0; st.selected_index = 3                       # reopened: the saved scores, nothing run
    assert not st.eval.busy and [r['checkpoint'] for r in st.eval.records] == ['checkpoint-2', 'checkpoint-4']
    st.eval.chosen.value = 'checkpoint-2'; st.eval.use_button.click()  # not the newest, which Results picks by itself
    assert (st.selected_index, st.results.checkpoint.value) == (4, 'checkpoint-2')
