#!/usr/bin/env bash
# Run every cargo-fuzz target of every fuzz crate for $FUZZ_SECS seconds each.
#
#   FUZZ_SECS=60 scripts/fuzz.sh            # all targets
#   FUZZ_SECS=60 scripts/fuzz.sh imap_front # only the named targets
#
# There is no nightly toolchain on the build machines; cargo-fuzz needs nightly-only
# flags (-Zsanitizer), so RUSTC_BOOTSTRAP=1 unlocks them on stable. Targets are whatever
# files exist in <fuzz crate>/fuzz_targets/, so adding a target needs no change here.
# The committed seeds in fuzz/corpus/<target>/ are read; new inputs go to the ignored
# fuzz/target/corpus/<target>/. Crashes land in fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail

FUZZ_SECS="${FUZZ_SECS:-30}"
export RUSTC_BOOTSTRAP=1
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

FUZZ_DIRS=(crates/mailgate-proto/fuzz)
status=0
for dir in "${FUZZ_DIRS[@]}"; do
    for file in "$dir"/fuzz_targets/*.rs; do
        target="$(basename "$file" .rs)"
        if [ "$#" -gt 0 ] && [[ " $* " != *" $target "* ]]; then
            continue
        fi
        mkdir -p "$dir/corpus/$target" "$dir/target/corpus/$target"
        echo "== fuzz $target for ${FUZZ_SECS}s"
        if ! (cd "$dir/.." && cargo fuzz run --fuzz-dir fuzz "$target" \
                "fuzz/target/corpus/$target" "fuzz/corpus/$target" \
                -- -max_total_time="$FUZZ_SECS" -max_len=4096); then
            echo "!! fuzz target $target failed (see $dir/artifacts/$target/)" >&2
            status=1
        fi
    done
done
exit "$status"
