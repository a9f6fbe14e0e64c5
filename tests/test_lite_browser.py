"""The lessons in the static JupyterLite site (`make lite`, build/lite/), in Chromium, with no network.

The site is served from 127.0.0.1 by a plain static file server; Chromium (Debian's, driven by
Playwright) may reach nothing else: every request is routed through a check that fails the test
on any address but the site's, and Chromium's resolver maps every other host to nothing. Each
lesson is opened in a fresh browser context, every cell is run by JupyterLab's own command in the
Pyodide kernel, and the test fails on an error or stderr output, a cell left unexecuted, a stepper
that did not render as a widget (or does not move), a missing "in the browser" note, or any request
that left the site. Skipped (naming the cause) without Chromium, Playwright or a built site, or when
the site's xenlab is not this checkout's (`make lite` rebuilds it).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import require_deb

pytestmark = [pytest.mark.e2e, pytest.mark.threads]  # the static server and Playwright's driver need threads

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "lite"
#: (notebook, its path in the site): the lessons and any exercise notebooks, as tools/build_lite.py has them
NOTEBOOKS = [(p, p.name) for p in sorted((ROOT / "notebooks").glob("0*.ipynb"))] + [
    (p, f"exercises/{p.name}") for p in sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb"))]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
STEP = re.compile(r"step (\d+) of \d+\.\.\d+")


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files with the types a browser insists on for modules and WebAssembly; no log."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".mjs": "text/javascript", ".js": "text/javascript", ".json": "application/json"}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """build/lite/ served on 127.0.0.1; yields its base URL."""
    if not Path(CHROMIUM).exists():
        require_deb("chromium")
        pytest.skip("needs the Debian package chromium (/usr/bin/chromium)")
    pytest.importorskip("playwright.sync_api")
    if not (SITE / "jupyter-lite.json").exists():
        pytest.skip("no JupyterLite site in build/lite: `make lite` builds it")
    stale = stale_sources()
    if stale:
        pytest.skip(f"build/lite was built from other sources than this checkout's ({stale[0]}...):"
                    " `make lite` rebuilds it")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_SiteHandler, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser(site: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def stale_sources() -> list[str]:
    """The xenlab sources and lessons whose copy in the site differs from this checkout's."""
    (wheel,) = (SITE / "static" / "pyodide").glob("xenlab-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        served = {n: zf.read(n) for n in zf.namelist() if n.startswith("xenlab/") and n.endswith(".py")}
    here = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in (ROOT / "xenlab").rglob("*.py")}
    stale = sorted(n for n in served.keys() | here.keys() if served.get(n) != here.get(n))
    spec = importlib.util.spec_from_file_location("build_lite", ROOT / "tools" / "build_lite.py")
    assert spec and spec.loader
    build_lite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_lite)
    for src, rel in build_lite.lesson_notebooks():
        site_copy = SITE / "files" / rel
        want = build_lite.browser_notebook(json.loads(src.read_text()))[0]
        if not site_copy.exists() or json.loads(site_copy.read_text()) != want:
            stale.append(f"notebooks/{rel}")
    return stale


def expected_steppers(lesson: Path, rel: str) -> int:
    """How many steppers the lesson shows in the cells the site runs (their stored text form)."""
    served = json.loads((SITE / "files" / rel).read_text())
    run_here = {"".join(c["source"]) for c in served["cells"] if c["cell_type"] == "code"}
    count = 0
    for cell in json.loads(lesson.read_text())["cells"]:
        if cell["cell_type"] != "code" or "".join(cell["source"]) not in run_here:
            continue
        for out in cell.get("outputs", []):
            text = "".join(out.get("data", {}).get("text/plain", ""))
            if any(STEP.match(line) for line in text.splitlines()[:2]):
                count += 1
    return count


KERNEL_IDLE = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
               " const k = w && w.sessionContext && w.sessionContext.session"
               "   && w.sessionContext.session.kernel;"
               " return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }")
ALL_RUN = ("() => { const w = window.jupyterapp.shell.currentWidget;"
           " const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]"
           "   .map(e => e.textContent.trim());"
           " return w.sessionContext.session.kernel.status === 'idle'"
           "   && prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p)); }")


@pytest.mark.parametrize(("lesson", "rel"), NOTEBOOKS, ids=[r.removesuffix(".ipynb") for _, r in NOTEBOOKS])
def test_lesson_runs_in_the_static_site_offline(site: str, browser: Any, lesson: Path, rel: str) -> None:
    outside: list[str] = []

    def only_the_site(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" == site:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.route("**/*", only_the_site)
    here = urlsplit(site).netloc  # and anything Playwright cannot route (a service worker's own fetch)
    context.on("request", lambda r: urlsplit(r.url).scheme not in ("data", "blob")
               and urlsplit(r.url).netloc != here and outside.append(r.url))
    page = context.new_page()
    try:
        started = time.monotonic()
        page.goto(f"{site}/lab/index.html?path={rel}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_function(KERNEL_IDLE, timeout=180_000)
        kernel_ready = time.monotonic() - started
        page.evaluate("() => { window.jupyterapp.shell.collapseLeft();"
                      " return window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        page.wait_for_function(ALL_RUN, timeout=600_000, polling=500)
        print(f"{lesson.stem}: kernel idle {kernel_ready:.1f} s after page load, "
              f"all cells run {time.monotonic() - started:.1f} s after it")

        text = page.inner_text(".jp-Notebook")
        assert "Matplotlib cannot load here" in text, "the note on text-only pictures is missing"
        assert "Traceback" not in text
        assert "Error displaying widget" not in text
        for mime in ("application/vnd.jupyter.error", "application/vnd.jupyter.stderr"):
            bad = page.locator(f".jp-OutputArea-output[data-mime-type='{mime}']")
            assert bad.count() == 0, f"{mime} output: {bad.first.inner_text()[:1000]}"
        served = json.loads((SITE / "files" / rel).read_text())
        code_cells = sum(1 for c in served["cells"] if c["cell_type"] == "code")
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")
        assert prompts.count() == code_cells, "not every code cell of the lesson is on the page"

        steppers = page.locator(".jp-OutputArea-output .xenlab-stepper.widget-vbox")  # the ipywidgets VBox
        assert steppers.count() == expected_steppers(lesson, rel), "a stepper is missing or not a widget"
        assert not outside, f"requests that left the site: {outside}"
        if not steppers.count():
            return
        stepper = steppers.first
        stepper.scroll_into_view_if_needed()
        body = stepper.locator(".widget-html-content").last
        before = int(STEP.search(body.text_content() or "").group(1))
        stepper.locator("button", has_text="next").click()
        page.wait_for_function("([el, old]) => !el.textContent.includes(old)",
                               arg=[body.element_handle(), f"step {before} of"], timeout=60_000)
        after = int(STEP.search(body.text_content() or "").group(1))
        assert after > before, f"next moved the stepper from step {before} to step {after}"
        assert not outside, f"requests that left the site: {outside}"
    finally:
        context.close()
