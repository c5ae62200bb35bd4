"""Measure 112 call-setup time through the real Asterisk, with and without the controller.

For each call rate, SIPp places the same number of trunk calls twice: once while the
controller runs (subscribed to AMI and recording every call) and once with it stopped.
Setup time is INVITE -> 200 OK at the caller, which Asterisk sends at `Answer()`,
before the queue. Operator phones (SIPp, one process each) answer a few ms after the
INVITE (`--ring-ms`, `--stagger-ms`). A call that no phone takes waits in the queue
until the caller hangs up, and it still must not fail.

Per run it reports the setup-time median and p99, both from SIPp's rtt CSV (whole
milliseconds) and from its message trace (microseconds), the calls whose INVITE SIPp
had to retransmit, failed calls, Asterisk's CPU per call, the controller's CPU and
peak RSS, and it checks that the database holds exactly one final record per call.
Calls placed while the controller was stopped are checked once more at the end: the
controller reconciles them from Asterisk's CEL when it starts again.

Run as root (Asterisk runs in a chroot), from the repository root:

    .venv/bin/python bench/call_setup.py --calls 200 --rates 5,10,20,40

Everything runs on loopback, on ports of its own (instance `bench`), and is stopped
at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sigap_pbx.asterisk.paths import InstancePaths  # noqa: E402
from sigap_pbx.asterisk.prompts import generate_prompts  # noqa: E402
from sigap_pbx.asterisk.render import render_config  # noqa: E402
from sigap_pbx.config import Config, load_config, load_secrets  # noqa: E402
from sigap_pbx.logs import configure_logging  # noqa: E402
from sigap_pbx.store import CallOutcome, CallStore, Database  # noqa: E402

SIPP_DIR = REPO / "scripts" / "sipp"
ASTERISK_SH = REPO / "scripts" / "asterisk.sh"
INSTANCE = "bench"

TRUNK_HOST = "127.0.0.1"
TRUNK_PORT = 16060
PHONE_PORT = 16061
CARRIER_IP = "127.0.0.2"
CALLER_SIP_PORT = 16090
CALLER_MEDIA_PORT = 25000
# Phone i listens on PHONE_SIP_BASE + 2i and PHONE_MEDIA_BASE + 10i, outside
# Asterisk's RTP range below.
PHONE_SIP_BASE = 16100
PHONE_MEDIA_BASE = 24000
RTP_START = 22000
RTP_END = 23999

# The bench instance's settings, on ports far from `make run` (5060...) and from the
# integration tests (15060...).
ENV = {
    "SIGAP_SITE__INSTANCE": INSTANCE,
    "SIGAP_SIP__TRUNK_BIND": f"{TRUNK_HOST}:{TRUNK_PORT}",
    "SIGAP_SIP__OPERATOR_BIND": f"{TRUNK_HOST}:{PHONE_PORT}",
    "SIGAP_SIP__RTP_START": str(RTP_START),
    "SIGAP_SIP__RTP_END": str(RTP_END),
    "SIGAP_SIP__QUALIFY_SECONDS": "0",
    "SIGAP_AMI__PORT": "16038",
    "SIGAP_AMI__RECONNECT_MAX_SECONDS": "1",
    "SIGAP_AGI__PORT": "16573",
    "SIGAP_WEB__PORT": "18113",
    "SIGAP_LOGGING__LEVEL": "info",
    "SIGAP_LOGGING__FORMAT": "json",
}

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Upper bounds of the waits below, in seconds.
CONTROLLER_START_TIMEOUT = 30
CONTROLLER_STOP_TIMEOUT = 20
RECORDS_TIMEOUT = 60
RECONCILE_TIMEOUT = 90
IDLE_TIMEOUT = 30
# SIP timer B (64 x T1 = 32 s): how long a carrier retransmits an unanswered INVITE.
RECV_TIMEOUT_MS = 32000


@dataclass
class RunResult:
    """One batch of calls at one rate, with or without the controller."""

    rate: float
    controller: bool
    calls: int
    caller_number: str
    successful: int = 0
    failed: int = 0
    sipp_returncode: int | None = None
    # INVITE -> 200 OK from SIPp's message trace (microseconds) ...
    setup_samples: int = 0
    setup_median_ms: float | None = None
    setup_p99_ms: float | None = None
    setup_max_ms: float | None = None
    median_ratio: float | None = None
    invites_retransmitted: int = 0
    # ... and from its rtt CSV, which counts whole milliseconds.
    rtt_samples: int = 0
    rtt_median_ms: float | None = None
    rtt_p99_ms: float | None = None
    rtt_median_ratio: float | None = None
    wall_seconds: float = 0.0
    asterisk_cpu_seconds: float = 0.0
    asterisk_cpu_ms_per_call: float = 0.0
    caller_sipp_cpu_seconds: float = 0.0
    # All cores' busy time over the run, and the part of it that Asterisk, the
    # controller and the SIPp caller do not explain: the phones, this script, and any
    # other load on the machine.
    machine_busy_seconds: float = 0.0
    other_busy_seconds: float = 0.0
    asterisk_log_problems: dict[str, int] = field(default_factory=dict)
    # UDP sockets in the RTP range before the run and once Asterisk has no channel
    # after it. Sockets that outlive their channels are closed late, so one run's
    # difference can be negative. The report's final count is the one to watch.
    rtp_sockets_before: int = 0
    rtp_sockets_after: int = 0
    controller_cpu_seconds: float | None = None
    controller_cpu_ms_per_call: float | None = None
    controller_peak_rss_mib: float | None = None
    controller_log_problems: dict[str, dict[str, int]] = field(default_factory=dict)
    records: int | None = None
    records_total_delta: int | None = None
    records_in_progress: int | None = None
    records_reconciled: int | None = None
    record_outcomes: dict[str, int] = field(default_factory=dict)
    # Operator legs stored per call: a ring-all queue rings every free phone.
    record_legs_per_call: float | None = None
    # Seconds from the SIPp caller's exit until the last record was final.
    records_lag_seconds: float | None = None
    records_after_reconcile: int | None = None
    records_reconciled_after_restart: int | None = None
    problems: list[str] = field(default_factory=list)


# --- Processes ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process (all its threads) from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name in brackets may contain spaces, so split after its ")".
    fields_after_name = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields_after_name[11]), int(fields_after_name[12])
    return (utime + stime) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores spent busy since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def open_rtp_sockets() -> int:
    """Count the IPv4 UDP sockets bound to a port in Asterisk's RTP range."""
    count = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        local = line.split()[1]
        port = int(local.rsplit(":", 1)[1], 16)
        count += RTP_START <= port <= RTP_END
    return count


def peak_rss_mib(pid: int) -> float:
    """Return VmHWM (peak resident set size) of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"VmHWM missing from /proc/{pid}/status")


def wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for `proc` (kill it after `timeout` s) and return its CPU seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def percentile(samples: list[float], fraction: float) -> float:
    """Return a percentile with linear interpolation between closest ranks."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- The stack -----------------------------------------------------------------------


class BenchStack:
    """The bench instance of Asterisk, its phones and the controller, which `close()` stops."""

    def __init__(self, state_dir: Path, phones: int, ring_ms: int, stagger_ms: int) -> None:
        self.state_dir = state_dir
        self.work = state_dir / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.phone_count = phones
        self.ring_ms = ring_ms
        self.stagger_ms = stagger_ms
        self.site_file = state_dir / "sigap.toml"
        self.database_url = f"sqlite+aiosqlite:///{state_dir / 'sigap.db'}"
        self.environ = {
            **ENV,
            "SIGAP_SITE__STATE_DIR": str(state_dir),
            "SIGAP_CONFIG": str(self.site_file),
            "SIGAP_DATABASE__URL": self.database_url,
        }
        self.paths = InstancePaths.for_instance(INSTANCE)
        self.config: Config | None = None
        self.secrets: dict[str, str] = {}
        self.phones: dict[str, subprocess.Popen[bytes]] = {}
        self.controller: subprocess.Popen[bytes] | None = None
        self.controller_log: Path | None = None
        self.asterisk_started = False

    @property
    def endpoints(self) -> list[str]:
        return [f"op{i}" for i in range(1, self.phone_count + 1)]

    # Asterisk ---------------------------------------------------------------------

    def write_site_file(self) -> None:
        lines = []
        for endpoint in self.endpoints:
            lines += ["[[sip.operators]]", f'endpoint = "{endpoint}"',
                      f'name = "Bench {endpoint}"', ""]
        self.site_file.write_text("\n".join(lines))

    def start_asterisk(self) -> None:
        self.write_site_file()
        self.config = load_config(None, self.environ)
        render_config(self.config)
        generate_prompts(self.config.prompts_dir)
        self.secrets = load_secrets(self.config)
        self.asterisk("down")
        # The instance keeps registrations, AstDB keys and CEL rows between starts,
        # and a benchmark starts from none of them.
        for stale in ("lib/astdb.sqlite3", "log/cel.db", "log/cdr.db", "log/messages.log",
                      "log/queue_log"):
            (self.paths.host / stale).unlink(missing_ok=True)
        self.asterisk_started = True
        self.asterisk("up")

    def asterisk(self, verb: str) -> None:
        args = [str(ASTERISK_SH), verb, "--instance", INSTANCE]
        if verb == "up":
            assert self.config is not None
            args += ["--etc", str(self.config.asterisk_etc_dir),
                     "--prompts", str(self.config.prompts_dir)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/asterisk.sh {verb} failed:\n{result.stderr}")

    def rx(self, command: str) -> str:
        result = subprocess.run(
            [str(ASTERISK_SH), "rx", "--instance", INSTANCE, command],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"Asterisk CLI command {command!r} failed: {result.stderr}")
        return result.stdout

    @property
    def asterisk_pid(self) -> int:
        return int((self.paths.host / "asterisk.pid").read_text().strip())

    @property
    def messages_log(self) -> Path:
        return self.paths.host / "log" / "messages.log"

    def wait_until_idle(self) -> None:
        """Wait until Asterisk has no channel left from the previous run."""
        deadline = time.monotonic() + IDLE_TIMEOUT
        while True:
            text = self.rx("core show channels count")
            if text.lstrip().startswith("0 active channels"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk still has channels after {IDLE_TIMEOUT} s:\n{text}")
            time.sleep(0.2)

    # Phones -----------------------------------------------------------------------

    def answer_scenario(self, index: int) -> Path:
        """Write phone `index`'s copy of phone-answer.xml with its own ring time.

        Phone i rings ring_ms + i * stagger_ms before it answers, so in the ring-all
        queue one phone answers first and the others are cancelled while ringing, as
        with people. With equal times every phone answers each call at once.
        """
        text = (SIPP_DIR / "phone-answer.xml").read_text()
        old = 'timeout="1000"'
        if old not in text:
            raise RuntimeError(f"{old} not found in phone-answer.xml; update answer_scenario()")
        ring_ms = self.ring_ms + index * self.stagger_ms
        # One file per phone: SIPp reads it while the next phone's file is written.
        target = self.work / f"phone-answer-{index + 1}-{ring_ms}ms.xml"
        target.write_text(text.replace(old, f'timeout="{ring_ms}"'))
        return target

    def start_phones(self) -> None:
        for index, endpoint in enumerate(self.endpoints):
            answer = self.answer_scenario(index)
            with open(self.work / f"phone-{endpoint}.log", "wb") as log:
                self.phones[endpoint] = subprocess.Popen(
                    ["sipp", "-sf", str(SIPP_DIR / "phone-register.xml"),
                     "-oocsf", str(answer), "-aa", "-s", endpoint, "-au", endpoint,
                     "-ap", self.secrets[f"sip.{endpoint}"], "-i", "127.0.0.1",
                     "-p", str(PHONE_SIP_BASE + 2 * index),
                     "-mp", str(PHONE_MEDIA_BASE + 10 * index), "-m", "1", "-nostdin",
                     f"{TRUNK_HOST}:{PHONE_PORT}"],
                    cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        deadline = time.monotonic() + 20
        while True:
            contacts = self.rx("pjsip show contacts")
            missing = [e for e in self.endpoints if f"{e}/sip:" not in contacts]
            if not missing:
                break
            dead = [name for name, proc in self.phones.items() if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"phones not registered: {missing}; exited: {dead}; "
                                   f"see {self.work}/phone-*.log")
            time.sleep(0.2)
        for endpoint in self.endpoints:
            self.rx(f"queue add member PJSIP/{endpoint} to operators penalty 0 "
                    f"as {endpoint} state_interface PJSIP/{endpoint}")
        members = self.rx("queue show operators")
        missing = [e for e in self.endpoints if f"PJSIP/{e}" not in members]
        if missing:
            raise RuntimeError(f"not in the operators queue: {missing}\n{members}")

    # Controller -------------------------------------------------------------------

    def start_controller(self, label: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGAP_")}
        env.update(self.environ)
        self.controller_log = self.work / f"controller-{label}.log"
        with open(self.controller_log, "wb") as log:
            # Niced as `make run` starts it, below Asterisk's real-time threads.
            proc = subprocess.Popen(
                ["nice", "-n", "10", sys.executable, "-m", "sigap_pbx.cli", "serve"],
                cwd=REPO, env=env,
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            )
        self.controller = proc
        deadline = time.monotonic() + CONTROLLER_START_TIMEOUT
        while '"ami_state_resynced"' not in self.controller_log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"controller exited with {proc.returncode} during start; "
                                   f"log: {self.controller_log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"controller not synced with AMI after "
                                   f"{CONTROLLER_START_TIMEOUT} s; log: {self.controller_log}")
            time.sleep(0.1)
        return proc

    def stop_controller(self) -> None:
        if self.controller is not None:
            stop_process(self.controller, signal.SIGTERM, CONTROLLER_STOP_TIMEOUT)
            self.controller = None

    def controller_log_problems(self) -> dict[str, dict[str, int]]:
        """Count the controller's warning and error lines by phase and event name.

        The phases are `start` (up to the first AMI resync), `run` and `stop` (from
        `controller_stopping` on), because a start after calls placed without the
        controller logs their reconciliation as a warning by design.
        """
        problems: dict[str, Counter[str]] = {"start": Counter(), "run": Counter(),
                                             "stop": Counter()}
        if self.controller_log is None:
            return {}
        phase = "start"
        for line in self.controller_log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                problems[phase]["(line that is not JSON)"] += 1
                continue
            event = entry.get("event")
            if event == "controller_stopping":
                phase = "stop"
            if entry.get("level") in ("warning", "error", "critical"):
                problems[phase][f"{entry['level']}: {event}"] += 1
            if event == "ami_state_resynced" and phase == "start":
                phase = "run"
        return {name: dict(counts) for name, counts in problems.items() if counts}

    # Cleanup ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the controller, the phones and Asterisk, each even if another fails."""
        try:
            self.stop_controller()
        finally:
            try:
                for proc in self.phones.values():
                    stop_process(proc, signal.SIGKILL, 5)
                self.phones.clear()
            finally:
                if self.asterisk_started:
                    self.asterisk_started = False
                    self.asterisk("down")


# --- Records -------------------------------------------------------------------------


@dataclass
class RecordCheck:
    records: int
    total: int
    in_progress: int
    reconciled: int
    duplicates: int
    outcomes: dict[str, int]
    legs_per_call: float


async def check_records(url: str, caller_number: str, limit: int) -> RecordCheck:
    db = await Database.open(url, migrate=False)
    try:
        store = CallStore(db)
        calls = await store.list_calls(limit=limit, number=caller_number)
        total = await store.count_calls()
    finally:
        await db.close()
    uniqueids = [call.uniqueid for call in calls]
    return RecordCheck(
        records=len(calls),
        total=total,
        in_progress=sum(
            1 for c in calls if c.outcome == CallOutcome.IN_PROGRESS or c.ended_at is None
        ),
        reconciled=sum(1 for c in calls if c.reconciled),
        duplicates=len(uniqueids) - len(set(uniqueids)),
        outcomes=dict(Counter(str(c.outcome) for c in calls)),
        legs_per_call=round(sum(len(c.legs) for c in calls) / len(calls), 2) if calls else 0.0,
    )


def wait_for_records(url: str, caller_number: str, calls: int, timeout: float) -> RecordCheck:
    """Poll until `calls` final records from `caller_number` exist, or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        # A limit above `calls` lets a duplicate record show up in the count.
        check = asyncio.run(check_records(url, caller_number, calls * 2 + 10))
        if (check.records >= calls and check.in_progress == 0) or time.monotonic() > deadline:
            return check
        time.sleep(0.2)


def total_records(url: str) -> int:
    async def count() -> int:
        db = await Database.open(url, migrate=False)
        try:
            return await CallStore(db).count_calls()
        finally:
            await db.close()

    return asyncio.run(count())


# --- One run -------------------------------------------------------------------------


def read_setup_times(run_dir: Path, pid: int) -> list[float]:
    """Read SIPp's `-trace_rtt` file: `date_ms;response_time_ms;rtd_no` per call."""
    path = run_dir / f"caller_{pid}_rtt.csv"
    if not path.exists():
        return []
    samples = []
    with path.open() as handle:
        for row in csv.reader(handle, delimiter=";"):
            if len(row) >= 3 and row[2].strip() == "setup":
                samples.append(float(row[1]))
    return samples


@dataclass
class MessageTrace:
    setup_ms: list[float]
    # Calls whose first INVITE went unanswered, so SIPp sent it again (T1 = 500 ms).
    retransmitted: int


def read_message_trace(path: Path) -> MessageTrace:
    """Read INVITE -> 200 OK times in ms per call from SIPp's `-trace_msg` file.

    Each message there follows a line of dashes and the local time with microseconds
    (`2026-12-04 18:52:25.114308`), so these times are finer than the rtt CSV's whole
    milliseconds. The first INVITE sent and the first 200 OK to it count, so a
    retransmission does not shorten a call's time.
    """
    if not path.exists():
        return MessageTrace([], 0)
    invite_sent: dict[str, float] = {}
    invites: Counter[str] = Counter()
    ok_received: dict[str, float] = {}
    for block in path.read_text(errors="replace").split("-" * 47 + " ")[1:]:
        lines = block.splitlines()
        if len(lines) < 4:
            continue
        at = datetime.fromisoformat(lines[0].strip()).timestamp()
        direction = lines[1]
        start_line = lines[3]
        headers = {}
        for line in lines[4:]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        call_id = headers.get("call-id", "")
        if "sent" in direction and start_line.startswith("INVITE "):
            invite_sent.setdefault(call_id, at)
            invites[call_id] += 1
        elif ("received" in direction and start_line.startswith("SIP/2.0 200")
              and headers.get("cseq", "").endswith("INVITE")):
            ok_received.setdefault(call_id, at)
    setup_ms = [
        (ok_received[call_id] - sent) * 1000
        for call_id, sent in invite_sent.items()
        if call_id in ok_received
    ]
    return MessageTrace(setup_ms, sum(1 for count in invites.values() if count > 1))


def read_final_stats(stat_file: Path) -> dict[str, str]:
    """Return the last row of SIPp's `-trace_stat` file as a dict."""
    if not stat_file.exists():
        return {}
    with stat_file.open() as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


LOG_LINE = re.compile(r"^\[[^]]*\] (?P<level>WARNING|ERROR)\[\d+\](?:\[[^]]*\])? (?P<text>.*)$")


def asterisk_log_problems(path: Path, offset: int) -> dict[str, int]:
    """Count the WARNING and ERROR lines Asterisk wrote to `path` after `offset`.

    Lines are grouped by level and text, with thread ids dropped and 8-digit hex ids
    (taskprocessor and channel suffixes) replaced by `X`.
    """
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    problems: Counter[str] = Counter()
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            message = re.sub(r"[0-9a-f]{8}", "X", match["text"])
            problems[f"{match['level']} {message}"] += 1
    return dict(problems)


def sipp_caller_args(result: RunResult, hold_ms: int, run_dir: Path, timeout: int) -> list[str]:
    """Return the SIPp command line that places one batch of trunk calls."""
    return [
        "sipp", "-sf", str(SIPP_DIR / "caller.xml"), "-s", "112",
        "-i", CARRIER_IP, "-p", str(CALLER_SIP_PORT), "-mp", str(CALLER_MEDIA_PORT),
        "-m", str(result.calls), "-l", str(result.calls),
        "-r", f"{result.rate:g}", "-rp", "1000", "-d", str(hold_ms),
        "-key", "caller", result.caller_number, "-key", "caller_name", "Bench",
        "-recv_timeout", str(RECV_TIMEOUT_MS), "-timeout", f"{timeout}s",
        "-timeout_error", "-nostdin",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_msg", "-message_file", str(run_dir / "messages.log"),
        "-trace_stat", "-stf", str(run_dir / "stat.csv"), "-fd", "3600",
        "-trace_err", "-error_file", str(run_dir / "errors.log"),
        f"{TRUNK_HOST}:{TRUNK_PORT}",
    ]


def place_calls(stack: BenchStack, result: RunResult, hold_ms: int, run_dir: Path) -> float:
    """Run the SIPp caller for one batch, fill in `result`, and return SIPp's CPU seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # A late call may need the full receive timeout after the last INVITE.
    timeout = int(result.calls / result.rate + hold_ms / 1000 + RECV_TIMEOUT_MS / 1000 + 30)
    args = sipp_caller_args(result, hold_ms, run_dir, timeout)
    with open(run_dir / "sipp.out", "wb") as out:
        proc = subprocess.Popen(args, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            sipp_cpu = wait_with_rusage(proc, timeout + 15)
        except BaseException:
            stop_process(proc, signal.SIGKILL, 5)
            raise
    result.sipp_returncode = proc.returncode
    read_sipp_results(result, run_dir, proc.pid)
    return sipp_cpu


def read_sipp_results(result: RunResult, run_dir: Path, pid: int) -> None:
    """Fill in the call counts and setup times from the SIPp caller's files."""
    stats = read_final_stats(run_dir / "stat.csv")
    result.successful = int(stats.get("SuccessfulCall(C)", 0))
    result.failed = int(stats.get("FailedCall(C)", result.calls - result.successful))

    rtt = read_setup_times(run_dir, pid)
    result.rtt_samples = len(rtt)
    if rtt:
        result.rtt_median_ms = round(statistics.median(rtt), 2)
        result.rtt_p99_ms = round(percentile(rtt, 0.99), 2)

    trace = read_message_trace(run_dir / "messages.log")
    result.invites_retransmitted = trace.retransmitted
    result.setup_samples = len(trace.setup_ms)
    if trace.setup_ms:
        result.setup_median_ms = round(statistics.median(trace.setup_ms), 3)
        result.setup_p99_ms = round(percentile(trace.setup_ms, 0.99), 3)
        result.setup_max_ms = round(max(trace.setup_ms), 3)

    if result.failed or result.successful != result.calls:
        result.problems.append(
            f"SIPp: {result.successful} of {result.calls} calls succeeded, exit code "
            f"{result.sipp_returncode}; see {run_dir}/errors.log"
        )


def run_batch(
    stack: BenchStack, rate: float, calls: int, hold_ms: int, with_controller: bool,
    caller_number: str,
) -> RunResult:
    result = RunResult(rate=rate, controller=with_controller, calls=calls,
                       caller_number=caller_number)
    label = f"{rate:g}cps-{'controller' if with_controller else 'alone'}"
    stack.wait_until_idle()
    result.rtp_sockets_before = open_rtp_sockets()
    controller = stack.start_controller(label) if with_controller else None
    try:
        total_before = total_records(stack.database_url) if controller else 0
        log_offset = stack.messages_log.stat().st_size if stack.messages_log.exists() else 0
        asterisk_pid = stack.asterisk_pid
        asterisk_before = cpu_seconds(asterisk_pid)
        controller_before = cpu_seconds(controller.pid) if controller else 0.0
        busy_before = machine_busy_seconds()
        started = time.monotonic()

        result.caller_sipp_cpu_seconds = round(
            place_calls(stack, result, hold_ms, stack.work / label), 3)

        # Every call has ended at the caller once SIPp exits.
        result.asterisk_cpu_seconds = round(cpu_seconds(asterisk_pid) - asterisk_before, 3)
        result.wall_seconds = round(time.monotonic() - started, 2)
        busy = machine_busy_seconds() - busy_before
        controller_in_window = 0.0
        if controller is not None:
            controller_in_window = cpu_seconds(controller.pid) - controller_before
        result.machine_busy_seconds = round(busy, 2)
        result.other_busy_seconds = round(
            busy - result.asterisk_cpu_seconds - controller_in_window
            - result.caller_sipp_cpu_seconds, 2)
        result.asterisk_cpu_ms_per_call = round(result.asterisk_cpu_seconds * 1000 / calls, 2)
        result.asterisk_log_problems = asterisk_log_problems(stack.messages_log, log_offset)

        if controller is not None:
            check_controller_run(stack, result, controller.pid, controller_before, total_before)
    finally:
        if controller is not None:
            stack.stop_controller()
            result.controller_log_problems = stack.controller_log_problems()
    stack.wait_until_idle()
    result.rtp_sockets_after = open_rtp_sockets()
    # Warnings at start and stop are only listed in the JSON. A problem is what the
    # controller logged while the calls ran, and any error.
    logged = result.controller_log_problems
    during_run = logged.get("run", {})
    errors = [name for counts in logged.values() for name in counts if name.startswith("error")]
    if during_run or errors:
        result.problems.append(f"controller logged {logged}")
    return result


def check_controller_run(
    stack: BenchStack, result: RunResult, pid: int, cpu_before: float, total_before: int
) -> None:
    """Wait for the run's records, then fill in the controller's costs and the records."""
    started = time.monotonic()
    check = wait_for_records(stack.database_url, result.caller_number, result.calls,
                             RECORDS_TIMEOUT)
    result.records_lag_seconds = round(time.monotonic() - started, 1)
    # The window ends once the last record is final, so it includes the writes.
    controller_cpu = cpu_seconds(pid) - cpu_before
    result.controller_cpu_seconds = round(controller_cpu, 3)
    result.controller_cpu_ms_per_call = round(controller_cpu * 1000 / result.calls, 2)
    result.controller_peak_rss_mib = round(peak_rss_mib(pid), 1)
    result.records = check.records
    result.records_total_delta = check.total - total_before
    result.records_in_progress = check.in_progress
    result.records_reconciled = check.reconciled
    result.record_outcomes = check.outcomes
    result.record_legs_per_call = check.legs_per_call
    expect_records(result, check, total_before)


def expect_records(result: RunResult, check: RecordCheck, total_before: int) -> None:
    calls = result.calls
    if check.records != calls:
        result.problems.append(f"{check.records} records for {calls} calls from "
                               f"{result.caller_number}")
    if check.total - total_before != calls:
        result.problems.append(f"the database grew by {check.total - total_before} "
                               f"records during {calls} calls")
    if check.duplicates:
        result.problems.append(f"{check.duplicates} records repeat a uniqueid")
    if check.in_progress:
        result.problems.append(f"{check.in_progress} records still in_progress or "
                               f"without ended_at after {RECORDS_TIMEOUT} s")
    if check.reconciled:
        result.problems.append(f"{check.reconciled} records came from CEL reconciliation, "
                               f"not from the live AMI path")


def check_reconciled(stack: BenchStack, results: list[RunResult]) -> dict[str, dict[str, int]]:
    """Start the controller once more and check the calls placed while it was stopped.

    Returns the warnings and errors that this controller logged, by phase.
    """
    alone = [r for r in results if not r.controller]
    if not alone:
        return {}
    stack.wait_until_idle()
    stack.start_controller("reconcile")
    try:
        for result in alone:
            check = wait_for_records(stack.database_url, result.caller_number,
                                     result.calls, RECONCILE_TIMEOUT)
            result.records_after_reconcile = check.records
            result.records_reconciled_after_restart = check.reconciled
            result.record_outcomes = check.outcomes
            result.record_legs_per_call = check.legs_per_call
            if check.records != result.calls or check.in_progress or check.duplicates:
                result.problems.append(
                    f"after a controller restart: {check.records} records for "
                    f"{result.calls} calls, {check.in_progress} not final, "
                    f"{check.duplicates} repeated uniqueids")
    finally:
        stack.stop_controller()
    return stack.controller_log_problems()


# --- Report --------------------------------------------------------------------------


def fill_ratios(results: list[RunResult]) -> None:
    """Set each controller run's median ratio to the run without it at the same rate."""
    for result in results:
        baseline = next(
            (r for r in results if not r.controller and r.rate == result.rate), None
        )
        if not result.controller or baseline is None:
            continue
        if result.setup_median_ms and baseline.setup_median_ms:
            result.median_ratio = round(result.setup_median_ms / baseline.setup_median_ms, 2)
        if result.rtt_median_ms and baseline.rtt_median_ms:
            result.rtt_median_ratio = round(result.rtt_median_ms / baseline.rtt_median_ms, 2)


def _cell(value: object) -> str:
    return "–" if value is None else str(value)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def markdown_tables(results: list[RunResult]) -> str:
    """Render the setup times, then the costs and records, as two Markdown tables."""
    setup_rows = [
        [f"{r.rate:g}", "yes" if r.controller else "no", r.calls, r.failed,
         r.invites_retransmitted, r.rtt_median_ms, r.rtt_p99_ms, r.rtt_median_ratio,
         r.setup_median_ms, r.setup_p99_ms, r.median_ratio]
        for r in results
    ]
    cost_rows = []
    for r in results:
        if r.controller:
            records = r.records
        elif r.records_after_reconcile is not None:
            records = f"{r.records_after_reconcile} (reconciled later)"
        else:
            records = None
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.record_outcomes.items()))
        cost_rows.append(
            [f"{r.rate:g}", "yes" if r.controller else "no", r.wall_seconds,
             r.asterisk_cpu_ms_per_call, sum(r.asterisk_log_problems.values()),
             r.controller_cpu_seconds, r.controller_cpu_ms_per_call,
             r.controller_peak_rss_mib, r.records_lag_seconds, r.other_busy_seconds,
             r.rtp_sockets_after - r.rtp_sockets_before, records, outcomes or None]
        )
    lines = _table(
        ["calls/s", "controller", "calls", "failed", "INVITE resent", "median ms (rtt CSV)",
         "p99 ms (rtt CSV)", "ratio (rtt CSV)", "median ms (trace)", "p99 ms (trace)",
         "ratio (trace)"],
        setup_rows,
    )
    lines.append("")
    lines += _table(
        ["calls/s", "controller", "wall s", "Asterisk CPU ms/call", "Asterisk warnings",
         "controller CPU s", "controller CPU ms/call", "controller peak RSS MiB",
         "records lag s",         "other busy CPU s", "RTP sockets left", "records", "outcomes"],
        cost_rows,
    )
    return "\n".join(lines)


def machine_description() -> dict[str, object]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


# --- Main ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per run (default 200)")
    parser.add_argument("--rates", default="5,10,20,40",
                        help="comma-separated call rates in calls/s (default 5,10,20,40)")
    parser.add_argument("--phones", type=int, default=8,
                        help="registered operator phones in the queue (default 8)")
    parser.add_argument("--hold-ms", type=int, default=1000,
                        help="ms each caller stays on the line after the answer (default 1000)")
    parser.add_argument("--ring-ms", type=int, default=1,
                        help="ms the first phone rings before it answers (default 1; SIPp "
                             "reads a timeout of 0 as no timeout, so 1 is the shortest)")
    parser.add_argument("--stagger-ms", type=int, default=20,
                        help="ms added to the ring time of each further phone (default 20)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="calls placed at 10/s before the measured runs (default 20)")
    parser.add_argument("--output", default=str(REPO / "var" / "bench" / "call_setup.json"),
                        help="JSON results file (default var/bench/call_setup.json in the "
                             "repository, which git ignores)")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep the state directory (logs, SIPp files, database)")
    args = parser.parse_args(argv)
    args.rate_list = [float(item) for item in args.rates.split(",") if item.strip()]
    if args.calls < 1 or args.phones < 1 or not args.rate_list or min(args.rate_list) <= 0:
        parser.error("--calls and --phones must be at least 1 and every rate above 0")
    if args.stagger_ms < 0:
        parser.error("--stagger-ms must be 0 or more")
    if args.ring_ms < 1:
        parser.error("--ring-ms must be at least 1: SIPp reads a timeout of 0 as no timeout")
    return args


@dataclass
class Benchmark:
    """Everything one invocation measured."""

    results: list[RunResult] = field(default_factory=list)
    reconcile_log_problems: dict[str, dict[str, int]] = field(default_factory=dict)
    rtp_sockets_at_start: int = 0
    rtp_sockets_at_end: int = 0


def run_benchmark(stack: BenchStack, args: argparse.Namespace, bench: Benchmark) -> None:
    """Start the stack, place the warm-up calls, then run every rate twice."""
    # Each run calls from its own number, so its records can be counted apart.
    prefix = "0819" + time.strftime("%H%M%S")
    stack.start_asterisk()
    stack.start_phones()
    bench.rtp_sockets_at_start = open_rtp_sockets()
    if args.warmup:
        print(f"warm-up: {args.warmup} calls at 10/s", file=sys.stderr)
        warmup = RunResult(rate=10, controller=False, calls=args.warmup,
                           caller_number=prefix + "00")
        place_calls(stack, warmup, args.hold_ms, stack.work / "warmup")
        for problem in warmup.problems:
            print(f"warm-up: {problem}", file=sys.stderr)
    for index, rate in enumerate(args.rate_list):
        for with_controller in (True, False):
            number = f"{prefix}{index + 1}{1 if with_controller else 2}"
            print(f"{args.calls} calls at {rate:g}/s, controller "
                  f"{'running' if with_controller else 'stopped'}", file=sys.stderr)
            result = run_batch(stack, rate, args.calls, args.hold_ms, with_controller, number)
            bench.results.append(result)
            print(f"  setup median {result.setup_median_ms} ms, p99 "
                  f"{result.setup_p99_ms} ms, failed {result.failed}, "
                  f"problems {result.problems or 'none'}", file=sys.stderr)
    bench.reconcile_log_problems = check_reconciled(stack, bench.results)
    stack.wait_until_idle()
    bench.rtp_sockets_at_end = open_rtp_sockets()


def write_report(bench: Benchmark, args: argparse.Namespace, started: float) -> Path:
    fill_ratios(bench.results)
    report = {
        "machine": machine_description(),
        "settings": {"calls": args.calls, "rates": args.rate_list, "phones": args.phones,
                     "hold_ms": args.hold_ms, "ring_ms": args.ring_ms,
                     "stagger_ms": args.stagger_ms, "warmup_calls": args.warmup},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_seconds": round(time.time() - started, 1),
        "runs": [asdict(r) for r in bench.results],
        "reconcile_controller_log_problems": bench.reconcile_log_problems,
        "rtp_sockets_at_start": bench.rtp_sockets_at_start,
        "rtp_sockets_at_end": bench.rtp_sockets_at_end,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return output


def raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The store logs every open and close at info level, and only problems matter here.
    configure_logging("console", "warning")
    if os.geteuid() != 0:
        print("error: run as root: Asterisk runs in a chroot", file=sys.stderr)
        return 2
    if shutil.which("sipp") is None:
        print("error: sipp not found; install the Debian package sip-tester", file=sys.stderr)
        return 2
    # SIGTERM takes the same path as Ctrl-C, so everything started is stopped. SIGINT
    # is set too, because a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)

    state_dir = Path(tempfile.mkdtemp(prefix="sigap-bench-"))
    print(f"state directory: {state_dir}", file=sys.stderr)
    stack = BenchStack(state_dir, args.phones, args.ring_ms, args.stagger_ms)
    bench = Benchmark()
    started = time.time()
    try:
        run_benchmark(stack, args, bench)
    except KeyboardInterrupt:
        print("interrupted: stopping everything started", file=sys.stderr)
        return 130
    finally:
        stack.close()
        complete = len(bench.results) == 2 * len(args.rate_list)
        if complete and not args.keep_state and not any(r.problems for r in bench.results):
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            print(f"kept {state_dir} (logs, SIPp files, database) for inspection",
                  file=sys.stderr)

    output = write_report(bench, args, started)
    print(markdown_tables(bench.results))
    print(f"\nUDP sockets in the RTP range {RTP_START}-{RTP_END} with no channel up: "
          f"{bench.rtp_sockets_at_start} at start, {bench.rtp_sockets_at_end} at the end")
    problems = [p for r in bench.results for p in r.problems]
    if any(name.startswith("error") for counts in bench.reconcile_log_problems.values()
           for name in counts):
        problems.append(f"the last controller logged {bench.reconcile_log_problems}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"results written to {output}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
