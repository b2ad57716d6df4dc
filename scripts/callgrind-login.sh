#!/usr/bin/env bash
# Instructions per plain login (LOGIN/NOOP/LOGOUT) of a mailgate binary, under
# `valgrind --tool=callgrind`: repeatable whatever the machine's load, unlike CPU time.
# Usage: scripts/callgrind-login.sh MAILGATE_BIN [OUT_DIR]
# Knobs: CG_PORT_BASE (26000), CG_DURATION (20s), CG_CONCURRENCY (10), CG_BIN_DIR (the
# fake backend and load generator: target/release).
# Starts a fake backend and mailgate under callgrind, warms up, zeroes the counters, runs
# the load for CG_DURATION, dumps, and prints {"logins":N,"ir":I,"ir_per_login":I/N}.
set -euo pipefail
cd "$(dirname "$0")/.."
MG=$(readlink -f "$1")
OUT=${2:-$(mktemp -d /tmp/mg-cg.XXXXXX)}
BASE=${CG_PORT_BASE:-26000}
BIN=${CG_BIN_DIR:-target/release}
mkdir -p "$OUT/log"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$OUT/key.pem" -out "$OUT/cert.pem" \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1
cat >"$OUT/mailgate.yaml" <<YAML
listen:
  imap: 127.0.0.1:$((BASE + 200))
  admin: 127.0.0.1:$((BASE + 202))
tls:
  cert: cert.pem
  key: key.pem
  require_tls_for_login: false
routing_file: routing.yaml
log:
  level: info
  format: text
limits:
  max_sessions_per_ip: 0
  max_auth_failures_per_ip: 0
  idle_timeout: 30m
shutdown_grace: 1s
YAML
cat >"$OUT/routing.yaml" <<YAML
backends:
  fake:
    host: 127.0.0.1
    imap_port: $((BASE + 100))
    forward_client: id
default: fake
YAML
"$BIN/mailgate-fake-backend" --imap 127.0.0.1:$((BASE + 100)) --name fake >"$OUT/fake.out" 2>&1 &
FAKE=$!
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
    "$MG" run -c "$OUT/mailgate.yaml" >"$OUT/log/mailgate.log" 2>&1 &
VG=$!
cleanup() { kill "$FAKE" "$VG" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$((BASE + 202))/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
load() { "$BIN/mailgate-load" logins --target 127.0.0.1:$((BASE + 200)) --script noop \
    --concurrency "${CG_CONCURRENCY:-10}" --duration "$1"; }
load 3s >"$OUT/warmup.json"
callgrind_control -z "$VG" >/dev/null
load "${CG_DURATION:-20s}" >"$OUT/load.json"
callgrind_control -d "$VG" >/dev/null
sleep 1
kill -INT "$VG" 2>/dev/null || true
wait "$VG" 2>/dev/null || true
# The dump made by -d is the one with a part number (.1); the final one holds the shutdown.
DUMP=$(ls "$OUT"/callgrind.out.*.1 2>/dev/null | head -1)
python3 - "$OUT/load.json" "$DUMP" <<'PY'
import json, sys
load = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ir = None
for line in open(sys.argv[2]):
    if line.startswith("summary:") or line.startswith("totals:"):
        ir = int(line.split()[1])
n = load["logins"]
print(json.dumps({"logins": n, "errors": load.get("errors"), "ir": ir,
                  "ir_per_login": round(ir / n) if n else None, "dump": sys.argv[2]}))
PY
