"""Reported numbers travel in metadata, and published notebooks read on GitHub."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pandas as pd
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


# --- what a reader sees: short cells, French outputs ---------------------------------------


def test_committed_notebooks_have_short_code_cells() -> None:
    """Every code cell of the five notebooks fits on a screen (the logic is in the package)."""
    repo = Path(__file__).resolve().parents[1]
    assert [p for name in notebooks.NOTEBOOKS for p in notebooks.long_cells(repo / name)] == []


def test_english_in_outputs_catches_english_but_not_french(tmp_path: Path) -> None:
    cell = nbformat.v4.new_code_cell("x")
    english = (
        "out/lake/  (158 files, 1.2 MB)",
        "… 244 more lines",
        "<table><tr><th>revenue_SQL</th><th>sales_MongoDB</th></tr></table>",
        "publishing to Tableau needs TABLEAU_SERVER_URL",
        "Débit (év./s) : 104.16666666666667",
        "100 minute(s) de ventes",
    )
    french = (
        "postgresql://tableau@127.0.0.1:41027/sales_db · python -m sales_stream lake tree",
        "<b>Partitions Kafka</b> 3 · lettres mortes · en attente · ventes enregistrées",
        "out/sales.twb (31 575 octets) · lat 47,24 · Smartphone premium · marketplace",
        '{"event_id":"04aede7f","lat":47.2378,"amount":14.49}',
        # lake files: offsets, then a hex hash that may start with digits
        "├── part-sales-0-185-185.00851005a55b.parquet (5,9 ko)",
        "├── part-sales-1-7-7.12345678.parquet (5,9 ko)",
    )
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=text) for text in english + french
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nbformat.write(nb, tmp_path / "x.ipynb")
    found = notebooks.english_in_outputs(tmp_path / "x.ipynb")
    assert len(found) >= len(english), found
    for text in english:
        assert any(text.split()[0] in f or "(s)" in f or "104" in f for f in found), text
    assert not [f for f in found if any(t.split()[0] in f for t in french)], found


def test_french_plurals_numbers_and_sizes() -> None:
    from sales_stream.ui.format import fr_number, fr_plural
    from sales_stream.ui.lake import fr_size

    assert fr_plural(1, "message") + "/s" == "1 message/s"
    assert fr_plural(0, "doublon ignoré") == "0 doublon ignoré"
    assert fr_plural(1, "lot") == "1 lot"
    assert fr_plural(2, "lettre morte") == "2 lettres mortes"
    assert fr_plural(100, "minute") == "100 minutes"
    assert fr_plural(1234, "vente") == "1\u202f234 ventes"
    assert fr_plural(3, "message déjà présent", "messages déjà présents").endswith("présents")
    assert fr_number(104.16666666666667) == "104,2"
    assert fr_number(1234.5) == "1\u202f234,5"
    assert fr_number(0.0081) == "0,0081"
    assert fr_number(3.0) == "3"
    assert fr_size(512) == "512 o"
    assert fr_size(1_234_567) == "1,2 Mo"


def test_summaries_agree_in_number() -> None:
    from sales_stream.stream import StreamState, StreamStats
    from sales_stream.ui.consumer_panel import summary_text
    from sales_stream.ui.status_panel import lake_summary_text

    stats = StreamStats(
        name="mongodb",
        state=StreamState.STOPPED,
        cause=None,
        waiting_on=None,
        since=None,
        consumed=1,
        stored=1,
        duplicates=0,
        dead_lettered=0,
        batches=1,
        lag={0: 0},
        last_commit=None,
        last_error=None,
    )
    text = summary_text(stats)
    assert "1 message traité en 1 lot : 1 vente enregistrée, 0 doublon ignoré" in text
    assert "Retard : 0 message ;" in text
    assert lake_summary_text(stats).endswith("0 message déjà présent, en 1 lot.")


def test_producer_texts_are_readable() -> None:
    from sales_stream.produce.generator import SimulatedClock
    from sales_stream.produce.stats import ProducerStats
    from sales_stream.ui.producer_panel import clock_text, summary_text

    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert "100 minutes de ventes" in clock_text(SimulatedClock(start, speedup=6000.0))
    assert "1 minute de ventes" in clock_text(SimulatedClock(start, speedup=60.0))
    stats = ProducerStats(
        state="running",
        sent=0,
        acked=0,
        failed=0,
        valid_sent=0,
        bad_sent=0,
        target_rate=1.6,
        current_rate=0.5,
        last_error=None,
        started_at=None,
        elapsed_s=0.2,
    )
    line = summary_text(stats).splitlines()[-1]
    assert line == (
        "Débit moyen : pas encore mesurable (moins d'une seconde d'envoi). "
        "Débit cible : 1,6 év./s ; actuel : 0,5 év./s."
    )


def test_snapshot_formats_numbers_and_separates_blocks() -> None:
    import ipywidgets as widgets

    from sales_stream.ui.snapshot import snapshot_html

    box = widgets.VBox(
        [
            widgets.FloatLogSlider(value=104.16666666666667, description="Débit (év./s)"),
            widgets.HTML("mesuré : 0 év./s"),
            widgets.HTML("<i>Aucun événement envoyé pour l'instant.</i>"),
        ]
    )
    html = snapshot_html(box)
    assert "Débit (év./s) : 104,2" in html
    assert "év./s</div><div><i>Aucun" in html


def test_reasons_and_bad_kinds_have_french_labels() -> None:
    from sales_stream.events import InvalidReason
    from sales_stream.produce.badevents import BadEventKind, verdicts
    from sales_stream.produce.generator import SaleGenerator
    from sales_stream.ui.tables import KIND_LABELS, REASON_LABELS, SERVICE_LABELS

    assert set(REASON_LABELS) == set(InvalidReason)
    assert set(KIND_LABELS) == set(BadEventKind)
    assert "files" in SERVICE_LABELS
    found = verdicts(SaleGenerator(7).next_event(), seed=7)
    assert [kind for kind, _ in found] == list(BadEventKind)


def test_lake_tree_and_tables_in_french(tmp_path: Path) -> None:
    from sales_stream.lake.tree import ENGLISH, TreeText
    from sales_stream.ui.lake import FRENCH_TREE, STATS_LABELS, compaction_table
    from sales_stream.ui.tables import columns_table

    assert isinstance(FRENCH_TREE, TreeText)
    assert FRENCH_TREE.files(158) == "158 fichiers"
    assert FRENCH_TREE.files(1) == "1 fichier"
    assert FRENCH_TREE.size(1_234_567) == "1,2 Mo"
    assert FRENCH_TREE.more(244) == "… 244 lignes de plus"
    assert ENGLISH.files(1) == "1 file"
    assert ENGLISH.more(3) == "… 3 more lines"
    assert set(STATS_LABELS) == {"files", "rows", "bytes", "partitions", "dead_letters"}
    assert "aucune journée close" in compaction_table([]).data
    frame = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01"]), "amount": [1.5], "region": ["x"]})
    shown = columns_table(frame).to_html()
    assert "date et heure" in shown
    assert "nombre décimal" in shown
    assert "montant" in shown


def test_comparison_table_has_french_columns() -> None:
    from sales_stream.ui.compare import compare_by_region

    frame = pd.DataFrame({"region": ["Bretagne"], "revenue": [10.0], "sales": [1]})
    check = compare_by_region(lambda: frame, lambda: frame, names=("SQL", "MongoDB"))
    shown = check.table().to_html()
    assert "chiffre d'affaires (SQL)" in shown
    assert "ventes (MongoDB)" in shown
    assert "revenue_" not in shown
    assert "sales_" not in shown
