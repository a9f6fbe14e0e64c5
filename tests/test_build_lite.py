"""tools/build_lite.py without a build: how the lessons are adapted for the browser, and the check
that refuses a site that is not self-contained (the browser test, test_lite_browser.py, runs the site)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_lite", ROOT / "tools" / "build_lite.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_lite = _load()


def _nb(*sources: str, tags: dict[int, list[str]] | None = None) -> dict[str, Any]:
    cells: list[dict[str, Any]] = [{"cell_type": "markdown", "metadata": {}, "source": ["# title"]}]
    for i, src in enumerate(sources):
        cells.append({"cell_type": "code", "metadata": {"tags": (tags or {}).get(i, [])}, "source": [src],
                      "execution_count": 3, "outputs": [{"output_type": "stream", "name": "stdout",
                                                         "text": ["old\n"]}]})
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4,
            "nbformat_minor": 5}


def _kinds(nb: dict[str, Any]) -> list[str]:
    return ["code" if c["cell_type"] == "code" else
            "text" if "".join(c["source"]).startswith("*Not run in the browser") else
            "note" if "xenlab-lite-note" in c["metadata"].get("tags", []) else "md" for c in nb["cells"]]


def test_host_only_cells_and_the_cells_that_use_them_are_shown_as_text() -> None:
    nb, skipped = build_lite.browser_notebook(_nb(
        "import threading\nserved = threading.Event()",   # host-only: imports threading
        "print(served)",                                   # uses a name only that cell binds
        "served = 1\nprint(served)",                       # binds it itself: runs
        "from xenlab.xenstored.unix import UnixServer",    # the Unix-socket server
        "x = 2",                                           # tagged
        "print(x + 1)",                                    # uses the tagged cell's x
        "import os\nprint(os.sep)",
        tags={4: ["host-only"]}))
    assert skipped == 5
    assert _kinds(nb) == ["md", "note", "text", "text", "code", "text", "text", "text", "code"]
    assert "print(served)" in "".join(nb["cells"][3]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == "python"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    note = "".join(nb["cells"][1]["source"])
    assert "Matplotlib cannot load here" in note and "shown as text below" in note


def test_a_lesson_without_host_cells_gets_the_note_and_nothing_shown_as_text() -> None:
    nb, skipped = build_lite.browser_notebook(_nb("print(1)"))
    assert skipped == 0
    assert _kinds(nb) == ["md", "note", "code"]
    assert "shown as text below" not in "".join(nb["cells"][1]["source"])


def test_only_the_real_client_section_of_the_lessons_needs_the_host() -> None:
    shown_as_text = {}
    for src, rel in build_lite.lesson_notebooks():
        nb, _ = build_lite.browser_notebook(json.loads(src.read_text()))
        shown_as_text[rel] = [i for i, kind in enumerate(_kinds(nb)) if kind == "text"]
        if shown_as_text[rel]:
            text = "".join("".join(nb["cells"][i]["source"]) for i in shown_as_text[rel])
            assert "pyxs" in text
    assert shown_as_text["02_store_ring.ipynb"], "02's pyxs cells must not run in the browser"
    assert not any(v for k, v in shown_as_text.items() if k != "02_store_ring.ipynb")


def _site(tmp_path: Path) -> Path:
    """A minimal site as the build leaves it: one wheel in the lock, one in a piplite index."""
    pyodide = tmp_path / "static" / "pyodide"
    pyodide.mkdir(parents=True)
    (pyodide / "pyodide.mjs").write_text("")
    whl = pyodide / "xenlab-0.1.0-py3-none-any.whl"
    whl.write_bytes(b"wheel bytes")
    lock = {"info": {}, "packages": {"xenlab": build_lite.lock_entry(whl, "xenlab", "0.1.0", [], ["xenlab"])}}
    (pyodide / "pyodide-lock.json").write_text(json.dumps(lock))
    pypi = tmp_path / "pypi"
    pypi.mkdir()
    (pypi / "comm-0.2.3-py3-none-any.whl").write_bytes(b"comm")
    digest = hashlib.sha256(b"comm").hexdigest()
    index = {"comm": {"releases": {"0.2.3": [{"url": "./comm-0.2.3-py3-none-any.whl", "filename": "comm",
                                             "digests": {"sha256": digest}}]}}}
    (pypi / "all.json").write_text(json.dumps(index))
    settings = {"pyodideUrl": "./static/pyodide/pyodide.mjs", "disablePyPIFallback": True,
                "pipliteUrls": [f"./pypi/all.json?sha256={build_lite.sha256_of(pypi / 'all.json')}"]}
    (tmp_path / "jupyter-lite.json").write_text(json.dumps(
        {"jupyter-config-data": {"litePluginSettings": {build_lite.KERNEL_PLUGIN: settings}}}))
    return tmp_path


def test_verify_accepts_a_self_contained_site(tmp_path: Path) -> None:
    build_lite.verify(_site(tmp_path))


@pytest.mark.parametrize("damage", ["wheel", "index wheel", "cdn", "fallback", "missing dep"])
def test_verify_refuses_a_site_that_is_not_self_contained(tmp_path: Path, damage: str) -> None:
    site = _site(tmp_path)
    config_path = site / "jupyter-lite.json"
    config = json.loads(config_path.read_text())
    settings = config["jupyter-config-data"]["litePluginSettings"][build_lite.KERNEL_PLUGIN]
    if damage == "wheel":
        (site / "static" / "pyodide" / "xenlab-0.1.0-py3-none-any.whl").write_bytes(b"other bytes")
    elif damage == "index wheel":
        (site / "pypi" / "comm-0.2.3-py3-none-any.whl").write_bytes(b"other")
    elif damage == "cdn":
        settings["pyodideUrl"] = "https://cdn.example/pyodide.mjs"
    elif damage == "fallback":
        del settings["disablePyPIFallback"]
    else:
        lock_path = site / "static" / "pyodide" / "pyodide-lock.json"
        lock = json.loads(lock_path.read_text())
        lock["packages"]["xenlab"]["depends"] = ["matplotlib"]
        lock_path.write_text(json.dumps(lock))
    config_path.write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="not self-contained"):
        build_lite.verify(site)
