#!/usr/bin/env bash
# What tests/test_widgets_browser.py needs, installed quietly; safe to run again.
#   - Debian's Chromium: Playwright drives /usr/bin/chromium (Playwright's own browser download does not work here,
#     so `playwright install` is never run);
#   - the Python packages playwright and jupyterlab, into the active Python environment.
# Without them the browser test skips with the reason; with them it starts JupyterLab on localhost and clicks the panels.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq chromium >/dev/null
fi
python -m pip install -q "playwright>=1.40" "jupyterlab>=4"
