"""Publishing and sharing, driven through the real tableauserverclient against recorded responses.

The server is `tableau_rest.RecordedTableau` on 127.0.0.1: canned REST responses, every request
logged; the assertions are on the requests tableauserverclient actually sent.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pantab
import pytest
import tableau_rest as rest

from sales_stream.errors import ConfigError
from sales_stream.export.package import write_workbooks
from sales_stream.export.publish import (
    ENV_VARS,
    VIEWER_DATASOURCE,
    VIEWER_PROJECT,
    VIEWER_WORKBOOK,
    PublishSettings,
    WatchPublisher,
    publish,
)
from sales_stream.extract import EXTRACT_TABLE

API = "{http://tableau.com/api}"


@pytest.fixture
def tableau(request: pytest.FixtureRequest) -> Iterator[rest.RecordedTableau]:
    options = getattr(request, "param", {})
    recorded = rest.RecordedTableau(rest.routes(**options))
    server, url = recorded.serve()
    recorded.url = url
    yield recorded
    server.shutdown()
    server.server_close()


def settings_for(tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch) -> PublishSettings:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return PublishSettings.from_env(
        _env_file=None,
        server_url=tableau.url,
        site="ventes",
        pat_name="sales-stream",
        pat_secret="s3cr3t-token",
    )


def extract(path: Path, ids: list[str]) -> Path:
    frame = pd.DataFrame({"event_id": ids, "amount": [10.0] * len(ids)})
    pantab.frame_to_hyper(frame, path, table=EXTRACT_TABLE)
    return path


def routes_of(tableau: rest.RecordedTableau) -> list[str]:
    return [r.route for r in tableau.requests]


def granted(request: rest.Recorded) -> tuple[str, dict[str, str]]:
    """The user id and capabilities of a permissions request body."""
    root = ET.fromstring(request.body)
    [grantee] = root.iter("granteeCapabilities")
    user = grantee.find("user").get("id")
    return user, {c.get("name"): c.get("mode") for c in grantee.iter("capability")}


def base(path: str) -> str:
    return f"/api/{{v}}/sites/{rest.SITE_ID}/{path}"


PUBLISH_AND_SHARE = [
    "POST /api/{v}/auth/signin",
    "GET /api/{v}/serverInfo",
    f"GET {base('projects')}",
    f"GET {base('users')}",
    f"POST {base('datasources')}",
    f"POST {base('workbooks')}",
    f"PUT {base(f'projects/{rest.PROJECT_ID}/permissions')}",
    f"PUT {base(f'projects/{rest.PROJECT_ID}/default-permissions/workbooks')}",
    f"PUT {base(f'projects/{rest.PROJECT_ID}/default-permissions/datasources')}",
    f"PUT {base(f'workbooks/{rest.WORKBOOK_ID}/permissions')}",
    f"PUT {base(f'datasources/{rest.DATASOURCE_ID}/permissions')}",
    "POST /api/{v}/auth/signout",
]


def test_publish_and_share_grants_view_to_the_named_user(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    books = write_workbooks(extract(tmp_path / "sales.hyper", ["a", "b"]))
    result = publish(
        tmp_path / "sales.hyper",
        workbook_path=books.twbx,
        settings=settings_for(tableau, monkeypatch),
        share_with="prof",
    )
    assert (result.datasource_id, result.workbook_id, result.shared_with) == (
        rest.DATASOURCE_ID,
        rest.WORKBOOK_ID,
        "prof",
    )
    assert routes_of(tableau) == PUBLISH_AND_SHARE
    sign_in = ET.fromstring(tableau.requests[0].body).find("credentials")
    assert sign_in.get("personalAccessTokenName") == "sales-stream"
    assert sign_in.find("site").get("contentUrl") == "ventes"
    users = tableau.requests[3]
    assert users.query["filter"] == ["name:eq:prof"]
    for request in tableau.requests[4:6]:
        assert request.query["overwrite"] == ["true"]
    datasource_upload, workbook_upload = tableau.requests[4].body, tableau.requests[5].body
    assert b'filename="sales.hyper"' in datasource_upload
    assert b'filename="sales.twbx"' in workbook_upload
    assert b"Data/Extracts/sales.hyper" in workbook_upload  # the package, zip entry name
    expected = [VIEWER_PROJECT, VIEWER_WORKBOOK, VIEWER_DATASOURCE, VIEWER_WORKBOOK]
    expected.append(VIEWER_DATASOURCE)
    for request, capabilities in zip(tableau.requests[6:11], expected, strict=True):
        assert granted(request) == (rest.USER_ID, dict.fromkeys(capabilities, "Allow"))


@pytest.mark.parametrize("tableau", [{"user": None}], indirect=True)
def test_a_wrong_user_name_is_one_line_and_nothing_is_published(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    with pytest.raises(ConfigError) as error:
        publish(
            extract(tmp_path / "sales.hyper", ["a"]),
            settings=settings_for(tableau, monkeypatch),
            share_with="porf",
        )
    message = str(error.value)
    assert message == (
        f"no user named 'porf' on site 'ventes' at {tableau.url}: check --share-with "
        "(or TABLEAU_SITE)"
    )
    assert "\n" not in message
    assert not [r for r in tableau.requests if r.method in {"PUT", "PATCH"}]
    assert f"POST {base('datasources')}" not in routes_of(tableau)


def test_a_wrong_site_is_one_line_naming_it(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    tableau.routes.insert(0, ("POST", r"/api/[0-9.]+/auth/signin", 401, rest.SIGN_IN_ERROR))
    with pytest.raises(ConfigError) as error:
        publish(extract(tmp_path / "s.hyper", ["a"]), settings=settings_for(tableau, monkeypatch))
    message = str(error.value)
    assert message.startswith(f"Tableau at {tableau.url} refused the sign-in to 'ventes' (401001")
    assert "TABLEAU_PAT_NAME/TABLEAU_PAT_SECRET" in message
    assert "TABLEAU_SITE" in message
    assert "\n" not in message
    assert routes_of(tableau) == ["POST /api/{v}/auth/signin"]


def test_watch_appends_only_the_new_rows(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    publisher = WatchPublisher(settings_for(tableau, monkeypatch))
    hyper = extract(tmp_path / "sales.hyper", ["a", "b"])
    first = publisher.push(hyper)
    assert first is not None
    assert first.rows_sent is None
    assert publisher.push(hyper) is None  # nothing new: no request at all
    count = len(tableau.requests)
    extract(hyper, ["a", "b", "c", "d", "e"])
    appended = publisher.push(hyper)
    assert appended is not None
    assert appended.rows_sent == 3
    routes = routes_of(tableau)[count:]
    assert routes == [
        "POST /api/{v}/auth/signin",
        "GET /api/{v}/serverInfo",
        f"POST {base('fileUploads')}",
        f"PUT {base(f'fileUploads/{rest.UPLOAD_ID}')}",
        f"PATCH {base(f'datasources/{rest.DATASOURCE_ID}/data')}",
        f"GET {base(f'jobs/{rest.JOB_ID}')}",
        "POST /api/{v}/auth/signout",
    ]
    patch = tableau.requests[count + 4]
    assert patch.query["uploadSessionId"] == [rest.UPLOAD_ID]
    assert patch.headers["requestid"]
    table = {"schema": "Extract", "table": "Extract"}
    action = {"action": "upsert"}
    action |= {
        f"{side}-{key}": value for side in ("source", "target") for key, value in table.items()
    }
    action["condition"] = {"op": "eq", "target-col": "event_id", "source-col": "event_id"}
    assert json.loads(patch.body) == {"actions": [action]}
    assert b"\r\n\r\nHyper" in tableau.requests[count + 3].body  # a Hyper file is uploaded
    assert f"POST {base('datasources')}" not in routes


@pytest.mark.parametrize("tableau", [{"api": "3.10"}], indirect=True)
def test_watch_overwrites_on_a_server_without_hyper_updates(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    publisher = WatchPublisher(settings_for(tableau, monkeypatch))
    hyper = extract(tmp_path / "sales.hyper", ["a"])
    publisher.push(hyper)
    count = len(tableau.requests)
    extract(hyper, ["a", "b"])
    result = publisher.push(hyper)
    assert result is not None
    assert result.rows_sent is None
    routes = routes_of(tableau)[count:]
    assert f"POST {base('datasources')}" in routes
    assert not [r for r in routes if r.startswith("PATCH")]


def test_the_notebook_panel_publishes_and_shares(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from sales_stream.ui.export_panel import share_panel

    settings_for(tableau, monkeypatch)  # clears the variables
    values = {"SITE": "ventes", "PAT_NAME": "n", "PAT_SECRET": "s"}
    for name, value in values.items():
        monkeypatch.setenv(f"TABLEAU_{name}", value)
    monkeypatch.chdir(tmp_path)  # no .env file here
    monkeypatch.setenv("TABLEAU_SERVER_URL", tableau.url)
    books = write_workbooks(extract(tmp_path / "sales.hyper", ["a"]))
    panel = share_panel(tmp_path / "sales.hyper", workbook_path=books.twbx, user="prof")
    result = panel.share()
    assert result is not None
    assert result.shared_with == "prof"
    assert "accès en lecture (View) accordé à prof" in panel.status.value
    assert routes_of(tableau) == PUBLISH_AND_SHARE
    panel.user.value = "nobody"
    tableau.routes[:] = rest.routes(user=None)
    assert panel.share() is None
    assert "Échec de la publication : no user named &#x27;nobody&#x27;" in panel.status.value


def test_a_retried_update_reuses_its_request_id(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    def request_ids() -> list[str]:
        return [r.headers["requestid"] for r in tableau.requests if r.method == "PATCH"]

    hyper = extract(tmp_path / "sales.hyper", ["a"])
    first = WatchPublisher(settings_for(tableau, monkeypatch))
    first.push(hyper)
    extract(hyper, ["a", "b", "c"])
    first.push(hyper)
    again = WatchPublisher(settings_for(tableau, monkeypatch))  # e.g. after a restart
    again.push(extract(hyper, ["a"]))
    again.push(extract(hyper, ["c", "a", "b"]))
    [one, two] = request_ids()
    assert one == two  # the server runs a request id once


def test_watch_republishes_the_workbook_when_due(
    tableau: rest.RecordedTableau, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    now = [0.0]
    publisher = WatchPublisher(
        settings_for(tableau, monkeypatch), workbook_every_s=60, clock=lambda: now[0]
    )
    hyper = extract(tmp_path / "sales.hyper", ["a"])
    books = write_workbooks(hyper)
    publisher.push(hyper, workbook_path=books.twbx)
    workbook_posts = f"POST {base('workbooks')}"
    assert routes_of(tableau).count(workbook_posts) == 1
    now[0] = 30.0
    extract(hyper, ["a", "b"])
    assert publisher.push(hyper, workbook_path=books.twbx).workbook_id is None
    assert routes_of(tableau).count(workbook_posts) == 1  # not due: rows only
    now[0] = 61.0
    extract(hyper, ["a", "b", "c"])
    result = publisher.push(hyper, workbook_path=books.twbx)
    assert (result.rows_sent, result.workbook_id) == (1, rest.WORKBOOK_ID)
    assert routes_of(tableau).count(workbook_posts) == 2
    with pytest.raises(ValueError, match=r"must be a packaged \.twbx"):
        publisher.push(hyper, workbook_path=books.twb)
