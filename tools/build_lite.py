"""Build build/lite/: the lessons as a static JupyterLite site that needs no server and no network.

Run by `make lite` with the build's own interpreter (build/lite-venv, tools/lite-requirements.txt).
Everything the browser loads is served from the site: the JupyterLite app, the Pyodide runtime (the
npm package pyodide, at the version jupyterlite-pyodide-kernel is made for), the pure wheels the
kernel needs (from PyPI, at the versions Pyodide's own lock names), ipywidgets, comm and xenlab.
The site's pyodide-lock.json lists exactly those wheels with the sha256 of the files served, and
`loadPyodideOptions.packages` loads xenlab (and through it ipywidgets) when the kernel starts, so a
student runs no install cell. PyPI fallback is off. Downloads go to build/lite-cache/ and are reused.

The notebooks are copied with their outputs cleared, the Pyodide kernel named, a note on top
(pictures are text-only here: Pyodide has no matplotlib from the registries), and every cell that
needs the host (an OS thread, a Unix socket, a subprocess, pyxs) shown as text instead of run.
"""

from __future__ import annotations

import argparse
import ast
import base64
import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SRC = BUILD / "lite-src"          # the lite dir handed to `jupyter lite build` (made anew each time)
CACHE = BUILD / "lite-cache"      # downloads, kept between builds
OUT = BUILD / "lite"

#: the npm package pyodide: the version jupyterlite-pyodide-kernel's constants name, and its tarball's
#: integrity as the npm registry lists it
PYODIDE_VERSION = "314.0.6"
PYODIDE_INTEGRITY = ("sha512-BKDTJyIqFxC4BExLqeRS3f5xvXZIjOt8C3zGLN/Cc7tFxSwvKVhVkchQQ2AGLOtR4YrVOIFxbV8poyD"
                     "OOmWwxQ==")
#: the runtime files the kernel's worker loads (pyodide.mjs imports the rest)
PYODIDE_RUNTIME = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "package.json")
#: what the kernel installs when it starts, looked up in Pyodide's lock with their dependencies
KERNEL_ROOTS = ("micropip", "packaging", "ipython", "jedi", "pyodide-http", "typing-extensions")
#: served beside them, not in Pyodide's lock (the versions `make lab` uses)
EXTRA_WHEELS = {"comm": "0.2.3", "ipywidgets": "8.1.9"}
#: what the kernel loads at start, before the first cell (their dependencies come along)
PRELOAD = ("xenlab",)
#: a cell importing one of these needs the host, not a browser
HOST_ONLY_MODULES = ("threading", "socket", "subprocess", "multiprocessing", "selectors", "pyxs",
                     "xenlab.xenstored.unix", "xenlab.xenstored.serve", "xenlab.xenstored.realhost")
HOST_ONLY_TAG = "host-only"
PYODIDE_KERNELSPEC = {"display_name": "Python (Pyodide)", "language": "python", "name": "python"}
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"
APPS = ("lab", "notebooks", "tree")

NOTE = """> **In the browser.** This copy of the lesson runs in your browser (JupyterLite: Python
> compiled to WebAssembly by Pyodide, with xenlab already installed). The machines, faults,
> steppers and views are live; nothing is installed on your computer and nothing is sent
> anywhere. Run every cell with *Run → Run All Cells*. Matplotlib cannot load here, so every
> picture is shown in its text form (`make lab` on a computer with xenlab installed draws them).{extra}"""
NOTE_SKIPPED = """
> Cells that need the host (an OS thread, a Unix socket) are shown as text below, not run."""


def norm(name: str) -> str:
    """A project name as PEP 503 normalises it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_of(path: Path) -> str:
    """The hex sha256 of *path*'s bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cmd: list[str], cwd: Path | None = None) -> None:
    """Run *cmd*, echoing it; fail the build if it fails."""
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def fetch_pyodide(cache: Path) -> Path:
    """The npm package pyodide, packed from the npm registry (integrity checked), unpacked; its folder."""
    npm_dir = cache / "npm"
    npm_dir.mkdir(parents=True, exist_ok=True)
    tgz = npm_dir / f"pyodide-{PYODIDE_VERSION}.tgz"
    if not tgz.exists():
        run(["npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--pack-destination", str(npm_dir)])
    algo, _, want = PYODIDE_INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algo, tgz.read_bytes()).digest()).decode()
    if got != want:
        tgz.unlink()
        sys.exit(f"build_lite: {tgz.name} does not match its registry integrity {PYODIDE_INTEGRITY}")
    unpacked = npm_dir / f"pyodide-{PYODIDE_VERSION}"
    if not (unpacked / "package" / "pyodide.mjs").exists():
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(tgz) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(unpacked, filter="data")
            else:  # pragma: no cover - Python without PEP 706
                tar.extractall(unpacked)  # noqa: S202 - the registry's tarball, integrity checked
    return unpacked / "package"


def kernel_packages(lock: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entries of Pyodide's lock the kernel needs: KERNEL_ROOTS and their dependencies."""
    by_name = {norm(name): entry for name, entry in lock["packages"].items()}
    wanted: dict[str, dict[str, Any]] = {}
    todo = [norm(n) for n in KERNEL_ROOTS]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        entry = by_name[name]
        if entry["package_type"] != "package" or not entry["file_name"].endswith("-none-any.whl"):
            sys.exit(f"build_lite: {name} is not a pure wheel in Pyodide's lock ({entry['file_name']})")
        wanted[name] = entry
        todo.extend(norm(d) for d in entry["depends"])
    return wanted


def pip_download(specs: list[str], dest: Path) -> None:
    """Download the pure wheels *specs* (name==version) for Pyodide's Python from PyPI into *dest*."""
    dest.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.14", "--implementation", "py", "--abi", "none", "--platform", "any",
         "-d", str(dest), *specs])


def find_wheel(folder: Path, name: str, version: str) -> Path:
    """The wheel of project *name* at *version* in *folder*."""
    for whl in folder.glob("*.whl"):
        dist, ver = whl.name.split("-")[:2]
        if norm(dist) == norm(name) and ver == version:
            return whl
    sys.exit(f"build_lite: no wheel of {name}=={version} in {folder}")


def build_xenlab_wheel(dest: Path) -> Path:
    """xenlab's wheel, built from a copy of this checkout's sources (no stale build/lib)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("xenlab-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "xenlab"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, src / name)
        shutil.copytree(ROOT / "xenlab", src / "xenlab",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(ROOT / "notebooks", src / "notebooks", ignore=shutil.ignore_patterns(".*"))
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(src)])
    (wheel,) = dest.glob("xenlab-*.whl")
    return wheel


def wheel_metadata(whl: Path) -> tuple[str, str, list[str], list[str]]:
    """(name, version, unconditional Requires-Dist project names, top-level import names) of a wheel."""
    with zipfile.ZipFile(whl) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
        top = {n.split("/")[0] for n in zf.namelist() if "/" in n and not n.split("/")[0].endswith(
            (".dist-info", ".data"))}
    fields = [line.split(": ", 1) for line in meta.splitlines() if ": " in line]
    name = next(v for k, v in fields if k == "Name")
    version = next(v for k, v in fields if k == "Version")
    requires = [re.split(r"[ ;<>=!~\[(]", v, maxsplit=1)[0] for k, v in fields
                if k == "Requires-Dist" and "extra ==" not in v]
    return name, version, requires, sorted(top)


def lock_entry(whl: Path, name: str, version: str, depends: list[str], imports: list[str]) -> dict[str, Any]:
    """A pyodide-lock.json package entry for the wheel file *whl* as served."""
    return {"depends": depends, "file_name": whl.name, "imports": imports, "install_dir": "site",
            "name": name, "package_type": "package", "sha256": sha256_of(whl),
            "unvendored_tests": False, "version": version}


def host_only_reason(source: str) -> str | None:
    """Which host-only module a code cell imports, if any."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for mod in names:
            if any(mod == h or mod.startswith(h + ".") for h in HOST_ONLY_MODULES):
                return mod
    return None


def bound_and_used(source: str) -> tuple[set[str], set[str]]:
    """The names a cell binds and the names it loads."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound, used


def md_cell(text: str) -> dict[str, Any]:
    """A markdown cell in nbformat 4."""
    return {"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)}


def browser_notebook(nb: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The lesson *nb* as the site serves it, and how many cells were shown as text instead of run."""
    nb = copy.deepcopy(nb)
    cells: list[dict[str, Any]] = []
    host_names: set[str] = set()
    skipped = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        source = "".join(cell["source"])
        bound, used = bound_and_used(source)
        reason = ("tagged " + HOST_ONLY_TAG if HOST_ONLY_TAG in cell.get("metadata", {}).get("tags", [])
                  else host_only_reason(source))
        needs = (used - bound) & host_names  # what the cell takes from a cell shown as text
        if reason is None and needs:
            reason = "uses " + ", ".join(sorted(needs)) + " from a cell above"
        if reason is not None:
            host_names |= bound
            skipped += 1
            cells.append(md_cell(f"*Not run in the browser ({reason}); `make lab` runs it:*\n\n"
                                 f"```python\n{source.rstrip()}\n```"))
            continue
        cell["outputs"] = []
        cell["execution_count"] = None
        cells.append(cell)
    note = md_cell(NOTE.format(extra=NOTE_SKIPPED if skipped else ""))
    note["metadata"] = {"tags": ["xenlab-lite-note"]}
    at = 1 if cells and cells[0]["cell_type"] == "markdown" else 0
    cells.insert(at, note)
    nb["cells"] = cells
    nb["metadata"]["kernelspec"] = dict(PYODIDE_KERNELSPEC)
    nb["metadata"].setdefault("language_info", {})["name"] = "python"
    return nb, skipped


def lesson_notebooks() -> list[tuple[Path, str]]:
    """(source, path in the site) of the lessons and any exercise notebooks."""
    found = [(p, p.name) for p in sorted((ROOT / "notebooks").glob("0*.ipynb"))]
    found += [(p, f"exercises/{p.name}") for p in sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb"))]
    return found


def write_contents(files: Path) -> None:
    """The notebooks as the site serves them, under *files*."""
    for src, rel in lesson_notebooks():
        nb, skipped = browser_notebook(json.loads(src.read_text()))
        dest = files / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"notebook {rel}: {skipped} host-only cell(s) shown as text")


def site_config() -> dict[str, Any]:
    """jupyter-lite.json of the lite dir: the kernel's settings (the build adds pyodideUrl, pipliteUrls)."""
    return {
        "jupyter-lite-schema-version": 0,
        "jupyter-config-data": {
            "appName": "xenlab",
            "faviconUrl": "",
            "exposeAppInBrowser": True,  # window.jupyterapp, which the browser test drives
            "litePluginSettings": {KERNEL_PLUGIN: {
                "disablePyPIFallback": True,
                "loadPyodideOptions": {"packages": list(PRELOAD)},
            }},
            "settingsOverrides": {
                # no news or update checks from the page
                "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                                 "checkForUpdates": False},
                # every cell in the page (find, and the browser test, see all of a lesson)
                "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
            },
        },
    }


def verify(out: Path) -> None:
    """Fail unless the site is self-contained: local Pyodide, PyPI fallback off, every hash real."""
    config = json.loads((out / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config["litePluginSettings"][KERNEL_PLUGIN]
    problems = []
    if kernel.get("pyodideUrl") != "./static/pyodide/pyodide.mjs":
        problems.append(f"pyodideUrl is {kernel.get('pyodideUrl')!r}, not the site's"
                        " (a stale .jupyterlite.doit.db?)")
    if kernel.get("disablePyPIFallback") is not True:
        problems.append("disablePyPIFallback is not set")
    pyodide = out / "static" / "pyodide"
    lock = json.loads((pyodide / "pyodide-lock.json").read_text())
    for name, entry in lock["packages"].items():
        whl = pyodide / entry["file_name"]
        if not whl.exists():
            problems.append(f"lock names {entry['file_name']} ({name}), not served")
        elif sha256_of(whl) != entry["sha256"]:
            problems.append(f"lock's sha256 of {entry['file_name']} is not the served file's")
        for dep in entry["depends"]:
            if norm(dep) not in {norm(n) for n in lock["packages"]}:
                problems.append(f"{name} depends on {dep}, not in the site's lock")
    for url in kernel.get("pipliteUrls", []):
        path, _, query = url.partition("?")
        index = out / path
        if not url.startswith("./") or not index.exists():
            problems.append(f"pipliteUrls has {url}, not a file of the site")
            continue
        if query != f"sha256={sha256_of(index)}":
            problems.append(f"{url}: not the sha256 of {path}")
        for project in json.loads(index.read_text()).values():
            for releases in project["releases"].values():
                for rel in releases:
                    whl = index.parent / rel["url"]
                    if not whl.exists() or sha256_of(whl) != rel["digests"]["sha256"]:
                        problems.append(f"{path}: {rel['filename']} missing or its sha256 wrong")
    for name in PRELOAD:
        if name not in lock["packages"]:
            problems.append(f"{name} is preloaded but not in the site's lock")
    if problems:
        sys.exit("build_lite: the site is not self-contained:\n  " + "\n  ".join(problems))


def build(out: Path) -> None:
    """Build the site into *out*."""
    started = time.monotonic()
    from jupyterlite_pyodide_kernel import constants  # the build venv's kernel names its Pyodide

    if constants.PYODIDE_VERSION != PYODIDE_VERSION:
        sys.exit(f"build_lite: jupyterlite-pyodide-kernel wants Pyodide {constants.PYODIDE_VERSION}, "
                 f"this script pins {PYODIDE_VERSION}: update both together")
    runtime = fetch_pyodide(CACHE)
    upstream = json.loads((runtime / "pyodide-lock.json").read_text())
    wheels_cache = CACHE / "wheels"
    needed = kernel_packages(upstream)
    pip_download([f"{e['name']}=={e['version']}" for e in needed.values()]
                 + [f"{n}=={v}" for n, v in EXTRA_WHEELS.items()], wheels_cache)

    shutil.rmtree(SRC, ignore_errors=True)  # and with it any .jupyterlite.doit.db of an earlier build
    static = SRC / "static" / "pyodide"
    static.mkdir(parents=True)
    for name in PYODIDE_RUNTIME:
        shutil.copy(runtime / name, static / name)

    packages: dict[str, dict[str, Any]] = {}
    for key, entry in needed.items():  # keyed by normalised name, as Pyodide's own lock is
        whl = find_wheel(wheels_cache, entry["name"], entry["version"])
        shutil.copy(whl, static / whl.name)
        packages[key] = lock_entry(static / whl.name, entry["name"], entry["version"],
                                             list(entry["depends"]), list(entry["imports"]))
    extra = [find_wheel(wheels_cache, n, v) for n, v in EXTRA_WHEELS.items()] + [
        build_xenlab_wheel(CACHE / "xenlab")]
    served = {norm(n) for n in packages} | {norm(w.name.split("-")[0]) for w in extra}
    for whl in extra:
        name, version, requires, imports = wheel_metadata(whl)
        depends = [r for r in requires if norm(r) in served]
        dropped = [r for r in requires if norm(r) not in served]
        if dropped:
            print(f"{name}: not served in the browser (no Pyodide wheel needed or none on the registries): "
                  + ", ".join(dropped))
        shutil.copy(whl, static / whl.name)
        packages[norm(name)] = lock_entry(static / whl.name, norm(name), version, depends, imports)
    lock = {"info": upstream["info"], "packages": dict(sorted(packages.items()))}
    (static / "pyodide-lock.json").write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")

    write_contents(SRC / "files")
    (SRC / "jupyter-lite.json").write_text(json.dumps(site_config(), indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    lite = Path(sys.executable).parent / "jupyter-lite"
    run([str(lite), "build", "--lite-dir", str(SRC), "--output-dir", str(out), "--contents",
         str(SRC / "files"), "--no-sourcemaps", *[a for app in APPS for a in ("--apps", app)]], cwd=SRC)
    verify(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    files = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"build_lite: {out.relative_to(ROOT)}: {files} files, {size / 1e6:.1f} MB, "
          f"built in {time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Command line: build (default) or only verify an existing site."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the site goes (default build/lite)")
    parser.add_argument("--verify", action="store_true", help="only check an existing site")
    args = parser.parse_args(argv)
    if args.verify:
        verify(args.out)
        print(f"build_lite: {args.out} is self-contained")
    else:
        build(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
