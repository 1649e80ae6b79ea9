"""Every input of the studio (form fields, panel inputs, the preset picker, the details box, the export switch) has a
tooltip: the studio is walked on a new run folder and again on a trained run with every tab opened."""
import ipywidgets as W
import pytest

DISPLAY_ONLY = (W.HTML, W.HTMLMath, W.Label, W.Output, W.Image, W.FloatProgress, W.IntProgress, W.Valid)

def widgets_of(root):
    "Every widget under `root` (boxes, tabs and accordions opened), each once."
    seen, todo = set(), [root]
    while todo:
        w = todo.pop()
        if id(w) in seen: continue
        seen.add(id(w)); yield w
        todo.extend(getattr(w, 'children', ()) or ())

def inputs_without_tooltip(root) -> tuple[int, list[str]]:
    "How many inputs there are, and the ones without a tooltip, named by kind and label."
    inputs = [w for w in widgets_of(root) if isinstance(w, W.ValueWidget) and not isinstance(w, DISPLAY_ONLY)]
    return len(inputs), [f"{type(w).__name__} {w.description!r}" for w in inputs if not (w.tooltip or '').strip()]

def test_fresh_studio_inputs_all_have_tooltips(tmp_path):
    from dreambooth_nb.widgets import studio
    n, missing = inputs_without_tooltip(studio(tmp_path / 'run'))
    assert n > 90 and missing == [], missing        # was: a Dropdown, five details Textareas, the export's overwrite Checkbox

def test_trained_run_studio_with_every_tab_opened(tmp_path):
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.run import train
    from dreambooth_nb.widgets import studio
    run = tmp_path / 'run'
    train(TrainConfig(pretrained_model_name_or_path='tiny:sd15', output_dir=str(run), resolution=64, max_train_steps=1, checkpointing_steps=1,
                      validation_steps=100, num_validation_images=1, num_inference_steps=1))
    s = studio(run)
    for i in range(len(s.children)): s.selected_index = i           # the tabs fill in when opened (gallery, bank, dataset)
    n, missing = inputs_without_tooltip(s)
    assert n > 90 and missing == [], missing
