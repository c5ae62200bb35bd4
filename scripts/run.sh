#!/usr/bin/env bash
# Run the whole stack on the embedded SQLite database: a real Asterisk, the Sigap
# controller and its web server. Ctrl-C, or SIGINT or SIGTERM to this script, stops
# all of them.
#
# Asterisk carries the calls, so it keeps running whatever happens to the
# controller: whenever the controller exits (crashed, killed, or stopped with a
# signal of its own), it is started again after a short pause, and calls in
# progress are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
SIGAP=.venv/bin/sigap
$SIGAP check-config
etc=$($SIGAP render-config)
prompts=$($SIGAP prompts)
instance=$(.venv/bin/python -c 'from sigap_pbx.config import load_config; print(load_config().site.instance)')

log() { printf '[run %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2 || true; }
stopping=0
controller=""
# Set once a controller has got past its start: from then on Asterisk stays up.
ran=0

# Whether Asterisk was running before this script: a start that fails on the first
# try must not stop an Asterisk that someone else's calls are on.
was_running=0
if scripts/asterisk.sh status --instance "$instance" >/dev/null 2>&1; then
    was_running=1
fi

stop_all() {
    trap - INT TERM EXIT
    # If the output went to a pipe that Ctrl-C already closed (make run | tee), a
    # write must not kill this cleanup before Asterisk is stopped.
    trap '' PIPE
    stopping=1
    if [ -n "$controller" ] && kill -0 "$controller" 2>/dev/null; then
        kill -TERM "$controller" 2>/dev/null || true
        wait "$controller" 2>/dev/null || true
    fi
    if [ "$ran" = 0 ] && [ "$was_running" = 1 ]; then
        log "Asterisk was running before this script and no controller started; leaving it up"
        return
    fi
    scripts/asterisk.sh down --instance "$instance"
}
# Sleep in the background and wait for it: `wait` returns as soon as a trapped
# signal arrives, where a foreground sleep would hold the trap until it ends.
pause() { sleep "$1" & wait $! || true; }
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT
if trap -p INT | grep -q "''"; then
    # A shell started without job control (`make run &` in a script) ignores SIGINT
    # for its jobs, and this script cannot trap it then.
    log "SIGINT is ignored here, so only SIGTERM to this script (pid $$) stops the controller and Asterisk"
fi

scripts/asterisk.sh up --instance "$instance" --etc "$etc" --prompts "$prompts"
.venv/bin/python -m sigap_pbx.banner
while [ "$stopping" = 0 ]; do
    # Below Asterisk's priority: the controller never competes with calls for a CPU.
    nice -n 10 $SIGAP serve &
    controller=$!
    status=0
    wait "$controller" || status=$?
    controller=""
    [ "$stopping" = 0 ] || break
    # `sigap serve` exits with 2 for a configuration error and 3 when it could not
    # start; a crash is 1, like any Python error.
    if [ "$status" = 2 ] || [ "$status" = 3 ]; then
        if [ "$ran" = 0 ]; then
            # On the first start: starting again would fail the same way.
            log "the controller could not start (exit $status); see the error above"
            exit "$status"
        fi
        # Asterisk has been carrying calls: keep it, and try until the cause is fixed.
        log "the controller could not start again (exit $status); Asterisk keeps routing calls; retrying in 10 s"
        pause 10
        continue
    fi
    ran=1
    # A signal to the controller alone, a crash or a clean exit: Asterisk carries
    # the calls in progress, so only the controller starts again. The whole stack
    # stops with Ctrl-C, or SIGINT or SIGTERM to this script.
    log "the controller exited ($status); Asterisk keeps routing calls; restarting it in 2 s"
    pause 2
done
