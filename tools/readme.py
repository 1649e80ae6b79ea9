"""Write README.md from nbs/index.ipynb (nbdev 3's own README rendering needs Quarto, which CI does not install).

Markdown cells are copied as they are; code cells become ```python blocks; cells flagged `#| hide` are left out.
`python tools/readme.py --check` exits 1 when README.md is not what index.ipynb says."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb_path=ROOT / 'nbs' / 'index.ipynb') -> str:
    cells = json.loads(Path(nb_path).read_text())['cells']
    parts = []
    for cell in cells:
        src = ''.join(cell['source']).strip('\n')
        if not src or src.lstrip().startswith('#| hide'): continue
        if cell['cell_type'] == 'code':
            lines = [l for l in src.splitlines() if not l.startswith('#|')]
            parts.append('```python\n' + '\n'.join(lines) + '\n```')
        else: parts.append(src)
    return '<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n' + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is out of date: run `python tools/readme.py` after editing nbs/index.ipynb.')
    else: readme.write_text(text)
