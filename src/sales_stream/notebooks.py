"""Execute the course notebooks headless (papermill) and read back what they report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import papermill

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

#: A notebook reports its key numbers by printing one line with this prefix and a JSON object.
RESULT_PREFIX = "RESULT "


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
        The merged ``RESULT`` objects the notebook printed.
    """
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
    """Return the merged ``RESULT {...}`` objects printed in ``notebook``'s outputs."""
    merged: dict[str, Any] = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "stream":
                continue
            for line in out.get("text", "").splitlines():
                if line.startswith(RESULT_PREFIX):
                    merged.update(json.loads(line[len(RESULT_PREFIX) :]))
    return merged


def report(**values: Any) -> None:
    """Print key numbers on one ``RESULT`` line (read back by tests and ``make run``)."""
    print(RESULT_PREFIX + json.dumps(values, default=str, ensure_ascii=False))


def _strip_papermill_noise(path: Path) -> None:
    """Drop per-run papermill metadata and turn the injected parameters into a note.

    The saved notebook keeps its outputs, but re-running it (JupyterLab) uses the notebook's
    own defaults again, not the headless values of the run that produced the outputs.
    """
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.cells = [c for c in nb.cells if _NOTE_TAG not in c.metadata.get("tags", [])]
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
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
