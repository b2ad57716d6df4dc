#!/usr/bin/env bash
# Build every libFuzzer target of every fuzz crate and run each for $FUZZ_SECS seconds.
#
#   FUZZ_SECS=600 scripts/fuzz.sh              # all targets, 10 minutes each (make fuzz)
#   FUZZ_SECS=60 scripts/fuzz.sh imap_front    # only the named targets
#   scripts/fuzz.sh --smoke                    # CI (make fuzz-smoke): every target briefly
#
# Targets are the files in <fuzz crate>/fuzz_targets/ (adding one needs no change here).
# Seeds are read from <fuzz crate>/corpus/<target>/ (committed; `cargo test` replays them
# through the same functions, see docs/security.md "Fuzzing"); new inputs go to the
# ignored <fuzz crate>/target/corpus/<target>/. A crash or oracle failure lands in
# <fuzz crate>/artifacts/<target>/ and fails the run: commit the input as a seed once
# the bug is fixed.
#
# No cargo-fuzz and no nightly toolchain needed: the crates are built with plain cargo and
# the instrumentation flags cargo-fuzz passes (all stable rustc flags). Only
# AddressSanitizer (FUZZ_SANITIZER=address, the default for long runs) is a nightly-only
# flag, unlocked on the stable compiler with RUSTC_BOOTSTRAP=1. libFuzzer itself is built
# from source by the libfuzzer-sys crate, with the machine's C++ compiler.
# `cargo fuzz run <target>` inside a fuzz crate works as well, where cargo-fuzz is installed.
#
# Knobs (defaults for long runs / --smoke): FUZZ_SECS (30 / 10), FUZZ_SANITIZER (address /
# none), FUZZ_PROFILE (release / dev), FUZZ_PARALLEL targets at a time (1 / 2),
# FUZZ_SEED (0 = random / 1), FUZZ_TARGET_DIR (~/.cache/mailgate/fuzz-target: one target
# dir for both crates).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
if [ "${1:-}" = "--smoke" ]; then
    smoke=1
    shift
fi
if [ "$smoke" = 1 ]; then
    # Every target briefly, no sanitizer (the fuzzed crates forbid unsafe code), an
    # unoptimised build: CI's budget is dominated by compiling, not by running.
    FUZZ_SECS="${FUZZ_SECS:-10}"
    FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
    FUZZ_PROFILE="${FUZZ_PROFILE:-dev}"
    FUZZ_PARALLEL="${FUZZ_PARALLEL:-2}"
    # Line tables are enough for a backtrace; the crash input is saved for the replay.
    export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    # A fixed seed: a CI run mutates the same way each time (its length still varies).
    FUZZ_SEED="${FUZZ_SEED:-1}"
else
    FUZZ_SECS="${FUZZ_SECS:-30}"
    FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
    FUZZ_PROFILE="${FUZZ_PROFILE:-release}"
    FUZZ_PARALLEL="${FUZZ_PARALLEL:-1}"
    FUZZ_SEED="${FUZZ_SEED:-0}"
fi
# Outside the work tree: a fresh clone (CI) on the same machine reuses what an earlier
# run compiled, and only our changed crates are rebuilt. Nothing in it is needed for
# correctness; delete it at will.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mailgate/fuzz-target}"
FUZZ_DIRS=(crates/mailgate-proto/fuzz crates/mailgate/fuzz)

if ! command -v c++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing a C++ compiler for libFuzzer"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++
    else
        echo "!! no C++ compiler (c++): libfuzzer-sys cannot build libFuzzer" >&2
        exit 1
    fi
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
# What cargo-fuzz 0.13 passes (coverage counters, comparison tracing, stack depth).
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth"
flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
flags+=" --cfg fuzzing -Cdebug-assertions"
case "$FUZZ_SANITIZER" in
    address)
        flags+=" -Zsanitizer=address"
        export RUSTC_BOOTSTRAP=1
        ;;
    none) ;;
    *)
        echo "FUZZ_SANITIZER must be address or none" >&2
        exit 2
        ;;
esac
case "$FUZZ_PROFILE" in
    release)
        profile_dir=release
        flags+=" -Ccodegen-units=1"
        ;;
    dev) profile_dir=debug ;;
    *)
        echo "FUZZ_PROFILE must be release or dev" >&2
        exit 2
        ;;
esac
# With --target, RUSTFLAGS reach the fuzzed code but not build scripts or proc macros.
export RUSTFLAGS="$flags"

wanted() {
    [ "$#" -eq 1 ] && return 0
    local t="$1"
    shift
    [[ " $* " == *" $t "* ]]
}

# Run one target; print one line of numbers, or the end of its log on failure.
run_target() {
    local dir="$1" target="$2" bin="$3"
    local log="$dir/target/$target.log"
    mkdir -p "$dir/corpus/$target" "$dir/target/corpus/$target" "$dir/artifacts/$target"
    if "$bin" -max_total_time="$FUZZ_SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -seed="$FUZZ_SEED" -artifact_prefix="$dir/artifacts/$target/" \
            "$dir/target/corpus/$target" "$dir/corpus/$target" >"$log" 2>&1; then
        local execs last
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        last="$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -n 1)"
        echo "   fuzz $target ${FUZZ_SECS}s: ${execs:-?} execs, ${last:-no coverage line}, no crash"
    else
        echo "!! fuzz target $target failed (input in $dir/artifacts/$target/):"
        grep -v '^#\|^INFO' "$log" | head -n 40
        return 1
    fi
}

jobs_list=()
for dir in "${FUZZ_DIRS[@]}"; do
    targets=()
    for file in "$dir"/fuzz_targets/*.rs; do
        target="$(basename "$file" .rs)"
        wanted "$target" "$@" && targets+=("$target")
    done
    [ "${#targets[@]}" -gt 0 ] || continue
    started=$SECONDS
    echo "== build $dir ($FUZZ_PROFILE, sanitizer $FUZZ_SANITIZER, into $CARGO_TARGET_DIR)"
    if ! cargo build --quiet --manifest-path "$dir/Cargo.toml" --target "$triple" \
            --profile "$FUZZ_PROFILE" --bins; then
        echo "!! building $dir failed" >&2
        exit 1
    fi
    echo "   built in $((SECONDS - started)) s"
    for target in "${targets[@]}"; do
        jobs_list+=("$dir $target $CARGO_TARGET_DIR/$triple/$profile_dir/$target")
    done
done

# FUZZ_PARALLEL targets at a time, each a single libFuzzer process.
status=0
passed=0
failed=0
i=0
while [ "$i" -lt "${#jobs_list[@]}" ]; do
    pids=()
    outs=()
    for _ in $(seq 1 "$FUZZ_PARALLEL"); do
        [ "$i" -lt "${#jobs_list[@]}" ] || break
        out="$(mktemp)"
        # shellcheck disable=SC2086
        run_target ${jobs_list[$i]} >"$out" 2>&1 &
        pids+=("$!")
        outs+=("$out")
        i=$((i + 1))
    done
    for k in "${!pids[@]}"; do
        if wait "${pids[$k]}"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            status=1
        fi
        cat "${outs[$k]}"
        rm -f "${outs[$k]}"
    done
done
echo "fuzz: $passed passed, $failed failed"
exit "$status"
