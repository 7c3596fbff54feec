"""Publication settings and requests for Tableau Cloud / Server, without any network."""

from __future__ import annotations

from pathlib import Path

import pytest
import tableauserverclient as TSC

from sales_stream.errors import ConfigError
from sales_stream.export.publish import (
    ENV_VARS,
    PublishSettings,
    build_requests,
    publish,
)

VALID = {
    "TABLEAU_SERVER_URL": "https://10ax.online.tableau.com/",
    "TABLEAU_SITE": "ventes",
    "TABLEAU_PAT_NAME": "sales-stream",
    "TABLEAU_PAT_SECRET": "s3cr3t-token",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without any Tableau variable (and no .env file is read)."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_from(environ: pytest.MonkeyPatch, values: dict[str, str]) -> PublishSettings:
    for name, value in values.items():
        environ.setenv(name, value)
    return PublishSettings.from_env(_env_file=None)


def test_every_missing_variable_is_named(environ: pytest.MonkeyPatch):
    with pytest.raises(ConfigError) as error:
        settings_from(environ, {})
    message = str(error.value)
    assert message.startswith(
        "publishing to Tableau needs TABLEAU_SERVER_URL, TABLEAU_SITE, TABLEAU_PAT_NAME, "
        "TABLEAU_PAT_SECRET: set them"
    )


def test_only_the_missing_or_empty_variables_are_named(environ: pytest.MonkeyPatch):
    values = VALID | {"TABLEAU_PAT_SECRET": ""}
    del values["TABLEAU_PAT_NAME"]
    with pytest.raises(ConfigError, match=r"needs TABLEAU_PAT_NAME, TABLEAU_PAT_SECRET: set"):
        settings_from(environ, values)


def test_an_empty_site_means_the_default_site(environ: pytest.MonkeyPatch):
    settings = settings_from(environ, VALID | {"TABLEAU_SITE": ""})
    assert settings.site == ""


def test_a_url_without_scheme_is_rejected(environ: pytest.MonkeyPatch):
    with pytest.raises(ConfigError, match=r"^TABLEAU_SERVER_URL: must start with https://"):
        settings_from(environ, VALID | {"TABLEAU_SERVER_URL": "10ax.online.tableau.com"})


def test_the_secret_is_never_shown(environ: pytest.MonkeyPatch):
    settings = settings_from(environ, VALID)
    assert "s3cr3t-token" not in repr(settings)
    assert "s3cr3t-token" not in str(settings)
    assert settings.pat_secret.get_secret_value() == "s3cr3t-token"


def test_requests_overwrite_the_datasource_and_workbook(
    environ: pytest.MonkeyPatch, tmp_path: Path
):
    settings = settings_from(environ, VALID)
    requests = build_requests(
        settings,
        hyper_path=tmp_path / "sales.hyper",
        project_id="p-42",
        workbook_file=tmp_path / "sales.twbx",
    )
    assert requests.server.server_address == "https://10ax.online.tableau.com"
    auth = requests.auth
    assert isinstance(auth, TSC.PersonalAccessTokenAuth)
    assert (auth.token_name, auth.personal_access_token, auth.site_id) == (
        "sales-stream",
        "s3cr3t-token",
        "ventes",
    )
    assert isinstance(requests.datasource, TSC.DatasourceItem)
    assert (requests.datasource.project_id, requests.datasource.name) == ("p-42", "sales")
    assert requests.datasource_file == tmp_path / "sales.hyper"
    assert isinstance(requests.workbook, TSC.WorkbookItem)
    assert (requests.workbook.project_id, requests.workbook.name) == ("p-42", "sales")
    assert requests.workbook.show_tabs
    assert requests.mode == TSC.Server.PublishMode.Overwrite == "Overwrite"


def test_without_a_workbook_only_the_datasource_is_sent(
    environ: pytest.MonkeyPatch, tmp_path: Path
):
    requests = build_requests(settings_from(environ, VALID), hyper_path=tmp_path / "x.hyper")
    assert (requests.workbook, requests.workbook_file) == (None, None)
    assert requests.datasource.project_id is None


def test_publish_checks_its_files_before_any_request(environ: pytest.MonkeyPatch, tmp_path: Path):
    settings = settings_from(environ, VALID)
    with pytest.raises(FileNotFoundError, match=r"no extract to publish at"):
        publish(tmp_path / "missing.hyper", settings=settings)
    extract = tmp_path / "sales.hyper"
    extract.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"no workbook to publish at"):
        publish(extract, workbook_path=tmp_path / "missing.twb", settings=settings)
