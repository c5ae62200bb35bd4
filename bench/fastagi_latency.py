"""Measure how fast the controller's FastAGI server replies to an operator's login (*11).

A child process runs the controller's own FastAgiServer with the `operator/login`
route of OperatorFeatures, logging JSON lines at info level as `sigap serve` does. The
handler's AMI is one of:

- `fake` (default): an AmiClient logged in to a fake AMI server in the same child
  process, which accepts `Login` and replies Success to `QueueAdd` at once. The
  handler sends QueueAdd, waits for the reply, and sets `SIGAP_RESULT` to `ok`.
- `none`: an AmiClient that never connects. QueueAdd fails at once with
  AmiNotConnected, and the handler sets `SIGAP_RESULT` to `error` (the dialplan
  then adds the member itself).

The parent is the client, in place of Asterisk: for each session it connects, sends
an AGI environment block like the one Asterisk 22 sends for the `sigap-agi-runner`
Local channel, reads the command (`SET VARIABLE SIGAP_RESULT ok`), replies
`200 result=1` and waits for the server to close. Sessions run one after another.
It reports, in ms, the answer time (connect -> command line received) and the
session time (connect -> server closed), then the time the server takes to close a
port probe (connect, then close the sending side without a byte).

    .venv/bin/python bench/fastagi_latency.py --sessions 2000 --ami fake
    .venv/bin/python bench/fastagi_latency.py --sessions 2000 --ami none

Everything runs on 127.0.0.1 on ports the kernel picks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sigap_pbx.agi.server import FastAgiServer  # noqa: E402
from sigap_pbx.ami.client import AmiClient  # noqa: E402
from sigap_pbx.config import AgiConfig  # noqa: E402
from sigap_pbx.logs import configure_logging  # noqa: E402
from sigap_pbx.operators import OperatorFeatures  # noqa: E402
from sigap_pbx.wire.ami import AmiParser, Message  # noqa: E402

HOST = "127.0.0.1"
AMI_USER = "sigap"
AMI_SECRET = "bench-secret-0123456789"
# Upper bounds, in seconds, so a stuck server ends the benchmark instead of hanging it.
SERVER_START_TIMEOUT = 20
SOCKET_TIMEOUT = 10


# --- Child process: the server ------------------------------------------------------


class FakeAmi:
    """An AMI peer that accepts Login and replies Success to QueueAdd and Ping."""

    def __init__(self) -> None:
        self.port = 0
        self.actions = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and wait for the open connections, which end on EOF."""
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(
                asyncio.gather(*self._connections, return_exceptions=True), 5
            )
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        parser = AmiParser()
        while data := await reader.read(65536):
            for message in parser.feed(data):
                if isinstance(message, Message):
                    self.actions += 1
                    writer.write(self._reply(message))
            await writer.drain()
        writer.close()

    @staticmethod
    def _reply(action: Message) -> bytes:
        name = (action.get("Action") or "").lower()
        messages = {
            "login": "Authentication accepted",
            "queueadd": "Added interface to queue",
            "ping": "",
        }
        if name in messages:
            status, text = "Success", messages[name]
        else:
            status, text = "Error", "Invalid/unknown command"
        lines = [f"Response: {status}", f"ActionID: {action.action_id or ''}",
                 f"Message: {text}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def serve(ami_mode: str) -> None:
    """Run the FastAGI server until SIGTERM; print `READY <port>` once it listens."""
    fake = None
    if ami_mode == "fake":
        fake = FakeAmi()
        await fake.start()
        ami = AmiClient(HOST, fake.port, AMI_USER, AMI_SECRET)
        ami.start()
        await ami.wait_connected(SERVER_START_TIMEOUT)
    else:
        # Never started, so it never connects: every action raises AmiNotConnected.
        ami = AmiClient(HOST, 0, AMI_USER, AMI_SECRET)
    features = OperatorFeatures(ami, "operators", {"op1"})
    server = FastAgiServer(HOST, 0, environment_timeout=AgiConfig().environment_timeout)
    server.route("operator/login", features.login)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {server.port}", flush=True)
    await stop.wait()
    await server.stop()
    # The client closes its AMI connection first, so the fake's reader ends on EOF.
    await ami.stop()
    if fake is not None:
        await fake.stop()


# --- Parent process: the client ----------------------------------------------------


def environment_block(port: int, index: int) -> bytes:
    """Return a FastAGI environment block for the operator login step.

    The keys and their order are those of a block recorded from Asterisk 22.10.1
    (tests/unit/transcripts/agi_session.raw).
    """
    uniqueid = f"1796400000.{index}"
    values = {
        "agi_network": "yes",
        "agi_network_script": "operator/login",
        "agi_request": f"agi://{HOST}:{port}/operator/login",
        "agi_channel": f"Local/s@sigap-agi-runner-{index:08x};2",
        "agi_language": "en",
        "agi_type": "Local",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1+dfsg+~cs6.17.60671434-1",
        "agi_callerid": "op1",
        "agi_calleridname": "Operator 1",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "unknown",
        "agi_rdnis": "unknown",
        "agi_context": "sigap-agi-runner",
        "agi_extension": "s",
        "agi_priority": "1",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": str(140000000000000 + index),
        "agi_arg_1": "op1",
    }
    return "".join(f"{key}: {value}\n" for key, value in values.items()).encode() + b"\n"


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def one_session(port: int, index: int) -> tuple[float, float, bytes]:
    """Run one login session and return (answer ms, session ms, command line)."""
    started = time.perf_counter_ns()
    with socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(environment_block(port, index))
        command = read_line(sock)
        answered = time.perf_counter_ns()
        sock.sendall(b"200 result=1\n")
        read_until_closed(sock)
        closed = time.perf_counter_ns()
    return (answered - started) / 1e6, (closed - started) / 1e6, command


def one_probe(port: int) -> float:
    """Connect, close the sending side at once, and return ms until the server closes."""
    started = time.perf_counter_ns()
    with socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock)
        closed = time.perf_counter_ns()
    return (closed - started) / 1e6


def percentile(samples: list[float], fraction: float) -> float:
    """Return a percentile with linear interpolation between closest ranks."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "count": len(samples),
        "median_ms": round(statistics.median(samples), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "max_ms": round(max(samples), 3),
    }


def start_server(ami_mode: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--ami", ami_mode],
        stdout=subprocess.PIPE, stderr=log, start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = b""
    while b"\n" not in buffer:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"FastAGI server did not start; log: {log_path}")
        buffer += proc.stdout.read() or b""
        time.sleep(0.02)
    line = buffer.split(b"\n", 1)[0].decode()
    if not line.startswith("READY "):
        raise RuntimeError(f"unexpected output from the server: {line!r}")
    return proc, int(line.split()[1])


def count_log_lines(log_path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            key = "(line that is not JSON)"
        else:
            key = f"{entry.get('level')}: {entry.get('event')}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def run_client(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="sigap-fastagi-bench-"))
    log_path = workdir / "server.log"
    proc, port = start_server(args.ami, log_path)
    try:
        expected = b"SET VARIABLE SIGAP_RESULT " + (b"ok" if args.ami == "fake" else b"error")
        for index in range(args.warmup):
            one_session(port, index)
        answers, sessions, wrong = [], [], 0
        server_cpu_before = server_cpu_seconds(proc.pid)
        for index in range(args.sessions):
            answer_ms, session_ms, command = one_session(port, args.warmup + index)
            answers.append(answer_ms)
            sessions.append(session_ms)
            wrong += command.rstrip(b"\n") != expected
        server_cpu = server_cpu_seconds(proc.pid) - server_cpu_before
        probes = [one_probe(port) for _ in range(args.probes)]
        after_probes, _, command = one_session(port, args.warmup + args.sessions)
        wrong += command.rstrip(b"\n") != expected
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    log_lines = count_log_lines(log_path)
    if args.keep_log:
        print(f"server log kept: {log_path}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "ami": args.ami,
        "expected_command": expected.decode(),
        "wrong_commands": wrong,
        "answer": summary(answers),
        "session": summary(sessions),
        "server_cpu_ms_per_session": round(server_cpu * 1000 / args.sessions, 3),
        "probe_close": summary(probes) if probes else None,
        "answer_after_probes_ms": round(after_probes, 3),
        "server_log_lines": log_lines,
    }


def server_cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields_after_name = text.rsplit(")", 1)[1].split()
    return (int(fields_after_name[11]) + int(fields_after_name[12])) / os.sysconf("SC_CLK_TCK")


def markdown_table(result: dict[str, Any]) -> str:
    rows = [("answer (connect -> command)", result["answer"]),
            ("session (connect -> server closed)", result["session"])]
    if result["probe_close"]:
        rows.append(("port probe (connect -> server closed)", result["probe_close"]))
    lines = [f"AMI: {result['ami']}, handler answers `{result['expected_command']}`",
             "", "| measure | count | median ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for name, stats in rows:
        lines.append(f"| {name} | {stats['count']} | {stats['median_ms']} | "
                     f"{stats['p99_ms']} | {stats['max_ms']} |")
    lines += ["", f"server CPU per session: {result['server_cpu_ms_per_session']} ms; "
              f"answer after the probes: {result['answer_after_probes_ms']} ms"]
    return "\n".join(lines)


def machine_description() -> dict[str, object]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ami", choices=("fake", "none"), default="fake",
                        help="the handler's AMI: a fake that accepts QueueAdd, or none "
                             "(default fake)")
    parser.add_argument("--sessions", type=int, default=2000,
                        help="measured login sessions (default 2000)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="sessions before the measured ones (default 100)")
    parser.add_argument("--probes", type=int, default=200,
                        help="port probes after the sessions (default 200)")
    parser.add_argument("--output",
                        help="JSON results file (default var/bench/fastagi_latency-AMI.json, "
                             "AMI being fake or none)")
    parser.add_argument("--keep-log", action="store_true",
                        help="keep the server's log file (its path is printed)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        configure_logging("json", "info")
        asyncio.run(serve(args.ami))
        return 0
    if args.sessions < 1 or args.warmup < 0 or args.probes < 0:
        parser.error("--sessions must be at least 1, --warmup and --probes at least 0")

    result = {"machine": machine_description(), "sessions": args.sessions,
              "warmup": args.warmup, **run_client(args)}
    output = Path(args.output or REPO / "var" / "bench" / f"fastagi_latency-{args.ami}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"results written to {output}", file=sys.stderr)
    if result["wrong_commands"]:
        print(f"error: {result['wrong_commands']} sessions got a command other than "
              f"{result['expected_command']!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
