#!/usr/bin/env bash
# Quick start: the service end to end on a laptop. Installs what is missing, builds,
# starts a local Kafka-protocol broker (tansu, in memory), creates the topics, runs
# `wsi-thumbnail serve --config config/local.toml` with slides and thumbnails on local
# disk, enqueues requests for a generated pyramid and the shared real slide, prints the
# responses and where the thumbnails are, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked --bin wsi-thumbnail
BIN="$PWD/target/release/wsi-thumbnail"
TANSU="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
DEMO="$PWD/target/demo"
mkdir -p "$DEMO/slides" "$DEMO/thumbnails"
export WSI_THUMBNAIL_CONFIG="$PWD/config/local.toml"
export THUMBNAIL_OUTPUT_BUCKET="file://$DEMO/thumbnails/"
PORT=19092
export KAFKA_BOOTSTRAP_SERVER="127.0.0.1:$PORT"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== starting a local broker (tansu, in memory) on $KAFKA_BOOTSTRAP_SERVER"
"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ >"$DEMO/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" topics ensure

sample="$DEMO/slides/sample-20000x15000.svs"
[ -f "$sample" ] || "$BIN" dev fixture --width 20000 --height 15000 --level-step 4 --output "$sample" >/dev/null
links=("file://$sample")
real="$(cd .. && pwd)/shared/testdata/CMU-1-Small-Region.svs"
[ -f "$real" ] && links+=("file://$real")

echo "== starting the service (config/local.toml, thumbnails to $DEMO/thumbnails)"
"$BIN" serve >"$DEMO/service.log" 2>&1 &
service=$!
pids+=("$service")

echo "== enqueueing ${#links[@]} requests"
"$BIN" dev enqueue "${links[@]}"
echo "== responses"
"$BIN" dev responses --count "${#links[@]}" --timeout 90
echo "== thumbnails"
ls -l "$DEMO/thumbnails"
kill -TERM "$service"; wait "$service" && echo "== service drained and exited 0 (log: $DEMO/service.log)"
