"""The ``export`` command: workbooks beside the extract, snapshot, one-line argument errors."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tableau_rest as rest
from pymongo.database import Database

from sales_stream.cli import main
from sales_stream.config import Settings
from sales_stream.export.package import packaged_extracts
from sales_stream.extract import read_extract
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.mongo import MongoSink
from sales_stream.stream import Batch


def test_snapshot_writes_a_packaged_workbook(tmp_path: Path, capsys: pytest.CaptureFixture):
    target = tmp_path / "ventes.twbx"
    assert main(["export", "--snapshot", str(target), "--days", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"[snapshot] {target}: ")
    assert " sales from " in line
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == ["Data/Extracts/ventes.hyper", "ventes.twb"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hyper", "x.hyper", "--share-with", "prof"], "--share-with only makes sense with"),
        (["--snapshot", "x.twb"], "--snapshot needs a .twbx path, got x.twb"),
        (["--snapshot", "x.twbx", "--publish"], "--snapshot takes no --watch, --full or"),
        (["--hyper", "x.hyper", "--days", "3"], "--seed and --days only make sense with"),
    ],
)
def test_bad_combinations_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path: Path
):
    argv = [str(tmp_path / a) if a.startswith("x.") else a for a in argv]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert message.replace("x.twb", str(tmp_path / "x.twb")) in err


def test_the_export_command_parser_imports_nothing_heavy():
    code = (
        "import sys; from sales_stream.cli import build_parser; build_parser('export'); "
        "heavy = {'pymongo', 'tableauhyperapi', 'tableauserverclient', 'pandas', 'pantab'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def export_env(settings: Settings, db: Database, **tableau: str) -> dict[str, str]:
    """The environment of an ``export`` subprocess on the test services (no .env read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALES_STREAM_", "TABLEAU_"))}
    return env | {
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(settings.state_dir.resolve()),
        "SALES_STREAM_DB": db.name,
        **{f"TABLEAU_{name.upper()}": value for name, value in tableau.items()},
    }


def run_export(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m sales_stream export ARGV`` in ``cwd`` with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "sales_stream", "export", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_export_leaves_the_workbooks_beside_the_extract(
    settings: Settings, db: Database, tmp_path: Path
):
    MongoSink(db).write(Batch.of(SaleGenerator(seed=3).events(40)))
    path = tmp_path / "out" / "ventes.hyper"
    env = export_env(settings, db)
    done = run_export(tmp_path, env, "--hyper", str(path))
    assert done.returncode == 0, done.stderr
    twb, twbx = path.with_suffix(".twb"), path.with_suffix(".twbx")
    assert f"[export] workbooks {twb} and {twbx}" in done.stdout
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "ventes.hyper",
        "ventes.twb",
        "ventes.twbx",
    ]
    assert packaged_extracts(twbx) == {"Data/Extracts/ventes.hyper": "Data/Extracts/ventes.hyper"}
    with zipfile.ZipFile(twbx) as archive:
        inside = Path(archive.extract("Data/Extracts/ventes.hyper", tmp_path / "unzipped"))
    assert len(read_extract(inside)) == len(read_extract(path)) == 40
    assert list(db.sales.index_information()) == ["_id_"]  # the export indexed nothing


def refusing_sign_in() -> list:
    """A server whose sign-in answers 401001 (bad token, or no such site: Tableau says the same)."""
    return [("POST", r"/api/[0-9.]+/auth/signin", 401, rest.SIGN_IN_ERROR), *rest.routes()]


@pytest.mark.parametrize(
    ("routes", "argv", "expected"),
    [
        (
            None,
            [],
            r"cannot reach Tableau at {url} \(Connection refused\): check TABLEAU_SERVER_URL",
        ),
        (
            refusing_sign_in(),
            [],
            r"Tableau at {url} refused the sign-in to 'ventes' \(401001 Signin Error: .*\): "
            r"check TABLEAU_PAT_NAME/TABLEAU_PAT_SECRET .* and TABLEAU_SITE ",
        ),
        ([], [], r"TABLEAU_SERVER_URL: {url} does not answer as a Tableau server \(404000 "),
        (
            rest.routes(user=None),
            ["--share-with", "porf"],
            r"no user named 'porf' on site 'ventes' at {url}: check --share-with",
        ),
        (rest.routes(), ["--project", "Ventes"], r"no project named 'Ventes' on {url} .*--project"),
    ],
    ids=["unreachable", "sign-in-refused", "not-tableau", "no-such-user", "no-such-project"],
)
def test_publish_failures_are_one_line_and_exit_2(
    routes: list | None,
    argv: list[str],
    expected: str,
    settings: Settings,
    db: Database,
    tmp_path: Path,
):
    MongoSink(db).write(Batch.of(SaleGenerator(seed=4).events(5)))
    with contextlib.ExitStack() as stack:
        if routes is None:  # a port bound but never listening: connections are refused
            closed = stack.enter_context(socket.socket())
            closed.bind(("127.0.0.1", 0))
            tableau, url = None, f"http://127.0.0.1:{closed.getsockname()[1]}"
        else:
            tableau = rest.RecordedTableau(routes)
            server, url = tableau.serve()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        env = export_env(settings, db, server_url=url, site="ventes", pat_name="n", pat_secret="s")
        done = run_export(tmp_path, env, "--hyper", str(tmp_path / "s.hyper"), "--publish", *argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert re.fullmatch(f"error: {expected.format(url=re.escape(url))}.*\n", done.stderr)
    assert "Traceback" not in done.stderr
    if tableau is not None:
        assert not [r for r in tableau.requests if r.method in {"PUT", "PATCH"}]
        assert not [r for r in tableau.requests if r.route.endswith("/datasources")]
