#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, then every test
# (unit, integration, CLI, memory) on the release profile, the one profile that tests,
# tools and benchmarks share so that CI compiles the dependency set once.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo nextest run --release --locked --no-fail-fast "$@"
