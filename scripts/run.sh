#!/usr/bin/env bash
# Run the whole stack on the embedded SQLite database: a real Asterisk, the Sigap
# controller and its web server. Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
SIGAP=.venv/bin/sigap
$SIGAP check-config
etc=$($SIGAP render-config)
prompts=$($SIGAP prompts)
instance=$(.venv/bin/python -c 'from sigap_pbx.config import load_config; print(load_config().site.instance)')

stop_all() {
    trap - INT TERM EXIT
    # If the output went to a pipe that Ctrl-C already closed (make run | tee), a
    # write must not kill this cleanup before Asterisk is stopped.
    trap '' PIPE
    if [ -n "${controller:-}" ] && kill -0 "$controller" 2>/dev/null; then
        kill -TERM "$controller" 2>/dev/null || true
        wait "$controller" 2>/dev/null || true
    fi
    scripts/asterisk.sh down --instance "$instance"
}
trap stop_all INT TERM EXIT

scripts/asterisk.sh up --instance "$instance" --etc "$etc" --prompts "$prompts"
.venv/bin/python -m sigap_pbx.banner
$SIGAP serve &
controller=$!
wait "$controller"
