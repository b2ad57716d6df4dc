#!/usr/bin/env bash
# make bench-attack — mailgate under attack: 100 legitimate clients log in through mailgate
# to a real Dovecot, first unloaded, then while 3,000 slowloris connections, 1,000
# connections that write without reading and an HTTP flood hit the same IMAP port.
# Reports logins ok/failed, login p50/p99 unloaded vs under attack, mailgate's RSS (before,
# peak, after) and CPU, and what each attacker got (docs/security.md, "Attack benchmark").
#
# A benchmark, not a test: nothing is asserted on times. Loopback only (127.0.0.0/8); every
# loop is bounded in count and time; every process started here is ended on exit (trap).
# The driver is scripts/bench_attack.py (Python 3, standard library + tests/e2e/dovecot.py).
#
# Knobs (environment): BENCH_ATTACK_PORT_BASE (23000; ports base+143 Dovecot, +243 mailgate
# IMAP, +944 admin; kept apart from scripts/bench.sh's 21000), BENCH_ATTACK_SECS (20: each
# legitimate run), BENCH_ATTACK_PREAUTH (10s), BENCH_ATTACK_PER_IP (50),
# BENCH_ATTACK_THINK (0: pause between one client's sessions, s), BENCH_SKIP_BUILD (unset),
# BENCH_ATTACK_ARGS (more driver flags, e.g. "--slowloris 300 --writers 100").
# Results: target/bench-attack/results.json and report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BENCH_ATTACK_PORT_BASE:-23000}
SECS=${BENCH_ATTACK_SECS:-20}
PREAUTH=${BENCH_ATTACK_PREAUTH:-10s}
PER_IP=${BENCH_ATTACK_PER_IP:-50}
THINK=${BENCH_ATTACK_THINK:-0}
BIN=target/release/mailgate

log() { printf '[bench-attack] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK=$(mktemp -d /tmp/mailgate-bench-attack.XXXXXX)
chmod 755 "$WORK" # Dovecot's unprivileged processes must reach their directory
DRIVER=
cleanup() {
    local pid i
    if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM "$DRIVER" 2>/dev/null || true
        for i in $(seq 150); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DRIVER" 2>/dev/null || true
    fi
    # Whatever the driver started and did not end (each by its recorded PID).
    if [ -f "$WORK/children.pids" ]; then
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done < "$WORK/children.pids"
    fi
    python3 tests/e2e/dovecot.py stop --dir "$WORK" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    log "building the release binary"
    cargo build --release -p mailgate --bin mailgate
fi
[ -x "$BIN" ] || die "$BIN missing (build it, or unset BENCH_SKIP_BUILD)"
command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || die "dovecot missing: scripts/install-deps.sh"

for port in $((BASE + 143)) $((BASE + 243)) $((BASE + 944)); do
    if ss -ltnH "sport = :$port" 2>/dev/null | grep -q .; then
        die "port $port is in use (set BENCH_ATTACK_PORT_BASE)"
    fi
done

log "other load on this machine now: $(cut -d' ' -f1-3 /proc/loadavg) (load average)"
# shellcheck disable=SC2086  # BENCH_ATTACK_ARGS is a list of flags
python3 scripts/bench_attack.py run --work "$WORK" --bin "$BIN" --port-base "$BASE" \
    --legit-secs "$SECS" --preauth-timeout "$PREAUTH" --max-per-ip "$PER_IP" --think "$THINK" \
    ${BENCH_ATTACK_ARGS:-} &
DRIVER=$!
wait "$DRIVER"
