"The planner's architecture table (dreambooth_nb/arch/counts.json) against a rebuild on the meta device, and the shipped configs from an installed package."
import importlib.util, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _tool():
    spec = importlib.util.spec_from_file_location('arch_counts', ROOT / 'tools' / 'arch_counts.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); return mod

def _subset(full: dict, part: dict) -> dict:
    "`full` cut down to the keys `part` has (nested)."
    return {k: _subset(full[k], v) if isinstance(v, dict) else full[k] for k, v in part.items()}

COUNTS = json.loads((ROOT / 'dreambooth_nb' / 'arch' / 'counts.json').read_text())

@pytest.mark.parametrize('family', sorted(COUNTS))
def test_parameter_counts_equal_a_rebuild(family):
    "Every family's parameters and LoRA parameters per rank, built from the shipped configs with the adapters' targets."
    rebuilt = _tool().count_family(family, flops=False)
    assert _subset(COUNTS[family], rebuilt) == rebuilt, 'counts.json is stale: run python tools/arch_counts.py'

@pytest.mark.parametrize('family', ['sd15', 'flux2-klein-4b'])
def test_flops_and_ops_equal_a_rebuild(family):
    "FLOPs and operator counts of the two calibrated families (the rest: python tools/arch_counts.py --check, about a minute)."
    assert COUNTS[family] == _tool().count_family(family), 'counts.json is stale: run python tools/arch_counts.py'

def test_published_sizes():
    "The rebuilt counts are the published ones (model cards, sum(p.numel()) of the Hub models)."
    p = {f: {m: v['params'] for m, v in c['modules'].items()} for f, c in COUNTS.items()}
    assert (p['sd15']['unet'], p['sd15']['text_encoder'], p['sd15']['vae']) == (859_520_964, 123_060_480, 83_653_863)
    assert (p['sd21']['unet'], p['sd21']['text_encoder']) == (865_910_724, 340_387_840)
    assert (p['sdxl']['unet'], p['sdxl']['text_encoder_2']) == (2_567_463_684, 694_659_840)

def test_configs_ship_with_the_installed_package(tmp_path):
    "A new process in another folder finds the configs and counts.json through importlib.resources."
    code = ("import importlib.resources as r, json; a = r.files('dreambooth_nb') / 'arch'; "
            "print(json.dumps(sorted(f'{d.name}/{f.name}' for d in a.iterdir() if d.is_dir() for f in d.iterdir())), (a / 'counts.json').is_file())")
    r = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=''))
    assert r.returncode == 0, r.stderr
    names, counts = r.stdout.rsplit(' ', 1)
    assert 'sdxl/text_encoder_2.json' in json.loads(names) and 'flux2-klein-9b/transformer.json' in json.loads(names) and counts.strip() == 'True'
