"""Optional publication of the extract (and workbook) to Tableau Cloud or Tableau Server.

Configuration, from the environment or ``.env`` (`PublishSettings.from_env`):

* ``TABLEAU_SERVER_URL``: e.g. ``https://10ax.online.tableau.com`` or your server's URL;
* ``TABLEAU_SITE``: the site's content URL (the part after ``/site/`` in the browser);
  empty for the Default site of a Tableau Server;
* ``TABLEAU_PAT_NAME`` / ``TABLEAU_PAT_SECRET``: a personal access token (Tableau: *My
  Account Settings → Personal Access Tokens*).

`publish` signs in with the token, then overwrites the data source (the ``.hyper``) and, if
given, the workbook in a project. The generated ``.twb`` reads the extract by a relative path
that the server cannot see, so the workbook is sent as a packaged workbook (``.twbx``: the
``.twb`` and the extract zipped at that same relative path, see `package_workbook`).

What is verified here: the configuration errors and the request objects (`build_requests`),
with no network. No Tableau site is reachable from this project's machines, so the HTTP
exchange itself has not been exercised.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import tableauserverclient as TSC
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sales_stream.errors import ConfigError, SalesStreamError

ENV_PREFIX = "TABLEAU_"
ENV_VARS = ("TABLEAU_SERVER_URL", "TABLEAU_SITE", "TABLEAU_PAT_NAME", "TABLEAU_PAT_SECRET")


class PublishSettings(BaseSettings):
    """Where and as whom to publish; every field maps to ``TABLEAU_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    server_url: str = Field(min_length=1)
    site: str
    pat_name: str = Field(min_length=1)
    pat_secret: SecretStr = Field(min_length=1)

    @field_validator("server_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http://)")
        return value.rstrip("/")

    @classmethod
    def from_env(cls, **overrides: Any) -> PublishSettings:
        """Read the settings; ``overrides`` win (``_env_file=None`` ignores ``.env``).

        Raises:
            ConfigError: naming every variable to set, or the one with a bad value.
        """
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    missing = []
    for error in exc.errors():
        name = ENV_PREFIX + str(error["loc"][0]).upper()
        if error["type"] in {"missing", "string_too_short", "too_short"}:
            missing.append(name)
        else:
            message = error["msg"].removeprefix("Value error, ")
            return f"{name}: {message} (got {error.get('input')!r})"
    ordered = [name for name in ENV_VARS if name in missing]
    return (
        f"publishing to Tableau needs {', '.join(ordered)}: set them in the environment or in "
        f".env ({', '.join(ENV_VARS)}; TABLEAU_SITE may be empty for the Default site of a "
        "Tableau Server)"
    )


@dataclass(frozen=True)
class PublishRequests:
    """Everything `publish` sends, built without any network call.

    Attributes:
        server: The server endpoint (no version negotiation yet).
        auth: Personal-access-token credentials for the site.
        datasource: The data source to overwrite, in the project.
        datasource_file: The ``.hyper`` file uploaded.
        workbook: The workbook to overwrite, if one is published.
        workbook_file: The packaged ``.twbx`` uploaded, if any.
        mode: `TSC.Server.PublishMode.Overwrite`.
    """

    server: TSC.Server
    auth: TSC.PersonalAccessTokenAuth
    datasource: TSC.DatasourceItem
    datasource_file: Path
    workbook: TSC.WorkbookItem | None
    workbook_file: Path | None
    mode: str = TSC.Server.PublishMode.Overwrite


@dataclass(frozen=True)
class PublishResult:
    """Ids of what the server now holds."""

    datasource_id: str
    workbook_id: str | None


def build_requests(
    settings: PublishSettings,
    *,
    hyper_path: Path,
    project_id: str | None = None,
    workbook_file: Path | None = None,
) -> PublishRequests:
    """Build the server, credentials and items of a publication (no network).

    Args:
        settings: Server, site and token.
        hyper_path: The extract; the data source is named after its stem.
        project_id: Id of the target project; `publish` sets it once signed in.
        workbook_file: A packaged workbook (``.twbx``), named after its stem.
    """
    workbook = None
    if workbook_file is not None:
        workbook = TSC.WorkbookItem(project_id, name=workbook_file.stem, show_tabs=True)
    return PublishRequests(
        server=TSC.Server(settings.server_url, use_server_version=False),
        auth=TSC.PersonalAccessTokenAuth(
            settings.pat_name, settings.pat_secret.get_secret_value(), site_id=settings.site
        ),
        datasource=TSC.DatasourceItem(project_id, name=hyper_path.stem),
        datasource_file=hyper_path,
        workbook=workbook,
        workbook_file=workbook_file,
    )


def package_workbook(workbook_path: Path, output: Path) -> Path:
    """Zip a ``.twb`` and the extracts it references into a packaged workbook (``.twbx``).

    Each ``hyper`` connection's ``dbname`` (a path relative to the workbook's folder) is
    stored at that same path inside the archive, where Tableau looks for it.

    Returns:
        ``output``.

    Raises:
        ValueError: ``output`` is not a ``.twbx``, or an extract lies outside the workbook's
            folder (its path has ``..``) or is not a relative path.
        FileNotFoundError: The workbook or a referenced extract does not exist.
    """
    if output.suffix != ".twbx":
        raise ValueError(f"output must be a .twbx file, got {output}")
    folder = workbook_path.parent
    extracts: list[PurePosixPath] = []
    for connection in ET.parse(workbook_path).getroot().iter("connection"):
        if connection.get("class") != "hyper":
            continue
        relative = PurePosixPath(connection.get("dbname", ""))
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(
                f"{workbook_path} references the extract {str(relative)!r}: only extracts in "
                "the workbook's folder or below can be packaged"
            )
        if not (folder / relative).is_file():
            raise FileNotFoundError(f"{workbook_path} references a missing extract: {relative}")
        if relative not in extracts:
            extracts.append(relative)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(workbook_path, workbook_path.name)
        for relative in extracts:
            archive.write(folder / relative, str(relative), compress_type=zipfile.ZIP_STORED)
    return output


def publish(
    hyper_path: Path,
    *,
    workbook_path: Path | None = None,
    project: str = "default",
    settings: PublishSettings,
) -> PublishResult:
    """Overwrite the data source (and workbook) on Tableau Cloud / Server.

    Args:
        hyper_path: The extract to publish as a data source.
        workbook_path: A ``.twb`` over that extract, published packaged with it.
        project: Name of the target project (case-insensitive; Tableau's is "Default").
        settings: From `PublishSettings.from_env`.

    Raises:
        FileNotFoundError: A file to publish does not exist.
        ConfigError: The project does not exist on the site.
        SalesStreamError: The server refused the sign-in or a publication.
    """
    if not hyper_path.is_file():
        raise FileNotFoundError(f"no extract to publish at {hyper_path}")
    if workbook_path is not None and not workbook_path.is_file():
        raise FileNotFoundError(f"no workbook to publish at {workbook_path}")
    with tempfile.TemporaryDirectory(prefix="sales-stream-publish-") as scratch:
        packaged = None
        if workbook_path is not None:
            packaged = package_workbook(workbook_path, Path(scratch) / f"{workbook_path.stem}.twbx")
        requests = build_requests(settings, hyper_path=hyper_path, workbook_file=packaged)
        server = requests.server
        try:
            with server.auth.sign_in(requests.auth):
                server.use_server_version()
                project_id = _project_id(server, project, settings.server_url)
                requests.datasource.project_id = project_id
                datasource = server.datasources.publish(
                    requests.datasource, requests.datasource_file, requests.mode
                )
                workbook_id = None
                if requests.workbook is not None and requests.workbook_file is not None:
                    requests.workbook.project_id = project_id
                    workbook_id = server.workbooks.publish(
                        requests.workbook, requests.workbook_file, requests.mode
                    ).id
        except (TSC.ServerResponseError, TSC.NotSignedInError) as exc:
            raise SalesStreamError(f"Tableau refused the publication: {exc}") from exc
    return PublishResult(datasource_id=datasource.id, workbook_id=workbook_id)


def _project_id(server: TSC.Server, name: str, url: str) -> str:
    projects = list(TSC.Pager(server.projects))
    for project in projects:
        if project.name.casefold() == name.casefold():
            return project.id
    known = ", ".join(sorted(p.name for p in projects)) or "none"
    raise ConfigError(f"no project named {name!r} on {url} (projects: {known})")
