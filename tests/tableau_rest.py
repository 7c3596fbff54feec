"""A Tableau REST endpoint on 127.0.0.1 that answers with recorded responses and logs requests.

Responses are the XML documents of the Tableau REST API reference (sign-in, server info,
projects, users, publish, permissions, file uploads, jobs), with fixed ids. It does not
interpret the requests beyond routing on method and path: tests assert on what the real
tableauserverclient sent (`Recorded`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SITE_ID = "9a8b7c6d-5e4f-3a2b-1c0d-9e8f7a6b5c4d"
USER_ID = "2b5e7a3c-1111-4a4a-9b9b-0123456789ab"
OWNER_ID = "5de011f8-5aa9-4d5b-b991-f462c8dd6bb7"
PROJECT_ID = "ee8c6e70-43b6-11e6-af4f-f7b0d8e20760"
DATASOURCE_ID = "e76a1461-3b1d-4588-bf1b-17551a879ad9"
WORKBOOK_ID = "3cc6cd06-89ce-4fdc-b935-5294135d6d42"
UPLOAD_ID = "7720:170fe6b1c1c7422dadff20f944d58a52-1:0"
JOB_ID = "5c0ba560-c959-424e-b08a-f32ef0bfb737"
_NS = 'xmlns="http://tableau.com/api" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def ts_response(inner: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?>\n<tsResponse {_NS}>{inner}</tsResponse>".encode()
    )


def sign_in(site: str) -> bytes:
    return ts_response(
        f'<credentials token="recorded-token">'
        f'<site id="{SITE_ID}" contentUrl="{site}"/><user id="{OWNER_ID}"/></credentials>'
    )


def server_info(api: str) -> bytes:
    return ts_response(
        f'<serverInfo><productVersion build="20262.26.0528.2205">2026.2.0</productVersion>'
        f"<restApiVersion>{api}</restApiVersion></serverInfo>"
    )


SIGN_IN_ERROR = ts_response(
    '<error code="401001"><summary>Signin Error</summary>'
    "<detail>Error signing in to Tableau Server</detail></error>"
)
PROJECTS = ts_response(
    '<pagination pageNumber="1" pageSize="100" totalAvailable="2"/><projects>'
    f'<project id="{PROJECT_ID}" name="default" description="The default project" '
    'contentPermissions="ManagedByOwner"/>'
    '<project id="1d0304cd-3796-429f-b815-7258370b9b74" name="Archives" '
    'contentPermissions="ManagedByOwner"/></projects>'
)


def users(*names: str) -> bytes:
    listed = "".join(
        f'<user id="{USER_ID}" name="{name}" siteRole="Viewer" authSetting="ServerDefault"/>'
        for name in names
    )
    return ts_response(
        f'<pagination pageNumber="1" pageSize="100" totalAvailable="{len(names)}"/>'
        f"<users>{listed}</users>"
    )


DATASOURCE = ts_response(
    f'<datasource id="{DATASOURCE_ID}" name="sales" contentUrl="sales" type="hyper" '
    'createdAt="2026-12-01T21:00:00Z" updatedAt="2026-12-01T21:00:00Z">'
    f'<project id="{PROJECT_ID}" name="default"/><owner id="{OWNER_ID}"/><tags/></datasource>'
)
WORKBOOK = ts_response(
    f'<workbook id="{WORKBOOK_ID}" name="sales" contentUrl="sales" showTabs="true" '
    'createdAt="2026-12-01T21:00:00Z" updatedAt="2026-12-01T21:00:00Z">'
    f'<project id="{PROJECT_ID}" name="default"/><owner id="{OWNER_ID}"/><tags/><views/>'
    "</workbook>"
)


def permissions(*capabilities: str) -> bytes:
    granted = "".join(f'<capability name="{c}" mode="Allow"/>' for c in capabilities)
    return ts_response(
        f'<permissions><granteeCapabilities><user id="{USER_ID}"/>'
        f"<capabilities>{granted}</capabilities></granteeCapabilities></permissions>"
    )


FILE_UPLOAD = ts_response(f'<fileUpload uploadSessionId="{UPLOAD_ID}" fileSize="0"/>')
UPDATE_JOB = ts_response(
    f'<job id="{JOB_ID}" mode="Asynchronous" type="UpdateUploadedFile" '
    'createdAt="2026-12-01T21:00:00Z"><updateUploadedFileJob>'
    f'<datasource id="{DATASOURCE_ID}" name="sales"/></updateUploadedFileJob></job>'
)
JOB_DONE = ts_response(
    f'<job id="{JOB_ID}" mode="Asynchronous" type="UpdateUploadedFile" progress="100" '
    'createdAt="2026-12-01T21:00:00Z" startedAt="2026-12-01T21:00:01Z" '
    'completedAt="2026-12-01T21:00:02Z" finishCode="0"/>'
)


@dataclass(frozen=True)
class Recorded:
    """One request as received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        """``METHOD path`` with the API version replaced by ``{v}``."""
        return f"{self.method} {re.sub(r'^/api/[0-9.]+/', '/api/{v}/', self.path)}"


@dataclass
class RecordedTableau:
    """Routes ``(method, path regex)`` to ``(status, body)``; records every request."""

    routes: list[tuple[str, str, int, bytes]]
    requests: list[Recorded] = field(default_factory=list)

    def answer(self, request: Recorded) -> tuple[int, bytes]:
        for method, pattern, status, body in self.routes:
            if method == request.method and re.fullmatch(pattern, request.path):
                return status, body
        return 404, ts_response(
            f'<error code="404000"><summary>Not found</summary>'
            f"<detail>no recorded response for {request.method} {request.path}</detail></error>"
        )

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        tableau = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                tableau.requests.append(request)
                status, body = tableau.answer(request)
                self.send_response(status)
                self.send_header("Content-Type", "application/xml;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"


def routes(*, site: str = "ventes", api: str = "3.28", user: str | None = "prof") -> list:
    """The recorded exchange of a publication by a site with ``user`` (None: no such user)."""
    base = rf"/api/{re.escape(api)}/sites/{SITE_ID}"
    return [
        ("POST", r"/api/[0-9.]+/auth/signin", 200, sign_in(site)),
        ("POST", r"/api/[0-9.]+/auth/signout", 204, b""),
        ("GET", r"/api/[0-9.]+/serverInfo", 200, server_info(api)),
        ("GET", rf"{base}/projects", 200, PROJECTS),
        ("GET", rf"{base}/users", 200, users(user) if user else users()),
        ("POST", rf"{base}/datasources", 201, DATASOURCE),
        ("POST", rf"{base}/workbooks", 201, WORKBOOK),
        ("PUT", rf"{base}/projects/{PROJECT_ID}/permissions", 200, permissions("Read")),
        (
            "PUT",
            rf"{base}/projects/{PROJECT_ID}/default-permissions/workbooks",
            200,
            permissions("Read"),
        ),
        (
            "PUT",
            rf"{base}/projects/{PROJECT_ID}/default-permissions/datasources",
            200,
            permissions("Read"),
        ),
        ("PUT", rf"{base}/workbooks/{WORKBOOK_ID}/permissions", 200, permissions("Read")),
        ("PUT", rf"{base}/datasources/{DATASOURCE_ID}/permissions", 200, permissions("Read")),
        ("POST", rf"{base}/fileUploads", 201, FILE_UPLOAD),
        ("PUT", rf"{base}/fileUploads/{re.escape(UPLOAD_ID)}", 200, FILE_UPLOAD),
        ("PATCH", rf"{base}/datasources/{DATASOURCE_ID}/data", 202, UPDATE_JOB),
        ("GET", rf"{base}/jobs/{JOB_ID}", 200, JOB_DONE),
    ]
