#!/usr/bin/env bash
# Obtain and run the real Asterisk 22 that Sigap 112 uses.
#
# Asterisk is not packaged for Debian 12, so this script builds a Debian sid root with
# mmdebstrap (from the mirror the machine's apt already uses), caches it as a tarball,
# and runs Asterisk inside it with chroot. sid's binaries need a newer glibc than the
# host has, which is why they run in the root and not on the host.
#
# One root serves several instances (the one `make run` starts, the test suite's,
# the benchmark's). Each instance has its own configuration, spool, logs, AstDB and
# control socket under ROOT/srv/sigap/INSTANCE, so they never share state.
#
# Usage:
#   scripts/asterisk.sh up     --instance NAME --etc DIR [--prompts DIR]
#   scripts/asterisk.sh down   --instance NAME
#   scripts/asterisk.sh status --instance NAME
#   scripts/asterisk.sh restart --instance NAME --etc DIR [--prompts DIR]
#   scripts/asterisk.sh rx     --instance NAME 'CLI COMMAND'
#   scripts/asterisk.sh build             (only make sure the root exists)
#   scripts/asterisk.sh path   --instance NAME   (print the instance dir on the host)
#
# Environment:
#   SIGAP_ASTERISK_ROOT   where the sid root lives (default /var/lib/sigap/asterisk-root)
#   SIGAP_CACHE_DIR       where the root's tarball is cached (default /var/cache/sigap)
#   SIGAP_ASTERISK_UID    uid/gid given to the root's asterisk user (default 64112)
set -euo pipefail

ROOT=${SIGAP_ASTERISK_ROOT:-/var/lib/sigap/asterisk-root}
CACHE_DIR=${SIGAP_CACHE_DIR:-/var/cache/sigap}
AST_UID=${SIGAP_ASTERISK_UID:-64112}
# Bump when the package list or the post-build steps change, so a stale cache is not reused.
RECIPE="sid:asterisk,asterisk-modules,asterisk-core-sounds-en-gsm,sqlite3:uid${AST_UID}:v2"
RECIPE_ID=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
MARKER="$ROOT/.sigap-root"

# A failed write (stderr is a pipe that closed) must not abort the script under
# `set -e`: `down` is what a Ctrl-C cleanup runs.
log() { printf '[asterisk.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2 || true; }
die() {
    log "ERROR: $1"
    [ $# -ge 2 ] && log "Try: $2"
    exit 1
}

need_host_tools() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v zstd >/dev/null || missing+=(zstd)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing host tools: ${missing[*]}"
        apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; } ||
            die "apt-get could not install ${missing[*]}" \
                "run 'apt-get update && apt-get install -y ${missing[*]}' and read its error"
    fi
}

# Print the URI of the Debian mirror the host's apt uses for its main suite. The
# host name is read at run time and never written to any file.
debian_mirror() {
    local sources=/etc/apt/sources.list.d/debian.sources uri
    if [ -r "$sources" ]; then
        uri=$(awk '
            /^URIs:/ { uris = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-/) { print uris; exit } }
        ' "$sources")
    fi
    if [ -z "${uri:-}" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $3 !~ /-/ { print $2; exit }' /etc/apt/sources.list)
    fi
    [ -n "${uri:-}" ] || die "no Debian mirror found in $sources or /etc/apt/sources.list" \
        "add a 'deb' source for the main Debian suite, or set the mirror in $sources"
    printf '%s\n' "$uri"
}

root_is_ready() {
    [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$RECIPE_ID" ] && [ -x "$ROOT/usr/sbin/asterisk" ]
}

# Show the root's size while mmdebstrap works, because the first build takes a minute.
progress_ticker() {
    local target=$1
    while sleep 5; do
        if [ -d "$target" ]; then
            log "building... $(du -sm "$target" 2>/dev/null | cut -f1) MB so far (about 285 MB when done)"
        fi
    done
}

# Give the root's asterisk user an id the host does not use, so files it writes never
# look as if another host account owned them.
fix_asterisk_uid() {
    local old_uid old_gid
    old_uid=$(chroot "$ROOT" id -u asterisk)
    old_gid=$(chroot "$ROOT" id -g asterisk)
    if [ "$old_uid" != "$AST_UID" ]; then
        if getent passwd "$AST_UID" >/dev/null; then
            die "uid $AST_UID is taken on the host" "set SIGAP_ASTERISK_UID to an unused uid"
        fi
        chroot "$ROOT" groupmod -g "$AST_UID" asterisk
        chroot "$ROOT" usermod -u "$AST_UID" -g "$AST_UID" asterisk
        find "$ROOT" -xdev \( -uid "$old_uid" -o -gid "$old_gid" \) \
            -exec chown -h "$AST_UID:$AST_UID" {} + 2>/dev/null || true
        log "asterisk user moved from uid $old_uid to $AST_UID"
    fi
}

build_root() {
    local mirror tmp ticker cache="$CACHE_DIR/asterisk-root-$RECIPE_ID.tar.zst"
    need_host_tools
    mkdir -p "$CACHE_DIR"
    if [ -f "$cache" ]; then
        log "restoring the Asterisk root from the cache $cache"
        rm -rf "$ROOT" && mkdir -p "$ROOT"
        zstd -dc "$cache" | tar -C "$ROOT" -xpf - ||
            die "the cache $cache could not be unpacked" "delete it and run this again to rebuild"
    else
        mirror=$(debian_mirror)
        log "first run: building a Debian sid root with Asterisk 22 in $ROOT (35-60 s)"
        tmp="$ROOT.tmp"
        rm -rf "$tmp" "$ROOT"
        mkdir -p "$(dirname "$ROOT")"
        progress_ticker "$tmp" &
        ticker=$!
        # Check-Valid-Until is off because the mirror may be a dated snapshot whose sid
        # Release file has expired; apt refuses such a file otherwise.
        if ! mmdebstrap --variant=apt \
            --include=asterisk,asterisk-modules,asterisk-core-sounds-en-gsm,sqlite3 \
            --aptopt='Acquire::Check-Valid-Until "false"' \
            --aptopt='Acquire::Languages "none"' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            sid "$tmp" "$mirror" >"$CACHE_DIR/mmdebstrap.log" 2>&1; then
            kill "$ticker" 2>/dev/null || true
            tail -n 20 "$CACHE_DIR/mmdebstrap.log" >&2
            die "mmdebstrap failed to build the sid root (full log: $CACHE_DIR/mmdebstrap.log)" \
                "check that 'apt-get update' works on the host and that the mirror carries sid"
        fi
        kill "$ticker" 2>/dev/null || true
        mv "$tmp" "$ROOT"
        fix_asterisk_uid
        log "caching the root as $cache"
        tar -C "$ROOT" -cpf - . | zstd -q -3 -T0 -o "$cache.part" && mv "$cache.part" "$cache"
    fi
    fix_asterisk_uid
    echo "$RECIPE_ID" >"$MARKER"
    log "root ready: $(chroot "$ROOT" dpkg-query -W -f '${Package} ${Version}' asterisk)"
}

ensure_root() {
    root_is_ready || build_root
    chroot "$ROOT" true 2>/dev/null ||
        die "cannot chroot into $ROOT" "run as root; if the root is damaged, delete $ROOT"
}

# Paths of an instance, as the host sees them and as Asterisk (inside the root) sees them.
set_instance() {
    [[ "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]] ||
        die "invalid instance name '$INSTANCE'" "use lower-case letters, digits, '-' and '_'"
    INNER="/srv/sigap/$INSTANCE"
    HOST_DIR="$ROOT$INNER"
    PIDFILE="$HOST_DIR/asterisk.pid"
    CONF="$INNER/etc/asterisk.conf"
}

write_asterisk_conf() {
    cat >"$HOST_DIR/etc/asterisk.conf" <<EOF
; Written by scripts/asterisk.sh for the instance '$INSTANCE'. Every directory that
; holds state is private to this instance. The section is not a template "(!)",
; because Asterisk ignores the paths of a template section.
[directories]
astcachedir => $INNER/cache
astetcdir => $INNER/etc
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => $INNER/lib
astdbdir => $INNER/lib
astkeydir => $INNER/lib
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => $INNER/spool
astrundir => $INNER/run
astlogdir => $INNER/log
astsbindir => /usr/sbin

[options]
; Calls come first: Asterisk's threads run at real-time priority, so a busy controller
; or anything else on the machine cannot delay call set-up.
highpriority = yes
; Fail fast rather than queue work when the box is overloaded.
maxload = 0
; Boot without waiting for a console.
nocolor = yes
hideconnect = yes
transmit_silence = yes
EOF
}

sync_config() {
    local etc=$1 prompts=${2:-}
    [ -d "$etc" ] || die "configuration directory '$etc' not found" \
        "render it first with 'sigap render-config --out $etc'"
    mkdir -p "$HOST_DIR"/{etc,lib,spool,log,run,cache,prompts}
    rm -f "$HOST_DIR"/etc/*.conf
    cp -a "$etc"/. "$HOST_DIR/etc/"
    write_asterisk_conf
    if [ -n "$prompts" ]; then
        [ -d "$prompts" ] || die "prompt directory '$prompts' not found" "run 'sigap prompts'"
        rm -rf "$HOST_DIR/prompts" && mkdir -p "$HOST_DIR/prompts"
        cp -a "$prompts"/. "$HOST_DIR/prompts/"
    fi
    chown -R "$AST_UID:$AST_UID" "$HOST_DIR"
    # Logs repeat dialplan arguments (the FastAGI token among them) and CDR/CEL hold
    # callers' numbers: only Asterisk's user and root may read them.
    chmod 0750 "$HOST_DIR/log" "$HOST_DIR/etc" "$HOST_DIR/lib"
    # Site files hold secrets, so only the asterisk user may read them.
    find "$HOST_DIR/etc" -type f -exec chmod 0600 {} +
}

is_running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

rx() {
    chroot "$ROOT" /usr/sbin/asterisk -C "$CONF" -rx "$1"
}

cmd_up() {
    local etc=$1 prompts=${2:-} started
    ensure_root
    set_instance
    if is_running; then
        log "instance '$INSTANCE' already running (pid $(cat "$PIDFILE")); reloading its configuration"
        sync_config "$etc" "$prompts"
        rx 'core reload' >/dev/null
        return 0
    fi
    sync_config "$etc" "$prompts"
    rm -f "$HOST_DIR/run/asterisk.ctl"
    log "starting Asterisk instance '$INSTANCE'"
    started=$(date +%s.%N)
    setsid chroot "$ROOT" /usr/sbin/asterisk -f -n -U asterisk -G asterisk -C "$CONF" \
        </dev/null >"$HOST_DIR/log/console.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
        if ! is_running; then
            tail -n 20 "$HOST_DIR/log/console.log" >&2
            die "Asterisk exited during start (console: $HOST_DIR/log/console.log)" \
                "read the messages above; 'sigap check-config' validates the site values"
        fi
        if [ -S "$HOST_DIR/run/asterisk.ctl" ] &&
            timeout 5 chroot "$ROOT" /usr/sbin/asterisk -C "$CONF" -rx 'core waitfullybooted' \
                >/dev/null 2>&1; then
            log "instance '$INSTANCE' fully booted in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s (pid $(cat "$PIDFILE"))"
            return 0
        fi
        sleep 0.1
    done
    die "Asterisk did not finish booting in 10 s (console: $HOST_DIR/log/console.log)" \
        "run 'scripts/asterisk.sh rx --instance $INSTANCE \"core show uptime\"'"
}

cmd_down() {
    set_instance
    if ! is_running; then
        log "instance '$INSTANCE' is not running"
        rm -f "$PIDFILE"
        return 0
    fi
    local pid
    pid=$(cat "$PIDFILE")
    log "stopping Asterisk instance '$INSTANCE' (pid $pid)"
    timeout 5 chroot "$ROOT" /usr/sbin/asterisk -C "$CONF" -rx 'core stop now' >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "Asterisk did not stop in 5 s; sending TERM"
        kill -TERM "$pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "instance '$INSTANCE' stopped"
}

cmd_status() {
    set_instance
    if is_running; then
        echo "instance '$INSTANCE': running, pid $(cat "$PIDFILE"), dir $HOST_DIR"
        rx 'core show uptime' || true
    else
        echo "instance '$INSTANCE': stopped"
        return 3
    fi
}

main() {
    local verb=${1:-}
    [ -n "$verb" ] || die "no command given" "use one of: up, down, status, restart, rx, build, path"
    shift
    INSTANCE=dev
    local etc="" prompts="" args=()
    while [ $# -gt 0 ]; do
        case $1 in
        --instance) INSTANCE=$2; shift 2 ;;
        --etc) etc=$2; shift 2 ;;
        --prompts) prompts=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "this script needs root for chroot" "run it as root or with sudo"
    case $verb in
    build) ensure_root ;;
    up)
        [ -n "$etc" ] || die "'up' needs --etc DIR" "render one with 'sigap render-config --out DIR'"
        cmd_up "$etc" "$prompts"
        ;;
    restart)
        [ -n "$etc" ] || die "'restart' needs --etc DIR" "render one with 'sigap render-config --out DIR'"
        cmd_down
        cmd_up "$etc" "$prompts"
        ;;
    down) cmd_down ;;
    status) cmd_status ;;
    rx)
        set_instance
        is_running || die "instance '$INSTANCE' is not running" "start it with 'up'"
        rx "${args[*]}"
        ;;
    path) set_instance; echo "$HOST_DIR" ;;
    *) die "unknown command '$verb'" "use one of: up, down, status, restart, rx, build, path" ;;
    esac
}

main "$@"
