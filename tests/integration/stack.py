"""A real Asterisk instance, SIPp phones and callers, and the controller, for tests.

The instance is started with scripts/asterisk.sh like `make run` does, on its own
ports, so it never clashes with a stack a developer is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.asterisk.prompts import generate_prompts
from sigap_pbx.asterisk.render import render_config
from sigap_pbx.config import Config, load_config, load_secrets

REPO = Path(__file__).resolve().parents[2]
SIPP_DIR = REPO / "scripts" / "sipp"
ASTERISK_SH = REPO / "scripts" / "asterisk.sh"
# SIGAP_TEST_SLOT=N (0 by default) runs a separate instance, itestN, on ports moved
# by N*1000, so that two test runs on one machine do not share an Asterisk.
SLOT = int(os.environ.get("SIGAP_TEST_SLOT", "0"))
INSTANCE = "itest" if SLOT == 0 else f"itest{SLOT}"
_OFFSET = SLOT * 1000


def _port(base: int) -> str:
    return str(base + _OFFSET)


# Ports of the test instance: far from the defaults that `make run` uses.
ENV = {
    "SIGAP_SITE__INSTANCE": INSTANCE,
    "SIGAP_SIP__TRUNK_BIND": f"127.0.0.1:{_port(15060)}",
    "SIGAP_SIP__OPERATOR_BIND": f"127.0.0.1:{_port(15061)}",
    "SIGAP_SIP__RTP_START": _port(21000),
    "SIGAP_SIP__RTP_END": _port(21999),
    "SIGAP_SIP__QUALIFY_SECONDS": "0",
    "SIGAP_SIP__OPERATORS": (
        '[{"endpoint": "op1", "name": "Operator 1"}, {"endpoint": "op2", "name": "Operator 2"},'
        ' {"endpoint": "op3", "name": "Operator 3"}]'
    ),
    "SIGAP_SIP__AGENCY_LINES": (
        '[{"endpoint": "agency-fire-1", "name": "Damkar 1"},'
        ' {"endpoint": "agency-fire-2", "name": "Damkar 2"}]'
    ),
    "SIGAP_AGENCIES__LINE_RING_SECONDS": "5",
    "SIGAP_AMI__PORT": _port(15038),
    "SIGAP_AMI__RECONNECT_MAX_SECONDS": "1",
    "SIGAP_AGI__PORT": _port(14573),
    "SIGAP_WEB__PORT": _port(18112),
    "SIGAP_QUEUE__RING_SECONDS": "5",
    "SIGAP_QUEUE__OVERFLOW_AFTER_SECONDS": "5",
    "SIGAP_QUEUE__BACKUP_WAIT_SECONDS": "5",
    "SIGAP_QUEUE__SUPERVISOR_RING_SECONDS": "5",
    "SIGAP_QUEUE__ONCALL_RING_SECONDS": "5",
    "SIGAP_CONTROLLER__RECONCILE_SECONDS": "2",
    "SIGAP_LOGGING__LEVEL": "info",
}
TRUNK_HOST = "127.0.0.1"
TRUNK_PORT = 15060 + _OFFSET
PHONE_PORT = 15061 + _OFFSET
CARRIER_IP = "127.0.0.2"

_ports = itertools.count(26000 + 2 * _OFFSET, 4)
_media = itertools.count(30000 if SLOT == 0 else 40000 + 5 * _OFFSET, 10)


def next_port() -> int:
    return next(_ports)


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class Stack:
    """The running test instance and what the tests need to drive it."""

    state_dir: Path
    environ: dict[str, str]
    config: Config
    secrets: dict[str, str]
    paths: InstancePaths
    work: Path
    phones: list[asyncio.subprocess.Process] = field(default_factory=list)
    controllers: list[asyncio.subprocess.Process] = field(default_factory=list)

    # Asterisk ------------------------------------------------------------------------

    def rx(self, command: str) -> str:
        result = subprocess.run(
            [str(ASTERISK_SH), "rx", "--instance", INSTANCE, command],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout

    def asterisk(self, verb: str) -> None:
        args = [str(ASTERISK_SH), verb, "--instance", INSTANCE]
        if verb in ("up", "restart"):
            args += ["--etc", str(self.config.asterisk_etc_dir),
                     "--prompts", str(self.config.prompts_dir)]
        subprocess.run(args, check=True, capture_output=True, timeout=120)

    def queue_members(self, queue: str = "operators") -> list[str]:
        text = self.rx(f"queue show {queue}")
        # A member line is "PJSIP/op1 (...)" or, with a member name, "op1 (PJSIP/op1 from ...".
        found = re.findall(r"^\s+(?:\S+ \()?(PJSIP/[A-Za-z0-9_.-]+)", text, re.MULTILINE)
        return sorted(found)

    def reset_queues(self) -> None:
        for queue in ("operators", "operators-backup"):
            for member in self.queue_members(queue):
                self.rx(f"queue remove member {member} from {queue}")

    def add_member(self, endpoint: str, queue: str = "operators") -> None:
        self.rx(
            f"queue add member PJSIP/{endpoint} to {queue} penalty 0 as {endpoint} "
            f"state_interface PJSIP/{endpoint}"
        )

    # SIPp --------------------------------------------------------------------------

    def _scenario(self, name: str, replacements: dict[str, str] | None = None) -> Path:
        text = (SIPP_DIR / name).read_text()
        for old, new in (replacements or {}).items():
            assert old in text, f"{old!r} not in {name}"
            text = text.replace(old, new)
        target = self.work / f"{next_port()}-{name}"
        target.write_text(text)
        return target

    async def start_phone(
        self, endpoint: str, *, ring_ms: int = 1000, presses_1: bool = False, keys: str = ""
    ) -> asyncio.subprocess.Process:
        """Register `endpoint` and answer its calls after `ring_ms` (a huge value never
        answers). With `presses_1`, it answers at once and sends DTMF 1 after 2.5 s;
        with `keys`, it answers at once and presses those keys after 2 s."""
        if presses_1:
            answer = SIPP_DIR / "phone-answer-dtmf.xml"
        elif keys:
            answer = self._keys_scenario(keys)
        else:
            answer = self._scenario(
                "phone-answer.xml", {'timeout="1000"': f'timeout="{ring_ms}"'}
            )
        port = next_port()
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(SIPP_DIR / "phone-register.xml"), "-oocsf", str(answer),
            "-aa", "-s", endpoint, "-au", endpoint, "-ap", self.secrets[f"sip.{endpoint}"],
            "-i", "127.0.0.1", "-p", str(port), "-mp", str(next(_media)), "-m", "1",
            "-nostdin", f"{TRUNK_HOST}:{PHONE_PORT}",
            cwd=self.work, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        self.phones.append(proc)
        await self.wait_for(lambda: endpoint in self.rx("pjsip show contacts"), 10, f"{endpoint} registered")
        return proc

    def _keys_scenario(self, keys: str) -> Path:
        text = (SIPP_DIR / "phone-answer-keys.xml").read_text()
        start = text.index("<!-- KEY BLOCK START -->")
        end = text.index("<!-- KEY BLOCK END -->")
        block = text[start:end]
        blocks = [
            block.replace("[cseq]", str(index)).replace("Signal=KEY", f"Signal={key}")
            for index, key in enumerate(keys, start=1)
        ]
        target = self.work / f"{next_port()}-phone-answer-keys.xml"
        target.write_text(text[:start] + "".join(blocks) + text[end:])
        return target

    def caller_keys_scenario(self, keys: str) -> Path:
        """Return a caller scenario that presses `keys` (SIP INFO) 3 s after the answer
        and hangs up 3 s later."""
        text = (SIPP_DIR / "caller.xml").read_text()
        infos = []
        for index, key in enumerate(keys, start=2):
            infos.append(f"""
  <send retrans="500">
    <![CDATA[
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {index} INFO
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=250
    ]]>
  </send>
  <recv response="200"/>
""")
        text = text.replace(
            "  <pause/>",
            '  <pause milliseconds="3000"/>\n' + "".join(infos)
            + '  <pause milliseconds="3000"/>',
        )
        text = text.replace("CSeq: 2 BYE", f"CSeq: {len(keys) + 2} BYE")
        target = self.work / f"{next_port()}-caller-keys.xml"
        target.write_text(text)
        return target

    async def stop_phone(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    async def stop_phones(self) -> None:
        for proc in self.phones:
            await self.stop_phone(proc)
        self.phones.clear()

    async def sipp(self, scenario: str, *args: str, timeout: float = 120) -> SippResult:
        port = next_port()
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", scenario, "-p", str(port), "-mp", str(next(_media)),
            "-nostdin", "-trace_err", "-error_file", str(self.work / f"{port}.err"),
            *args,
            cwd=self.work, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            stdout, stderr = await proc.communicate()
        err_file = self.work / f"{port}.err"
        errors = err_file.read_text(errors="replace") if err_file.exists() else ""
        return SippResult(proc.returncode or 0, stdout.decode(errors="replace"),
                          stderr.decode(errors="replace"), errors)

    async def call(
        self, caller: str, *, number: str = "112", hold_ms: int = 2000, name: str = "Warga",
        calls: int = 1, rate: float | None = None, timeout: float = 120,
    ) -> SippResult:
        """Place `calls` trunk calls from the carrier's address and wait for them to end."""
        args = ["-s", number, "-i", CARRIER_IP, "-m", str(calls), "-d", str(hold_ms),
                "-key", "caller", caller, "-key", "caller_name", name]
        if rate is not None:
            args += ["-r", str(rate), "-l", str(calls)]
        return await self.sipp(str(SIPP_DIR / "caller.xml"), *args,
                               f"{TRUNK_HOST}:{TRUNK_PORT}", timeout=timeout)

    async def dial_feature(self, endpoint: str, code: str) -> SippResult:
        return await self.sipp(
            str(SIPP_DIR / "phone-dial.xml"), "-s", code, "-key", "user", endpoint,
            "-au", endpoint, "-ap", self.secrets[f"sip.{endpoint}"], "-i", "127.0.0.1",
            "-m", "1", f"{TRUNK_HOST}:{PHONE_PORT}", timeout=30,
        )

    async def unregister_phone(self, endpoint: str) -> None:
        """Take every registration of `endpoint` away, as a phone that shuts down does."""
        result = await self.sipp(
            str(SIPP_DIR / "phone-unregister.xml"), "-s", endpoint, "-au", endpoint,
            "-ap", self.secrets[f"sip.{endpoint}"], "-i", "127.0.0.1", "-m", "1",
            f"{TRUNK_HOST}:{PHONE_PORT}", timeout=30,
        )
        assert result.ok, result.errors

    def member_penalties(self, queue: str = "operators") -> dict[str, int]:
        """Return endpoint -> penalty of each member of `queue`, from `queue show`."""
        text = self.rx(f"queue show {queue}")
        found = re.findall(
            r"^\s+(?:\S+ \()?PJSIP/([A-Za-z0-9_.-]+).*?with penalty (\d+)", text, re.MULTILINE
        )
        members = dict.fromkeys(
            m.removeprefix("PJSIP/") for m in self.queue_members(queue)
        )
        penalties = {endpoint: int(penalty) for endpoint, penalty in found}
        return {endpoint: penalties.get(endpoint, 0) for endpoint in members}

    # Controller as a separate process (for kill and SIGSTOP) ---------------------

    async def start_controller_process(
        self, database_url: str, extra_env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        env = {**os.environ, **self.environ, "SIGAP_DATABASE__URL": database_url,
               "SIGAP_LOGGING__FORMAT": "json", **(extra_env or {})}
        log_path = self.work / f"controller-{next_port()}.log"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sigap_pbx.cli", "serve", env=env, cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=open(log_path, "wb"),
        )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.controllers.append(proc)
        try:
            await self.wait_for(
                lambda: '"ami_state_resynced"' in log_path.read_text(errors="replace")
                or proc.returncode is not None,
                60, "controller process connected to AMI",
            )
        except AssertionError:
            await self.kill(proc, signal.SIGKILL)
            raise AssertionError(
                "the controller process did not sync with AMI in 60 s; its log ends:\n"
                + log_path.read_text(errors="replace")[-3000:]
            ) from None
        if proc.returncode is not None:
            raise AssertionError(
                f"the controller process exited with {proc.returncode}; its log ends:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        return proc

    async def stop_controllers(self) -> None:
        """Kill every controller process a test started, thawing a frozen one first,
        so that none keeps the FastAGI and web ports from the next test."""
        for proc in self.controllers:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            await self.kill(proc, signal.SIGKILL)
        self.controllers.clear()

    @staticmethod
    async def kill(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            await proc.wait()

    # Waiting --------------------------------------------------------------------------

    @staticmethod
    async def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
            await asyncio.sleep(0.1)


def start_stack() -> Stack:
    state_dir = Path(tempfile.mkdtemp(prefix="sigap-itest-"))
    environ = {**ENV, "SIGAP_SITE__STATE_DIR": str(state_dir)}
    config = load_config(None, environ)
    render_config(config)
    generate_prompts(config.prompts_dir)
    secrets = load_secrets(config)
    work = state_dir / "work"
    work.mkdir()
    stack = Stack(state_dir, environ, config, secrets,
                  InstancePaths.for_instance(INSTANCE), work)
    stack.asterisk("restart")
    return stack


@contextlib.asynccontextmanager
async def running_controller(config: Config) -> AsyncIterator[object]:
    from sigap_pbx.service import Controller

    controller = Controller(config)
    await controller.start()
    try:
        await controller.ami.wait_connected(10)
        await Stack.wait_for(lambda: controller.live.synced, 10, "live view synced")
        yield controller
    finally:
        await controller.stop()


@contextlib.asynccontextmanager
async def api_session(controller: object, role: str = "admin") -> AsyncIterator[object]:
    """Yield an aiohttp ClientSession signed in to the controller's web server.

    A user with `role` is added, and the session cookie and CSRF token are sent as
    headers, because aiohttp keeps Secure cookies for HTTPS only.
    """
    import secrets as _secrets

    import aiohttp

    accounts = controller.accounts  # type: ignore[attr-defined]
    username = f"itest-{role}-{_secrets.token_hex(3)}"
    password = _secrets.token_urlsafe(16)
    await accounts.add_user(username, password, role, actor="itest")
    signed_in = await accounts.sign_in(username, password, "127.0.0.1")
    headers = {
        "Cookie": f"sigap_session={signed_in.token}",
        "X-CSRF-Token": signed_in.session.csrf_token,
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


def render_with_outbound_trunk(stack: Stack, outbound: str) -> Config:
    """Render the instance's files with the first trunk sending outgoing calls to
    `outbound` ("host:port"), restart Asterisk on them, and return that config.

    The next test's clean_stack restarts Asterisk; call `render_default(stack)`
    afterwards so that it restarts on the usual files.
    """
    trunks = [stack.config.sip.trunks[0].model_copy(update={"outbound": outbound})]
    sip = stack.config.sip.model_copy(update={"trunks": trunks})
    config = stack.config.model_copy(update={"sip": sip})
    render_config(config)
    stack.asterisk("restart")
    return config


def render_default(stack: Stack) -> None:
    render_config(stack.config)


async def start_carrier_uas(stack: Stack, port: int) -> tuple[asyncio.subprocess.Process, Path]:
    """Start SIPp's built-in UAS as the carrier at CARRIER_IP:`port`, for one call.

    It answers the INVITE and waits for the BYE. Every message it sends and
    receives is written to the returned file.
    """
    messages = stack.work / f"carrier-{port}-messages.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", CARRIER_IP, "-p", str(port), "-mp", str(next(_media)),
        "-m", "1", "-nostdin", "-trace_msg", "-message_file", str(messages),
        cwd=stack.work, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    stack.phones.append(proc)
    return proc, messages
