"""Record the AMI and FastAGI transcripts in this folder from a real Asterisk.

The transcripts are replayed by the unit tests, so the parsers are tested against the
bytes Asterisk really writes. Recording needs root and the Asterisk root that
scripts/asterisk.sh builds:

    .venv/bin/python tests/unit/transcripts/record.py config /tmp/wirerec-etc
    scripts/asterisk.sh up --instance wirerec --etc /tmp/wirerec-etc
    .venv/bin/python tests/unit/transcripts/record.py record tests/unit/transcripts
    scripts/asterisk.sh down --instance wirerec

`record` takes scenario names after the folder (default: all). Each scenario writes
NAME.raw (bytes received) and NAME.sent (bytes sent). Start a fresh instance before
recording all of them, because channel numbers and timings show up in the bytes and
the tests check some of them.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

AMI_ADDRESS = ("127.0.0.1", 25038)
FASTAGI_ADDRESS = ("127.0.0.1", 24574)

# res_speech is loaded only because res_agi 22.10.1 fails to load without it
# (undefined symbol ast_speech_change). PJSIP is left out so the instance opens no
# SIP port next to other instances.
CONFIG_FILES = {
    "modules.conf": """[modules]
autoload = no
load => res_speech.so
load => res_agi.so
load => app_stack.so
load => pbx_config.so
load => app_queue.so
load => app_playback.so
load => app_verbose.so
load => func_callerid.so
load => func_strings.so
load => func_channel.so
load => format_gsm.so
load => format_pcm.so
load => codec_gsm.so
load => codec_ulaw.so
load => bridge_simple.so
load => bridge_holding.so
load => res_musiconhold.so
""",
    "manager.conf": """[general]
enabled = yes
port = 25038
bindaddr = 127.0.0.1
channelvars = SIGAP_CALL_ID

[recorder]
secret = recorder-secret
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all
""",
    "queues.conf": """[general]
persistentmembers = no

[sigap-test]
strategy = ringall
ringinuse = no
wrapuptime = 30
""",
    "extensions.conf": """[general]
static = yes
writeprotect = yes

[wire]
exten => wait,1,Set(SIGAP_CALL_ID=call-0001)
 same => n,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => agi,1,Set(SIGAP_CALL_ID=call-0002)
 same => n,Answer()
 same => n,AGI(agi://127.0.0.1:24574/route,arg one,a&b,)
 same => n,Wait(30)
 same => n,Hangup()
exten => member,1,Wait(30)
""",
    "logger.conf": (
        "[general]\n[logfiles]\nmessages.log => notice,warning,error,verbose\n"
    ),
    "musiconhold.conf": "[general]\n",
}


class Peer:
    """One TCP connection whose received and sent bytes are kept for saving."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.05)
        self.received = bytearray()
        self.sent = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += data

    def read_until_quiet(
        self, marker: bytes, quiet: float = 0.4, limit: float = 8.0
    ) -> None:
        """Read until `marker` has arrived and nothing more came for `quiet` seconds."""
        start = len(self.received)
        deadline = time.monotonic() + limit
        last_data = time.monotonic()
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                return
            if chunk:
                self.received += chunk
                last_data = time.monotonic()
            elif (
                marker in self.received[start:] and time.monotonic() - last_data > quiet
            ):
                return
        raise TimeoutError(f"timed out after {limit} s waiting for {marker!r}")

    def save(self, folder: Path, name: str) -> None:
        (folder / f"{name}.raw").write_bytes(bytes(self.received))
        (folder / f"{name}.sent").write_bytes(bytes(self.sent))


def send_action(
    peer: Peer, name: str, action_id: str, *fields: tuple[str, str], wait: bytes = b""
) -> None:
    """Send one action and read until `wait` (default: its ActionID) has arrived."""
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    lines += [f"{key}: {value}" for key, value in fields]
    peer.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    peer.read_until_quiet(wait or f"ActionID: {action_id}\r\n".encode())


def connect_ami() -> Peer:
    peer = Peer(socket.create_connection(AMI_ADDRESS))
    peer.read_until_quiet(b"\r\n")
    return peer


def login(peer: Peer, events: str) -> None:
    send_action(
        peer,
        "Login",
        "login-1",
        ("Username", "recorder"),
        ("Secret", "recorder-secret"),
        ("Events", events),
    )


def originate(peer: Peer, action_id: str, exten: str, wait: bytes = b"") -> None:
    fields = [
        ("Channel", f"Local/{exten}@wire"),
        ("Application", "Wait"),
        ("Data", "20"),
        ("CallerID", '"Unit 7: Alpha" <112>'),
        ("Async", "true"),
    ]
    send_action(peer, "Originate", action_id, *fields, wait=wait)


def record_ping_before_login(folder: Path) -> None:
    peer = connect_ami()
    send_action(peer, "Ping", "ping-1")
    peer.sock.close()
    peer.save(folder, "ami_ping_before_login")


def record_actions(folder: Path) -> None:
    peer = connect_ami()
    login(peer, "off")
    member = (("Queue", "sigap-test"), ("Interface", "Local/member@wire"))
    send_action(peer, "QueueAdd", "queueadd-1", *member, ("MemberName", "op1"))
    send_action(peer, "QueueAdd", "queueadd-2", *member, ("MemberName", "op1"))
    send_action(
        peer,
        "QueueStatus",
        "queuestatus-1",
        ("Queue", "sigap-test"),
        wait=b"Event: QueueStatusComplete",
    )
    send_action(
        peer,
        "QueueSummary",
        "queuesummary-1",
        ("Queue", "sigap-test"),
        wait=b"Event: QueueSummaryComplete",
    )
    send_action(peer, "Command", "command-1", ("Command", "queue show sigap-test"))
    send_action(peer, "Command", "command-2", ("Command", "no such command"))
    fields = [
        ("Channel", "Local/wait@wire"),
        ("Application", "Wait"),
        ("Data", "20"),
        ("CallerID", '"Unit 7: Alpha" <112>'),
        ("Async", "true"),
        ("Variable", "SIGAP_A=1"),
        ("Variable", "SIGAP_B=x=y"),
    ]
    send_action(peer, "Originate", "originate-1", *fields)
    time.sleep(0.5)
    send_action(
        peer,
        "Status",
        "status-1",
        ("Variables", "SIGAP_CALL_ID,SIGAP_B"),
        wait=b"Event: StatusComplete",
    )
    send_action(
        peer,
        "CoreShowChannels",
        "coreshowchannels-1",
        wait=b"Event: CoreShowChannelsComplete",
    )
    send_action(peer, "Hangup", "hangup-1", ("Channel", "/^Local/wait@wire-.*$/"))
    send_action(peer, "Logoff", "logoff-1")
    peer.save(folder, "ami_actions")


def record_events(folder: Path) -> None:
    peer = connect_ami()
    login(peer, "on")
    originate(peer, "originate-2", "wait", wait=b"Event: OriginateResponse")
    member = (("Queue", "sigap-test"), ("Interface", "Local/member@wire"))
    pause = (("Paused", "true"), ("Reason", "R1"))
    send_action(
        peer, "QueuePause", "pause-1", *member, *pause, wait=b"QueueMemberPause"
    )
    send_action(
        peer,
        "QueuePause",
        "pause-2",
        *member,
        ("Paused", "false"),
        wait=b"PausedReason: \r\n",
    )
    send_action(
        peer,
        "Hangup",
        "hangup-2",
        ("Channel", "/^Local/wait@wire-.*$/"),
        wait=b"Event: Hangup",
    )
    send_action(peer, "Logoff", "logoff-2")
    peer.save(folder, "ami_events")


# Commands sent one at a time in the FastAGI session, each with the text that ends its
# reply. The long VERBOSE line checks that a 2,100-byte command is still one command.
AGI_SESSION_COMMANDS = [
    ("GET VARIABLE SIGAP_CALL_ID\n", b"\n"),
    ('SET VARIABLE SIGAP_QUOTED "a b\\"c\\\\d"\n', b"\n"),
    ("GET VARIABLE SIGAP_QUOTED\n", b"\n"),
    ('SET VARIABLE SIGAP_PARENS "x) endpos=5"\n', b"\n"),
    ("GET VARIABLE SIGAP_PARENS\n", b"\n"),
    ('STREAM FILE beep ""\n', b"\n"),
    ("STREAM FILE\n", b"520 "),
    ("FOOBAR\n", b"\n"),
    ("GET DATA beep 100 1\n", b"\n"),
    ('VERBOSE "' + "x" * 2100 + '" 1\n', b"\n"),
]

AFTER_HANGUP_COMMANDS = [
    "GET VARIABLE SIGAP_CALL_ID\n",
    'STREAM FILE beep ""\n',
    "SET VARIABLE SIGAP_RESULT ok\n",
]


def accept_fastagi(server: socket.socket) -> Peer:
    conn, _ = server.accept()
    peer = Peer(conn)
    peer.read_until_quiet(b"\n\n")
    return peer


def record_agi(folder: Path) -> None:
    """Record a FastAGI session that hangs up while STREAM FILE is playing."""
    with socket.create_server(FASTAGI_ADDRESS) as server:
        server.settimeout(10)
        ami = connect_ami()
        login(ami, "off")
        originate(ami, "originate-3", "agi")
        agi = accept_fastagi(server)
        for command, reply_end in AGI_SESSION_COMMANDS:
            agi.send(command.encode())
            agi.read_until_quiet(reply_end)
        agi.send(b'STREAM FILE tt-monkeys ""\n')
        time.sleep(0.5)
        send_action(ami, "Hangup", "hangup-3", ("Channel", "/^Local/agi@wire-.*;2$/"))
        agi.read_until_quiet(b"200 ", quiet=1.0)
        for command in AFTER_HANGUP_COMMANDS:
            agi.send(command.encode())
            agi.read_until_quiet(b"\n")
        agi.sock.close()
    agi.save(folder, "agi_session")
    send_action(ami, "Logoff", "logoff-3")


DEAD_CHANNEL_COMMANDS = [
    "VERBOSE done 1\n",
    "GET FULL VARIABLE ${SIGAP_CALL_ID}\n",
    "SET VARIABLE SIGAP_RESULT ok\n",
    "NOOP\n",
    "ANSWER\n",
]


def record_agi_dead_channel(folder: Path) -> None:
    """Record a FastAGI session whose channel hangs up before any command."""
    with socket.create_server(FASTAGI_ADDRESS) as server:
        server.settimeout(10)
        ami = connect_ami()
        login(ami, "off")
        originate(ami, "originate-4", "agi")
        agi = accept_fastagi(server)
        send_action(ami, "Hangup", "hangup-4", ("Channel", "/^Local/agi@wire-.*;2$/"))
        time.sleep(0.5)
        for command in DEAD_CHANNEL_COMMANDS:
            agi.send(command.encode())
            agi.read_until_quiet(b"\n")
        agi.sock.close()
    agi.save(folder, "agi_dead_channel")
    send_action(ami, "Logoff", "logoff-4")


# Values that need quoting or escaping; each is set with format_command and read back.
QUOTING_VALUES = ["back\\slash", 'x"y', "tab\there", "a b", "", "\\", '"', 'q\\"x']


def record_agi_quoting(folder: Path) -> None:
    """Record SET VARIABLE and GET VARIABLE for values that need quoting."""
    from sigap_pbx.wire.agi import format_command

    with socket.create_server(FASTAGI_ADDRESS) as server:
        server.settimeout(10)
        ami = connect_ami()
        login(ami, "off")
        originate(ami, "originate-5", "agi")
        agi = accept_fastagi(server)
        for value in QUOTING_VALUES:
            agi.send(format_command("SET", "VARIABLE", "SIGAP_QUOTED", value))
            agi.read_until_quiet(b"\n", quiet=0.2)
            agi.send(format_command("GET", "VARIABLE", "SIGAP_QUOTED"))
            agi.read_until_quiet(b"\n", quiet=0.2)
        agi.sock.close()
    agi.save(folder, "agi_quoting")
    send_action(ami, "Logoff", "logoff-5")


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "ping": record_ping_before_login,
    "actions": record_actions,
    "events": record_events,
    "agi": record_agi,
    "dead": record_agi_dead_channel,
    "quoting": record_agi_quoting,
}


def write_config(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CONFIG_FILES.items():
        (folder / name).write_text(text)


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "config":
        write_config(Path(argv[1]))
        return
    if len(argv) >= 2 and argv[0] == "record":
        folder = Path(argv[1])
        folder.mkdir(parents=True, exist_ok=True)
        for name in argv[2:] or list(SCENARIOS):
            SCENARIOS[name](folder)
        return
    sys.exit(f"usage: record.py config DIR | record DIR [{'|'.join(SCENARIOS)} ...]")


if __name__ == "__main__":
    main(sys.argv[1:])
