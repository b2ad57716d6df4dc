#!/usr/bin/env bash
# make bench-peers — mailgate next to its peers in one run: nginx's mail proxy (1 worker, with
# the project's own auth_http responder, scripts/bench_peers.py) and HAProxy in TCP mode
# (1 thread), each in front of the same fake IMAP backend as a direct baseline. Reads each
# proxy's own CPU time (utime+stime of all its processes) and RSS from /proc and prints one
# table (docs/performance.md, "Against nginx and HAProxy").
#
# Installs nginx with libnginx-mod-mail and haproxy from Debian packages if missing, with
# their package services kept from starting (policy-rc.d, as scripts/install-deps.sh does).
# Loopback only, ports from PEERS_PORT_BASE (24000; bench uses 21000+, bench-attack 23000+).
# Knobs: PEERS_DURATION (6s per login cell), PEERS_CONCURRENCY (50), PEERS_IDLE_SESSIONS
# (4000), PEERS_PORT_BASE (24000), PEERS_SKIP_BUILD (reuse target/release), PEERS_ONLY
# (e.g. "logins bytes idle storm scaling"), PEERS_STORM_SESSIONS (8000), PEERS_STORM_SOURCES
# (100 addresses 127.0.0.2..), PEERS_STORM_SLOW_START (10s), PEERS_SCALING_RUNS (2). PEERS_CELLS (login cells, e.g. "plain").
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bench-peers] %s\n' "$*" >&2; }

# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh
apt_install_missing nginx-light libnginx-mod-mail haproxy openssl
if [ "$APT_INSTALLED" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now nginx haproxy >/dev/null 2>&1 || true
fi
[ -f /usr/lib/nginx/modules/ngx_mail_module.so ] || { log "ERROR: ngx_mail_module.so missing"; exit 1; }

if [ -z "${PEERS_SKIP_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release -p mailgate-testkit --bins
    cargo build --release -p mailgate --bin mailgate
fi

# Two sockets per proxied session: open-file limit up to the hard limit for the whole run.
ulimit -n "$(ulimit -Hn)"
exec python3 scripts/bench_peers.py "$@"
