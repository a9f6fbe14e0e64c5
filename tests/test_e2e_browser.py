"""The lessons in a real browser: JupyterLab on 127.0.0.1, Chromium driven by Playwright.

Each notebook is opened once in a scratch copy and run top to bottom (Run All, as the
README tells a learner), then checked the way a learner uses it: every widget rendered
(no "Error displaying widget"), no error output, and every control of EVERY stepper
driven: play/pause, previous/next, the slider (keyboard), the stage menu and the "go to"
box, including each defect issue 12 found (the current stage in the menu did nothing, a
menu with nothing to choose, the box ignoring a value typed twice, offering stages
outside the stepper, an old error staying, three numbering schemes, stop rewinding,
buttons without tooltips, bad input reverted silently, 01 opening mid-way). Every picture
(issue 12) is checked drawn, described and redrawn in place, and one exercise is done end
to end (issue 13). A screenshot of each notebook's first stepper (02: its ring picture)
goes to docs/screenshots/ (the README shows them). Every thread/lock and store-page panel is
checked drawn, following the step and coming back on prev.
Uses Debian's /usr/bin/chromium; never downloads a browser. Timings are printed, never
asserted.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_deb

from xenlab.exercises.kernel_tasks import TASKS

pytestmark = [pytest.mark.e2e, pytest.mark.threads]  # Playwright's driver and JupyterLab need threads

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [n.stem for n in NOTEBOOKS]
SHOTS = ROOT / "docs" / "screenshots"
ARTIFACTS = ROOT / "tests" / "artifacts"  # git-ignored: what the page looked like when a wait failed
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WHERE = re.compile(r"step (\d+) \(this stepper: (\d+) steps?, (\d+)\.\.(\d+)\)")
WAIT = 30_000  # ms for one kernel round trip, generous for a loaded CI machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """JupyterLab serving a scratch copy of the notebooks, started as `xenlab lab` starts it."""
    if not Path(CHROMIUM).exists():
        require_deb("chromium")
        pytest.skip("needs the Debian package chromium (/usr/bin/chromium)")
    pytest.importorskip("playwright.sync_api")
    from xenlab import labcmd

    work = tmp_path_factory.mktemp("lab")
    for nb in NOTEBOOKS:
        shutil.copy(nb, work / nb.name)
    shutil.copytree(ROOT / "notebooks" / "exercises", work / "exercises")
    port, token = _free_port(), secrets.token_hex(16)
    log = work / ".jupyterlab.log"
    # PYTHONPATH: the kernels import this checkout's xenlab, whatever the venv has installed
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT),
               JUPYTER_RUNTIME_DIR=str(work / ".runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / ".workspaces"))
    cmd = labcmd.jupyterlab_command(work, no_browser=True, port=port) + [
        f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
        "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
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
def browser(lab: tuple[str, str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _run_all(page: Any) -> None:
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
        timeout=240_000)


@pytest.fixture(scope="module")
def lessons(lab: tuple[str, str], browser: Any) -> Iterator[dict[str, Any]]:
    """Each notebook opened in its own page and run once, on first use; the tests then drive it."""
    base, token = lab
    pages: dict[str, Any] = {}

    class Opened(dict):
        def __missing__(self, name: str) -> Any:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}&reset")
            started = time.perf_counter()
            try:
                _run_all(page)
            except Exception:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{name}-run-all.png"), full_page=True)
                raise
            print(f"\n{name}: Run All took {time.perf_counter() - started:.1f} s")
            pages[name] = page
            self[name] = page
            return page

    try:
        yield Opened()
    finally:
        for page in pages.values():
            page.close()


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


class StepperUI:
    """One stepper on the page, read and driven through what a learner sees and clicks."""

    def __init__(self, page: Any, root: Any) -> None:
        self.page, self.root = page, root

    def header(self) -> str:
        return self.root.locator(".xl-body .xl-where").first.text_content() or ""

    def where(self) -> tuple[int, int, int, int]:
        """(step shown, steps in this stepper, first, last) from the header line."""
        found = WHERE.search(self.header())
        assert found, f"no 'step N (this stepper: ...)' header: {self.header()!r}"
        step, count, first, last = (int(g) for g in found.groups())
        return step, count, first, last

    def step(self) -> int:
        return self.where()[0]

    def stage(self) -> str:
        found = re.search(r"· stage (.+) · ", self.header())
        return found.group(1) if found else ""

    def label(self) -> str:
        return (self.root.locator(".xl-step").text_content() or "").strip()

    def message(self) -> str:
        return (self.root.locator(".xl-message").text_content() or "").strip()

    def title(self, selector: str) -> str:
        return self.root.locator(selector).first.get_attribute("title") or ""

    def until(self, js: str, arg: Any = None) -> None:
        """Wait until ``js`` (a function of the stepper's root element and *arg*) is true."""
        self.page.wait_for_function(f"([el, arg]) => ({js})(el, arg)", arg=[self.root.element_handle(), arg],
                                    timeout=WAIT)

    def until_step(self, n: int) -> None:
        self.until("(el, n) => { const w = el.querySelector('.xl-body .xl-where');"
                   " return w && w.textContent.startsWith(`step ${n} (`); }", n)

    def until_moved(self, old: int) -> int:
        self.until("(el, n) => { const w = el.querySelector('.xl-body .xl-where');"
                   " return w && !w.textContent.startsWith(`step ${n} (`); }", old)
        return self.step()

    def until_message(self, has: str | None = "") -> str:
        """Wait for a message containing *has* ('' any message; None: no message) and return it."""
        self.until("(el, has) => { const m = el.querySelector('.xl-message'); if (!m) return false;"
                   " const t = m.textContent.trim();"
                   " return has === null ? t === '' : t !== '' && t.includes(has); }", has)
        return self.message()

    def click(self, selector: str) -> None:
        self.root.locator(selector).first.click()

    def goto(self, text: str) -> None:
        box = self.root.locator(".xl-goto input")
        box.fill(text)
        box.press("Enter")

    def goto_box(self) -> str:
        return self.root.locator(".xl-goto input").input_value()


def _steppers(page: Any) -> list[StepperUI]:
    roots = page.locator(".xenlab-stepper")
    return [StepperUI(page, roots.nth(i)) for i in range(roots.count())]


@pytest.mark.parametrize("name", IDS)
def test_lesson_runs_in_jupyterlab_with_every_widget(lessons: dict[str, Any], name: str) -> None:
    page = lessons[name]
    text = page.inner_text(".jp-Notebook")
    assert "Error displaying widget" not in text
    # a widget whose view failed (e.g. ipywidgets 8's Image with a tooltip) shows an error icon instead
    assert not page.locator(".jupyter-widgets-error-widget").count(), "a widget failed to render"
    assert "Traceback" not in text
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0
    steppers = _steppers(page)
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    made = sum("".join(c["source"]).count("Stepper(") for c in cells if c["cell_type"] == "code")
    assert steppers and len(steppers) == made, "every stepper the lesson makes is rendered"
    for s in steppers:
        step = s.step()
        assert s.label() == f"step {step}", "the number beside the slider is the header's step number"
    assert "(no trace step names the fault)" not in text  # an internal note is not lesson text
    if name == "01_bus_registration":  # the first stepper opens at the start of the bring-up
        step, count, first, last = steppers[0].where()
        body = steppers[0].root.locator(".xl-body").text_content() or ""
        assert step == first and "xenbus_probe_init()" in body


@pytest.mark.parametrize("name", IDS)
def test_next_prev_and_the_slider_move_one_step_and_the_label_follows(
        lessons: dict[str, Any], name: str) -> None:
    for s in _steppers(lessons[name]):
        s.root.scroll_into_view_if_needed()
        step, count, first, last = s.where()
        if count < 2:
            continue
        if step == last:
            s.click(".xl-prev")
            step = s.until_moved(step)
        s.click(".xl-next")
        after = s.until_moved(step)
        assert first <= step < after <= last and s.label() == f"step {after}"
        handle = s.root.locator(".widget-slider .noUi-handle").first
        handle.focus()
        handle.press("ArrowLeft")
        assert s.until_moved(after) == step and s.label() == f"step {step}"
        handle.press("ArrowRight")
        assert s.until_moved(step) == after
        s.click(".xl-prev")
        assert s.until_moved(after) == step


@pytest.mark.parametrize("name", IDS)
def test_the_goto_box_takes_step_numbers_twice_and_answers_bad_input(
        lessons: dict[str, Any], name: str) -> None:
    for s in _steppers(lessons[name]):
        s.root.scroll_into_view_if_needed()
        step, count, first, last = s.where()
        target = last if step != last else first
        s.goto(str(target))
        s.until_step(target)
        s.until("el => el.querySelector('.xl-goto input').value === ''")  # a good value is cleared
        assert s.message() == ""
        if count > 1:  # the same number again, after moving away: back to it (it was ignored before)
            s.click(".xl-prev" if target == last else ".xl-next")
            s.until_moved(target)
            s.goto(str(target))
            s.until_step(target)
        s.goto("no such place")  # bad input: a visible message, the step stays, the text stays to fix
        s.until_message("no stage named 'no such place'")
        assert s.step() == target and s.goto_box() == "no such place"
        s.goto("")  # clearing the box clears the old error
        s.until_message(None)
        if first > 0:  # a step before this stepper: said, not silently the first step
            s.goto("0")
            s.until_message(f"step 0 is not in this stepper: it shows steps {first}..{last}")
            assert s.step() == target
        s.goto(str(last + 1))
        s.until_message(f"step {last + 1} is not in this stepper")
        assert s.step() == target
        s.goto("")
        s.until_message(None)


@pytest.mark.parametrize("name", IDS)
def test_the_stage_menu_is_there_only_with_a_choice_and_jumps_to_the_current_stage(
        lessons: dict[str, Any], name: str) -> None:
    menus = outside = 0
    for s in _steppers(lessons[name]):
        s.root.scroll_into_view_if_needed()
        select = s.root.locator(".xl-stages select")
        if not select.count():
            continue
        menus += 1
        labels = [o.replace("\xa0", " ").strip() for o in select.locator("option").all_text_contents()]
        assert len(labels) >= 3, f"a stage menu with nothing to choose: {labels}"
        step, count, first, last = s.where()
        if step == first and count > 1:  # start inside a stage, not at its first step
            s.click(".xl-next")
            step = s.until_moved(step)
        stage = s.stage()
        mine = [i for i, label in enumerate(labels) if stage in label.rsplit(" (step ", 1)[0].split(" / ")]
        assert mine, f"the current stage {stage!r} is not in the menu {labels}"
        start = int(labels[mine[0]].rsplit(" (step ", 1)[1].rstrip(")"))
        select.select_option(index=mine[0])
        s.until_step(start)
        assert s.stage() == stage or start == first
        others = [i for i in range(1, len(labels)) if i != mine[0]]
        select.select_option(index=others[-1])
        other = int(labels[others[-1]].rsplit(" (step ", 1)[1].rstrip(")"))
        s.until_step(other)
        if not any("dom0: early IRQs" in label for label in labels):
            outside += 1  # a stage of the machine's trace that this stepper does not walk through
            s.goto("dom0: early IRQs")
            msg = s.until_message("dom0: early IRQs")
            assert msg.startswith(("stage 'dom0: early IRQs' is not in this stepper", "no stage named")), msg
            assert "dom0: early IRQs" not in msg.split("stages: ", 1)[1], "it offers only its own stages"
            s.goto("")
            s.until_message(None)
    if name == "02_store_ring":
        assert menus >= 1 and outside >= 1  # the ring stepper walks two stages (the write and the read)


def test_01_first_stepper_has_no_menu_opens_at_the_start_and_plays_the_whole_bring_up(
        lessons: dict[str, Any]) -> None:
    s = _steppers(lessons["01_bus_registration"])[0]
    s.root.scroll_into_view_if_needed()
    assert not s.root.locator(".xl-stages select").count()  # one stage: no menu
    step, count, first, last = s.where()
    s.goto(str(first))
    s.until_step(first)
    started = time.perf_counter()
    s.click(".xl-play")
    s.until_step(last)  # from xenbus_probe_init and bus_register to the last step, without stopping
    print(f"\n01 first stepper: played {count} steps in {time.perf_counter() - started:.1f} s")
    s.until("el => el.querySelector('.xl-play').textContent.includes('play')")  # back to ▶ at the end


def test_02_last_stepper_has_no_empty_menu(lessons: dict[str, Any]) -> None:
    s = _steppers(lessons["02_store_ring"])[-1]
    assert "what pyxs did" in (s.root.locator(".xl-body").text_content() or "")
    assert not s.root.locator(".xl-stages select").count()


@pytest.mark.parametrize("name", IDS)
def test_play_pauses_where_it_is_and_every_button_says_what_it_does(
        lessons: dict[str, Any], name: str) -> None:
    for s in _steppers(lessons[name]):
        s.root.scroll_into_view_if_needed()
        assert s.title(".xl-play").startswith("play:")
        assert s.title(".xl-prev") == "previous step" and s.title(".xl-next") == "next step"
        assert "the slider moves through" in s.title(".xl-step b") and s.title(".xl-goto input")
        assert not s.root.locator(".widget-play").is_visible()  # Play's own ■ (it rewound) is not offered
        assert not s.root.locator(".widget-readout").is_visible()  # no readout to type into silently
        step, count, first, last = s.where()
        if count < 3:
            continue
        s.goto(str(first))
        s.until_step(first)
        s.click(".xl-play")
        s.until("el => el.querySelector('.xl-play').getAttribute('title').startsWith('pause:')")
        moved = s.until_moved(first)
        s.click(".xl-play")  # pause
        s.until("el => el.querySelector('.xl-play').getAttribute('title').startsWith('play:')")
        paused = s.step()
        assert paused >= moved > first
        lessons[name].wait_for_timeout(1500)  # longer than two play intervals: nothing moves
        assert s.step() == paused, "pause stays on the step (the old stop rewound to the first)"


MOVES_JS = """async ([el, moves]) => {
  const where = () => el.querySelector('.xl-body .xl-where').textContent;
  const times = [];
  for (let k = 0; k < moves; k++) {
    const old = where(), started = performance.now();
    el.querySelector('.xl-next').click();
    await new Promise((done) => {
      const tick = () => (where() !== old ? done() : requestAnimationFrame(tick));
      tick();
    });
    times.push(performance.now() - started);
  }
  return times;
}"""


@pytest.mark.parametrize("name", IDS)
def test_each_move_redraws_and_its_time_is_printed(lessons: dict[str, Any], name: str) -> None:
    """Clicks "next" through up to 10 steps of every stepper, timing click to redraw in the page.

    Printed, never asserted (bench/bench_steppers.py has the kernel's side); issue 12 measured
    up to 943 ms per move in 02's wrap stepper, where a <style> in every redraw restyled the page.
    """
    for s in _steppers(lessons[name]):
        s.root.scroll_into_view_if_needed()
        step, count, first, last = s.where()
        if count < 2:
            continue
        s.goto(str(first))
        s.until_step(first)
        moves = min(count - 1, 10)
        times = s.page.evaluate(MOVES_JS, [s.root.element_handle(), moves])
        assert len(times) == moves and s.step() > first
        title = (s.root.locator(".xl-body h4").first.text_content() or "")[:48]
        print(f"\n{name} {title!r}: {moves} moves, worst {max(times):.0f} ms, "
              f"mean {sum(times) / moves:.0f} ms (click to redraw)", end="")


STATE_PANELS = ".xl-body .xl-kthreads, .xl-body .xl-storepage"
STATE_MAKERS = re.compile(r"\b(?:KthreadView|StorePageView)\(")


def _panel_texts(panels: Any, n: int) -> list[str]:
    return [panels.nth(k).inner_text() for k in range(n)]


@pytest.mark.parametrize("name", IDS)
def test_every_thread_and_store_page_panel_follows_the_step_and_comes_back(
        lessons: dict[str, Any], name: str) -> None:
    """Each KthreadView / StorePageView of the lesson (issue 12, "every step of the seed, live"): drawn,
    changed by stepping on (within 40 steps of the stepper's first), and the same text again after as
    many steps back (replayed, not re-run)."""
    page = lessons[name]
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    made = sum(len(STATE_MAKERS.findall("".join(c["source"]))) for c in cells if c["cell_type"] == "code")
    checked = 0
    for s in _steppers(page):
        panels = s.root.locator(STATE_PANELS)
        n = panels.count()
        if not n:
            continue
        s.root.scroll_into_view_if_needed()
        step, count, first, last = s.where()
        assert count > 1, "a state panel in a stepper of one step cannot show a change"
        s.goto(str(first))
        s.until_step(first)
        step = first
        before = _panel_texts(panels, n)
        assert all(t.strip() for t in before), f"an empty state panel at step {first}"
        moved, changed = 0, set()
        while len(changed) < n and moved < 40 and step < last:
            s.click(".xl-next")
            step = s.until_moved(step)
            moved += 1
            now = _panel_texts(panels, n)
            changed |= {k for k in range(n) if now[k] != before[k]}
        assert changed == set(range(n)), f"panels {set(range(n)) - changed} never changed in {moved} steps"
        for _ in range(moved):
            s.click(".xl-prev")
            step = s.until_moved(step)
        assert step == first and _panel_texts(panels, n) == before, "back at the first step: not the same"
        checked += n
    assert checked == made, f"{made} state panels made, {checked} checked"


def test_the_lab_config_turns_off_the_news_popup(lab: tuple[str, str], lessons: dict[str, Any]) -> None:
    page = lessons["01_bus_registration"]
    config = json.loads(page.locator("#jupyter-config-data").text_content() or "{}")
    assert config["news"] == {"disabled": True}  # no feed fetched
    base, token = lab
    plugin = "@jupyterlab/apputils-extension:notification"
    with urllib.request.urlopen(f"{base}/lab/api/settings/{plugin}?token={token}", timeout=10) as r:
        schema = json.load(r)["schema"]["properties"]
    assert schema["fetchNews"]["default"] == "false" and schema["checkForUpdates"]["default"] is False
    page.wait_for_timeout(500)
    assert not page.locator(".jp-Notification-Toast, .Toastify__toast").filter(has_text="news").count()


PICTURE_MAKERS = re.compile(r"\b(?:RingPicture|SequenceDiagram|HandshakeDiagram|IrqMap(?:\.of)?)\(")

PICTURE_JS = """async (img) => {
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let h = 0;
  for (let i = 0; i < bytes.length; i++) h = (Math.imul(h, 31) + bytes[i]) >>> 0;
  return {hash: h, size: bytes.length, width: img.naturalWidth, same: img.__xlTag === 'xl',
          removed: img.closest('.xenlab-stepper').__xlRemoved};
}"""

WATCH_JS = """(root) => {
  root.__xlRemoved = 0;
  for (const img of root.querySelectorAll('img.xenlab-picture')) img.__xlTag = 'xl';
  new MutationObserver((ms) => ms.forEach((m) => m.removedNodes.forEach((n) => {
    if (n.nodeName === 'IMG' || (n.querySelector && n.querySelector('img'))) root.__xlRemoved++;
  }))).observe(root, {childList: true, subtree: true});
}"""


def _picture_now(s: StepperUI, k: int, old_src: str | None = None) -> dict[str, Any]:
    """The k-th picture of stepper *s* once drawn (and, after a move, once its src was replaced)."""
    s.until("(el, [k, old]) => { const img = el.querySelectorAll('img.xenlab-picture')[k];"
            " return img && img.src && img.src !== old && img.complete && img.naturalWidth > 0; }",
            [k, old_src])
    img = s.root.locator("img.xenlab-picture").nth(k)
    got = img.evaluate(PICTURE_JS)
    got["src"], got["title"] = img.get_attribute("src"), img.get_attribute("title") or ""
    return got


@pytest.mark.parametrize("name", IDS)
def test_every_picture_is_drawn_described_and_redrawn_in_place(lessons: dict[str, Any], name: str) -> None:
    """Each picture of the lesson (issue 12): drawn, described (the caption and the image's tooltip carry
    the alt text), its bytes changing when the step moves, and the same <img> element after the redraw
    (nothing replaced: no flicker). A picture of every step is saved in tests/artifacts/pictures/."""
    page = lessons[name]
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    made = sum(len(PICTURE_MAKERS.findall("".join(c["source"]))) for c in cells if c["cell_type"] == "code")
    static = page.locator(".jp-OutputArea-output .xl-box img")  # Picture.at(...) shown in a cell
    for k in range(static.count()):
        assert (static.nth(k).get_attribute("alt") or "").strip(), "a drawn picture without alt text"
        assert static.nth(k).evaluate("img => img.complete && img.naturalWidth > 0")
    live = 0
    shots = ARTIFACTS / "pictures"
    shots.mkdir(parents=True, exist_ok=True)
    for s in _steppers(page):
        images = s.root.locator("img.xenlab-picture")
        if not images.count():
            continue
        s.root.scroll_into_view_if_needed()
        step, count, first, last = s.where()
        if step == last and count > 1:
            s.click(".xl-prev")
            step = s.until_moved(step)
        s.root.evaluate(WATCH_JS)
        for k in range(images.count()):
            live += 1
            before = _picture_now(s, k)
            captions = [c.strip() for c in s.root.locator(".xl-body [role=note]").all_text_contents()]
            alt = before["title"].strip()
            assert alt and f"picture: {alt}" in captions, f"picture {k} has no alt text: {captions}"
            s.root.screenshot(path=str(shots / f"{name}-{live}-step{step}.png"))
            if count < 2:
                continue
            s.click(".xl-next")
            after_step = s.until_moved(step)
            after = _picture_now(s, k, before["src"])
            s.root.screenshot(path=str(shots / f"{name}-{live}-step{after_step}.png"))
            assert after["same"] and after["removed"] == 0, "the picture's <img> was replaced (flicker)"
            assert after["hash"] != before["hash"], f"step {step} -> {after_step}: the picture did not change"
            assert after["title"].strip(), "the alt text is gone after a step"
            s.click(".xl-prev")
            step = s.until_moved(after_step)
            again = _picture_now(s, k, after["src"])
            assert again["hash"] == before["hash"] and again["same"], "back on a step: the same picture"
    assert live + static.count() == made, f"{made} pictures made, {live} live and {static.count()} drawn"
    print(f"\n{name}: {live} live pictures and {static.count()} drawn in cells checked", end="")


EXERCISE = "exercises/03_evtchn_irq_ex"
#: A typical wrong find_unbound_irq (xenlab/exercises/kernel_tasks.BINDCOUNT's mistake): it looks at
#: irq_info, so an IRQ still shared after one unbind looks free.
WRONG = """def find_unbound_irq(kernel):
    st = l18.evtchn_state(kernel)
    first = st.space.DYNIRQ_BASE
    for irq in range(first, first + st.space.NR_DYNIRQS):
        if st.irq_info[irq] == 0:
            return irq
    return -ENOSPC
"""
RIGHT = """from xenlab.abi.errno import ENOSPC


def find_unbound_irq(kernel):
    st = l18.evtchn_state(kernel)
    first = st.space.DYNIRQ_BASE
    for irq in range(first, first + st.space.NR_DYNIRQS):
        if st.irq_bindcount[irq] == 0:
            return irq
    if not st.warned:
        st.warned = True
        kernel.printk(KERN_WARNING, "No available IRQ to bind to: increase NR_DYNIRQS.")
    return -ENOSPC
"""


def test_one_exercise_end_to_end_wrong_answer_hint_right_answer(
        lab: tuple[str, str], browser: Any) -> None:
    """Issue 13: a learner types a wrong find_unbound_irq into the task cell, runs its check cell and
    reads the hint and its score (none of the task's points); then types the right one and sees it boot
    the machine to Connected, with full points."""
    base, token = lab
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(f"{base}/lab/tree/{EXERCISE}.ipynb?token={token}&reset")
        _run_all(page)
        cells = page.locator(".jp-Notebook .jp-Cell")
        task = next(i for i in range(cells.count())
                    if "def find_unbound_irq(kernel)" in (cells.nth(i).locator(".jp-InputArea").inner_text()))
        checker = cells.nth(task + 1)
        assert 'check("find_unbound_irq"' in checker.locator(".jp-InputArea").inner_text()
        assert "NotImplementedError" in checker.locator(".jp-OutputArea").inner_text()  # not written yet

        def answer(source: str, expect: str) -> str:
            cells.nth(task).locator(".cm-content").click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(source)  # as pasted: no auto-indent
            page.keyboard.press("Shift+Enter")  # run the task cell, on to its check cell
            page.keyboard.press("Shift+Enter")  # run the check
            checker.locator(".jp-OutputArea").filter(has_text=expect).wait_for(timeout=WAIT)
            return checker.locator(".jp-OutputArea").inner_text()

        wrong = answer(WRONG, "find_unbound_irq looks for irq_bindcount == 0")
        assert "diverged at step" in wrong and "expected -28, got 257" in wrong
        assert "find_unbound_irq: correct" not in wrong
        assert wrong.rstrip().endswith(f"Score: 0/{TASKS['find_unbound_irq'].points}")
        right = answer(RIGHT, "find_unbound_irq: correct")
        assert "hint:" not in right and "diverged" not in right
        assert "frontend is Connected" in right
        points = TASKS["find_unbound_irq"].points
        assert right.rstrip().endswith(f"Score: {points}/{points}")  # the Verdict carries the points
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        assert errors.count() == 0
    finally:
        page.close()


#: The README's screenshot of each lesson: its first stepper, moved on to the step calling this function.
SHOT_AT = {"01_bus_registration": "xb_init_comms()", "02_store_ring": "ml_interface_read()",
           "03_evtchn_irq": "request_irq()"}
#: ... or, for these, the first stepper whose title has this text (a picture makes the better screenshot)
SHOT_IN = {"02_store_ring": "as a ring"}


@pytest.mark.parametrize("name", IDS)
def test_readme_screenshots(lessons: dict[str, Any], name: str) -> None:
    """Last, once every control was driven: each lesson's first or SHOT_IN stepper at an instructive step."""
    page = lessons[name]
    want = SHOT_IN.get(name, "")
    s = next(s for s in _steppers(page) if want in (s.root.locator(".xl-body h4").first.text_content() or ""))
    s.root.scroll_into_view_if_needed()
    step, count, first, last = s.where()
    s.goto(str(first))
    s.until_step(first)
    for _ in range(count):
        if SHOT_AT[name] in (s.root.locator(".xl-body").text_content() or ""):
            break
        s.click(".xl-next")
        step = s.until_moved(step)
    else:
        pytest.fail(f"{SHOT_AT[name]} is not a step of the first stepper")
    for _ in range(3):  # JupyterLab lays out cells lazily: scroll until the stepper stays at the top
        s.root.evaluate("el => el.closest('.jp-Cell').scrollIntoView({block: 'start'})")
        page.wait_for_timeout(400)
        top = s.root.bounding_box()["y"]
        if 0 < top < 250:
            break
    assert 0 < s.root.bounding_box()["y"] < 250, "the stepper is at the top of the screenshot"
    save_screenshot(page.screenshot(), SHOTS / f"{name}.png")
