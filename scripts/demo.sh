#!/usr/bin/env bash
# Quick start: installs what is missing, builds, generates a sample pyramid and makes
# thumbnails of it and of the shared real slide, then shows the metadata and the files.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked --bin wsi-thumbnail
BIN="$PWD/target/release/wsi-thumbnail"
DEMO="$PWD/target/demo"
mkdir -p "$DEMO/slides" "$DEMO/thumbnails"

sample="$DEMO/slides/sample-20000x15000.svs"
[ -f "$sample" ] || "$BIN" dev fixture --width 20000 --height 15000 --level-step 4 --output "$sample" >/dev/null
slides=("$sample")
real="$PWD/../shared/testdata/CMU-1-Small-Region.svs"
[ -f "$real" ] && slides+=("$real")

echo "== wsi-thumbnail thumbnail ${slides[*]##*/} --out-dir $DEMO/thumbnails"
"$BIN" thumbnail "${slides[@]}" --out-dir "$DEMO/thumbnails"
echo "== thumbnails written:"
ls -l "$DEMO/thumbnails"
