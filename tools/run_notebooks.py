#!/usr/bin/env python3
"""Re-execute the lesson notebooks and store their outputs deterministically.

`tools/run_notebooks.py` rewrites notebooks/*.ipynb with fresh outputs;
`tools/run_notebooks.py --check` re-executes into memory and exits 1 (naming the
notebook and the first differing cell) when a committed notebook is not exactly what
re-execution produces. Run twice, the script produces byte-identical files: execution
counts are renumbered 1..n, cell ids are derived from the cell position, timings and
kernel versions are dropped, and widget-view outputs (random model ids) are reduced to
their stable text/plain form, which is what nbval compares anyway.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
TIMEOUT = 120


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The notebooks to run: the named ones, or every notebooks/NN_*.ipynb, then exercises/NN_*.ipynb."""
    if names:
        return [Path(n).resolve() for n in names]
    pattern = "[0-9][0-9]_*.ipynb"
    return sorted(NOTEBOOK_DIR.glob(pattern)) + sorted((NOTEBOOK_DIR / "exercises").glob(pattern))


def execute(path: Path) -> nbformat.NotebookNode:
    """Execute one notebook in its own folder with PYTHONHASHSEED=0 and return it."""
    nb = nbformat.read(path, as_version=4)
    env_backup = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = "0"
    try:
        client = NotebookClient(
            nb,
            timeout=TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
            store_widget_state=False,
            record_timing=False,
            allow_errors=False,
        )
        client.execute()
    finally:
        if env_backup is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = env_backup
    return normalize(nb)


def _normalize_output(out: nbformat.NotebookNode) -> nbformat.NotebookNode:
    out.pop("metadata", None) if out.get("output_type") == "stream" else None
    if out.get("output_type") in ("display_data", "execute_result"):
        out["data"].pop(WIDGET_MIME, None)
        out["metadata"] = {}
    if out.get("output_type") == "execute_result":
        out["execution_count"] = None  # set by normalize()
    return out


def _merge_streams(outputs: list[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """Join consecutive stdout (or stderr) chunks: how a print is split into messages is timing."""
    merged: list[nbformat.NotebookNode] = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (prev is not None and out.get("output_type") == "stream" and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            prev["text"] = "".join(prev["text"]) + "".join(out["text"])
        else:
            if out.get("output_type") == "stream":
                out["text"] = "".join(out["text"])
            merged.append(out)
    return merged


def normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip everything that varies between runs: timings, versions, ids, widget model ids."""
    nb["metadata"] = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    nb["nbformat"], nb["nbformat_minor"] = 4, 5
    count = 0
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i:02d}"
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags", "nbval-ignore-output")}
        cell["metadata"] = meta
        if cell["cell_type"] != "code":
            continue
        outputs = _merge_streams([_normalize_output(o) for o in cell.get("outputs", [])])
        # A widget displayed with no text/plain fallback would leave an empty bundle.
        cell["outputs"] = [o for o in outputs if o.get("output_type") == "stream" or o.get("data", True)]
        if cell["source"].strip():
            count += 1
            cell["execution_count"] = count
            for o in cell["outputs"]:
                if o.get("output_type") == "execute_result":
                    o["execution_count"] = count
        else:
            cell["execution_count"] = None
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    """The notebook as the stable text we commit (sorted keys, one-space indent, final newline)."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with --check, verify) the notebooks' stored outputs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, do not write; exit 1 when stale")
    parser.add_argument("notebooks", nargs="*",
                        help="notebooks to run (default: notebooks/NN_*.ipynb and exercises/NN_*.ipynb)")
    args = parser.parse_args(argv)
    stale = 0
    for path in notebooks(args.notebooks):
        fresh = dumps(execute(path))
        old = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        if args.check:
            if fresh != old:
                stale += 1
                diff = difflib.unified_diff(
                    old.splitlines(), fresh.splitlines(), "committed", "re-executed", n=1, lineterm=""
                )
                print(f"{name}: stored outputs differ from re-execution; run `make notebooks`")
                print("\n".join(list(diff)[:40]))
            else:
                print(f"{name}: up to date")
        elif fresh != old:
            path.write_text(fresh, encoding="utf-8")
            print(f"{name}: rewritten")
        else:
            print(f"{name}: unchanged")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
