"""Execute the course notebooks headless (papermill), read back what they report, publish them.

A notebook reports its key numbers with `report`: an invisible output carrying them in its
metadata (no machine-readable line in what a reader sees). After a headless run,
`execute` moves them to the cell's metadata (``metadata.sales_stream.result``), where
`results` reads them. `publish` copies executed notebooks into the repository in the form
GitHub renders well: no saved widget state, no absolute path of the machine, each notebook
under `MAX_NOTEBOOK_BYTES`.

Run ``python -m sales_stream.notebooks SOURCE_DIR DEST_DIR`` (``make notebooks``) to publish.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import nbformat

#: The course notebooks, in execution order.
NOTEBOOKS = (
    "01_setup.ipynb",
    "02_producer.ipynb",
    "03_consumer.ipynb",
    "04_export_tableau.ipynb",
    "05_data_lake.ipynb",
)

#: Tag of the note that replaces papermill's injected parameters (dropped on the next run).
_NOTE_TAG = "injected-parameters-note"

#: Metadata key of the numbers a notebook reports (output metadata, then cell metadata).
RESULT_KEY = "sales_stream"
#: Largest committed notebook (GitHub renders it; the repository stays small).
MAX_NOTEBOOK_BYTES = 2_000_000
#: Polling interval of `wait_for`.
WAIT_POLL_S = 0.25

T = TypeVar("T")

#: Longest code cell of a course notebook (the logic lives in the package).
MAX_CELL_LINES = 25

#: English a reader must not see in a notebook's outputs (they are in French): words that are
#: never French (word-bounded, any case), ``sales_…`` / ``revenue…`` column names (not the
#: ``sales_db`` database nor the ``sales_stream`` package), « minute(s) » plurals and raw floats
#: such as ``104.16666666666667``.
ENGLISH_IN_OUTPUTS = re.compile(
    r"\b(?:files|rows|bytes|more lines?|publishing|needs|waiting|stored|revenue\w*|the|and|"
    r"with|expected|got|invalid|missing|payload|limit|error|running|stopped|idle|failed|"
    r"not configured|sent|received)\b"
    r"|\bsales_(?!db\b|stream\b|live\b)\w+"
    r"|\w\(s\)"
    r"|(?<![\w-])\d+\.\d{6,}(?![\w.])",  # an unformatted float, not a file name's offsets and hash
    re.IGNORECASE,
)


def execute(
    notebook: Path,
    *,
    output: Path,
    parameters: Mapping[str, Any] | None = None,
    timeout_s: int = 600,
) -> dict[str, Any]:
    """Run ``notebook`` top to bottom with ``parameters``, save it to ``output``.

    The kernel inherits this process's environment (``SALES_STREAM_*`` settings included).

    Args:
        notebook: Source notebook (with a cell tagged ``parameters``).
        output: Where to write the executed notebook (may equal ``notebook``).
        parameters: Values injected after the ``parameters`` cell.
        timeout_s: Per-cell timeout.

    Returns:
        The merged values the notebook reported with `report`.
    """
    import papermill  # heavy; only the headless run needs it

    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=dict(parameters or {}),
        cwd=str(notebook.parent),
        kernel_name="python3",
        execution_timeout=timeout_s,
        progress_bar=False,
    )
    _strip_papermill_noise(output)
    return results(output)


def results(notebook: Path) -> dict[str, Any]:
    """Return the merged values ``notebook``'s cells reported with `report`.

    Reads the cell metadata written by `execute`, and the output metadata of a notebook
    saved straight from JupyterLab.
    """
    merged: dict[str, Any] = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        merged.update(cell.metadata.get(RESULT_KEY, {}).get("result", {}))
        for out in cell.get("outputs", []):
            merged.update(out.get("metadata", {}).get(RESULT_KEY, {}).get("result", {}))
    return merged


def report(**values: Any) -> None:
    """Record key numbers for tests and ``make run``: an invisible output with metadata."""
    from IPython.display import display

    data = json.loads(json.dumps(values, default=str, ensure_ascii=False))
    display({"text/plain": ""}, raw=True, metadata={RESULT_KEY: {"result": data}})


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    waiting: str,
    poll_s: float = WAIT_POLL_S,
) -> T | None:
    """Poll ``probe`` until it returns a truthy value or ``timeout_s`` passes.

    A cell that reads data the stream has not delivered yet calls this instead of reading
    an empty result: on timeout it prints the French « en attente » message ``waiting``.

    Returns:
        The first truthy value of ``probe``, or ``None`` after the deadline.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            print(f"En attente : {waiting} (rien après {timeout_s:.0f} s ; relancez la cellule).")
            return None
        time.sleep(poll_s)


def visible_outputs(notebook: Path) -> list[tuple[int, str]]:
    """What a reader sees of each output of ``notebook``: ``(cell index, text)`` pairs.

    Per output: its ``text/html`` without tags (a widget's static snapshot, a table), else its
    ``text/markdown`` or ``text/plain``; a stream's text; an error's name and value.
    """
    seen = []
    for index, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                seen.append((index, str(out.get("text", ""))))
            elif out.get("output_type") == "error":
                seen.append((index, f"{out.get('ename')}: {out.get('evalue')}"))
            data = out.get("data", {})
            for mime in ("text/html", "text/markdown", "text/plain"):
                if mime in data:
                    text = str(data[mime])
                    if mime == "text/html":
                        text = html.unescape(re.sub(r"<[^>]*>", " ", text))
                    seen.append((index, text))
                    break
    return seen


def english_in_outputs(notebook: Path) -> list[str]:
    """Each match of `ENGLISH_IN_OUTPUTS` in ``notebook``'s `visible_outputs`, with context."""
    found = []
    for index, text in visible_outputs(notebook):
        for match in ENGLISH_IN_OUTPUTS.finditer(text):
            context = " ".join(text[max(0, match.start() - 40) : match.end() + 40].split())
            found.append(f"{notebook.name} cell {index}: {match.group(0)!r} in « {context} »")
    return found


def long_cells(notebook: Path, *, max_lines: int = MAX_CELL_LINES) -> list[str]:
    """The code cells of ``notebook`` longer than ``max_lines`` lines."""
    cells = nbformat.read(notebook, as_version=4).cells
    return [
        f"{notebook.name} cell {index}: {len(cell.source.splitlines())} lines"
        for index, cell in enumerate(cells)
        if cell.cell_type == "code" and len(cell.source.splitlines()) > max_lines
    ]


def _strip_papermill_noise(path: Path) -> None:
    """Drop per-run papermill metadata and turn the injected parameters into a note.

    The saved notebook keeps its outputs, but re-running it (JupyterLab) uses the notebook's
    own defaults again, not the headless values of the run that produced the outputs.
    """
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)  # saved widget state: megabytes GitHub cannot render
    nb.cells = [c for c in nb.cells if _NOTE_TAG not in c.metadata.get("tags", [])]
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        _move_results(cell)
        if "injected-parameters" in cell.metadata.get("tags", []):
            note = nbformat.v4.new_markdown_cell(
                "*Les sorties ci-dessous viennent d'une exécution automatique (`make run`) avec "
                "ces paramètres ; relancé dans JupyterLab, le notebook reprend ceux de la cellule "
                f"précédente.*\n\n```python\n{cell.source.strip()}\n```"
            )
            note["id"] = cell.get("id", f"injected-{index}")
            note.metadata["tags"] = [_NOTE_TAG]
            nb.cells[index] = note
    nbformat.write(nb, path)


def _move_results(cell: Any) -> None:
    """Move `report` outputs into the cell's metadata (nothing left to see in the output)."""
    kept = []
    for out in cell.get("outputs", []):
        result = out.get("metadata", {}).get(RESULT_KEY, {}).get("result")
        if result is None:
            kept.append(out)
            continue
        cell.metadata.setdefault(RESULT_KEY, {}).setdefault("result", {}).update(result)
    if "outputs" in cell:
        cell["outputs"] = kept


def _machine_paths() -> list[str]:
    """Absolute paths of this machine a notebook output must not show, longest first."""
    paths = {str(Path.cwd().resolve()), str(Path.home()), sys.prefix, os.path.realpath(sys.prefix)}
    return sorted((p for p in paths if len(p) > 1), key=len, reverse=True)


def sanitise(nb: Any, *, repo_root: Path) -> Any:
    """Make an executed notebook readable on GitHub: no widget state, no machine path.

    Drops ``metadata.widgets`` (saved widget state: megabytes of JavaScript that GitHub
    cannot render) and rewrites the repository's absolute path (and the home directory and
    virtualenv) to relative ones in every output.
    """
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    root = str(repo_root.resolve())
    replacements = [(root + "/", ""), (root, "."), *((p, "…") for p in _machine_paths())]
    pattern = re.compile("|".join(re.escape(old) for old, _ in replacements))
    table = dict(replacements)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: table[m.group(0)], value)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        _move_results(cell)
        if "outputs" in cell:
            cell["outputs"] = [nbformat.from_dict(scrub(dict(o))) for o in cell["outputs"]]
    return nb


def check_publishable(path: Path, *, repo_root: Path) -> list[str]:
    """The reasons ``path`` is not fit to commit (empty list when it is)."""
    problems = []
    size = path.stat().st_size
    if size >= MAX_NOTEBOOK_BYTES:
        problems.append(f"{path.name}: {size:,} bytes, limit {MAX_NOTEBOOK_BYTES:,}")
    nb = nbformat.read(path, as_version=4)
    if "widgets" in nb.metadata:
        problems.append(f"{path.name}: saved widget state")
    text = path.read_text(encoding="utf-8")
    if str(repo_root.resolve()) in text:
        problems.append(f"{path.name}: absolute path {repo_root.resolve()}")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "RESULT {" in json.dumps(out, ensure_ascii=False):
                problems.append(f"{path.name}: machine-readable RESULT line in an output")
    return problems


def publish(source_dir: Path, dest_dir: Path, *, names: Sequence[str] = NOTEBOOKS) -> list[Path]:
    """Copy executed notebooks from ``source_dir`` to ``dest_dir``, sanitised (`sanitise`).

    Raises:
        ValueError: If a sanitised notebook is still not publishable (`check_publishable`).
    """
    written = []
    for name in names:
        nb = sanitise(nbformat.read(source_dir / name, as_version=4), repo_root=dest_dir)
        staged = dest_dir / f".{name}.tmp"
        nbformat.write(nb, staged)
        problems = check_publishable(staged, repo_root=dest_dir)
        if problems:
            staged.unlink()
            raise ValueError("; ".join(problems))
        shutil.move(staged, dest_dir / name)
        written.append(dest_dir / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sales_stream.notebooks SOURCE_DIR DEST_DIR``: publish executed notebooks."""
    parser = argparse.ArgumentParser(description=publish.__doc__)
    parser.add_argument("source_dir", type=Path, help="folder of the executed notebooks")
    parser.add_argument("dest_dir", type=Path, help="the repository's notebook folder")
    args = parser.parse_args(argv)
    try:
        for path in publish(args.source_dir, args.dest_dir):
            print(f"{path.name}: {path.stat().st_size:,} bytes")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
