"""Reported numbers travel in metadata, and published notebooks read on GitHub."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from sales_stream import notebooks


def _executed(tmp_path: Path, *, big: bool = False) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("report(a=1)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"lu dans {tmp_path}/out/x\n"),
        nbformat.v4.new_output(
            "display_data", data={"text/plain": ""}, metadata={"sales_stream": {"result": {"a": 1}}}
        ),
    ]
    nb.cells = [cell, nbformat.v4.new_code_cell("x")]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"x": "y" * 10}}
    if big:
        nb.cells[1].outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="z" * notebooks.MAX_NOTEBOOK_BYTES)
        ]
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    nbformat.write(nb, source / "01_setup.ipynb")
    return source


def test_results_read_output_metadata_and_sanitise_moves_them_to_the_cell(tmp_path: Path) -> None:
    source = _executed(tmp_path)
    assert notebooks.results(source / "01_setup.ipynb") == {"a": 1}
    written = notebooks.publish(source, tmp_path, names=["01_setup.ipynb"])
    published = nbformat.read(written[0], as_version=4)
    assert "widgets" not in published.metadata
    cell = published.cells[0]
    assert [o["output_type"] for o in cell.outputs] == ["stream"]  # the invisible output is gone
    assert cell.outputs[0]["text"] == "lu dans out/x\n"  # no machine path
    assert notebooks.results(written[0]) == {"a": 1}
    assert notebooks.check_publishable(written[0], repo_root=tmp_path) == []


def test_publish_refuses_a_notebook_too_big_for_github(tmp_path: Path) -> None:
    source = _executed(tmp_path, big=True)
    with pytest.raises(ValueError, match="limit"):
        notebooks.publish(source, tmp_path, names=["01_setup.ipynb"])
    assert not (tmp_path / "01_setup.ipynb").exists()


def test_wait_for_returns_the_value_or_says_it_is_waiting(capsys: pytest.CaptureFixture) -> None:
    values = iter([None, [], ["vente"]])
    assert notebooks.wait_for(lambda: next(values), timeout_s=5, waiting="x", poll_s=0) == ["vente"]
    assert notebooks.wait_for(lambda: None, timeout_s=0, waiting="aucune vente") is None
    assert "En attente : aucune vente" in capsys.readouterr().out


def test_committed_notebooks_are_publishable() -> None:
    repo = Path(__file__).resolve().parents[1]
    problems = [
        problem
        for name in notebooks.NOTEBOOKS
        for problem in notebooks.check_publishable(repo / name, repo_root=repo)
    ]
    assert problems == []
