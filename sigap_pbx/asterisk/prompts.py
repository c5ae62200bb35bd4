"""Indonesian voice prompts, generated with espeak-ng and sox at set-up.

Asterisk plays 8 kHz, 16-bit mono WAV (format_wav). A city replaces any prompt by
putting its own recording, with the same name, in the directory given as
`[prompts] custom_dir`. `sigap prompts` converts it to the same format.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# Name -> text. The greeting is kept under 3 s: operators' phones already ring while
# it plays, but a long greeting still hides the ring tone from the caller.
PROMPTS: dict[str, str] = {
    "greeting": "Layanan darurat satu satu dua. Mohon tunggu.",
    "still-in-queue": (
        "Anda masih dalam antrean. Jangan tutup telepon, petugas kami segera menjawab."
    ),
    "login-ok": "Anda sudah masuk antrean.",
    "logout-ok": "Anda sudah keluar dari antrean.",
    "login-rejected": "Telepon ini tidak terdaftar sebagai operator.",
    "logout-rejected": "Telepon ini tidak terdaftar sebagai operator.",
    "pause-ok": "Status jeda Anda sudah dicatat. Tekan bintang dua nol untuk kembali siap.",
    "unpause-ok": "Anda siap menerima panggilan.",
    "not-member": "Anda belum masuk antrean. Tekan bintang satu satu untuk masuk.",
    "agency-unreachable": "Saluran instansi tidak menjawab. Operator tetap bersama Anda.",
    "report-ack-ok": "Terima kasih. Laporan sudah dikonfirmasi.",
    "divert-warning": (
        "Nomor Anda tercatat sering melakukan panggilan palsu. Panggilan palsu ke "
        "satu satu dua dapat dikenai sanksi. Jika Anda dalam keadaan darurat, "
        "tetap di saluran."
    ),
    "controller-down": (
        "Pengendali sedang tidak tersedia. Perintah dijalankan langsung oleh sentral."
    ),
}

SOX_FORMAT = ["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"]
# Cut leading and trailing silence, which espeak-ng adds and a caller only hears as
# dead air.
SOX_TRIM = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%",
            "reverse"]
# Words per minute; the greeting is spoken faster to stay under GREETING_MAX_SECONDS.
SPEED = {"greeting": 185}
DEFAULT_SPEED = 170
GREETING_MAX_SECONDS = 3.0
# The longest warning a flagged caller hears after the greeting. When the queue
# returns early, the dialplan keeps that caller on the warning's hold class this much
# longer.
WARNING_MAX_SECONDS = 12.0


class PromptError(Exception):
    """Raised when a prompt cannot be generated or converted."""


def _run(args: list[str]) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise PromptError(
            f"{args[0]} is not installed; install it with 'apt-get install -y espeak-ng sox'"
        ) from None
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip()
        raise PromptError(f"{' '.join(args[:2])} failed: {stderr}") from None


def _speak(text: str, target: Path, speed: int) -> None:
    raw = target.with_suffix(".espeak.wav")
    _run(["espeak-ng", "-v", "id", "-s", str(speed), "-w", str(raw), text])
    _run(["sox", str(raw), *SOX_FORMAT, str(target), *SOX_TRIM])
    raw.unlink()


def synthesize(text: str, target: Path, speed: int = DEFAULT_SPEED) -> Path:
    """Speak `text` in Indonesian into `target`, an 8 kHz WAV that Asterisk plays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _speak(text, target, speed)
    target.chmod(0o644)
    return target


def prompt_seconds(path: Path) -> float:
    """Return the length of a WAV prompt in seconds."""
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def _convert(source: Path, target: Path) -> None:
    _run(["sox", str(source), *SOX_FORMAT, str(target)])


def _ringback(target: Path) -> None:
    # Indonesian ring tone: 425 Hz, 1 s on, 4 s off.
    _run(["sox", "-n", *SOX_FORMAT, str(target), "synth", "1", "sine", "425",
          "vol", "0.3", "pad", "0", "4"])


def _check_length(path: Path, limit: float, event: str, fix: str) -> None:
    """Log `event` when the prompt at `path` plays longer than `limit` seconds."""
    seconds = prompt_seconds(path)
    if seconds > limit:
        log.warning(event, seconds=round(seconds, 2), limit=limit, fix=fix)


def generate_prompts(out: Path, custom_dir: Path | None = None) -> Path:
    """Write every prompt into `out` (and the hold-music folders), reusing old files."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in PROMPTS.items():
        target = out / f"{name}.wav"
        custom = _find_custom(custom_dir, name)
        if custom is not None:
            _convert(custom, target)
            log.info("prompt_custom", prompt=name, source=str(custom))
        elif not target.exists():
            _speak(text, target, SPEED.get(name, DEFAULT_SPEED))
            log.info("prompt_generated", prompt=name)
    _check_length(out / "greeting.wav", GREETING_MAX_SECONDS, "greeting_too_long",
                  "record a shorter greeting; callers hear it before the ring tone")
    _check_length(out / "divert-warning.wav", WARNING_MAX_SECONDS, "divert_warning_too_long",
                  "record a shorter warning; a flagged caller whose queue returns early "
                  "would hear it cut off")
    ring = out / "ringback.wav"
    if not ring.exists():
        _ringback(ring)
    announcement = out / "still-in-queue.wav"
    for folder, files in {
        # The greeting once, then the ring tone looped (loop_last in musiconhold).
        "moh-wait": {"00-greeting.wav": out / "greeting.wav", "99-ringback.wav": ring},
        # For a number flagged with a warning: the warning follows the greeting.
        "moh-wait-warning": {
            "00-greeting.wav": out / "greeting.wav",
            "01-divert-warning.wav": out / "divert-warning.wav",
            "99-ringback.wav": ring,
        },
        # Two rings, then "Anda masih dalam antrean...", over and over: the caller
        # hears the announcement about every 16 s in every step of the overflow chain.
        "moh-ring": {
            "01-ringback.wav": ring,
            "02-ringback.wav": ring,
            "03-still-in-queue.wav": announcement,
        },
    }.items():
        folder_path = out / folder
        if folder_path.exists():
            shutil.rmtree(folder_path)
        folder_path.mkdir()
        for name, source in files.items():
            shutil.copyfile(source, folder_path / name)
    return out


def _find_custom(custom_dir: Path | None, name: str) -> Path | None:
    if custom_dir is None:
        return None
    matches = sorted(custom_dir.glob(f"{name}.*"))
    return matches[0] if matches else None
