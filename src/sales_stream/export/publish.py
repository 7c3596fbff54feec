"""Optional publication of the extract (and workbook) to Tableau Cloud or Tableau Server.

Configuration, from the environment or ``.env`` (`PublishSettings.from_env`):

* ``TABLEAU_SERVER_URL``: e.g. ``https://10ax.online.tableau.com`` or your server's URL;
* ``TABLEAU_SITE``: the site's content URL (the part after ``/site/`` in the browser);
  empty for the Default site of a Tableau Server;
* ``TABLEAU_PAT_NAME`` / ``TABLEAU_PAT_SECRET``: a personal access token (Tableau: *My
  Account Settings → Personal Access Tokens*).

`publish` signs in with the token, then overwrites the data source (the ``.hyper``) and, if
given, the workbook in a project. A ``.twb`` reads the extract by a relative path that the
server cannot see, so it is sent as a packaged workbook (``.twbx``: the ``.twb`` and the
extract zipped under ``Data/Extracts/``, see `sales_stream.export.package.package_workbook`).

Sharing (``share_with``): the user is looked up on the site before anything is published (a
wrong name fails with one line naming it and the site), then granted the *Viewer* template
with Tableau REST "Add Permissions" (``PUT .../permissions``, which adds to what is there):
Read on the project, the same View capabilities as the project's default permissions for
workbooks and data sources, then on the published workbook and data source themselves.

`WatchPublisher` (``export --watch --publish``): the first call publishes in full; later calls
send only the rows not yet published, as a small ``.hyper`` with an ``upsert`` action on
``event_id`` through "Update Data in Hyper Data Source" (``PATCH .../datasources/{id}/data``,
REST API 3.13+), so a retried update adds nothing twice (its request id is also derived from
the rows sent); older servers get a full overwrite. The published workbook is a packaged copy
(its own extract), so it is re-published (overwritten) at most every ``workbook_every_s``
seconds while the data source gets every batch of new rows.

What is verified here: the exact REST requests tableauserverclient sends, against recorded
server responses on a local HTTP server (``tests/test_share.py``). No real Tableau site was
reachable from this project's machines.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pantab
import pyarrow as pa
import pyarrow.compute as pc
import tableauserverclient as TSC
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from requests.exceptions import RequestException, Timeout
from tableauserverclient.server.endpoint.exceptions import (
    FailedSignInError,
    InternalServerError,
    JobFailedException,
    NonXMLResponseError,
    ServerResponseError,
    TableauError,
    XMLError,
)

from sales_stream.errors import ConfigError, SalesStreamError
from sales_stream.export.package import package_workbook
from sales_stream.extract import EXTRACT_TABLE

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
    """Ids of what the server now holds, and who was given View access."""

    datasource_id: str
    workbook_id: str | None
    shared_with: str | None = None
    rows_sent: int | None = None  # rows of an incremental update (None = full publication)


_ALLOW = TSC.Permission.Mode.Allow
_CAP = TSC.Permission.Capability
#: Tableau's "Viewer" permission template, per content type.
VIEWER_PROJECT = (_CAP.Read,)
VIEWER_WORKBOOK = (
    _CAP.Read,
    _CAP.Filter,
    _CAP.ViewComments,
    _CAP.AddComment,
    _CAP.ExportImage,
    _CAP.ExportData,
)
VIEWER_DATASOURCE = (_CAP.Read, _CAP.Connect)
#: Lowest REST API version with "Update Data in Hyper Data Source".
HYPER_UPDATE_API = (3, 13)
#: Default seconds between two re-publications of the workbook while watching.
DEFAULT_WORKBOOK_EVERY_S = 60.0


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


def publish(
    hyper_path: Path,
    *,
    workbook_path: Path | None = None,
    project: str = "default",
    settings: PublishSettings,
    share_with: str | None = None,
) -> PublishResult:
    """Overwrite the data source (and workbook) on Tableau Cloud / Server; optionally share.

    Args:
        hyper_path: The extract to publish as a data source.
        workbook_path: A ``.twbx``, or a ``.twb`` over that extract (published packaged).
        project: Name of the target project (case-insensitive; Tableau's is "Default").
        settings: From `PublishSettings.from_env`.
        share_with: Name of a site user to grant View on the project and what is published.

    Raises:
        FileNotFoundError: A file to publish does not exist.
        ConfigError: The sign-in was refused (token or site), the URL is not a Tableau server,
            or the project or the user does not exist on the site.
        SalesStreamError: The server cannot be reached, or refused a request.
    """
    if not hyper_path.is_file():
        raise FileNotFoundError(f"no extract to publish at {hyper_path}")
    if workbook_path is not None and not workbook_path.is_file():
        raise FileNotFoundError(f"no workbook to publish at {workbook_path}")
    with tempfile.TemporaryDirectory(prefix="sales-stream-publish-") as scratch:
        packaged = workbook_path
        if workbook_path is not None and workbook_path.suffix != ".twbx":
            packaged = package_workbook(workbook_path, Path(scratch) / f"{workbook_path.stem}.twbx")
        requests = build_requests(settings, hyper_path=hyper_path, workbook_file=packaged)
        with _signed_in(requests, settings) as server:
            project_item = _project(server, project, settings.server_url)
            user = _user(server, share_with, settings) if share_with else None
            requests.datasource.project_id = project_item.id
            datasource = server.datasources.publish(
                requests.datasource, requests.datasource_file, requests.mode
            )
            workbook = None
            if requests.workbook is not None and requests.workbook_file is not None:
                requests.workbook.project_id = project_item.id
                workbook = server.workbooks.publish(
                    requests.workbook, requests.workbook_file, requests.mode
                )
            if user is not None:
                grant_view(
                    server, user, project=project_item, workbook=workbook, datasource=datasource
                )
    return PublishResult(
        datasource_id=datasource.id,
        workbook_id=workbook.id if workbook is not None else None,
        shared_with=share_with,
    )


def grant_view(
    server: TSC.Server,
    user: TSC.UserItem,
    *,
    project: TSC.ProjectItem,
    workbook: TSC.WorkbookItem | None,
    datasource: TSC.DatasourceItem | None,
) -> None:
    """Give ``user`` the Viewer capabilities on the project, its defaults and the items."""
    server.projects.update_permissions(project, [_rule(user, VIEWER_PROJECT)])
    server.projects.update_workbook_default_permissions(project, [_rule(user, VIEWER_WORKBOOK)])
    server.projects.update_datasource_default_permissions(project, [_rule(user, VIEWER_DATASOURCE)])
    if workbook is not None:
        server.workbooks.update_permissions(workbook, [_rule(user, VIEWER_WORKBOOK)])
    if datasource is not None:
        server.datasources.update_permissions(datasource, [_rule(user, VIEWER_DATASOURCE)])


def _rule(user: TSC.UserItem, capabilities: tuple[str, ...]) -> TSC.PermissionsRule:
    return TSC.PermissionsRule(user, dict.fromkeys(capabilities, _ALLOW))


class WatchPublisher:
    """Publishes an extract kept up to date: in full once, then only the new rows.

    Args:
        settings: From `PublishSettings.from_env`.
        project: Target project name.
        share_with: User granted View at the first (full) publication.
        workbook_every_s: Least seconds between two publications of the workbook.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        settings: PublishSettings,
        *,
        project: str = "default",
        share_with: str | None = None,
        workbook_every_s: float = DEFAULT_WORKBOOK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if workbook_every_s < 0:
            raise ValueError(f"workbook_every_s must be >= 0, got {workbook_every_s}")
        self._settings = settings
        self._project = project
        self._share_with = share_with
        self._workbook_every_s = workbook_every_s
        self._clock = clock
        self._workbook_at = -math.inf  # clock() of the last workbook publication
        self._datasource_id: str | None = None
        self._published: pa.Array | None = None  # event ids the server holds

    def push(self, hyper_path: Path, *, workbook_path: Path | None = None) -> PublishResult | None:
        """Publish what the server lacks; return None when it has every row already.

        Args:
            hyper_path: The extract (table ``Extract.Extract``, column ``event_id``).
            workbook_path: A packaged workbook (``.twbx``) over it, if one is published.

        Raises:
            ValueError: ``workbook_path`` is not a ``.twbx``.
            ConfigError, SalesStreamError, FileNotFoundError: as `publish`.
        """
        if workbook_path is not None and workbook_path.suffix != ".twbx":
            raise ValueError(f"workbook_path must be a packaged .twbx, got {workbook_path}")
        rows = pa.table(
            pantab.frame_from_hyper(hyper_path, table=EXTRACT_TABLE, return_type="pyarrow")
        )
        if self._datasource_id is None or self._published is None:
            result = publish(
                hyper_path,
                workbook_path=workbook_path,
                project=self._project,
                settings=self._settings,
                share_with=self._share_with,
            )
            self._datasource_id, self._published = result.datasource_id, rows["event_id"]
            self._workbook_at = self._clock()
            return result
        fresh = rows.filter(pc.invert(pc.is_in(rows["event_id"], value_set=self._published)))
        if not fresh.num_rows:
            return None
        result = self._append(hyper_path, fresh, workbook_path)
        self._published = pa.chunked_array([*self._published.chunks, *fresh["event_id"].chunks])
        return result

    def _append(
        self, hyper_path: Path, fresh: pa.Table, workbook_path: Path | None
    ) -> PublishResult:
        assert self._datasource_id is not None
        requests = build_requests(
            self._settings, hyper_path=hyper_path, workbook_file=workbook_path
        )
        workbook_id = None
        with _signed_in(requests, self._settings) as server:
            supported = _api(server) >= HYPER_UPDATE_API
            if supported:
                workbook_id = self._send(server, requests, fresh)
        if not supported:
            return self._overwrite(hyper_path, workbook_path)
        return PublishResult(self._datasource_id, workbook_id, rows_sent=fresh.num_rows)

    def _send(self, server: TSC.Server, requests: PublishRequests, fresh: pa.Table) -> str | None:
        """Upsert the new rows; re-publish the workbook if due; return its id if it was."""
        assert self._datasource_id is not None
        workbook_id = None
        ids = sorted(fresh["event_id"].to_pylist())
        request_id = str(uuid.uuid5(_REQUEST_NAMESPACE, "\n".join(ids)))
        with tempfile.TemporaryDirectory(prefix="sales-stream-delta-") as scratch:
            delta = Path(scratch) / "delta.hyper"
            pantab.frame_to_hyper(fresh, delta, table=EXTRACT_TABLE)
            job = server.datasources.update_hyper_data(
                self._datasource_id, request_id=request_id, actions=[_UPSERT], payload=delta
            )
        server.jobs.wait_for_job(job, timeout=300)
        due = self._clock() - self._workbook_at >= self._workbook_every_s
        if requests.workbook is not None and requests.workbook_file is not None and due:
            requests.workbook.project_id = _project(
                server, self._project, self._settings.server_url
            ).id
            workbook_id = server.workbooks.publish(
                requests.workbook, requests.workbook_file, requests.mode
            ).id
            self._workbook_at = self._clock()
        return workbook_id

    def _overwrite(self, hyper_path: Path, workbook_path: Path | None) -> PublishResult:
        result = publish(
            hyper_path, workbook_path=workbook_path, project=self._project, settings=self._settings
        )
        self._workbook_at = self._clock()
        return result


_TABLE = {"schema": EXTRACT_TABLE.schema_name.name.unescaped, "table": EXTRACT_TABLE.name.unescaped}
# Upsert on event_id: rows the server already holds (a retried update) are replaced, not added.
_UPSERT = {
    "action": "upsert",
    "source-schema": _TABLE["schema"],
    "source-table": _TABLE["table"],
    "target-schema": _TABLE["schema"],
    "target-table": _TABLE["table"],
    "condition": {"op": "eq", "target-col": "event_id", "source-col": "event_id"},
}
_REQUEST_NAMESPACE = uuid.UUID("0b5f1c1e-7f4e-4d59-9a3e-2f6a3c1d9e27")


@contextmanager
def _signed_in(requests: PublishRequests, settings: PublishSettings) -> Iterator[TSC.Server]:
    """Sign in, negotiate the API version, sign out; every failure becomes one line.

    A refused sign-in or an address that is not a Tableau server raises `ConfigError` (retrying
    cannot fix it); an unreachable server or a server error raises `SalesStreamError`.
    """
    server = requests.server
    try:
        server.auth.sign_in(requests.auth)
    except FailedSignInError as exc:
        site = repr(settings.site) if settings.site else "the Default site"
        raise ConfigError(
            f"Tableau at {settings.server_url} refused the sign-in to {site} ({_one_line(exc)}): "
            "check TABLEAU_PAT_NAME/TABLEAU_PAT_SECRET (a wrong, expired or revoked token) and "
            "TABLEAU_SITE (the site's content URL)"
        ) from None
    except (ServerResponseError, NonXMLResponseError) as exc:
        raise ConfigError(
            f"TABLEAU_SERVER_URL: {settings.server_url} does not answer as a Tableau server "
            f"({_one_line(exc)})"
        ) from None
    except (TableauError, RequestException) as exc:
        raise SalesStreamError(_unreachable(settings, exc)) from None
    try:
        server.use_server_version()
        yield server
    except JobFailedException as exc:
        raise SalesStreamError(f"Tableau could not apply the update: {_one_line(exc)}") from None
    except TableauError as exc:
        raise SalesStreamError(f"Tableau refused the publication: {_one_line(exc)}") from None
    except RequestException as exc:
        raise SalesStreamError(_unreachable(settings, exc)) from None
    finally:
        if server.is_signed_in():
            with suppress(TableauError, RequestException):
                server.auth.sign_out()


def _unreachable(settings: PublishSettings, exc: Exception) -> str:
    return (
        f"cannot reach Tableau at {settings.server_url} ({_one_line(exc)}): check "
        "TABLEAU_SERVER_URL and the network"
    )


def _api(server: TSC.Server) -> tuple[int, ...]:
    return tuple(int(part) for part in server.version.split(".")[:2])


def _one_line(exc: Exception) -> str:
    """A short reason: the error code of a Tableau answer, the cause of a network failure."""
    if isinstance(exc, XMLError):
        return " ".join(f"{exc.code} {exc.summary}: {exc.detail}".split())
    if isinstance(exc, InternalServerError):
        return f"HTTP {exc.code}"
    if isinstance(exc, NonXMLResponseError):
        return "an answer that is not Tableau's XML"
    if isinstance(exc, RequestException):
        cause = re.search(r"\[Errno -?\d+\] ([^)\"'\]]+)", str(exc))
        if cause:
            return cause.group(1).strip()
        return "timed out" if isinstance(exc, Timeout) else type(exc).__name__
    return " ".join(str(exc).split())


def _project(server: TSC.Server, name: str, url: str) -> TSC.ProjectItem:
    projects = list(TSC.Pager(server.projects))
    for project in projects:
        if project.name.casefold() == name.casefold():
            return project
    known = ", ".join(sorted(p.name for p in projects)) or "none"
    raise ConfigError(f"no project named {name!r} on {url} (projects: {known}): check --project")


def _user(server: TSC.Server, name: str, settings: PublishSettings) -> TSC.UserItem:
    options = TSC.RequestOptions()
    options.filter.add(
        TSC.Filter(TSC.RequestOptions.Field.Name, TSC.RequestOptions.Operator.Equals, name)
    )
    users, _ = server.users.get(options)
    for user in users:
        if user.name.casefold() == name.casefold():
            return user
    site = repr(settings.site) if settings.site else "the Default site"
    raise ConfigError(
        f"no user named {name!r} on site {site} at {settings.server_url}: check --share-with "
        "(or TABLEAU_SITE)"
    )
