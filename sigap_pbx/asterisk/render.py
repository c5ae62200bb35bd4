"""Render the site's Asterisk files from the controller's configuration.

The static files in asterisk-config/ and dialplans/ are copied as they are. The values
that differ per site (addresses, ports, secrets, trunk sources, queue timings, prompt
paths) go into `*_site.conf` files, which the static ones include. Every name written
here was validated by the configuration's patterns, so none can open a new section or
break out of a dial string.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.asterisk.prompts import GREETING_MAX_SECONDS, WARNING_MAX_SECONDS
from sigap_pbx.config import Config, OperatorConfig, load_secrets

HEADER = "; Rendered by `sigap render-config` from the controller's configuration.\n"
HEADER += "; Do not edit: change sigap.toml and render again.\n"


def project_dir() -> Path:
    """Return the checkout (or install prefix) holding asterisk-config/ and dialplans/."""
    env = os.environ.get("SIGAP_PROJECT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2]


def _phone(
    op: OperatorConfig, password: str, qualify: int, template: str = "phone-template"
) -> str:
    name = op.endpoint
    return f"""
; {op.name or name}
[{name}]({template})
transport = transport-phones
auth = {name}
aors = {name}
callerid = "{(op.name or name).replace('"', "")}" <{name}>

[{name}]
type = auth
auth_type = digest
username = {name}
password = {password}

[{name}](phone-aor-template)
qualify_frequency = {qualify}
"""


def render_pjsip(config: Config, secrets: dict[str, str]) -> str:
    sip = config.sip
    trunk_host, trunk_port = sip.trunk_bind.rsplit(":", 1)
    op_host, op_port = sip.operator_bind.rsplit(":", 1)
    parts = [
        HEADER,
        f"""
; The carrier faces this transport.
[transport-trunk]
type = transport
protocol = udp
bind = {trunk_host}:{trunk_port}

; Operator, supervisor and on-call phones register on this one.
[transport-phones]
type = transport
protocol = udp
bind = {op_host}:{op_port}
""",
    ]
    for trunk in sip.trunks:
        matches = ",".join(trunk.match)
        parts.append(
            f"""
[{trunk.name}](trunk-template)
transport = transport-trunk
{f"aors = {trunk.name}{chr(10)}" if trunk.outbound else ""}
[{trunk.name}-identify]
type = identify
endpoint = {trunk.name}
match = {matches}
"""
        )
        if trunk.outbound:
            # Outgoing calls (PJSIP/<number>@<trunk>) go to this static contact.
            parts.append(
                f"""
[{trunk.name}]
type = aor
contact = sip:{trunk.outbound}
"""
            )
    phones = [*sip.operators, sip.supervisor, sip.oncall]
    for op in phones:
        parts.append(_phone(op, secrets[f"sip.{op.endpoint}"], sip.qualify_seconds))
    for line in sip.agency_lines:
        parts.append(
            _phone(line, secrets[f"sip.{line.endpoint}"], sip.qualify_seconds,
                   "agency-line-template")
        )
    return "".join(parts)


# Events the controller's call tracker, live view and member trackers use.
AMI_EVENTS = (
    "FullyBooted", "Newchannel", "Hangup", "QueueCallerJoin", "QueueCallerLeave",
    "QueueCallerAbandon", "AgentCalled", "AgentRingNoAnswer", "AgentConnect",
    "AgentComplete", "DialEnd", "UserEvent", "QueueMemberAdded", "QueueMemberRemoved",
    "QueueMemberPause", "QueueMemberStatus", "QueueMemberPenalty", "ContactStatus",
    "ConfbridgeJoin", "ConfbridgeLeave", "OriginateResponse", "Shutdown",
)


def _event_filters() -> str:
    # No "$" anchor: Asterisk matches the regex against the whole event text.
    return "\n".join(f"eventfilter = Event: {name}" for name in AMI_EVENTS)


def render_manager(config: Config, secrets: dict[str, str]) -> str:
    ami = config.ami
    return f"""{HEADER}
port = {ami.port}
bindaddr = {ami.host}

; The controller's user: loopback only, and only the classes it needs. It has no
; "command" or "config" write class, so it cannot run CLI commands or edit files.
[{ami.username}]
secret = {secrets["ami"]}
deny = 0.0.0.0/0.0.0.0
permit = {ami.host}/255.255.255.255
read = system,call,agent,user
write = system,call,agent,originate
; A controller that stops reading is dropped after this many ms instead of stalling
; Asterisk's event delivery.
writetimeout = 1000
; Only the events the controller reads are sent (an allow-list: with any filter
; without "!", an event must match one of them). About a third of a call's events
; remain, which matters at high call rates on a small machine.
{_event_filters()}
"""


def render_queues(config: Config, paths: InstancePaths) -> str:
    queue = config.queue
    announce = paths.inner_prompts / "still-in-queue"
    body = [HEADER]
    for name in (queue.name, queue.backup_name):
        body.append(
            f"""
[{name}](emergency-queue)
; Seconds each ring attempt lasts before the queue tries again.
timeout = {queue.ring_seconds}
; "Anda masih dalam antrean..." every {queue.periodic_announce_seconds} s.
periodic-announce = {announce}
periodic-announce-frequency = {queue.periodic_announce_seconds}
"""
        )
    return "".join(body)


def render_musiconhold(paths: InstancePaths) -> str:
    prompts = paths.inner_prompts
    return f"""{HEADER}
; Played to a waiting caller: the greeting once (00-greeting sorts first), then the
; ring tone (99-ringback) looped for as long as the caller waits.
[sigap-wait]
mode = files
directory = {prompts}/moh-wait
sort = alpha
loop_last = yes

; The same for a number flagged with a warning: the greeting, the warning against
; prank calls, then the ring tone looped.
[sigap-wait-warning]
mode = files
directory = {prompts}/moh-wait-warning
sort = alpha
loop_last = yes

; Two rings and the "still in the queue" announcement, looped, for the later steps
; of the overflow chain.
[sigap-ring]
mode = files
directory = {prompts}/moh-ring
sort = alpha
"""


def render_extensions(
    config: Config, paths: InstancePaths, secrets: dict[str, str] | None = None
) -> str:
    queue = config.queue
    lines = [
        HEADER,
        "\n[globals]\n",
        "; Defaults used when the controller has not set the AstDB key.\n",
        f"SIGAP_DEFAULT_QUEUE={queue.name}\n",
        f"SIGAP_DEFAULT_OVERFLOW_AFTER={queue.overflow_after_seconds}\n",
        f"SIGAP_DEFAULT_BACKUP_QUEUE={queue.backup_name}\n",
        f"SIGAP_DEFAULT_BACKUP_WAIT={queue.backup_wait_seconds}\n",
        f"SIGAP_DEFAULT_SUPERVISOR={config.sip.supervisor.endpoint}\n",
        f"SIGAP_DEFAULT_SUPERVISOR_RING={queue.supervisor_ring_seconds}\n",
        f"SIGAP_DEFAULT_ONCALL={config.sip.oncall.endpoint}\n",
        f"SIGAP_DEFAULT_ONCALL_RING={queue.oncall_ring_seconds}\n",
        f"SIGAP_PROMPTS={paths.inner_prompts}\n",
        "; The greeting's maximum length; prompts.py warns about a longer one.\n",
        f"SIGAP_GREETING_SECONDS={math.ceil(GREETING_MAX_SECONDS)}\n",
        "; The same for a flagged caller, who hears the warning after the greeting.\n",
        f"SIGAP_WARNED_GREETING_SECONDS={math.ceil(GREETING_MAX_SECONDS + WARNING_MAX_SECONDS)}\n",
        f"SIGAP_AGI_HOST={config.agi.host}\n",
        f"SIGAP_AGI_PORT={config.agi.port}\n",
        f"SIGAP_AGI_WAIT={config.agi.operator_wait_seconds}\n",
        "; Proves to the FastAGI server that a request comes from this dialplan.\n",
        f"SIGAP_AGI_TOKEN={(secrets or {}).get('agi', '')}\n",
        f"SIGAP_HEARTBEAT_STALE={config.controller.heartbeat_stale_seconds}\n",
        f"SIGAP_DEFAULT_AGENCY_RING={config.agencies.line_ring_seconds}\n",
        "; Seconds a caller waits on hold during a consult before going back to the queue.\n",
        f"SIGAP_HOLD_LIMIT={config.agencies.consult_hold_seconds}\n",
        "\n; Calls from the carrier trunk: the emergency numbers only, as literals.\n",
        "[sigap-trunk-inbound]\n",
    ]
    for number in config.sip.emergency_numbers:
        lines.append(f"exten => {number},1,Set(SIGAP_DIALLED={number})\n")
        lines.append(" same => n,Goto(sigap-emergency,s,1)\n")
    return "".join(lines)


def render_rtp(config: Config) -> str:
    return f"{HEADER}rtpstart = {config.sip.rtp_start}\nrtpend = {config.sip.rtp_end}\n"


def render_config(config: Config, out: Path | None = None) -> Path:
    """Write the complete Asterisk configuration directory and return its path."""
    out = out or config.asterisk_etc_dir
    paths = InstancePaths.for_instance(config.site.instance)
    secrets = load_secrets(config)
    source = project_dir()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.conf"):
        stale.unlink()
    for folder in ("asterisk-config", "dialplans"):
        for conf in sorted((source / folder).glob("*.conf")):
            shutil.copyfile(conf, out / conf.name)
    site_files = {
        "pjsip_site.conf": render_pjsip(config, secrets),
        "manager_site.conf": render_manager(config, secrets),
        "queues_site.conf": render_queues(config, paths),
        "musiconhold_site.conf": render_musiconhold(paths),
        "extensions_site.conf": render_extensions(config, paths, secrets),
        "rtp_site.conf": render_rtp(config),
    }
    for name, text in site_files.items():
        target = out / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    os.chmod(out, 0o700)
    return out
