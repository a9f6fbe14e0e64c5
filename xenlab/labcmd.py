"""`xenlab lab`: copy the lesson notebooks to a working folder and start JupyterLab there.

The notebooks ship in the wheel as data files (``<prefix>/share/xenlab/notebooks``);
in a source checkout they are found in ``notebooks/`` next to the package. The copy
never overwrites a notebook already in the working folder, so a learner's edits
survive a second ``xenlab lab``; JupyterLab only ever sees (and autosaves) the copies.
The lab's own settings, on the command line: no news popup and no update check (a
learner opening a lesson should see the lesson).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

DEFAULT_WORKDIR = "xenlab-notebooks"


def find_notebooks(prefixes: list[str] | None = None) -> Path:
    """The folder holding the shipped notebooks (the source checkout, or <prefix>/share/xenlab/notebooks)."""
    candidates = [Path(__file__).resolve().parent.parent / "notebooks"] if prefixes is None else []
    if prefixes is None:
        prefixes = [sysconfig.get_path("data"), sys.prefix, sys.base_prefix,
                    sysconfig.get_path("data", f"{os.name}_user")]
    for prefix in dict.fromkeys(prefixes):
        candidates.append(Path(prefix) / "share" / "xenlab" / "notebooks")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            return folder
    raise FileNotFoundError(
        "xenlab's notebooks were not found (looked in: " + ", ".join(str(c) for c in candidates) + ")"
    )


def copy_notebooks(source: Path, workdir: Path) -> tuple[list[str], list[str]]:
    """Copy every notebook into *workdir*; return (copied, kept) file names."""
    workdir.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    kept: list[str] = []
    for src in sorted(source.glob("*.ipynb")):
        dst = workdir / src.name
        if dst.exists():
            kept.append(src.name)
            continue
        shutil.copyfile(src, dst)
        copied.append(src.name)
    return copied, kept


#: JupyterLab options of the lab itself: no announcements feed and no check for a newer JupyterLab.
LAB_OPTIONS = ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
#: The lab's default settings (JupyterLab's overrides.json): never ask "Would you like to get
#: notified about official Jupyter news?" (asked while fetchNews is "none"), never check for updates.
LAB_SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                                 "checkForUpdates": False}}
SETTINGS_DIR = ".xenlab/jupyterlab-settings"


def write_lab_settings(workdir: Path) -> Path:
    """Write the lab's overrides.json under *workdir*; return the folder (JupyterLab's app settings dir)."""
    folder = workdir / SETTINGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overrides.json").write_text(json.dumps(LAB_SETTINGS, indent=2) + "\n")
    return folder


def jupyterlab_command(workdir: Path, *, no_browser: bool = False, port: int | None = None) -> list[str]:
    """The command that starts JupyterLab on *workdir* with the lab's settings (written under *workdir*)."""
    settings = write_lab_settings(workdir)
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={workdir}", *LAB_OPTIONS,
           f"--LabApp.app_settings_dir={settings.resolve()}"]
    if no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root; JupyterLab refuses otherwise
    if port:
        cmd.append(f"--ServerApp.port={port}")
    return cmd


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `xenlab lab`."""
    p = subparsers.add_parser("lab", help="copy the lessons to a working folder and open JupyterLab there")
    p.add_argument("workdir", nargs="?", default=DEFAULT_WORKDIR,
                   help=f"working folder (default: ./{DEFAULT_WORKDIR}); existing notebooks are kept")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--copy-only", action="store_true", help="copy the notebooks and exit")
    p.add_argument("--port", type=int, help="port for JupyterLab (default: its own, 8888 or the next free)")
    return p


def run(args: argparse.Namespace) -> int:
    """Copy the notebooks, then exec JupyterLab in the working folder."""
    try:
        source = find_notebooks()
    except FileNotFoundError as exc:
        print(f"xenlab lab: {exc}", file=sys.stderr)
        return 1
    workdir = Path(args.workdir)
    try:
        copied, kept = copy_notebooks(source, workdir)
    except OSError as exc:
        print(f"xenlab lab: cannot copy the notebooks into {workdir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for name in copied:
        print(f"copied {name} -> {workdir / name}")
    for name in kept:
        print(f"kept your {workdir / name} (not overwritten)")
    if args.copy_only:
        return 0
    cmd = jupyterlab_command(workdir, no_browser=args.no_browser, port=args.port)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
