#!/usr/bin/env bash
# make bench — mailgate's benchmarks, each against a baseline measured in the same run.
#
#   (a) logins: load -> fake backend directly  vs  load -> mailgate -> fake backend
#       (logins/s, p50/p99 login latency, mailgate CPU time per login; plus implicit TLS)
#   (b) bytes:  FETCH of a large message, direct vs through mailgate (MB/s)
#   (c) idle:   RSS of mailgate with 0 and N idle spliced IMAP IDLE sessions, plain and
#               implicit TLS -> KiB per session (the fake backend's own figure as reference)
#   (d) routing: 1M-domain routing file: parse+validate, peak RSS, lookup ns/op vs HashMap
#
# Loopback only; every loop is bounded. Load generator, mailgate and fake backend run as
# separate processes (each process here is capped at 20,000 open files).
# Raw JSON lines go to target/bench/results.jsonl; a table is printed at the end.
# Knobs (environment): BENCH_DURATION (10s), BENCH_CONCURRENCY (50), BENCH_IDLE_SESSIONS
# (8000), BENCH_MESSAGE_SIZE (1048576), BENCH_PORT_BASE (21000), BENCH_SKIP_BUILD (unset),
# BENCH_ONLY (e.g. "logins bytes idle routing"), BENCH_ROUTING_DOMAINS (1000000).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
IDLE_N=${BENCH_IDLE_SESSIONS:-8000}
MSG_SIZE=${BENCH_MESSAGE_SIZE:-1048576}
BASE=${BENCH_PORT_BASE:-21000}
ONLY=${BENCH_ONLY:-logins bytes idle routing}
FAKE_IMAP=$((BASE + 143)); FAKE_BIG=$((BASE + 144)); FAKE_POP3=$((BASE + 110))
MG_IMAP=$((BASE + 243)); MG_IMAPS=$((BASE + 993)); MG_ADMIN=$((BASE + 944))

OUT=target/bench
BIN=target/release
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
WORK=$(mktemp -d /tmp/mailgate-bench.XXXXXX)
# mailgate's log outside the routing file's directory, which mailgate watches (inotify): a
# log line written there would wake the watcher, a cost no real deployment has.
mkdir "$WORK/log"
CLK_TCK=$(getconf CLK_TCK)
PIDS=()

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

stop() { # PID: SIGTERM, wait at most 10 s, then SIGKILL
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# --- build -------------------------------------------------------------------------------
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release -p mailgate-testkit --bins
    MAILGATE_BUILT=1
    cargo build --release -p mailgate --bin mailgate || MAILGATE_BUILT=0
else
    MAILGATE_BUILT=1
fi
[ -x "$BIN/mailgate-load" ] && [ -x "$BIN/mailgate-fake-backend" ] || die "bench binaries missing"
if [ "$MAILGATE_BUILT" = 1 ] && [ ! -x "$BIN/mailgate" ]; then MAILGATE_BUILT=0; fi
[ "$MAILGATE_BUILT" = 1 ] || log "mailgate did not build: only the direct-to-fake baselines run"

for port in $FAKE_IMAP $FAKE_BIG $FAKE_POP3 $MG_IMAP $MG_IMAPS $MG_ADMIN; do
    if ss -ltnH "sport = :$port" 2>/dev/null | grep -q .; then
        die "port $port is in use (set BENCH_PORT_BASE)"
    fi
done

# --- helpers -----------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
json() { jq -r "$2" <<<"$1"; } # JSON FILTER
record() { # JSON: append one result line
    printf '%s\n' "$1" >> "$RESULTS"
}

FAKE_PID=
start_fake() { # starts the small-message and the big-message fake in one process each
    "$BIN/mailgate-fake-backend" --imap "127.0.0.1:$FAKE_IMAP" --pop3 "127.0.0.1:$FAKE_POP3" \
        --name bench --message-size 1024 > "$WORK/fake.log" 2>&1 &
    FAKE_PID=$!; PIDS+=("$FAKE_PID")
    "$BIN/mailgate-fake-backend" --imap "127.0.0.1:$FAKE_BIG" --name benchbig \
        --message-size "$MSG_SIZE" > "$WORK/fakebig.log" 2>&1 &
    FAKE_BIG_PID=$!; PIDS+=("$FAKE_BIG_PID")
    local i
    for i in $(seq 100); do
        if [ "$(grep -c listening "$WORK/fake.log" "$WORK/fakebig.log" | awk -F: '{s+=$2} END {print s}')" = 3 ]; then
            return 0
        fi
        sleep 0.1
    done
    cat "$WORK/fake.log" "$WORK/fakebig.log" >&2
    die "fake backends did not start"
}
stop_fake() { stop "$FAKE_PID"; stop "$FAKE_BIG_PID"; }

make_tls() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj /CN=mailgate-testkit-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        > "$WORK/leaf.ext"
    openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
        -CAcreateserial -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem" 2>/dev/null
}

write_config() { # ROUTING_FILE
    cat > "$WORK/mailgate.yaml" <<EOF
listen:
  imap: 127.0.0.1:$MG_IMAP
  imaps: 127.0.0.1:$MG_IMAPS
  admin: 127.0.0.1:$MG_ADMIN
tls:
  cert: cert.pem
  key: key.pem
  require_tls_for_login: false
routing_file: $1
log:
  level: info
  format: text
limits:
  max_sessions_per_ip: 0
  max_auth_failures_per_ip: 0
  idle_timeout: 30m
shutdown_grace: 1s
EOF
    cat > "$WORK/routing.yaml" <<EOF
backends:
  fake:
    host: 127.0.0.1
    imap_port: $FAKE_IMAP
    pop3_port: $FAKE_POP3
    forward_client: id
  fakebig:
    host: 127.0.0.1
    imap_port: $FAKE_BIG
    forward_client: id
domains:
  example.com: fake
  big.example.com: fakebig
default: fake
EOF
}

MG_PID=
start_mailgate() { # returns 1 (with the log shown) if mailgate does not become ready
    "$BIN/mailgate" run -c "$WORK/mailgate.yaml" > "$WORK/log/mailgate.log" 2>&1 &
    MG_PID=$!; PIDS+=("$MG_PID")
    local i
    for i in $(seq 300); do # 30 s (a 1M-domain routing file takes a while)
        if ! kill -0 "$MG_PID" 2>/dev/null; then
            log "mailgate exited during startup; its log:"; tail -20 "$WORK/log/mailgate.log" >&2
            return 1
        fi
        if curl -fsS --max-time 1 "http://127.0.0.1:$MG_ADMIN/readyz" >/dev/null 2>&1; then
            sleep 1 # let the first health probes settle
            return 0
        fi
        sleep 0.1
    done
    log "mailgate did not become ready in 30 s; its log:"; tail -20 "$WORK/log/mailgate.log" >&2
    stop "$MG_PID"
    return 1
}

# exec: the PID of `load ... &` is the load generator itself, so stop() ends it.
load() { exec "$BIN/mailgate-load" "$@"; }

# (a) login throughput ----------------------------------------------------------------------
bench_logins() {
    local r ticks0 ticks1 n cpu
    log "logins: direct to fake ($DURATION, $CONCURRENCY workers)"
    r=$(load logins --target "127.0.0.1:$FAKE_IMAP" --concurrency "$CONCURRENCY" \
        --duration "$DURATION" --label direct)
    record "$r"
    [ "$MG_OK" = 1 ] || return 0
    for tls in none implicit; do
        local port=$MG_IMAP; [ $tls = implicit ] && port=$MG_IMAPS
        log "logins: through mailgate, tls=$tls"
        ticks0=$(cpu_ticks "$MG_PID")
        r=$(load logins --target "127.0.0.1:$port" --tls $tls --ca "$WORK/ca.pem" \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --label "mailgate-$tls")
        ticks1=$(cpu_ticks "$MG_PID")
        n=$(json "$r" .logins)
        cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v n="$n" \
            'BEGIN { if (n > 0) printf "%.4f", t * 1000 / hz / n; else print "null" }')
        record "$(jq -c --argjson c "$cpu" '. + {mailgate_cpu_ms_per_login: $c}' <<<"$r")"
    done
}

# (b) bytes throughput ----------------------------------------------------------------------
bench_bytes() {
    log "bytes: direct to fake (message $MSG_SIZE bytes)"
    record "$(load bytes --target "127.0.0.1:$FAKE_BIG" --user user@big.example.com \
        --duration "$DURATION" --label direct)"
    [ "$MG_OK" = 1 ] || return 0
    log "bytes: through mailgate"
    local ticks0 ticks1 r
    ticks0=$(cpu_ticks "$MG_PID")
    r=$(load bytes --target "127.0.0.1:$MG_IMAP" --user user@big.example.com \
        --duration "$DURATION" --label mailgate-none)
    ticks1=$(cpu_ticks "$MG_PID")
    record "$(jq -c --argjson t $((ticks1 - ticks0)) --argjson hz "$CLK_TCK" \
        '. + {mailgate_cpu_ms_per_mb: (if .bytes > 0 then ($t * 1000 / $hz) / (.bytes / 1e6) else null end)}' <<<"$r")"
    log "bytes: through mailgate, implicit TLS to the client"
    ticks0=$(cpu_ticks "$MG_PID")
    r=$(load bytes --target "127.0.0.1:$MG_IMAPS" --tls implicit --ca "$WORK/ca.pem" \
        --user user@big.example.com --duration "$DURATION" --label mailgate-implicit)
    ticks1=$(cpu_ticks "$MG_PID")
    record "$(jq -c --argjson t $((ticks1 - ticks0)) --argjson hz "$CLK_TCK" \
        '. + {mailgate_cpu_ms_per_mb: (if .bytes > 0 then ($t * 1000 / $hz) / (.bytes / 1e6) else null end)}' <<<"$r")"
}

# (c) idle sessions --------------------------------------------------------------------------
idle_run() { # LABEL PID_TO_MEASURE TARGET_PORT TLS
    local label=$1 pid=$2 port=$3 tls=$4 rss0 rss1 est i line
    sleep 1
    rss0=$(rss_kib "$pid")
    load idle --target "127.0.0.1:$port" --tls "$tls" --ca "$WORK/ca.pem" \
        --sessions "$IDLE_N" --hold 300s --label "$label" > "$WORK/idle.out" 2>"$WORK/idle.err" &
    local lpid=$!; PIDS+=("$lpid")
    line=
    for i in $(seq 1800); do # 180 s
        line=$(grep -m1 '"established"' "$WORK/idle.out" || true)
        [ -n "$line" ] && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        cat "$WORK/idle.err" >&2; stop "$lpid"; log "idle $label: sessions never established"
        return 0
    fi
    sleep 2 # let allocations settle
    rss1=$(rss_kib "$pid")
    est=$(json "$line" .established)
    stop "$lpid"
    record "$(jq -c --argjson r0 "$rss0" --argjson r1 "$rss1" \
        '. + {rss0_kib: $r0, rss1_kib: $r1, kib_per_session: (if .established > 0 then (($r1 - $r0) / .established * 100 | round) / 100 else null end)}' <<<"$line")"
    log "idle $label: $est sessions, RSS $rss0 -> $rss1 KiB"
}

bench_idle() {
    log "idle: $IDLE_N sessions direct to fake (fake backend's RSS)"
    stop_fake; start_fake
    idle_run fake-direct "$FAKE_PID" "$FAKE_IMAP" none
    [ "$MAILGATE_BUILT" = 1 ] || return 0
    for tls in none implicit; do
        local port=$MG_IMAP; [ $tls = implicit ] && port=$MG_IMAPS
        log "idle: $IDLE_N spliced sessions through a fresh mailgate, tls=$tls"
        stop_fake; start_fake
        if start_mailgate; then
            idle_run "mailgate-$tls" "$MG_PID" "$port" "$tls"
            stop "$MG_PID"
        fi
    done
}

# (d) routing: a 1,000,000-domain routing file: parse+validate time, peak RSS, lookup ns/op
# against a plain HashMap lookup of the same keys in the same run (mailgate-config's bench).
bench_routing() {
    log "routing: 1,000,000 domains (cargo bench -p mailgate-config --bench routing)"
    MAILGATE_BENCH_DOMAINS=${BENCH_ROUTING_DOMAINS:-1000000} \
        cargo bench -q -p mailgate-config --bench routing 2>&1 | tee "$OUT/routing.txt" | grep -E '^(routing|lookup|diff)' >&2 || true
}

# --- run ---------------------------------------------------------------------------------
make_tls
write_config routing.yaml
start_fake
MG_OK=0
if [ "$MAILGATE_BUILT" = 1 ]; then
    if start_mailgate; then MG_OK=1; else log "ERROR: mailgate failed to start: proxied numbers skipped"; fi
fi
case " $ONLY " in *" logins "*) bench_logins ;; esac
case " $ONLY " in *" bytes "*) bench_bytes ;; esac
[ "$MG_OK" = 1 ] && stop "$MG_PID"
case " $ONLY " in *" idle "*) bench_idle ;; esac
case " $ONLY " in *" routing "*) bench_routing ;; esac

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def find(mode, label):
    return next((r for r in rows if r.get("mode") == mode and r.get("label") == label), None)
def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "-"
print()
print(f"{'benchmark':<34}{'direct':>12}{'mailgate':>12}{'ratio':>8}")
d, m = find("logins", "direct"), find("logins", "mailgate-none")
if d:
    for key, name in (("logins_per_s", "logins/s"), ("p50_ms", "login p50 ms"), ("p99_ms", "login p99 ms")):
        mv = m[key] if m else None
        print(f"{name:<34}{d[key]:>12}{mv if mv is not None else '-':>12}{ratio(mv, d[key]):>8}")
    for lbl in ("mailgate-none", "mailgate-implicit"):
        r = find("logins", lbl)
        if r:
            print(f"{lbl + ' CPU ms/login':<34}{'':>12}{r.get('mailgate_cpu_ms_per_login')!s:>12}")
t = find("logins", "mailgate-implicit")
if t:
    print(f"{'TLS logins/s, p99 ms':<34}{'':>12}{t['logins_per_s']:>12} {t['p99_ms']}")
d, m = find("bytes", "direct"), find("bytes", "mailgate-none")
if d:
    mv = m["mb_per_s"] if m else None
    print(f"{'FETCH MB/s':<34}{d['mb_per_s']:>12}{mv if mv is not None else '-':>12}{ratio(mv, d['mb_per_s']):>8}")
for lbl in ("mailgate-none", "mailgate-implicit"):
    r = find("bytes", lbl)
    if r:
        print(f"{lbl + ' FETCH MB/s, CPU ms/MB':<34}{'':>12}{r['mb_per_s']!s:>12} {r.get('mailgate_cpu_ms_per_mb')}")
for lbl, name in (("fake-direct", "fake backend"), ("mailgate-none", "mailgate plain"), ("mailgate-implicit", "mailgate TLS")):
    r = next((r for r in rows if r.get("mode") == "idle" and r.get("label") == lbl), None)
    if r:
        print(f"{'idle KiB/session ' + name:<34}{r['kib_per_session']!s:>12}  ({r['established']} sessions, RSS {r['rss0_kib']} -> {r['rss1_kib']} KiB)")
errs = [r for r in rows if r.get("errors") or r.get("failed")]
for r in errs:
    print(f"note: {r['mode']} {r['label']}: errors={r.get('errors', r.get('failed'))} first: {r.get('first_error')}")
print(f"\nraw JSON: {sys.argv[1]}")
EOF
