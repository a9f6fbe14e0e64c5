"""`xenlab lab`: the lessons are found (checkout or installed wheel) and copied without overwriting."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from xenlab import labcmd

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ["01_bus_registration.ipynb", "02_store_ring.ipynb", "03_evtchn_irq.ipynb"]


def run_lab(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    labcmd.add_parser(parser.add_subparsers())
    return labcmd.run(parser.parse_args(["lab", *argv]))


def test_the_checkout_notebooks_are_found() -> None:
    assert labcmd.find_notebooks() == ROOT / "notebooks"


def test_installed_notebooks_are_found_under_share(tmp_path: Path) -> None:
    shipped = tmp_path / "share" / "xenlab" / "notebooks"
    shipped.mkdir(parents=True)
    (shipped / "01_bus_registration.ipynb").write_text("{}")
    assert labcmd.find_notebooks([str(tmp_path)]) == shipped
    with pytest.raises(FileNotFoundError, match="notebooks were not found"):
        labcmd.find_notebooks([str(tmp_path / "elsewhere")])


def test_copy_never_overwrites_a_learners_notebook(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "lab"
    assert run_lab(str(work), "--copy-only") == 0
    assert sorted(p.name for p in work.iterdir()) == LESSONS
    (work / "02_store_ring.ipynb").write_text("my notes")
    capsys.readouterr()
    assert run_lab(str(work), "--copy-only") == 0
    assert (work / "02_store_ring.ipynb").read_text() == "my notes"
    assert "kept your" in capsys.readouterr().out
    (work / "01_bus_registration.ipynb").unlink()
    assert run_lab(str(work), "--copy-only") == 0
    assert (work / "01_bus_registration.ipynb").read_bytes() == (ROOT / "notebooks" / LESSONS[0]).read_bytes()


def test_pyproject_installs_every_lesson_as_a_data_file() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    patterns = data_files["share/xenlab/notebooks"]
    shipped = sorted(f.name for pattern in patterns for f in ROOT.glob(pattern))
    assert shipped == LESSONS



def test_lab_starts_jupyterlab_in_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(labcmd.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert run_lab(str(tmp_path / "w"), "--no-browser", "--port", "8890") == 0
    (cmd,) = calls
    assert cmd[1:3] == ["-m", "jupyterlab"] and f"--notebook-dir={tmp_path / 'w'}" in cmd
    assert "--ServerApp.port=8890" in cmd and "--no-browser" in cmd


def test_the_lab_starts_with_its_own_settings_no_news_popup(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(labcmd.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert run_lab(str(tmp_path / "w"), "--no-browser") == 0
    (cmd,) = calls
    settings = tmp_path / "w" / ".xenlab" / "jupyterlab-settings"
    assert f"--LabApp.app_settings_dir={settings.resolve()}" in cmd and "--LabApp.news_url=None" in cmd
    overrides = json.loads((settings / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false",
                                                                        "checkForUpdates": False}
    assert sorted(p.name for p in (tmp_path / "w").glob("*.ipynb")) == LESSONS  # copies, not the tracked
