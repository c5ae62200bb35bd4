"""The OpenAPI document and the API docs page: complete, valid and served."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from openapi_spec_validator import validate

from sigap_pbx.web.access import route_roles
from sigap_pbx.web.app import create_app
from sigap_pbx.web.openapi import (
    ERROR_CODES,
    OPERATIONS,
    build_document,
    missing_operations,
)
from tests.web_auth import signed_in_client

PACKAGE = Path(__file__).parents[2] / "sigap_pbx"
WEB_DOC = Path(__file__).parents[2] / "docs" / "web.md"
# ApiError(404, "call_not_found", ...), also over several lines, and the ApiError
# subclasses' super().__init__(400, "invalid_roster", ...).
RAISED_CODE = re.compile(r'(?:ApiError|__init__)\(\s*(\d{3}),\s*"([a-z_]+)"')
# Error bodies written without ApiError: {"error": {"code": "sign_in_limited", ...
BODY_CODE = re.compile(r'"code":\s*"([a-z_]+)"')
# OperatorActionError("not_a_member", ...) and ForwardError("no_consult", ...).
SERVICE_CODE = re.compile(r'(?:OperatorActionError|ForwardError)\(\s*"([a-z_]+)"')
# web.HTTPServiceUnavailable(reason="Live feed unavailable") -> live_feed_unavailable
REASON_CODE = re.compile(r'HTTP\w+\(reason="([A-Za-z ]+)"\)')


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(SimpleNamespace())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def document(app: Any) -> dict[str, Any]:
    return build_document(app)


def api_route_keys(app: Any) -> set[str]:
    return {
        f"{method} {path}"
        for method, path in route_roles(app)
        if path.startswith("/api/") and method != "HEAD"
    }


def test_every_api_route_described(app: Any) -> None:
    assert missing_operations(app) == []


def test_no_description_without_route(app: Any) -> None:
    stale = sorted(set(OPERATIONS) - api_route_keys(app))

    assert stale == []


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_roles_come_from_router(app: Any, document: dict[str, Any]) -> None:
    for (method, path), roles in route_roles(app).items():
        if not path.startswith("/api/") or method == "HEAD":
            continue
        operation = document["paths"][path][method.lower()]
        assert operation["x-roles"] == sorted(role.value for role in roles), path


def test_path_parameters_described() -> None:
    for key, operation in OPERATIONS.items():
        path = key.split(" ", 1)[1]
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        described = {p.name for p in operation.parameters if p.where == "path"}
        assert described == in_path, key


def test_operation_errors_are_listed_codes() -> None:
    for key, operation in OPERATIONS.items():
        for entry in operation.errors:
            status, code = entry.split(" ")
            assert code in ERROR_CODES, (key, code)
            assert int(status) in ERROR_CODES[code].statuses, (key, entry)


def raised_codes() -> set[tuple[int | None, str]]:
    """Return (status, code) of every error the web modules and services raise."""
    found: set[tuple[int | None, str]] = set()
    for source in sorted((PACKAGE / "web").glob("*.py")):
        text = source.read_text(encoding="utf-8")
        found |= {(int(status), code) for status, code in RAISED_CODE.findall(text)}
        found |= {(None, code) for code in BODY_CODE.findall(text)}
        found |= {
            (None, reason.lower().replace(" ", "_"))
            for reason in REASON_CODE.findall(text)
        }
    for source in (PACKAGE / "members" / "actions.py",
                   PACKAGE / "agencies" / "forwarding.py"):
        text = source.read_text(encoding="utf-8")
        found |= {(None, code) for code in SERVICE_CODE.findall(text)}
    return found


def test_raised_codes_listed() -> None:
    found = raised_codes()

    assert ("404", "call_not_found") not in found  # statuses are parsed as numbers
    assert (404, "call_not_found") in found
    assert (None, "sign_in_limited") in found
    assert (None, "live_feed_unavailable") in found
    for status, code in sorted(found, key=lambda item: (item[1], item[0] or 0)):
        assert code in ERROR_CODES, f"error code {code!r} is missing from ERROR_CODES"
        if status is not None:
            assert status in ERROR_CODES[code].statuses, (status, code)


def test_document_lists_error_codes(document: dict[str, Any]) -> None:
    listed = document["x-error-codes"]

    assert set(listed) == set(ERROR_CODES)
    assert listed["csrf_rejected"]["statuses"] == [403]


def test_common_errors_added(document: dict[str, Any]) -> None:
    post = document["paths"]["/api/alarms/{alarm_id}/ack"]["post"]["responses"]
    get = document["paths"]["/api/calls"]["get"]["responses"]
    public = document["paths"]["/api/health"]["get"]["responses"]

    assert post["403"]["x-error-codes"] == ["forbidden", "csrf_rejected"]
    assert post["400"]["x-error-codes"][-1] == "actor_mismatch"
    assert post["401"]["x-error-codes"] == ["not_signed_in"]
    assert get["403"]["x-error-codes"] == ["forbidden"]
    assert "401" not in public
    assert "421" in public


async def test_document_served_to_every_role() -> None:
    controller = SimpleNamespace()
    client = await signed_in_client(controller, "agency", agency="damkar")
    try:
        response = await client.get("/api/openapi.json")
        body = await response.json()
        anonymous = await client.get("/api/openapi.json", headers={"Cookie": ""})
    finally:
        await client.close()

    assert response.status == 200
    assert "/api/calls" in body["paths"]
    assert body["paths"]["/api/calls"]["get"]["x-roles"] == [
        "admin", "operator", "supervisor"
    ]
    assert anonymous.status == 401


class Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.operations: set[tuple[str, str]] = set()
        self.error_codes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "data-method" in values:
            self.operations.add((values["data-method"] or "", values["data-path"] or ""))
        if "data-error-code" in values:
            self.error_codes.add(values["data-error-code"] or "")


async def test_docs_page_lists_everything(app: Any) -> None:
    controller = SimpleNamespace()
    client = await signed_in_client(controller, "operator", endpoint="op1")
    try:
        response = await client.get("/api/docs")
        html = await response.text()
        anonymous = await client.get(
            "/api/docs", headers={"Cookie": ""}, allow_redirects=False
        )
    finally:
        await client.close()

    assert response.status == 200
    assert response.content_type == "text/html"
    parser = Sections()
    parser.feed(html)
    expected = {tuple(key.split(" ", 1)) for key in api_route_keys(app)}
    assert parser.operations == expected
    assert parser.error_codes == set(ERROR_CODES)
    assert "Content-Security-Policy" in response.headers
    assert anonymous.status == 303
    assert unquote(anonymous.headers["Location"]) == "/login?next=/api/docs"


def test_web_doc_role_table(app: Any) -> None:
    text = WEB_DOC.read_text(encoding="utf-8")
    table = text.split("<!-- role-table:start -->")[1].split("<!-- role-table:end -->")[0]
    documented: dict[tuple[str, str], set[str]] = {}
    for row in table.strip().splitlines()[2:]:
        method, path, roles = (cell.strip() for cell in row.strip("|").split("|"))
        names = set() if roles.startswith("public") else set(roles.split(", "))
        documented[(method, path.strip("`"))] = names

    expected = {
        (method, path): {role.value for role in roles}
        for (method, path), roles in route_roles(app).items()
        if method != "HEAD"
    }
    assert documented == expected
