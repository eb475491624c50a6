#!/usr/bin/env bash
# Run one fuzz target coverage-guided under AFL++ (stable Rust), for SECONDS
# (default 600); a second run on the same output directory resumes.
# docs/security.md §Fuzzing. Needs `cargo install cargo-afl` and
# `cargo afl config --build` once.
set -euo pipefail
target=${1:?usage: fuzz/afl.sh TARGET [SECONDS]  (targets: fuzz/src/lib.rs TARGETS)}
secs=${2:-600}
cd "$(dirname "$0")/.."
tdir=${CARGO_TARGET_DIR:-target}
# Symbols are not needed to fuzz; they would double the release build's size.
export CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-0}
cargo afl build --release -p hadr-fuzz --features afl --bin hadr-fuzz-afl
out=${AFL_OUT:-$tdir/afl/$target}
mkdir -p "$out"
input=fuzz/corpus/$target
[ -d "$out/default/queue" ] && input=-
# No UI (logs instead); this is not a dedicated fuzzing box: skip the CPU
# frequency check and do not pin cores others use.
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# A hang is an input that runs longer than AFL_TIMEOUT_MS (default 1000):
# AFL's own default, 5x the calibrated time with a 20 ms floor, flags
# ordinary inputs whenever the machine is busy with something else.
cargo afl fuzz -V "$secs" -t "${AFL_TIMEOUT_MS:-1000}" -i "$input" -o "$out" "$tdir/release/hadr-fuzz-afl" "$target"
echo "crashes: $(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l), hangs: $(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)"
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|edges_found|total_edges|bitmap_cvg|saved_crashes|saved_hangs) ' "$out/default/fuzzer_stats" || true
