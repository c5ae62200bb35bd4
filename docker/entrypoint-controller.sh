#!/usr/bin/env bash
# Entrypoint of the controller container.
#
#   (no argument) or serve   render the Asterisk configuration and the prompts into
#                            the volumes shared with Asterisk, then run `sigap serve`
#   render                   render and generate the prompts, then exit
#   health                   exit 0 when the controller's /api/health returns 200
#   anything else            run as a command, e.g. `sigap calls --limit 5`
#
# Each rendering goes into a new directory gen-TIMESTAMP of the etc volume. Only
# when it and the prompts are complete does the symlink `current` move to it, in one
# rename, so Asterisk (which reads etc/current) never sees a half-written set.
set -euo pipefail

# Renderings kept in the etc volume: the current one and the one before it.
KEEP_RENDERINGS=2

log() { printf '[controller-entrypoint %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

etc_volume() {
    local state_dir=${SIGAP_SITE__STATE_DIR:-}
    if [ -z "$state_dir" ]; then
        log "ERROR: SIGAP_SITE__STATE_DIR is not set"
        log "Try: run the image built from docker/Dockerfile.controller, which sets it"
        exit 1
    fi
    printf '%s\n' "$state_dir/asterisk-etc"
}

# Delete all but the newest KEEP_RENDERINGS renderings. The names sort by time, and
# the newest is the one `current` points to.
prune_renderings() {
    local etc=$1 renderings old_count
    mapfile -t renderings < <(
        find -H "$etc" -mindepth 1 -maxdepth 1 -type d -name 'gen-*' -printf '%f\n' | sort
    )
    old_count=$((${#renderings[@]} - KEEP_RENDERINGS))
    if [ "$old_count" -le 0 ]; then
        return 0
    fi
    local name
    for name in "${renderings[@]:0:old_count}"; do
        rm -rf -- "${etc:?}/$name"
        log "deleted the old rendering $name"
    done
}

publish_config() {
    local etc name link
    etc=$(etc_volume)
    name="gen-$(date -u +%Y%m%dT%H%M%S.%N)"
    log "rendering the Asterisk configuration into $etc/$name"
    sigap render-config --out "$etc/$name"
    # Prompts come before the switch: Asterisk loads its hold music directories
    # when it reads the configuration.
    log "generating the prompts"
    sigap prompts
    # The symlink is relative, so it resolves in both containers although they mount
    # the volume at different paths.
    link="$etc/.current.$$"
    ln -sfn "$name" "$link"
    mv -T "$link" "$etc/current"
    log "Asterisk configuration published: current -> $name"
    prune_renderings "$etc"
}

check_health() {
    exec python - <<'EOF'
import ssl
import sys
import urllib.request

from sigap_pbx.config import ConfigError, load_config

try:
    config = load_config()
except ConfigError as exc:
    sys.exit(f"health check failed: {exc}")
host = config.web.host
if host in ("0.0.0.0", "::"):
    host = "127.0.0.1"
if ":" in host:
    host = f"[{host}]"
context = None
scheme = "http"
if config.web.tls_cert is not None:
    # The certificate names the public host, not this loopback address, so the
    # host name is not checked; the server's certificate must be the configured one
    # (trusted as a partial chain) or chain to a system CA.
    scheme = "https"
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(config.web.tls_cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
url = f"{scheme}://{host}:{config.web.port}/api/health"
try:
    with urllib.request.urlopen(url, timeout=4, context=context):
        pass
except OSError as exc:
    sys.exit(f"health check failed: GET {url}: {exc}")
EOF
}

case "${1:-serve}" in
serve)
    publish_config
    exec sigap serve
    ;;
render)
    publish_config
    ;;
health)
    check_health
    ;;
*)
    exec "$@"
    ;;
esac
