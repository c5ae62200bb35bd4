"""The OpenAPI 3.1 document of the JSON API, and the API docs page built from it.

The list of paths and the roles allowed on each (`x-roles`) come from the app's
router through `access.route_roles`, so they cannot drift from the code. What
the router does not record is written by hand in OPERATIONS below: a summary,
the parameters, the request and response bodies and the error codes of each
route. ERROR_CODES lists every stable error code with its HTTP statuses.
`tests/unit/test_openapi.py` fails when an /api route has no entry in OPERATIONS,
or when a module of sigap_pbx/web raises an error code missing from ERROR_CODES.

- `GET /api/openapi.json`: the document.
- `GET /api/docs`: the same content as a page, rendered on the server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from sigap_pbx.web import i18n
from sigap_pbx.web.access import (
    CSRF_HEADER,
    EVERYONE,
    SAFE_METHODS,
    SESSION_COOKIE,
    route,
    route_roles,
)
from sigap_pbx.web.pages import render

log = structlog.get_logger(__name__)

OPENAPI_VERSION = "3.1.0"
DOCUMENT_KEY = web.AppKey("openapi_document", dict)
_PATH_PARAMETER = re.compile(r"\{([^}:]+)")


# --- Schema helpers -----------------------------------------------------------------

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
NUMBER: dict[str, Any] = {"type": "number"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
DATE: dict[str, Any] = {"type": "string", "format": "date"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def one_of(*values: str, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if description:
        schema["description"] = description
    return schema


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def obj(
    required: tuple[str, ...] = (),
    doc: str = "",
    closed: bool = False,
    **properties: dict[str, Any],
) -> dict[str, Any]:
    """Return a JSON Schema object with a description `doc`; `closed` rejects keys
    not listed."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if doc:
        schema["description"] = doc
    if closed:
        schema["additionalProperties"] = False
    return schema


def described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Param:
    """A path or query parameter."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: STRING)
    where: str = "query"
    required: bool = False

    def to_openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "description": self.description,
            "required": self.required or self.where == "path",
            "schema": self.schema,
        }


def path_param(name: str, description: str, schema: dict[str, Any] = STRING) -> Param:
    return Param(name, description, schema, where="path", required=True)


LIMIT = Param("limit", "Maximum number of rows, 1 to 500.", {**INTEGER, "minimum": 1,
                                                             "maximum": 500})
OFFSET = Param("offset", "Rows to skip, for paging.", {**INTEGER, "minimum": 0})
SINCE = Param("since", "Earliest time, ISO 8601 with an offset.", TIME)
UNTIL = Param("until", "Latest time, ISO 8601 with an offset.", TIME)
ACTOR = described(
    STRING,
    "Optional. If sent, it must be the signed-in username: the audit log always "
    "names the signed-in user.",
)


@dataclass(frozen=True)
class Operation:
    """The hand-written description of one route."""

    summary: str
    description: str = ""
    parameters: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    body_required: bool = True
    response: dict[str, Any] = field(default_factory=lambda: ANY_OBJECT)
    status: int = 200
    media_type: str = "application/json"
    # "STATUS code" pairs such as "404 call_not_found".
    errors: tuple[str, ...] = ()
    # The request may name an actor (body `actor` or X-Sigap-Actor header).
    takes_actor: bool = False


# --- Shared schemas -----------------------------------------------------------------

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj(
        ("error",),
        "Every error response.",
        error=obj(
            ("code", "message"),
            code=described(STRING, "Stable code: see the error code list."),
            message=described(STRING, "What failed, on which value, and the fix."),
            problems=described(
                array(STRING),
                "Only for invalid_roster, invalid_agency and invalid_report: each "
                "problem starts with the path of the bad field.",
            ),
        ),
    ),
    "User": obj(
        id=INTEGER, username=STRING, display_name=STRING,
        role=one_of("operator", "supervisor", "agency", "admin"),
        agency_code=nullable(STRING), endpoint=nullable(STRING), disabled=BOOLEAN,
        created_at=TIME,
    ),
    "Session": obj(
        ("user", "csrf_token"),
        user=ref("User"),
        csrf_token=described(STRING, f"Send it in the {CSRF_HEADER} header of every "
                                      "POST, PUT, PATCH and DELETE."),
    ),
    "Call": obj(
        doc="A call record: caller, times, outcome, legs and timeline.",
        id=INTEGER, uniqueid=STRING, linkedid=STRING,
        caller_number=described(STRING, "E.164, or empty when the number is invalid."),
        caller_number_raw=described(STRING, "As the carrier sent it (untrusted text)."),
        caller_name=described(STRING, "Caller ID name (untrusted text)."),
        arrived_at=TIME, answered_at=nullable(TIME), ended_at=nullable(TIME),
        operator=nullable(STRING), outcome=nullable(STRING),
    ),
    "Agency": obj(
        doc="An agency with its lines; the webhook secret is never returned.",
        code=STRING, name=STRING, kind=STRING, dial_code=STRING, active=BOOLEAN,
        webhook_url=nullable(STRING), webhook_secret_set=BOOLEAN,
        lines=array(ANY_OBJECT), staffed_lines=array(ANY_OBJECT),
    ),
    "AgencyInput": obj(
        ("name", "kind", "dial_code"),
        "An agency as written in docs/examples/agencies.yaml.",
        code=described(STRING, "Optional; must equal the code in the path."),
        name=STRING, kind=STRING, dial_code=STRING, webhook_url=STRING,
        webhook_secret=STRING,
        lines=array(obj(
            ("priority", "kind", "target"),
            priority=INTEGER, kind=one_of("endpoint", "number"),
            target=described(STRING, "PJSIP endpoint, or '+' and 1 to 20 digits."),
            hours=described(STRING, "Staffed hours such as 07:00-19:00."),
            backup=BOOLEAN,
        )),
    ),
    "Alarm": obj(
        id=nullable(INTEGER), kind=STRING, subject=STRING, severity=STRING,
        message=STRING, active=BOOLEAN, raised_at=TIME, cleared_at=nullable(TIME),
        acknowledged_at=nullable(TIME), acknowledged_by=nullable(STRING),
    ),
    "WallboardAlarm": obj(
        doc="An alarm as the wallboard shows it: the Alarm fields, with its time and "
            "message in local time and the label's text key and values.",
        id=nullable(INTEGER), kind=STRING, subject=STRING, severity=STRING,
        message=STRING, active=BOOLEAN, raised_at=TIME, cleared_at=nullable(TIME),
        acknowledged_at=nullable(TIME), acknowledged_by=nullable(STRING),
        raised_local=STRING, message_local=STRING, label=ANY_OBJECT,
    ),
    "Report": obj(
        doc="An incident report.",
        id=INTEGER, version=INTEGER,
        category=one_of("fire", "traffic_accident", "natural_disaster", "security",
                        "health", "other"),
        call_type=one_of("emergency", "information", "prank", "ghost", "misdial"),
        priority=INTEGER, location_text=STRING, kelurahan=STRING, kecamatan=STRING,
        latitude=nullable(NUMBER), longitude=nullable(NUMBER), description=STRING,
        people=INTEGER, status=one_of("open", "closed"),
    ),
    "ReportFields": obj(
        doc="Any report fields; unknown keys are rejected.",
        category=STRING, call_type=STRING, priority=INTEGER, location_text=STRING,
        kelurahan=STRING, kecamatan=STRING, latitude=NUMBER, longitude=NUMBER,
        description=STRING, people=INTEGER, status=one_of("open", "closed"),
        actor=ACTOR,
    ),
    "Dispatch": obj(
        doc="A report sent to an agency, with its status.",
        id=INTEGER, report_id=INTEGER, agency_code=STRING,
        status=one_of("sent", "acknowledged", "dispatched", "en_route", "on_scene",
                      "resolved", "false_alarm"),
        acknowledged=BOOLEAN, acknowledged_by=nullable(STRING), created_at=TIME,
    ),
    "Diversion": obj(
        doc="A flag on a caller number that changes how its calls are handled.",
        id=INTEGER, number=STRING, action=one_of("warning", "low_priority"),
        reason=STRING, until=TIME, active=BOOLEAN,
    ),
    "RosterChange": obj(
        doc="The result of a roster edit: the new version and what changed.",
        version_id=INTEGER, changed=BOOLEAN, changes=ANY_OBJECT,
        coverage_problems=array(ANY_OBJECT),
    ),
    "AuditEntry": obj(
        at=TIME, actor=STRING, action=STRING, subject=STRING, detail=ANY_OBJECT,
    ),
}

CALL_FILTERS = (
    SINCE,
    UNTIL,
    Param("outcome", "Call outcome, such as answered or abandoned_in_queue."),
    Param("number", "Caller number, as received or in E.164."),
    Param("operator", "Endpoint of the operator who answered."),
    Param("category", "Report category of the call's report."),
    Param("call_type", "Call type of the call's report."),
)
REPORT_FILTERS = (
    SINCE,
    UNTIL,
    Param("status", "open or closed."),
    Param("category", "Report category."),
    Param("call_type", "Call type."),
    Param("number", "Caller number of a linked call."),
    Param("agency", "Agency code: reports sent to that agency. Agency staff always "
                    "get their own agency's."),
)
ROSTER_EDIT_ERRORS = (
    "400 invalid_json", "400 invalid_request", "400 invalid_roster",
    "409 roster_conflict", "503 roster_unavailable",
)


# --- Routes -------------------------------------------------------------------------

OPERATIONS: dict[str, Operation] = {
    # Session
    "GET /api/session": Operation(
        "The signed-in user and the session's CSRF token",
        response=ref("Session"),
    ),
    "POST /api/session": Operation(
        "Sign in",
        "Opens a session and sets the session cookie (Secure, HttpOnly, "
        "SameSite=Strict). After 5 failed sign-ins in 15 minutes, per username and "
        "per client address, sign-in is rejected with 429 and Retry-After.",
        body=obj(("username", "password"), closed=False,
                 username=STRING, password=STRING),
        response=ref("Session"),
        status=201,
        errors=("400 invalid_body", "401 sign_in_rejected", "429 sign_in_limited",
                "503 accounts_unavailable"),
    ),
    "DELETE /api/session": Operation(
        "Sign out",
        "Ends the session and clears the cookie.",
        response=obj(signed_out=BOOLEAN),
    ),
    "GET /api/openapi.json": Operation("This OpenAPI document"),
    "GET /api/docs": Operation(
        "The API documentation page (HTML)", media_type="text/html",
        response=STRING,
    ),
    "GET /api/health": Operation(
        "Controller health",
        "200 when AMI is connected and the database works, else 503 with the "
        "same body. Needs no sign-in, for monitoring.",
        response=obj(ami_connected=BOOLEAN, database_problem=nullable(STRING),
                     live_view_synced=BOOLEAN, calls_in_progress=INTEGER,
                     pending_writes=INTEGER, uptime_seconds=NUMBER),
    ),
    "GET /api/events": Operation(
        "Live events (server-sent events)",
        "A text/event-stream of the events the user's role may see: wallboard "
        "snapshots, call cards, dispatches. Operators get only their own phone's "
        "events and agency staff only their agency's.",
        media_type="text/event-stream",
        response=STRING,
        errors=("503 live_feed_unavailable",),
    ),
    # Calls
    "GET /api/calls": Operation(
        "Search call records, newest first",
        parameters=(LIMIT, OFFSET, *CALL_FILTERS),
        response=obj(total=INTEGER, limit=INTEGER, offset=INTEGER,
                     calls=array(ref("Call"))),
        errors=("400 invalid_parameter",),
    ),
    "GET /api/calls.csv": Operation(
        "Export the matching calls as CSV",
        "Same filters as GET /api/calls, without paging. Cells that a spreadsheet "
        "would run as a formula get a leading apostrophe.",
        parameters=CALL_FILTERS,
        media_type="text/csv",
        response=STRING,
        errors=("400 invalid_parameter", "503 store_unavailable"),
    ),
    "GET /api/calls/{call_id}": Operation(
        "One call with its legs and timeline",
        parameters=(path_param("call_id", "Call id.", INTEGER),),
        response=ref("Call"),
        errors=("400 invalid_parameter", "404 call_not_found"),
    ),
    "POST /api/calls/{uniqueid}/forward": Operation(
        "Forward a call to an agency",
        "conference adds the agency to the call, transfer hands the caller over, "
        "consult talks to the agency first (finish with .../consult/join or "
        "/transfer).",
        parameters=(path_param("uniqueid", "Uniqueid of the caller's channel."),),
        body=obj(("agency", "mode"), closed=True,
                 agency=described(STRING, "Agency code."),
                 mode=one_of("conference", "transfer", "consult"),
                 report_id=nullable(INTEGER), actor=ACTOR),
        response=ANY_OBJECT,
        status=202,
        errors=("400 invalid_json", "400 invalid_body", "400 invalid_mode",
                "400 missing_agency", "400 invalid_report_id", "400 invalid_call",
                "404 call_not_found",
                "404 agency_not_found", "409 agency_has_no_lines",
                "409 call_not_connected", "409 consult_in_progress", "409 asterisk_rejected",
                "503 asterisk_unavailable", "503 not_started"),
        takes_actor=True,
    ),
    "POST /api/calls/{uniqueid}/consult/{how}": Operation(
        "Finish a consult forward",
        parameters=(path_param("uniqueid", "Uniqueid of the caller's channel."),
                    path_param("how", "join (three-way) or transfer.",
                               one_of("join", "transfer"))),
        body=obj(actor=ACTOR),
        body_required=False,
        response=obj(call=STRING, action=STRING, room=STRING),
        errors=("400 invalid_json", "400 invalid_action", "400 invalid_call", "409 no_consult",
                "403 forbidden", "404 call_not_found", "409 agency_not_connected",
                "409 consult_completing",
                "409 asterisk_rejected", "503 asterisk_unavailable", "503 not_started"),
        takes_actor=True,
    ),
    "GET /api/consults": Operation(
        "Consults in progress",
        "An operator sees the consults started from their own phone; a supervisor or "
        "admin sees every one. The console follows them live through forward.consult "
        "events.",
        response=obj(consults=array(obj(
            call=STRING, agency=STRING, agency_name=STRING, operator=nullable(STRING),
            report_id=nullable(INTEGER), caller_number=STRING))),
        errors=("503 not_started",),
    ),
    "GET /api/calls/{uniqueid}/forwards": Operation(
        "Forward attempts of a call",
        parameters=(path_param("uniqueid", "Uniqueid of the caller's channel."),),
        response=obj(attempts=array(ANY_OBJECT)),
        errors=("503 not_started",),
    ),
    "GET /api/live": Operation(
        "Queues, members and waiting callers, from AMI",
        response=obj(synced=BOOLEAN, queues=array(obj(
            name=STRING, members=array(ANY_OBJECT), callers=array(ANY_OBJECT)))),
    ),
    # Console
    "GET /api/console/state": Operation(
        "The signed-in user's call card and queue state",
        response=obj(endpoint=nullable(STRING), card=nullable(ANY_OBJECT),
                      state=STRING),
    ),
    "GET /api/console/caller": Operation(
        "A caller's earlier calls and diversion flags",
        parameters=(Param("number", "Caller number."),
                    Param("uniqueid", "Uniqueid of a call, in place of number.")),
        response=obj(number=STRING, calls=array(ref("Call")),
                     diversions=array(ref("Diversion"))),
        errors=("400 missing_parameter", "400 invalid_parameter", "503 not_started"),
    ),
    "GET /api/diversions": Operation(
        "Diversion flags of a number",
        parameters=(Param("number", "Caller number."),),
        response=obj(number=STRING, diversions=array(ref("Diversion"))),
        errors=("400 invalid_number", "503 not_started"),
    ),
    "POST /api/diversions": Operation(
        "Flag a caller number (repeated prank calls)",
        body=obj(("number", "reason", "until"), closed=True,
                 number=STRING, action=one_of("warning", "low_priority"),
                 reason=STRING, until=described(TIME, "When the flag ends.")),
        response=ref("Diversion"),
        status=201,
        errors=("400 invalid_json", "400 invalid_body", "400 invalid_number",
                "400 invalid_action", "400 missing_reason", "400 invalid_until",
                "503 not_started"),
    ),
    "POST /api/diversions/{diversion_id}/lift": Operation(
        "Lift a diversion flag",
        parameters=(path_param("diversion_id", "Diversion id.", INTEGER),),
        response=ref("Diversion"),
        errors=("400 invalid_json", "400 invalid_parameter", "404 diversion_not_found",
                "503 not_started"),
    ),
    "GET /api/callbacks": Operation(
        "Abandoned calls not yet called back",
        parameters=(LIMIT,),
        response=obj(callbacks=array(ANY_OBJECT)),
        errors=("400 invalid_parameter", "503 not_started"),
    ),
    "POST /api/callbacks/{call_id}": Operation(
        "Call an abandoned caller back from the user's own phone",
        parameters=(path_param("call_id", "Call id.", INTEGER),),
        body=obj(closed=True),
        body_required=False,
        response=ANY_OBJECT,
        status=202,
        errors=("400 invalid_json", "400 invalid_body", "400 invalid_parameter",
                "404 call_not_found", "409 not_abandoned", "409 already_called_back",
                "409 callback_in_progress", "409 no_endpoint", "409 invalid_number",
                "503 not_started"),
    ),
    # Operators
    "GET /api/operators": Operation(
        "Operators with their queue state and the pause reasons",
        response=obj(live_view_synced=BOOLEAN, operators=array(ANY_OBJECT),
                     pause_reasons=obj()),
    ),
    "POST /api/operators/{endpoint}/{action}": Operation(
        "Log an operator in or out, pause or unpause",
        "Operators may act only on their own endpoint.",
        parameters=(path_param("endpoint", "PJSIP endpoint of the operator's phone."),
                    path_param("action", "What to do.",
                               one_of("login", "logout", "pause", "unpause"))),
        body=obj(reason=described(STRING, "Pause reason, required for pause."),
                 actor=ACTOR),
        body_required=False,
        response=obj(endpoint=STRING, action=STRING, actor=STRING, result=STRING),
        errors=("400 invalid_json", "400 missing_reason", "400 invalid_reason",
                "400 invalid_endpoint", "403 forbidden", "404 unknown_action",
                "404 operator_not_found", "409 not_a_member",
                "502 asterisk_rejected", "503 asterisk_unavailable"),
        takes_actor=True,
    ),
    "GET /api/membership": Operation(
        "The queue membership the roster asks for and what was applied",
        errors=("503 not_started",),
    ),
    # Wallboard
    "GET /api/wallboard": Operation(
        "The wallboard snapshot",
        response=obj(synced=BOOLEAN, primary_queue=STRING, queues=array(ANY_OBJECT),
                     operators=array(ANY_OBJECT), shift=nullable(ANY_OBJECT),
                     figures=nullable(ANY_OBJECT), alarms=array(ref("WallboardAlarm"))),
    ),
    "POST /api/wallboard/spy": Operation(
        "Listen to, whisper to or barge into an operator's call",
        "Rings the supervisor's own phone first.",
        body=obj(("endpoint", "mode"), closed=True, endpoint=STRING,
                 mode=one_of("listen", "whisper", "barge")),
        response=ANY_OBJECT,
        status=202,
        errors=("400 invalid_body", "400 invalid_endpoint", "400 invalid_mode",
                "400 spy_on_self", "404 operator_not_found", "409 no_own_endpoint",
                "409 invalid_own_endpoint", "502 asterisk_rejected",
                "503 asterisk_unavailable"),
    ),
    # Alarms
    "GET /api/alarms": Operation(
        "Alarms, newest first",
        parameters=(Param("active", "1 for active alarms only.", one_of("0", "1")),
                    LIMIT, SINCE),
        response=obj(alarms=array(ref("Alarm"))),
        errors=("400 invalid_parameter", "503 alarms_unavailable"),
    ),
    "POST /api/alarms/{alarm_id}/ack": Operation(
        "Acknowledge an alarm",
        "A second acknowledgement keeps the first and names it in "
        "already_acknowledged_by.",
        parameters=(path_param("alarm_id", "Alarm id.", INTEGER),),
        body=obj(closed=True, actor=ACTOR),
        body_required=False,
        response={**ref("Alarm"), "description": "The alarm, plus "
                  "already_acknowledged_by."},
        errors=("400 invalid_body", "400 invalid_parameter", "404 alarm_not_found",
                "503 alarms_unavailable"),
        takes_actor=True,
    ),
    # Roster
    "GET /api/roster": Operation(
        "The roster in force",
        response=obj(version=ANY_OBJECT, roster=ANY_OBJECT),
        errors=("404 roster_not_found", "503 roster_unavailable"),
    ),
    "PUT /api/roster": Operation(
        "Save a whole roster as a new version",
        body=obj(("roster",), closed=True, roster=ANY_OBJECT, comment=STRING,
                 actor=ACTOR),
        response=ref("RosterChange"),
        errors=ROSTER_EDIT_ERRORS,
        takes_actor=True,
    ),
    "GET /api/roster/versions": Operation(
        "Roster versions, newest first",
        parameters=(LIMIT,),
        response=obj(versions=array(ANY_OBJECT)),
        errors=("400 invalid_parameter", "503 roster_unavailable"),
    ),
    "GET /api/roster/versions/{version_id}": Operation(
        "One roster version",
        parameters=(path_param("version_id", "Version id.", INTEGER),),
        response=obj(version=ANY_OBJECT, roster=ANY_OBJECT),
        errors=("400 invalid_parameter", "404 roster_version_not_found",
                "503 roster_unavailable"),
    ),
    "GET /api/roster/duty": Operation(
        "Who is on duty in each shift of a date",
        parameters=(Param("date", "YYYY-MM-DD, default today.", DATE),),
        response=obj(date=DATE, timezone=STRING, version_id=INTEGER,
                     shifts=array(ANY_OBJECT)),
        errors=("400 invalid_parameter", "404 roster_not_found",
                "503 roster_unavailable"),
    ),
    "PUT /api/roster/operators/{endpoint}": Operation(
        "Add or change an operator in the roster",
        parameters=(path_param("endpoint", "PJSIP endpoint."),),
        body=obj(("name",), name=STRING, endpoint=STRING,
                 role=one_of("operator", "backup", "supervisor"),
                 languages=array(STRING), skills=array(STRING), active=BOOLEAN,
                 actor=ACTOR),
        response=ref("RosterChange"),
        errors=ROSTER_EDIT_ERRORS,
        takes_actor=True,
    ),
    "DELETE /api/roster/operators/{endpoint}": Operation(
        "Remove an operator from the roster",
        parameters=(path_param("endpoint", "PJSIP endpoint."),),
        response=ref("RosterChange"),
        errors=(*ROSTER_EDIT_ERRORS, "404 operator_not_found",
                "409 operator_in_crew"),
        takes_actor=True,
    ),
    "POST /api/roster/exceptions": Operation(
        "Add a roster exception (leave, swap, extra_cover)",
        body=obj(("type",), type=one_of("leave", "swap", "extra_cover"),
                 endpoint=STRING, start=DATE, end=DATE, date=DATE, shift=STRING,
                 actor=ACTOR),
        response=ref("RosterChange"),
        status=201,
        errors=ROSTER_EDIT_ERRORS,
        takes_actor=True,
    ),
    "DELETE /api/roster/exceptions": Operation(
        "Remove a roster exception",
        "The body is the exception to remove, as it was added.",
        body=ANY_OBJECT,
        response=ref("RosterChange"),
        errors=(*ROSTER_EDIT_ERRORS, "404 exception_not_found"),
        takes_actor=True,
    ),
    "GET /api/audit": Operation(
        "The audit log, newest first",
        parameters=(Param("action", "Action prefix, such as roster. or signin."),
                    Param("subject", "Subject."), SINCE, UNTIL, LIMIT),
        response=obj(entries=array(ref("AuditEntry"))),
        errors=("400 invalid_parameter", "503 roster_unavailable"),
    ),
    # Shifts
    "GET /api/shifts/current": Operation(
        "Figures of the shift in progress",
        errors=("404 shift_not_found", "409 shift_not_started", "500 shift_report_failed",
                "503 roster_missing", "503 database_unavailable",
                "503 shift_reports_unavailable"),
    ),
    "GET /api/shifts/reports": Operation(
        "Stored shift reports, newest first",
        parameters=(Param("since", "YYYY-MM-DD.", DATE), LIMIT),
        response=obj(reports=array(ANY_OBJECT)),
        errors=("400 invalid_parameter", "503 database_unavailable",
                "503 shift_reports_unavailable"),
    ),
    "GET /api/shifts/reports/{date}/{shift}": Operation(
        "One stored shift report",
        parameters=(path_param("date", "YYYY-MM-DD.", DATE),
                    path_param("shift", "Shift name.")),
        errors=("400 invalid_parameter", "404 report_not_found",
                "503 database_unavailable", "503 shift_reports_unavailable"),
    ),
    # Agencies
    "GET /api/agencies": Operation(
        "Agencies",
        parameters=(Param("active", "true or false.", one_of("true", "false")),),
        response=obj(agencies=array(ref("Agency"))),
        errors=("400 invalid_parameter", "503 agencies_unavailable"),
    ),
    "PUT /api/agencies": Operation(
        "Create or replace every agency of a directory document",
        "One transaction: either every agency is saved or none.",
        body=obj(("agencies",), agencies=array(ref("AgencyInput"))),
        response=obj(outcomes=array(ANY_OBJECT)),
        errors=("400 invalid_request", "400 invalid_agency", "409 agency_conflict",
                "503 agencies_unavailable"),
        takes_actor=True,
    ),
    "GET /api/agencies/{code}": Operation(
        "One agency, by code or dial code",
        parameters=(path_param("code", "Agency code or dial code."),),
        response=ref("Agency"),
        errors=("404 agency_not_found", "503 agencies_unavailable"),
    ),
    "PUT /api/agencies/{code}": Operation(
        "Create or replace an agency",
        parameters=(path_param("code", "Agency code."),),
        body=ref("AgencyInput"),
        response=obj(outcome=ANY_OBJECT, agency=ref("Agency")),
        errors=("400 invalid_request", "400 invalid_agency", "409 agency_conflict",
                "503 agencies_unavailable"),
        takes_actor=True,
    ),
    "DELETE /api/agencies/{code}": Operation(
        "Deactivate an agency (its record stays)",
        parameters=(path_param("code", "Agency code."),),
        response=obj(agency=ref("Agency"), changed=BOOLEAN),
        errors=("404 agency_not_found", "503 agencies_unavailable"),
        takes_actor=True,
    ),
    # Reports
    "GET /api/reports": Operation(
        "Incident reports, newest first",
        parameters=(LIMIT, OFFSET, *REPORT_FILTERS),
        response=obj(total=INTEGER, reports=array(ref("Report"))),
        errors=("400 invalid_parameter", "403 agency_not_set", "403 forbidden",
                "503 reports_unavailable"),
    ),
    "POST /api/reports": Operation(
        "Create a report",
        body={**ref("ReportFields"), "description": "Report fields, plus an optional "
              "call_uniqueid of the call to link."},
        response=ref("Report"),
        status=201,
        errors=("400 invalid_request", "400 invalid_report",
                "503 reports_unavailable"),
        takes_actor=True,
    ),
    "GET /api/reports/{report_id}": Operation(
        "One report with its calls and dispatches",
        "Agency staff see only reports sent to their agency.",
        parameters=(path_param("report_id", "Report id.", INTEGER),),
        response=ref("Report"),
        errors=("400 invalid_parameter", "404 report_not_found",
                "503 reports_unavailable"),
    ),
    "PATCH /api/reports/{report_id}": Operation(
        "Change report fields",
        "Send version to be rejected with report_conflict if someone else changed "
        "the report first.",
        parameters=(path_param("report_id", "Report id.", INTEGER),),
        body={**ref("ReportFields"), "description": "Fields to change, plus an "
              "optional version."},
        response=ref("Report"),
        errors=("400 invalid_parameter", "400 invalid_request", "400 invalid_report",
                "404 report_not_found", "409 report_conflict",
                "503 reports_unavailable"),
        takes_actor=True,
    ),
    "POST /api/reports/{report_id}/calls": Operation(
        "Link a call to a report",
        parameters=(path_param("report_id", "Report id.", INTEGER),),
        body=obj(("call_uniqueid",), closed=True, call_uniqueid=STRING, actor=ACTOR),
        response=obj(report_id=INTEGER, call_uniqueid=STRING, linked=BOOLEAN),
        errors=("400 invalid_parameter", "400 invalid_request", "404 report_not_found",
                "503 reports_unavailable"),
        takes_actor=True,
    ),
    "POST /api/reports/{report_id}/dispatch": Operation(
        "Send a report to agencies",
        parameters=(path_param("report_id", "Report id.", INTEGER),),
        body=obj(("agencies",), closed=True, agencies=array(STRING), actor=ACTOR),
        response=obj(dispatches=array(ref("Dispatch"))),
        errors=("400 invalid_parameter", "400 invalid_request", "404 report_not_found",
                "404 agency_not_found", "409 dispatch_rejected",
                "503 reports_unavailable"),
        takes_actor=True,
    ),
    # Dispatches
    "GET /api/dispatches": Operation(
        "Dispatches: unacknowledged first, then newest first",
        "Agency staff always get their own agency's.",
        parameters=(Param("agency", "Agency code."),
                    Param("all", "1 to include resolved and false alarms.",
                          one_of("0", "1")),
                    LIMIT),
        response=obj(dispatches=array(ref("Dispatch"))),
        errors=("400 invalid_parameter", "403 agency_not_set", "403 forbidden",
                "503 dispatches_unavailable"),
    ),
    "GET /api/dispatches/{dispatch_id}": Operation(
        "One dispatch with its events",
        "Another agency's dispatch is reported as not found.",
        parameters=(path_param("dispatch_id", "Dispatch id.", INTEGER),),
        response=ref("Dispatch"),
        errors=("400 invalid_parameter", "403 agency_not_set",
                "404 dispatch_not_found", "503 dispatches_unavailable"),
    ),
    "POST /api/dispatches/{dispatch_id}/ack": Operation(
        "Acknowledge a dispatch",
        parameters=(path_param("dispatch_id", "Dispatch id.", INTEGER),),
        body=obj(closed=True, note=STRING, actor=ACTOR),
        body_required=False,
        response=ref("Dispatch"),
        errors=("400 invalid_body", "400 invalid_parameter", "400 invalid_note",
                "403 agency_not_set", "404 dispatch_not_found",
                "503 dispatches_unavailable"),
        takes_actor=True,
    ),
    "POST /api/dispatches/{dispatch_id}/status": Operation(
        "Set a dispatch's status",
        parameters=(path_param("dispatch_id", "Dispatch id.", INTEGER),),
        body=obj(("status",), closed=True,
                 status=one_of("acknowledged", "dispatched", "en_route", "on_scene",
                               "resolved", "false_alarm"),
                 note=STRING, actor=ACTOR),
        response=ref("Dispatch"),
        errors=("400 invalid_body", "400 invalid_parameter", "400 invalid_status",
                "400 invalid_note", "403 agency_not_set", "404 dispatch_not_found",
                "409 invalid_transition", "503 dispatches_unavailable"),
        takes_actor=True,
    ),
    "GET /api/outbox": Operation(
        "Webhook messages to agencies, newest first",
        "Without payloads or secrets; counts gives the number of each status.",
        parameters=(Param("status", "Message status.",
                          one_of("pending", "delivered", "failed")),
                    Param("agency", "Agency code."),
                    Param("report", "Report id.", INTEGER), LIMIT),
        response=obj(counts=ANY_OBJECT, messages=array(ANY_OBJECT)),
        errors=("400 invalid_parameter", "503 webhooks_unavailable"),
    ),
    "POST /api/outbox/{message_id}/retry": Operation(
        "Send a failed webhook message again",
        parameters=(path_param("message_id", "Message id.", INTEGER),),
        errors=("400 invalid_parameter", "404 outbox_message_not_found",
                "503 webhooks_unavailable"),
    ),
}


# --- Error codes --------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCode:
    statuses: tuple[int, ...]
    meaning: str


ERROR_CODES: dict[str, ErrorCode] = {
    # Every route
    "not_signed_in": ErrorCode((401,), "No valid session: sign in first."),
    "forbidden": ErrorCode((403,), "The user's role or agency may not do this."),
    "csrf_rejected": ErrorCode((403,), "The X-CSRF-Token header is missing or wrong."),
    "host_not_allowed": ErrorCode(
        (421,), "The Host header is neither loopback nor in [web] allowed_hosts."),
    "not_found": ErrorCode((404,), "No route has this path."),
    "method_not_allowed": ErrorCode((405,), "The route exists, not with this method."),
    "body_too_large": ErrorCode((413,), "The request body is over 1 MiB."),
    "internal_error": ErrorCode((500,), "An unexpected failure; see the controller log."),
    "actor_mismatch": ErrorCode(
        (400,), "The body's actor or X-Sigap-Actor is not the signed-in user."),
    "invalid_json": ErrorCode((400,), "The body is not valid JSON or not an object."),
    "invalid_body": ErrorCode((400,), "The body has the wrong shape or unknown keys."),
    "invalid_request": ErrorCode((400,), "The request body has a bad or missing field."),
    "invalid_parameter": ErrorCode((400,), "A path or query parameter is invalid."),
    "missing_parameter": ErrorCode((400,), "A required query parameter is missing."),
    # Sign-in
    "sign_in_rejected": ErrorCode(
        (401,), "Wrong username or password, or the account is disabled."),
    "sign_in_limited": ErrorCode(
        (429,), "Too many failed sign-ins; wait the Retry-After seconds."),
    "accounts_unavailable": ErrorCode((503,), "The account service has not started."),
    "live_feed_unavailable": ErrorCode((503,), "The live event feed has not started."),
    # Calls and console
    "call_not_found": ErrorCode((404,), "No call with this id or uniqueid."),
    "store_unavailable": ErrorCode((503,), "The call store has not started."),
    "not_started": ErrorCode((503,), "The component behind the route has not started."),
    "invalid_number": ErrorCode(
        (400, 409), "A phone number is invalid (409: the stored caller number "
                    "cannot be dialled)."),
    "invalid_until": ErrorCode((400,), "until is not an ISO 8601 time in range."),
    "invalid_action": ErrorCode((400,), "The action is not one of those listed."),
    "missing_reason": ErrorCode((400,), "A reason is required."),
    "invalid_reason": ErrorCode((400,), "The pause reason is not a configured one."),
    "diversion_not_found": ErrorCode((404,), "No diversion flag with this id."),
    "not_abandoned": ErrorCode((409,), "Only abandoned calls are called back."),
    "already_called_back": ErrorCode((409,), "Someone already called this caller back."),
    "callback_in_progress": ErrorCode((409,), "A callback of this call is ringing."),
    "no_endpoint": ErrorCode((409,), "The user has no phone (endpoint) of their own."),
    # Operators and wallboard
    "unknown_action": ErrorCode((404,), "The operator action is not one of those listed."),
    "invalid_endpoint": ErrorCode((400,), "The endpoint name is invalid."),
    "operator_not_found": ErrorCode(
        (404,), "No operator with this endpoint (in the roster or configuration)."),
    "not_a_member": ErrorCode((409,), "The operator is not in any queue."),
    "invalid_mode": ErrorCode((400,), "The mode is not one of those listed."),
    "spy_on_self": ErrorCode((400,), "A supervisor cannot spy on their own phone."),
    "no_own_endpoint": ErrorCode((409,), "The supervisor has no phone of their own."),
    "invalid_own_endpoint": ErrorCode(
        (409,), "The supervisor's own endpoint is not a valid endpoint name."),
    "asterisk_rejected": ErrorCode((409, 502), "Asterisk rejected the AMI action."),
    "asterisk_unavailable": ErrorCode((503,), "No AMI session to Asterisk."),
    # Forwarding
    "missing_agency": ErrorCode((400,), "The body names no agency."),
    "invalid_report_id": ErrorCode((400,), "report_id is not a positive integer."),
    "invalid_call": ErrorCode((400,), "The call's uniqueid is invalid."),
    "agency_has_no_lines": ErrorCode((409,), "The agency has no staffed line now."),
    "call_not_connected": ErrorCode((409,), "The call is not connected to an operator."),
    "agency_not_connected": ErrorCode((409,), "The consulted agency has not answered."),
    "no_consult": ErrorCode((409,), "The call has no consult in progress."),
    "consult_completing": ErrorCode((409,), "The consult is being completed already."),
    "consult_in_progress": ErrorCode(
        (409,), "The caller is on hold for a consult: finish that consult first."),
    # Alarms
    "alarm_not_found": ErrorCode((404,), "No alarm with this id."),
    "alarms_unavailable": ErrorCode((503,), "The alarm board has not started."),
    # Roster and shifts
    "invalid_roster": ErrorCode((400,), "The roster is invalid; see problems."),
    "roster_not_found": ErrorCode((404,), "No roster has been saved yet."),
    "roster_version_not_found": ErrorCode((404,), "No roster version with this id."),
    "roster_conflict": ErrorCode((409,), "The roster changed during the edit; retry."),
    "operator_in_crew": ErrorCode((409,), "The operator is still in a crew."),
    "exception_not_found": ErrorCode((404,), "No such roster exception."),
    "roster_unavailable": ErrorCode((503,), "The roster service has not started."),
    "shift_not_found": ErrorCode((404,), "No shift at this time in the roster."),
    "shift_not_started": ErrorCode((409,), "The shift has not started yet."),
    "shift_report_failed": ErrorCode((500,), "Building the shift report failed."),
    "roster_missing": ErrorCode((503,), "No roster, so there are no shifts."),
    "database_unavailable": ErrorCode((503,), "The database cannot be read."),
    "shift_reports_unavailable": ErrorCode((503,), "The shift reporter has not started."),
    "report_not_found": ErrorCode((404,), "No report with this id (or not visible)."),
    # Agencies, reports and dispatches
    "invalid_agency": ErrorCode((400,), "The agency is invalid; see problems."),
    "agency_not_found": ErrorCode((404,), "No agency with this code."),
    "agency_conflict": ErrorCode((409,), "Another agency has this code or dial code."),
    "agencies_unavailable": ErrorCode((503,), "The agency directory has not started."),
    "invalid_report": ErrorCode((400,), "A report field is invalid; see problems."),
    "report_conflict": ErrorCode((409,), "Someone else changed the report first."),
    "dispatch_rejected": ErrorCode((409,), "The report cannot be sent to the agency."),
    "reports_unavailable": ErrorCode((503,), "The report service has not started."),
    "agency_not_set": ErrorCode((403,), "The agency user's account has no agency."),
    "invalid_note": ErrorCode((400,), "The note is not text or is too long."),
    "invalid_status": ErrorCode((400,), "The dispatch status is not one of those listed."),
    "invalid_transition": ErrorCode((409,), "The dispatch cannot move to that status."),
    "dispatch_not_found": ErrorCode((404,), "No dispatch with this id (or not visible)."),
    "dispatches_unavailable": ErrorCode((503,), "The dispatch service has not started."),
    "outbox_message_not_found": ErrorCode((404,), "No webhook message with this id."),
    "webhooks_unavailable": ErrorCode((503,), "The webhook sender has not started."),
}


# --- Document -----------------------------------------------------------------------


def _split_error(entry: str) -> tuple[int, str]:
    status, code = entry.split(" ", 1)
    return int(status), code


def _errors_of(method: str, roles: frozenset[Any], operation: Operation) -> list[str]:
    """Return an operation's error entries, with those every route of its kind has."""
    entries = list(operation.errors)
    if roles:
        entries += ["401 not_signed_in", "403 forbidden"]
        if method not in SAFE_METHODS:
            entries.append("403 csrf_rejected")
    if operation.takes_actor:
        entries.append("400 actor_mismatch")
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        entries.append("413 body_too_large")
    entries += ["421 host_not_allowed", "500 internal_error"]
    return list(dict.fromkeys(entries))


def _responses(method: str, roles: frozenset[Any], operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(operation.status): {
            "description": operation.summary,
            "content": {operation.media_type: {"schema": operation.response}},
        }
    }
    by_status: dict[int, list[str]] = {}
    for entry in _errors_of(method, roles, operation):
        status, code = _split_error(entry)
        by_status.setdefault(status, []).append(code)
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": ", ".join(codes),
            "content": {"application/json": {"schema": ref("Error")}},
            "x-error-codes": codes,
        }
    return responses


def _parameters(path: str, operation: Operation) -> list[dict[str, Any]]:
    described_names = {param.name for param in operation.parameters}
    params = [param.to_openapi() for param in operation.parameters]
    # A path parameter must be declared for the document to be valid.
    for name in _PATH_PARAMETER.findall(path):
        if name not in described_names:
            params.append(path_param(name, name).to_openapi())
    return params


def operation_object(
    method: str, path: str, roles: frozenset[Any], operation: Operation
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path[5:]).strip('_')}",
        "summary": operation.summary,
        "tags": [path.split("/")[2].split(".")[0]],
        "x-roles": sorted(role.value for role in roles),
        "parameters": _parameters(path, operation),
        "responses": _responses(method, roles, operation),
    }
    if operation.description:
        result["description"] = operation.description
    if operation.body is not None:
        result["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": operation.body}},
        }
    if roles:
        result["security"] = (
            [{"sessionCookie": []}]
            if method in SAFE_METHODS
            else [{"sessionCookie": [], "csrfToken": []}]
        )
    else:
        result["security"] = []
    return result


def api_routes(app: web.Application) -> list[tuple[str, str, frozenset[Any]]]:
    """Return (method, path, roles) of every /api route, HEAD left out."""
    order = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4}
    return sorted(
        (
            (method, path, roles)
            for (method, path), roles in route_roles(app).items()
            if path.startswith("/api/") and method != "HEAD"
        ),
        # By path, so that a resource's methods sit together in the docs.
        key=lambda item: (item[1], order.get(item[0], 9), item[0]),
    )


def missing_operations(app: web.Application) -> list[str]:
    """Return the /api routes of `app` that have no entry in OPERATIONS."""
    return [
        f"{method} {path}"
        for method, path, _ in api_routes(app)
        if f"{method} {path}" not in OPERATIONS
    ]


def build_document(app: web.Application) -> dict[str, Any]:
    """Build the OpenAPI document of every /api route of `app`."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, roles in api_routes(app):
        operation = OPERATIONS.get(f"{method} {path}")
        if operation is None:
            log.warning("openapi_route_undescribed", method=method, path=path)
            operation = Operation(f"{method} {path} (not described yet)")
        paths.setdefault(path, {})[method.lower()] = operation_object(
            method, path, roles, operation
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Sigap 112 controller API",
            "version": "1",
            "description": (
                "JSON API of the Sigap 112 controller. Sign in with POST "
                "/api/session; the session cookie then authenticates each request, "
                f"and POST, PUT, PATCH and DELETE also need the {CSRF_HEADER} header "
                "with the csrf_token of GET /api/session. x-roles lists the roles "
                "allowed on each operation (empty: no sign-in needed). Errors are "
                '{"error": {"code", "message"}} with a stable code.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "sessionCookie": {"type": "apiKey", "in": "cookie",
                                  "name": SESSION_COOKIE},
                "csrfToken": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
            },
        },
        "x-error-codes": {
            code: {"statuses": list(entry.statuses), "meaning": entry.meaning}
            for code, entry in sorted(ERROR_CODES.items())
        },
    }


def document_of(app: web.Application) -> dict[str, Any]:
    """Return the app's document, built on first use (routes do not change later)."""
    cache = app[DOCUMENT_KEY]
    if not cache:
        cache.update(build_document(app))
    return cache


# --- Routes -------------------------------------------------------------------------


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document_of(request.app))


def _schema_text(schema: dict[str, Any] | None) -> str:
    return "" if schema is None else json.dumps(schema, indent=2, ensure_ascii=False)


async def api_docs(request: web.Request) -> web.Response:
    document = document_of(request.app)
    operations = []
    for path, methods in document["paths"].items():
        for method, item in methods.items():
            body = item.get("requestBody", {}).get("content", {}).get("application/json")
            ok_status = min(item["responses"])
            ok = item["responses"][ok_status]
            (media_type, content), = ok["content"].items()
            operations.append({
                "method": method.upper(),
                "path": path,
                "tag": item["tags"][0],
                "summary": item["summary"],
                "description": item.get("description", ""),
                "roles": item["x-roles"],
                "parameters": item["parameters"],
                "body": _schema_text(body["schema"]) if body else "",
                "status": ok_status,
                "media_type": media_type,
                "response": _schema_text(content["schema"]),
                "errors": [
                    (status, code)
                    for status, response in item["responses"].items()
                    for code in response.get("x-error-codes", [])
                ],
            })
    return render(
        request,
        "api_docs.html",
        info=document["info"],
        operations=operations,
        error_codes=document["x-error-codes"],
        schemas={name: _schema_text(schema) for name, schema in SCHEMAS.items()},
    )


i18n.register({
    "apidocs.title": ("Dokumentasi API", "API documentation"),
    "apidocs.intro": (
        "Dokumen OpenAPI 3.1 yang sama tersedia di",
        "The same content as an OpenAPI 3.1 document is at",
    ),
    "apidocs.roles": ("Peran", "Roles"),
    "apidocs.public": ("tanpa masuk", "no sign-in"),
    "apidocs.parameters": ("Parameter", "Parameters"),
    "apidocs.body": ("Isi permintaan", "Request body"),
    "apidocs.response": ("Respons", "Response"),
    "apidocs.errors": ("Galat", "Errors"),
    "apidocs.error_codes": ("Kode galat", "Error codes"),
    "apidocs.schemas": ("Skema", "Schemas"),
    "apidocs.code": ("Kode", "Code"),
    "apidocs.status": ("Status HTTP", "HTTP status"),
    "apidocs.meaning": ("Arti", "Meaning"),
    "apidocs.contents": ("Daftar rute", "Routes"),
})


def add_routes(app: web.Application) -> None:
    # Filled on the first request, when every module has added its routes.
    app[DOCUMENT_KEY] = {}
    route(app, "GET", "/api/openapi.json", openapi_json, EVERYONE)
    route(app, "GET", "/api/docs", api_docs, EVERYONE)

