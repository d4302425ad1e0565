#!/usr/bin/env bash
# Builds the cargo-fuzz (libFuzzer) targets in fuzz/ and runs each for a while; exits
# non-zero if any target crashes, hangs or runs out of memory, naming the input that
# did it. CI runs it briefly after the test suite (.ci/run); run it longer by hand.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    # default 30 s, all targets
#
# The stable toolchain builds it: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags,
# and `-s none` because AddressSanitizer cannot link the bundled C libraries (zstd,
# librdkafka); the targets are still coverage-instrumented, and Rust checks bounds.
# The fuzz crate is its own workspace with its own target dir (fuzz/target), so the
# first build compiles the dependency set once more.
#
# The seeds (fuzz/seeds/<target>, committed: hand-made inputs and regressions; and
# fuzz/generated/<target>, written by gen_seeds from the fixture generators at every
# run, never committed) are copied into fuzz/corpus/<target>
# (not committed), which keeps what earlier local runs found; crash, timeout and OOM
# inputs land in fuzz/artifacts/<target>/. Environment: FUZZ_TIMEOUT (seconds one input
# may take before it counts as a hang, default 10), FUZZ_RSS_LIMIT_MB (default 2048),
# FUZZ_CARGO_LOCK (a file to flock around cargo, for shared build machines), FUZZ_SEED
# (a fixed libFuzzer seed: each target then starts from a fresh copy of the seeds, not
# from fuzz/corpus, so the run is a function of the commit alone and a failure in CI
# reproduces anywhere; the test suite sets it. Unset, every run explores anew).
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(request object_name tiff_plan ndpi_plan dicom_scan dicom_series jpeg2000_frame)
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

cargo_() {
  if [ -n "${FUZZ_CARGO_LOCK:-}" ]; then
    flock "$FUZZ_CARGO_LOCK" cargo "$@"
  else
    cargo "$@"
  fi
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz"
  cargo_ install cargo-fuzz --locked
fi

cd fuzz
started=$(date +%s)
echo "[fuzz] building ${targets[*]} (release, no sanitizer)"
for t in "${targets[@]}" gen_seeds; do
  RUSTC_BOOTSTRAP=1 cargo_ fuzz build -O -s none "$t"
done
echo "[fuzz] built in $(($(date +%s) - started)) s"

triple=$(rustc -vV | sed -n 's/^host: //p')
# The slide planners' seeds are generated here, from the fixture generators (no slide
# file is committed); fuzz/seeds holds only the hand-made inputs and regressions.
rm -rf generated
mkdir -p generated/tiff_plan generated/ndpi_plan generated/dicom_scan generated/dicom_series
WSI_FUZZ_SEEDS_OUT="$PWD/generated" "target/$triple/release/gen_seeds" >/dev/null 2>&1
failed=()
for t in "${targets[@]}"; do
  bin=target/$triple/release/$t
  corpus=corpus/$t
  seed_args=()
  if [ -n "${FUZZ_SEED:-}" ]; then
    corpus=corpus-seeded/$t
    rm -rf "$corpus"
    seed_args=(-seed="$FUZZ_SEED")
  fi
  mkdir -p "$corpus" "artifacts/$t"
  for dir in "seeds/$t" "generated/$t"; do
    if [ -d "$dir" ]; then
      cp -n "$dir"/* "$corpus/" 2>/dev/null || true
    fi
  done
  log=artifacts/$t/last-run.log
  echo "[fuzz] $t: ${seconds} s"
  status=0
  "$bin" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" \
    -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" -print_final_stats=1 "${seed_args[@]}" \
    -artifact_prefix="artifacts/$t/" "$corpus" >"$log" 2>&1 || status=$?
  # The last status line (runs, coverage, corpus) and the total number of runs.
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "[fuzz] $t FAILED (exit $status); log: fuzz/$log"
    grep -E '^==[0-9]+== ERROR|panicked at|deadly signal|timeout after|out-of-memory' "$log" | head -5 || true
    sed -n 's/.*Test unit written to \(.*\)$/[fuzz] crash artifact: fuzz\/\1/p' "$log"
    echo "[fuzz] reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none $t <artifact>"
  fi
done
echo "[fuzz] done in $(($(date +%s) - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "[fuzz] failing targets: ${failed[*]}" >&2
  exit 1
fi
