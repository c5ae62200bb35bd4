#!/usr/bin/env bash
# Entrypoint of the Asterisk container: point Asterisk at the instance directory,
# wait for the configuration that the controller renders, and run Asterisk in the
# foreground.
#
# The layout is the one scripts/asterisk.sh gives an instance, with etc, log,
# prompts, lib, spool, run and cache under /srv/sigap/main. The controller writes
# each rendering into a new directory of the etc volume. Then it moves the symlink
# etc/current to it in one rename, so Asterisk never reads a half-written set.
set -euo pipefail

INSTANCE_DIR=/srv/sigap/main
CONFIG_DIR="$INSTANCE_DIR/etc/current"
ASTERISK_CONF=/etc/asterisk/asterisk.conf
# Seconds between two "still waiting" messages while the configuration is missing.
WAIT_LOG_INTERVAL=15

log() { printf '[asterisk-entrypoint %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Print the module directory. Its name contains the multiarch triplet
# (x86_64-linux-gnu, aarch64-linux-gnu, ...), so it is looked up at run time.
module_dir() {
    local dir
    for dir in /usr/lib/*/asterisk/modules; do
        if [ -d "$dir" ]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    log "ERROR: no Asterisk module directory found under /usr/lib/*/asterisk/modules"
    log "Try: rebuild the image; the asterisk-modules package is missing"
    exit 1
}

# Asterisk reads asterisk.conf from /etc/asterisk when no -C is given, so the
# healthcheck's and an administrator's `asterisk -rx` find the control socket in
# astrundir without extra options.
write_asterisk_conf() {
    local modules
    modules=$(module_dir)
    cat >"$ASTERISK_CONF" <<EOF
; Written by the container entrypoint at every start. Every directory that holds
; state belongs to the instance in $INSTANCE_DIR. The section is not a template
; "(!)", because Asterisk ignores the paths of a template section.
[directories]
astcachedir => $INSTANCE_DIR/cache
astetcdir => $CONFIG_DIR
astmoddir => $modules
astvarlibdir => $INSTANCE_DIR/lib
astdbdir => $INSTANCE_DIR/lib
astkeydir => $INSTANCE_DIR/lib
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => $INSTANCE_DIR/spool
astrundir => $INSTANCE_DIR/run
astlogdir => $INSTANCE_DIR/log
astsbindir => /usr/sbin

[options]
; Fail fast rather than queue work when the box is overloaded.
maxload = 0
nocolor = yes
hideconnect = yes
transmit_silence = yes
EOF
}

wait_for_config() {
    local waited=0
    until [ -f "$CONFIG_DIR/extensions.conf" ]; do
        if [ $((waited % WAIT_LOG_INTERVAL)) -eq 0 ]; then
            log "waiting for the controller to render the configuration into $CONFIG_DIR" \
                "(${waited} s so far; read 'docker compose logs controller' if this goes on)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "configuration found: $(readlink "$CONFIG_DIR")"
}

main() {
    write_asterisk_conf
    wait_for_config
    # run/ is in the container's own filesystem, which survives a restart of the
    # container, so a socket or pid file may be left from the previous run.
    rm -f "$INSTANCE_DIR/run/asterisk.ctl" "$INSTANCE_DIR/run/asterisk.pid"
    log "starting $(asterisk -V)"
    exec asterisk -f -n "$@"
}

main "$@"
