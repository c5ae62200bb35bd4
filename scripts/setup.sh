#!/usr/bin/env bash
# Install what Sigap 112 needs on a Debian 12 machine: host tools from Debian's
# packages, and the Python environment in .venv. Idempotent and quick when nothing
# changed, so `make run` and `make test` call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# mmdebstrap builds the Asterisk root, sipp (package sip-tester) plays callers and
# phones, espeak-ng and sox make the Indonesian prompts, sqlite3 reads CDR/CEL by hand,
# chromium (with a font) runs the browser tests through Playwright.
PACKAGES=(mmdebstrap sip-tester zstd espeak-ng sox sqlite3 curl chromium fonts-dejavu-core)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { log "ERROR: installing ${missing[*]} needs root"; exit 1; }
    log "installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { log "ERROR: apt-get install ${missing[*]} failed; run it by hand to see why"; exit 1; }
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.sigap-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating the Python environment in .venv"
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    echo "$want" >"$stamp"
fi
