"""Indonesian prompts: format, greeting length, announcement rhythm, city overrides."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from sigap_pbx.asterisk.prompts import (
    GREETING_MAX_SECONDS,
    PROMPTS,
    generate_prompts,
    prompt_seconds,
)

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are installed by `make test` (scripts/setup.sh)",
)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    return generate_prompts(tmp_path_factory.mktemp("prompts"))


def test_every_prompt_is_8khz_mono_pcm(prompts: Path):
    for name in [*PROMPTS, "ringback"]:
        with wave.open(str(prompts / f"{name}.wav")) as handle:
            assert handle.getframerate() == 8000, name
            assert handle.getnchannels() == 1, name
            assert handle.getsampwidth() == 2, name
            assert handle.getnframes() > 800, name


def test_greeting_short_enough(prompts: Path):
    assert prompt_seconds(prompts / "greeting.wav") <= GREETING_MAX_SECONDS


def test_wait_class_plays_greeting_first(prompts: Path):
    assert sorted(p.name for p in (prompts / "moh-wait").iterdir()) == [
        "00-greeting.wav",
        "99-ringback.wav",
    ]


def test_warning_class_warns_after_greeting(prompts: Path):
    assert sorted(p.name for p in (prompts / "moh-wait-warning").iterdir()) == [
        "00-greeting.wav",
        "01-divert-warning.wav",
        "99-ringback.wav",
    ]
    warning = prompts / "moh-wait-warning" / "01-divert-warning.wav"
    assert warning.read_bytes() == (prompts / "divert-warning.wav").read_bytes()


def test_ring_class_announces_every_15_to_20_seconds(prompts: Path):
    files = sorted((prompts / "moh-ring").iterdir())
    assert [p.name for p in files] == [
        "01-ringback.wav",
        "02-ringback.wav",
        "03-still-in-queue.wav",
    ]
    period = sum(prompt_seconds(p) for p in files)
    assert 15 <= period <= 20, period


def test_city_recording_replaces_prompt(tmp_path: Path):
    custom = tmp_path / "city"
    custom.mkdir()
    # A 44.1 kHz stereo recording, as a city might deliver it.
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", str(custom / "greeting.wav"),
         "synth", "1.5", "sine", "300"],
        check=True,
    )
    out = generate_prompts(tmp_path / "out", custom)
    with wave.open(str(out / "greeting.wav")) as handle:
        assert handle.getframerate() == 8000
        assert handle.getnchannels() == 1
    assert prompt_seconds(out / "greeting.wav") == pytest.approx(1.5, abs=0.01)
    assert (out / "moh-wait" / "00-greeting.wav").read_bytes() == (
        out / "greeting.wav"
    ).read_bytes()
