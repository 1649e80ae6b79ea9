"""Browser: the panels in a real JupyterLab 4 page, driven by Debian's Chromium through Playwright.

A JupyterLab server on localhost (known random token, temporary config, settings and workspace folders) opens a
notebook that shows `studio()` on a tiny run; the test clicks Train, waits for the live loss plot, the sample grid and
the phase line ("training · N/2000 steps · elapsed · rate · ETA") to appear in the page, clicks Stop, checks that a valid
checkpoint is on disk, then opens each tab: the Sample tab shows the run's 64 px, the Results gallery the checkpoint.
Screenshots go to tests/artifacts/ (widgets-browser.png and one per tab; ignored by git). Skips only when Chromium, Playwright or JupyterLab are missing:
`.ci/browser-setup.sh` installs them.
"""
import importlib.util, json, os, re, secrets, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
ARTIFACTS = Path(__file__).parent / 'artifacts'

def _require_browser_tools():
    if not CHROMIUM.exists(): pytest.skip(f'{CHROMIUM} is not installed (Debian package chromium; see .ci/browser-setup.sh)')
    for module, package in (('playwright', 'playwright'), ('jupyterlab', 'jupyterlab')):
        if importlib.util.find_spec(module) is None: pytest.skip(f'the Python package {package} is not installed (see .ci/browser-setup.sh)')

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _tiny_run(run):
    "A run folder with a config.yaml for the tiny backbone: small steps, a sample grid every 4 steps, no checkpoints yet."
    from dreambooth_nb.run import tiny_config
    cfg = tiny_config(run, max_train_steps=2000, with_prior_preservation=False, train_text_encoder=False, checkpointing_steps=10_000,
                      validation_steps=4, num_validation_images=2, num_inference_steps=2)
    run.mkdir(parents=True)
    cfg.replace(pretrained_model_name_or_path='tiny:sd15').to_yaml(run / 'config.yaml')

def _notebook(path, run):
    src = f"from dreambooth_nb.widgets import studio\nstudio({str(run)!r}, plot_every=2)"
    nb = dict(cells=[dict(cell_type='code', id='studio', metadata={}, execution_count=None, outputs=[], source=src)],
              metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')), nbformat=4, nbformat_minor=5)
    path.write_text(json.dumps(nb))

class JupyterLab:
    "A JupyterLab server in its own process group, with all its state in `home`; its token never leaves this object."
    def __init__(self, home: Path):
        self.home, self.port, self.token = home, _free_port(), secrets.token_hex(24)
        settings = home / 'lab-settings' / '@jupyterlab' / 'apputils-extension'
        settings.mkdir(parents=True)
        (settings / 'notification.jupyterlab-settings').write_text(json.dumps(dict(fetchNews='false', checkForUpdates=False)))
        env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(home / 'config'), 'JUPYTER_RUNTIME_DIR': str(home / 'runtime'),
               'JUPYTERLAB_SETTINGS_DIR': str(home / 'lab-settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(home / 'workspaces'),
               'IPYTHONDIR': str(home / 'ipython'), 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_VERBOSITY': 'error', 'PYTHONUNBUFFERED': '1'}
        self.log_path = home / 'jupyterlab.log'
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={self.port}', f'--ServerApp.root_dir={home}',
             f'--IdentityProvider.token={self.token}', '--LabApp.news_url=', '--LabApp.extension_manager=readonly',
             '--ServerApp.port_retries=0', '--ServerApp.terminals_enabled=False'] + (['--allow-root'] if os.geteuid() == 0 else []),
            cwd=home, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def url(self, path: str) -> str: return f'http://127.0.0.1:{self.port}/{path}?token={self.token}'

    def wait_ready(self, timeout: float = 120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None: raise RuntimeError(f'JupyterLab exited early:\n{self.log_tail()}')
            try:
                with urllib.request.urlopen(self.url('api/status'), timeout=5) as r:
                    if r.status == 200: return
            except OSError: time.sleep(0.5)
        raise TimeoutError(f'JupyterLab did not answer in {timeout} s:\n{self.log_tail()}')

    def log_tail(self, n: int = 4000) -> str:
        "The end of the server log, with the token blanked out."
        self.log.flush()
        return self.log_path.read_text(errors='replace')[-n:].replace(self.token, '<token>')

    def stop(self):
        try: urllib.request.urlopen(urllib.request.Request(self.url('api/shutdown'), method='POST'), timeout=10).close()
        except OSError: pass
        try: self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait(10)
        self.log.close()

def _run_all_cells(page, timeout_s: float = 180):
    "Run > Run All Cells, again until a cell prompt shows it ran ([*] or [1]): a click before the kernel is connected is lost."
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
        page.get_by_text('Run All Cells', exact=True).click()
        try: page.locator('.jp-InputPrompt', has_text=re.compile(r'\[(\*|\d+)\]')).first.wait_for(timeout=10_000); return
        except PlaywrightTimeout: page.keyboard.press('Escape')
    raise TimeoutError(f'the notebook did not start running in {timeout_s} s')

def _wait_image(page, css_class: str, timeout_ms: int):
    "Wait until an <img> with `css_class` shows a decoded picture in the page."
    page.wait_for_function(f"""() => [...document.querySelectorAll('img.{css_class}')]
        .some(i => i.complete && i.naturalWidth > 0 && i.offsetParent !== null)""", timeout=timeout_ms)

def test_browser_studio_train_plot_samples_stop(tmp_path):
    _require_browser_tools()
    from playwright.sync_api import sync_playwright
    from dreambooth_nb.checkpoint import checkpoint_problem, latest_checkpoint
    run = tmp_path / 'run'
    _tiny_run(run); _notebook(tmp_path / 'studio.ipynb', run)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / 'widgets-browser.png'
    lab, t0 = JupyterLab(tmp_path), time.time()
    try:
        lab.wait_ready()
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(str(tmp_path / 'chromium-profile'), executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS, viewport=dict(width=1400, height=1800))
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            try:
                page.goto(lab.url('lab/tree/studio.ipynb'), timeout=120_000)
                page.locator('.jp-Notebook').wait_for(timeout=120_000)
                _run_all_cells(page)
                page.locator('.dbnb-studio').wait_for(timeout=180_000)              # kernel up, package imported, widgets rendered
                assert page.locator('.lm-TabBar-tabLabel, .widget-tab .lm-TabBar-tab', has_text='Class priors').count() >= 1
                page.locator('button.dbnb-train').click()
                _wait_image(page, 'dbnb-loss', 180_000)                             # the live loss plot
                _wait_image(page, 'dbnb-sample', 180_000)                           # the newest sample grid
                page.wait_for_function("""() => [...document.querySelectorAll('.dbnb-phase')]
                    .some(e => /training/.test(e.innerText) && /ETA/.test(e.innerText) && /elapsed/.test(e.innerText))""", timeout=120_000)
                phase = page.locator('.dbnb-phase').first.inner_text()            # the phase line a user sees
                page.screenshot(path=str(ARTIFACTS / 'widgets-tab-train.png'), full_page=True)
                page.locator('button.dbnb-stop').click()
                page.locator('.dbnb-status', has_text='Stopped at step').wait_for(timeout=120_000)
                page.screenshot(path=str(shot), full_page=True)
                status = page.locator('.dbnb-status').first.inner_text()
                seen = {}
                for title in ('Class priors', 'Sample', 'Results'):                # a screenshot per tab, and what it shows
                    page.locator('.lm-TabBar-tab', has_text=title).first.click()
                    page.wait_for_timeout(3000)
                    page.screenshot(path=str(ARTIFACTS / f"widgets-tab-{title.split()[-1].lower()}.png"), full_page=True)
                    if title == 'Sample': seen['width'] = page.locator('.dbnb-sample-width input').first.input_value()
                    if title == 'Results': seen['cards'] = page.locator('.dbnb-gallery button').count()
            except Exception:
                page.screenshot(path=str(shot), full_page=True)
                print(f'screenshot of the failure: {shot}\nJupyterLab log:\n{lab.log_tail()}')
                raise
            finally: ctx.close()
    finally: lab.stop()
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and checkpoint_problem(ckpt) is None, ckpt
    assert f'Stopped at step {int(ckpt.name.split("-")[1])}' in status, status
    assert 0 < int(ckpt.name.split('-')[1]) < 2000
    assert list((run / 'samples').glob('step-*.png'))
    assert re.search(r'training · \d+/2000 steps · \d+:\d\d elapsed · .* · ETA \d', phase), phase
    assert seen == dict(width='64', cards=1), seen                    # Sample: the run's 64 px; Results: the checkpoint saved at the stop
    print(f'browser test: {time.time() - t0:.1f} s, stopped at {ckpt.name}, screenshot: {shot}')
