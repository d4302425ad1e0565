#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up; the deployment manifests (every Kustomize
# overlay rendered and validated against the Kubernetes and CRD schemas, and
# cloudbuild.yaml's keys: scripts/validate-k8s.sh, seconds once its pinned tools are
# cached); formatting, lints, then every test (unit, integration, CLI, memory) on the
# release profile, the one profile that tests, tools and benchmarks share so that CI
# compiles the dependency set once; then every fuzz target briefly (15 s each; its own
# coverage-instrumented build, about 11 minutes the first time on 2 cores) from a fixed
# seed, so that the same commit fuzzes the same inputs on every machine (FUZZ_SEED;
# scripts/fuzz.sh by hand explores with fresh seeds). FUZZ_SECONDS=0 skips the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/validate-k8s.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo nextest run --release --locked --no-fail-fast "$@"
if [ "${FUZZ_SECONDS:-15}" -gt 0 ]; then
  FUZZ_SEED=${FUZZ_SEED:-1} scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
fi
