"""Controller configuration: one TOML file, then environment variables on top.

Every value is validated once at start. An invalid value raises `ConfigError`, whose
message names the key, the rule it broke and how to fix it, so an administrator can act
on it without reading this code.

Environment variables are named after the key: `SIGAP_WEB__PORT=8200` sets `[web] port`.
A double underscore separates the table from the key, and a list is given as JSON:
`SIGAP_SIP__EMERGENCY_NUMBERS='["112", "0112"]'`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "SIGAP_"
DEFAULT_CONFIG_PATHS = (Path("sigap.toml"), Path("/etc/sigap/sigap.toml"))

# Names that end up in Asterisk configuration, dial strings or AstDB keys. The patterns
# are strict on purpose: anything else could break out of a dial string or a section.
EndpointName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
DialNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{1,20}$")]
Secret = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.~+/=-]{12,128}$")]


class ConfigError(Exception):
    """Raised when the configuration is missing, unreadable or invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_hostport(value: str, *, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:5060")
    bracketed = host.startswith("[") and host.endswith("]")
    if ":" in host and not bracketed:
        raise ValueError(f"write the IPv6 address in {value!r} in brackets, e.g. [::1]:5060")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"{host!r} in {key} is not an IP address") from None
    return host, int(port)


class SiteConfig(_Section):
    name: str = "Sigap 112"
    # Country calling code used to normalise national numbers (0812... -> +62812...).
    country_code: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,2}$")] = "62"
    # Asterisk instance that scripts/asterisk.sh runs for this site.
    instance: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")] = (
        "dev"
    )
    # Generated secrets, rendered Asterisk files and prompts are written here.
    state_dir: Path = Path("var")


class TrunkConfig(_Section):
    name: EndpointName = "carrier"
    # Source addresses (or networks) the carrier sends from. Calls from anywhere else
    # are not identified as this trunk.
    match: list[str] = Field(default_factory=lambda: ["127.0.0.2"], min_length=1)
    # Destination of calls out through this trunk (callbacks, agency lines that are
    # numbers): "host:port" of the carrier's SIP side, such as "192.0.2.10:5060".
    # Left empty, the trunk takes no outgoing calls and such calls fail.
    outbound: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}:[0-9]{1,5}$")
    ] | None = None

    @field_validator("match")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            network = ipaddress.ip_network(item, strict=False)
            if network.prefixlen == 0:
                raise ValueError(
                    f"{item!r} matches every address, so any host could place calls as "
                    "the carrier; list the carrier's own addresses or networks"
                )
        return value


# A display name goes into pjsip.conf's callerid line, so it may not contain a line
# break, a quote, a comment sign or brackets that would end the value or the section.
DisplayName = Annotated[str, StringConstraints(pattern=r'^[^\x00-\x1f\x7f";\[\]<>\\]{0,64}$')]


class OperatorConfig(_Section):
    endpoint: EndpointName
    name: DisplayName = ""
    # Left empty, a random password is generated into the secrets file.
    password: Secret | None = None


class SipConfig(_Section):
    trunk_bind: str = "127.0.0.1:5060"
    operator_bind: str = "127.0.0.1:5061"
    rtp_start: int = Field(10000, ge=1024, le=65000)
    rtp_end: int = Field(10999, ge=1025, le=65535)
    # Seconds between OPTIONS probes to each operator phone; 0 turns probing off.
    qualify_seconds: int = Field(15, ge=0, le=3600)
    trunks: list[TrunkConfig] = Field(default_factory=lambda: [TrunkConfig()])
    # Numbers the carrier may deliver for the emergency service. Only these are routed.
    emergency_numbers: list[DialNumber] = Field(
        default_factory=lambda: ["112"], min_length=1
    )
    operators: list[OperatorConfig] = Field(
        default_factory=lambda: [
            OperatorConfig(endpoint="op1", name="Operator 1"),
            OperatorConfig(endpoint="op2", name="Operator 2"),
        ]
    )
    # Lines on the overflow chain; they register like operator phones.
    supervisor: OperatorConfig = OperatorConfig(endpoint="spv1", name="Supervisor")
    oncall: OperatorConfig = OperatorConfig(endpoint="oncall1", name="On-call")
    # Agency phones that register here (an agency's desk phone on the city network).
    # They can receive forwarded calls and call-outs, and dial nothing but *43.
    agency_lines: list[OperatorConfig] = Field(default_factory=list)

    @field_validator("trunk_bind", "operator_bind")
    @classmethod
    def _check_bind(cls, value: str, info: Any) -> str:
        _parse_hostport(value, key=f"sip.{info.field_name}")
        return value

    @model_validator(mode="after")
    def _check_unique(self) -> SipConfig:
        names = [op.endpoint for op in self.operators]
        names += [self.supervisor.endpoint, self.oncall.endpoint]
        names += [line.endpoint for line in self.agency_lines]
        names += [trunk.name for trunk in self.trunks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"endpoint names in sip.operators, sip.supervisor, sip.oncall, "
                f"sip.agency_lines and sip.trunks must be unique, repeated: {duplicates}"
            )
        numbers = self.emergency_numbers
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise ValueError(f"sip.emergency_numbers lists {repeated} more than once")
        if self.trunk_bind == self.operator_bind:
            raise ValueError(
                "sip.trunk_bind and sip.operator_bind must differ, because the carrier "
                "and the phones each need their own transport"
            )
        if self.rtp_end <= self.rtp_start:
            raise ValueError("sip.rtp_end must be greater than sip.rtp_start")
        return self


class QueueConfig(_Section):
    name: QueueName = "operators"
    backup_name: QueueName = "operators-backup"
    # Seconds each attempt rings the operators before Asterisk tries again.
    ring_seconds: int = Field(15, ge=5, le=120)
    # Seconds a caller waits in the operators' queue before the overflow chain starts.
    overflow_after_seconds: int = Field(30, ge=5, le=600)
    backup_wait_seconds: int = Field(20, ge=5, le=600)
    supervisor_ring_seconds: int = Field(20, ge=5, le=120)
    oncall_ring_seconds: int = Field(30, ge=5, le=120)
    # Seconds between "please stay on the line" announcements to a waiting caller.
    periodic_announce_seconds: int = Field(15, ge=15, le=20)
    # Seconds an operator stays paused (reason "wrapup") after each call, across all
    # queues; 0 turns wrap-up off. The controller enforces it and raises an alert
    # when Asterisk offers a call inside the window. NOTE: a caller who arrives while
    # every operator is in wrap-up goes down the overflow chain at once, because a
    # queue whose members are all paused counts as empty.
    wrapup_seconds: int = Field(0, ge=0, le=300)
    # Offered calls in a row that an operator may leave unanswered before the
    # controller pauses them with reason "missed_calls" and alerts supervisors;
    # 0 turns this off. app_queue reports each ring timeout as one missed offer.
    missed_calls_pause: int = Field(3, ge=0, le=50)
    # Seconds a caller may wait in a queue before the coverage guard raises an alarm.
    long_wait_alarm_seconds: int = Field(20, ge=5, le=3600)


class RosterConfig(_Section):
    # IANA time zone of the shift start times in the roster.
    timezone: str = "Asia/Pontianak"
    # Seconds before its shift starts that the incoming crew joins the queues. The
    # outgoing crew leaves when its shift ends, or when its call in progress ends.
    handover_overlap_seconds: int = Field(300, ge=0, le=3600)
    # Days ahead, from today, that a saved roster is checked for shifts below
    # their minimum.
    coverage_check_days: int = Field(28, ge=1, le=366)
    # Seconds between two comparisons of queue membership with the roster.
    reconcile_seconds: float = Field(5.0, ge=0.5, le=300)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time zone {value!r} not found, use an IANA name such as Asia/Jakarta"
            ) from None
        return value

    @property
    def zone(self) -> Any:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)


class AgenciesConfig(_Section):
    # Seconds each agency line rings before the next line is tried.
    line_ring_seconds: int = Field(20, ge=5, le=120)
    # Minutes an agency has to acknowledge a report before the controller calls its
    # line, by report priority: the first value is for priority 1 (most urgent).
    acknowledge_minutes: list[int] = Field(
        default_factory=lambda: [2, 5, 10, 15], min_length=4, max_length=4
    )
    # Seconds a caller waits on hold while the operator consults an agency. After
    # that the caller goes back to the operators' queue at the highest priority.
    consult_hold_seconds: int = Field(120, ge=10, le=600)
    # Seconds a webhook receiver has to reply before the attempt counts as failed.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    # Delivery attempts of one webhook message before it is marked failed.
    webhook_max_attempts: int = Field(12, ge=1, le=100)
    # Maximum wait between two attempts. The wait doubles from 1 s up to this.
    webhook_backoff_max_seconds: float = Field(300.0, ge=1, le=3600)

    @field_validator("acknowledge_minutes")
    @classmethod
    def _check_minutes(cls, value: list[int]) -> list[int]:
        for minutes in value:
            if not 1 <= minutes <= 240:
                raise ValueError(
                    f"acknowledge_minutes value {minutes} is out of range, use 1 to 240"
                )
        return value


class AmiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: EndpointName = "sigap"
    # Left empty, a random secret is generated into the secrets file.
    secret: Secret | None = None
    # Seconds a pending AMI action may wait for its reply.
    action_timeout: float = Field(5.0, gt=0, le=60)
    reconnect_max_seconds: float = Field(10.0, ge=0.5, le=300)

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError("AMI must be reached on a loopback address")
        return value


class AgiConfig(_Section):
    # Loopback only: the FastAGI server trusts whatever connects to it.
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=1, le=65535)
    # Seconds a FastAGI client may take to send its environment block.
    environment_timeout: float = Field(2.0, gt=0, le=30)
    # Seconds an operator's feature code waits for the controller before the dialplan
    # falls back to doing the action itself.
    operator_wait_seconds: int = Field(4, ge=1, le=10)

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError("FastAGI must listen on a loopback address")
        return value


class ControllerConfig(_Section):
    # The controller writes a heartbeat into AstDB this often; the dialplan treats the
    # controller as down when the heartbeat is older than heartbeat_stale_seconds.
    heartbeat_seconds: float = Field(1.0, ge=0.2, le=10)
    heartbeat_stale_seconds: int = Field(3, ge=2, le=60)
    # Seconds between reconciliation passes over Asterisk's CEL, as a safety net.
    reconcile_seconds: float = Field(30.0, ge=1, le=3600)


class DatabaseConfig(_Section):
    # Empty means SQLite at STATE_DIR/sigap.db.
    url: str = ""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and not re.match(r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://", value):
            raise ValueError(
                "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
            )
        return value


class WebConfig(_Section):
    # The address the web server listens on. Any address other than a loopback one
    # needs tls_cert and tls_key, because session cookies are sent over HTTPS only.
    host: str = "127.0.0.1"
    port: int = Field(8112, ge=1, le=65535)
    # Host header names accepted besides loopback ones, e.g. ["sigap.example.go.id"].
    # A request naming any other host is rejected, which defeats DNS rebinding.
    allowed_hosts: list[str] = []
    # PEM certificate chain and key for HTTPS.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("host")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address: give the address to listen on, "
                "such as 127.0.0.1, 0.0.0.0 or ::"
            ) from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", name):
                raise ValueError(
                    f"{name!r} is not a host name: list names such as "
                    "sigap.example.go.id, without a scheme or port"
                )
        return [name.lower() for name in value]

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> WebConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        if not ipaddress.ip_address(self.host).is_loopback and self.tls_cert is None:
            raise ValueError(
                f"host {self.host!r} is not a loopback address, so the web server "
                "needs HTTPS: set tls_cert and tls_key, or listen on 127.0.0.1 "
                "behind a TLS reverse proxy"
            )
        return self


class PromptsConfig(_Section):
    # A folder of the city's own recordings (e.g. greeting.wav, still-in-queue.mp3).
    # A file here replaces the generated prompt of the same name.
    custom_dir: Path | None = None


class LoggingConfig(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    site: SiteConfig = SiteConfig()
    sip: SipConfig = SipConfig()
    queue: QueueConfig = QueueConfig()
    roster: RosterConfig = RosterConfig()
    agencies: AgenciesConfig = AgenciesConfig()
    ami: AmiConfig = AmiConfig()
    agi: AgiConfig = AgiConfig()
    controller: ControllerConfig = ControllerConfig()
    database: DatabaseConfig = DatabaseConfig()
    web: WebConfig = WebConfig()
    prompts: PromptsConfig = PromptsConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _check_tcp_ports(self) -> Config:
        listeners = {
            "ami.port": (self.ami.host, self.ami.port),
            "agi.port": (self.agi.host, self.agi.port),
            "web.port": (self.web.host, self.web.port),
        }
        seen: dict[tuple[str, int], str] = {}
        for key, address in listeners.items():
            if address in seen:
                raise ValueError(f"{key} and {seen[address]} both use {address[0]}:{address[1]}")
            seen[address] = key
        return self

    @property
    def state_dir(self) -> Path:
        return self.site.state_dir.resolve()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.state_dir / 'sigap.db'}"

    @property
    def asterisk_etc_dir(self) -> Path:
        return self.state_dir / "asterisk-etc"

    @property
    def prompts_dir(self) -> Path:
        return self.state_dir / "prompts"

    @property
    def secrets_path(self) -> Path:
        return self.state_dir / "secrets.toml"


def _env_value(value: str) -> Any:
    """Read a list or table given as JSON (`'["112", "0112"]'`); anything else is text."""
    if value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Turn SIGAP_TABLE__KEY=value variables into a nested dict."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(value)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(error: dict[str, Any], source: str | None) -> str:
    """Describe one validation error. `source` is the file that was read, or None
    when there was none, so that only an environment variable can be wrong."""
    key = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    env_name = ENV_PREFIX + "__".join(str(p).upper() for p in error["loc"])
    if error["type"] == "extra_forbidden":
        origin = f"{source} or {env_name}" if source else env_name
        return f"{key}: unknown key in {origin}; remove it or check its spelling"
    rule = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        rule = f"must match {pattern}"
    if isinstance(value, dict):
        # A rule across several keys of a table (a whole-table check): the message
        # names the keys, and only the file or the keys' own variables can fix it.
        where = f"[{key}]" if key else "the configuration"
        origin = f" in {source}" if source else ""
        return f"{where}: {rule}. Fix it{origin}"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    fix = f"Fix it in {source} or set {env_name}" if source else f"Fix {env_name}"
    return (
        f"{key} = {shown}: {rule}. {fix}"
        if "secret" not in key and "password" not in key
        else f"{key}: {rule}. {fix}"
    )


def load_config(
    path: Path | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Read the TOML file (if any), apply environment overrides and validate."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    source: str | None = None
    if path is None and environ.get("SIGAP_CONFIG"):
        path = Path(environ["SIGAP_CONFIG"])
    if path is None:
        path = next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"configuration file {path} not found; create it from "
                "docs/sigap.example.toml or leave SIGAP_CONFIG unset to use defaults"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(environ))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(err, source) for err in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def load_secrets(config: Config) -> dict[str, str]:
    """Return the AMI secret and SIP passwords, generating missing ones.

    Generated secrets go to STATE_DIR/secrets.toml with mode 0600 and are reused on the
    next start, so phones keep working. Secrets given in the configuration win.
    """
    path = config.secrets_path
    stored: dict[str, str] = {}
    if path.exists():
        stored = {k: str(v) for k, v in tomllib.loads(path.read_text()).items()}
    # "agi" is the token the dialplan passes to FastAGI, so that a local process
    # that is not Asterisk cannot log operators in or out.
    wanted = {"ami": config.ami.secret, "agi": None}
    sip = config.sip
    for op in [*sip.operators, sip.supervisor, sip.oncall, *sip.agency_lines]:
        wanted[f"sip.{op.endpoint}"] = op.password
    result: dict[str, str] = {}
    changed = False
    for name, configured in wanted.items():
        if configured:
            result[name] = configured
        elif name in stored:
            result[name] = stored[name]
        else:
            result[name] = secrets.token_urlsafe(18)
            changed = True
    if changed or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f'"{k}" = "{v}"\n' for k, v in sorted(result.items()))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# Generated by sigap; keep this file private.\n" + body)
        os.chmod(path, 0o600)
    return result
