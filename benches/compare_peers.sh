#!/usr/bin/env bash
# Whole-process comparison with the peers, in one run on the same machine:
#   wsi-thumbnail thumbnail SLIDE --output OUT.png          (this project)
#   vipsthumbnail SLIDE --size 1024 -o OUT.png               (libvips 8.14 + OpenSlide)
#   python3 OpenSlide(SLIDE).get_thumbnail((1024, 1024))     (OpenSlide's own thumbnail)
# on CMU-1-Small-Region and generated 40000 x 30000 pyramids with 4x and 2x level steps.
# Prints median wall times (hyperfine) and our time as a fraction of each peer's.
# Usage: benches/compare_peers.sh [RUNS]   (default 15 runs per command, 3 warm-ups)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-15}"

scripts/setup.sh
cargo build --release --locked --bin wsi-thumbnail
BIN="$PWD/target/release/wsi-thumbnail"
FIX="$PWD/target/bench-fixtures"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
mkdir -p "$FIX"

gen() { # name style width height step
  local path="$FIX/$1"
  [ -f "$path" ] || "$BIN" dev fixture --style "$2" --width "$3" --height "$4" --level-step "$5" --output "$path" >/dev/null
  echo "$path"
}
declare -A SLIDES=(
  [cmu-small-region]="$PWD/../shared/testdata/CMU-1-Small-Region.svs"
  [pyramid-40000x30000-4x]="$(gen aperio-40000x30000-step4-t256-q70-s42.svs aperio 40000 30000 4)"
  [pyramid-40000x30000-2x]="$(gen aperio-40000x30000-step2-t256-q70-s42.svs aperio 40000 30000 2)"
)
PY_THUMB='import sys, openslide; openslide.OpenSlide(sys.argv[1]).get_thumbnail((1024, 1024)).save(sys.argv[2])'

for name in cmu-small-region pyramid-40000x30000-4x pyramid-40000x30000-2x; do
  slide="${SLIDES[$name]}"
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/$name.json" \
    -n wsi-thumbnail "$BIN thumbnail $slide --output $OUT/ours.png" \
    -n vipsthumbnail "vipsthumbnail $slide --size 1024 -o $OUT/vips.png" \
    -n openslide-python "/usr/bin/python3 -c '$PY_THUMB' $slide $OUT/py.png" >/dev/null
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
print(f"{'slide':26} {'wsi-thumbnail':>14} {'vipsthumbnail':>14} {'openslide-py':>13} {'ours/vips':>10} {'ours/py':>8}")
for name in ["cmu-small-region", "pyramid-40000x30000-4x", "pyramid-40000x30000-2x"]:
    res = {r["command"]: r["median"] for r in json.load(open(os.path.join(out, name + ".json")))["results"]}
    ours, vips, py = res["wsi-thumbnail"], res["vipsthumbnail"], res["openslide-python"]
    print(f"{name:26} {ours*1000:11.1f} ms {vips*1000:11.1f} ms {py*1000:10.1f} ms {ours/vips:10.3f} {ours/py:8.3f}")
PY
