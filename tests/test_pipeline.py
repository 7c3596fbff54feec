"""The main job end to end: live pipeline, then every notebook executed headless.

One run (a few minutes) on its own fresh embedded instance, on copies of the notebooks; the
executed notebooks are written to ``out/notebooks/``, so the sources stay as they were.
"""

import json
import shutil
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from sales_stream import notebooks, pipeline
from sales_stream.config import Settings
from sales_stream.extract import read_extract

REPO = Path(__file__).resolve().parents[1]
LIVE_EVENTS = 150
BACKFILL_DAYS = 1


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pipeline.Summary, Path, Path]:
    work = tmp_path_factory.mktemp("run")
    for name in notebooks.NOTEBOOKS:
        shutil.copy(REPO / name, work / name)
    settings = Settings(_env_file=None, state_dir=work / "state")
    config = pipeline.RunConfig(
        out_dir=work / "out",
        notebook_dir=work,
        backfill_days=BACKFILL_DAYS,
        events_per_day=800,
        live_seconds=4.0,
        bad_ratio=0.05,
        notebook_live_events=LIVE_EVENTS,
    )
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as env:
        # as `python -m sales_stream run` does: the notebooks' kernels find the run's instance
        env.setenv("SALES_STREAM_STATE_DIR", str(settings.state_dir))
        summary = pipeline.run(settings, config, progress=lines.append)
    assert any(line.startswith("[notebook] 05_data_lake.ipynb") for line in lines), lines
    for name in notebooks.NOTEBOOKS:  # the sources are left as they were
        assert (work / name).read_bytes() == (REPO / name).read_bytes(), name
    return summary, work / "out" / "notebooks", work / "out"


def test_counts_agree(run) -> None:
    summary, _, _ = run
    assert summary.agrees
    assert summary.kafka_messages > 400 + LIVE_EVENTS
    assert summary.dead_lettered > 0
    assert summary.extract_rows == summary.stored == summary.lake_rows


def test_artefacts(run) -> None:
    _, _, out = run
    for name in ("sales.hyper", "sales.twb", "sales.twbx", "sales_live.twb", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    with zipfile.ZipFile(out / "sales.twbx") as package:
        names = package.namelist()
    assert "sales.twb" in names, names
    assert "Data/Extracts/sales.hyper" in names, names
    assert json.loads((out / "summary.json").read_text())["files"]["sales.twbx"] == "sales.twbx"
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["ca_dans_le_temps.png", "top_produits.png", "ventes_par_region.png"]


def test_setup_notebook(run) -> None:
    _, work, _ = run
    results = notebooks.results(work / "01_setup.ipynb")
    assert results["kafka_ok"]
    assert results["mongo_ok"]
    assert results["partitions"] == 3
    assert {"sales", "ventes_par_heure", "ventes_par_jour"} == set(results["sql_relations"])


def test_producer_and_consumer_notebooks_agree(run) -> None:
    _, work, _ = run
    produced = notebooks.results(work / "02_producer.ipynb")
    consumed = notebooks.results(work / "03_consumer.ipynb")
    assert produced["live_acked"] == LIVE_EVENTS
    assert produced["live_failed"] == 0
    assert consumed["consumed"] == produced["live_acked"]
    assert consumed["dead_lettered"] == produced["live_bad"]
    assert consumed["stored"] == produced["live_acked"] - produced["live_bad"]
    assert consumed["duplicates"] == 0


def test_tableau_notebook(run) -> None:
    summary, work, _ = run
    results = notebooks.results(work / "04_export_tableau.ipynb")
    assert results["extract_rows"] == results["mongo_sales"] == summary.stored
    assert results["sql_matches_mongo"] is True
    nb = nbformat.read(work / "04_export_tableau.ipynb", as_version=4)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3


def test_lake_notebook(run) -> None:
    summary, work, _ = run
    results = notebooks.results(work / "05_data_lake.ipynb")
    assert results["lake_rows"] == summary.stored
    assert results["revenue_matches_mongo"]


def test_live_hours_do_not_dwarf_the_history(run) -> None:
    """The live phases (``make run``'s and notebook 02's) sell at the history's intensity."""
    _, _, out = run
    hours = read_extract(out / "sales.hyper")["ts"].dt.floor("h").value_counts()
    history_end = (hours.index.min() + timedelta(days=BACKFILL_DAYS)).floor("h")
    history = hours[hours.index < history_end]
    live = hours[hours.index >= history_end]
    assert len(live) > 0, "no live hour"
    assert live.max() <= 3 * history.max(), (live.to_dict(), history.max())


def test_no_sale_is_dated_after_the_run(run) -> None:
    """The live phases (``make run``'s, then notebook 02's) end at the time they run."""
    _, _, out = run
    latest = read_extract(out / "sales.hyper")["ts"].max()  # naive, UTC
    assert latest <= datetime.now(UTC).replace(tzinfo=None), latest


def test_no_secret_or_error_in_outputs(run) -> None:
    _, work, _ = run
    for name in notebooks.NOTEBOOKS:
        text = (work / name).read_text()
        assert '"output_type": "error"' not in text, name
        assert "Traceback" not in text, name


def test_visible_outputs_are_french(run) -> None:
    """What a reader of the executed notebooks sees holds no English (`ENGLISH_IN_OUTPUTS`).

    The check itself is tested in ``test_notebooks.py``; it runs here on the notebooks this
    module's run executed (one pipeline run for the whole file).
    """
    _, work, _ = run
    found = [f for name in notebooks.NOTEBOOKS for f in notebooks.english_in_outputs(work / name)]
    assert found == []
