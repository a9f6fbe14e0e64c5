"""The lessons in a real browser: JupyterLab on 127.0.0.1, Chromium driven by Playwright.

Each notebook is opened in a scratch copy, run top to bottom, and checked the way a
learner would see it: every widget rendered (no "Error displaying widget"), no error
output, and the first stepper moved forward with its "next" button and back with its
slider, its text following. A screenshot of each notebook goes to docs/screenshots/ (the README shows
them). Uses Debian's /usr/bin/chromium; never downloads a browser.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import require_deb

pytestmark = [pytest.mark.e2e, pytest.mark.threads]  # Playwright's driver and JupyterLab need threads

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab serving a scratch copy of the notebooks; yields (base url, token)."""
    if not Path(CHROMIUM).exists():
        require_deb("chromium")
        pytest.skip("needs the Debian package chromium (/usr/bin/chromium)")
    pytest.importorskip("playwright.sync_api")
    work = tmp_path_factory.mktemp("lab")
    for nb in NOTEBOOKS:
        shutil.copy(nb, work / nb.name)
    settings = work / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    log = work / ".jupyterlab.log"
    env = dict(os.environ, PYTHONHASHSEED="0", JUPYTER_RUNTIME_DIR=str(work / ".runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(work / ".settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / ".workspaces"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        else:
            pytest.fail("JupyterLab did not answer within 30 s")
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _run_all(page, name: str) -> None:
    """Run every cell through JupyterLab's own command and wait until the kernel is idle."""
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
    dialog = page.locator(".jp-Dialog button.jp-mod-accept")  # a kernel chooser, if one pops up
    if dialog.count():
        dialog.first.click()
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.connectionStatus === 'connected'"
        " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=60_000)
    page.evaluate("() => { window.jupyterapp.shell.collapseLeft();"
                  " return window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')]"
        "   .map(e => e.textContent.trim());"
        " return w.sessionContext.session.kernel.status === 'idle'"
        "   && prompts.length > 0 && !prompts.some(p => p === '[*]:' || p === '[ ]:'); }",
        timeout=90_000)


def save_screenshot(png: bytes, path: Path) -> None:
    """Write the screenshot unless the committed one differs only by rendering noise (< 0.5% of pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            import io

            from PIL import Image, ImageChops  # pillow comes with matplotlib
        except ImportError:
            pass
        else:
            new, old = Image.open(io.BytesIO(png)).convert("RGB"), Image.open(path).convert("RGB")
            if new.size == old.size:
                diff = ImageChops.difference(new, old).convert("L").point(lambda v: 255 if v > 16 else 0)
                if diff.histogram()[255] < 0.005 * new.size[0] * new.size[1]:
                    return
    path.write_bytes(png)


def _shown_step(text: str) -> int:
    """The step number a stepper's body shows ("step 29 of 0..76")."""
    found = re.search(r"step (\d+) of \d+\.\.\d+", text)
    assert found, f"no 'step N of 0..M' in the stepper: {text[:200]!r}"
    return int(found.group(1))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab_with_widgets(lab, browser, nb):
    base, token = lab
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(f"{base}/lab/tree/{nb.name}?token={token}&reset")
        _run_all(page, nb.name)
        text = page.inner_text(".jp-Notebook")
        assert "Error displaying widget" not in text
        assert "Traceback" not in text
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        assert errors.count() == 0
        stepper = page.locator(".xenlab-stepper").first
        stepper.wait_for(timeout=30_000)
        stepper.scroll_into_view_if_needed()
        body = stepper.locator(".widget-html-content").last
        before = _shown_step(body.text_content())
        stepper.locator("button", has_text="next").click()
        page.wait_for_function("([el, old]) => !el.textContent.includes(old)",
                               arg=[body.element_handle(), f"step {before} of"], timeout=30_000)
        after = _shown_step(body.text_content())
        assert after > before, f"next moved from step {before} to step {after}"
        handle = stepper.locator(".widget-slider .noUi-handle").first  # and back with the slider
        handle.focus()
        handle.press("ArrowLeft")
        page.wait_for_function("([el, old]) => !el.textContent.includes(old)",
                               arg=[body.element_handle(), f"step {after} of"], timeout=30_000)
        assert _shown_step(body.text_content()) == before
        stepper.evaluate("el => el.scrollIntoView({block: 'start'})")  # the stepper fills the screenshot
        page.wait_for_timeout(300)
        save_screenshot(page.screenshot(), SHOTS / f"{nb.stem}.png")
    finally:
        page.close()
