#!/usr/bin/env bash
# Whole-process comparison with the peers, in one run on the same machine:
#   wsi-thumbnail thumbnail SLIDE --output OUT.png          (this project, shipped defaults:
#                                                            a sandboxed worker per slide)
#   vipsthumbnail SLIDE --size 1024 -o OUT.png               (libvips + OpenSlide)
#   python3 OpenSlide(SLIDE).get_thumbnail((1024, 1024))     (OpenSlide's own thumbnail)
# on CMU-1-Small-Region and on 40000 x 30000 pyramids of REAL tissue (CMU-1-Small-Region's
# level 0 tiled, 240 px JPEG tiles at quality 80, as `benches/end_to_end.sh` makes them)
# with 4x and 2x level steps; SYNTHETIC=1 adds the seeded synthetic pyramids (they decode
# faster than tissue and flatter every figure).
# Then a batch: BATCH copies of CMU-1-Small-Region in one `thumbnail --out-dir` run (one
# zygote for the run, a forked worker per slide) against one vipsthumbnail run over the
# same files, and against BATCH single runs of ours (what a worker per run would cost).
# Prints median wall times (hyperfine) and our time as a fraction of each peer's.
# Usage: benches/compare_peers.sh [RUNS]   (default 15 runs per command, 3 warm-ups)
# Env: BATCH (default 10), OURS_BIN (default: build this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-15}"
BATCH="${BATCH:-10}"

scripts/setup.sh --bench
if [ -z "${OURS_BIN:-}" ]; then
  cargo build --release --locked --bin wsi-thumbnail
  OURS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/wsi-thumbnail"
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
BIN="$OUT/wsi-thumbnail"; cp "$OURS_BIN" "$BIN"
FIX="$PWD/target/bench-fixtures"; mkdir -p "$FIX"
CMU="$PWD/../shared/testdata/CMU-1-Small-Region.svs"

gen() { # file step [fixture args]: a 40000 x 30000 Aperio-style pyramid, generated once
  local path="$FIX/$1" step=$2; shift 2
  [ -f "$path" ] || { echo "generating $1 (once)" >&2
    "$BIN" dev fixture --style aperio --width 40000 --height 30000 --level-step "$step" "$@" --output "$path" >/dev/null; }
  echo "$path"
}
names=(cmu-small-region real-40000x30000-4x real-40000x30000-2x)
declare -A SLIDES=(
  [cmu-small-region]="$CMU"
  [real-40000x30000-4x]="$(gen aperio-real-CMU-1-Small-Region-40000x30000-step4-t240-q80.svs 4 --source "$CMU")"
  [real-40000x30000-2x]="$(gen aperio-real-CMU-1-Small-Region-40000x30000-step2-t240-q80.svs 2 --source "$CMU")"
)
if [ -n "${SYNTHETIC:-}" ]; then
  names+=(synthetic-40000x30000-4x synthetic-40000x30000-2x)
  SLIDES[synthetic-40000x30000-4x]="$(gen aperio-40000x30000-step4-t256-q70-s42.svs 4)"
  SLIDES[synthetic-40000x30000-2x]="$(gen aperio-40000x30000-step2-t256-q70-s42.svs 2)"
fi
PY_THUMB='import sys, openslide; openslide.OpenSlide(sys.argv[1]).get_thumbnail((1024, 1024)).save(sys.argv[2])'

for name in "${names[@]}"; do
  slide="${SLIDES[$name]}"
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/$name.json" \
    -n wsi-thumbnail "$BIN thumbnail $slide --output $OUT/ours.png" \
    -n vipsthumbnail "vipsthumbnail $slide --size 1024 -o $OUT/vips.png" \
    -n openslide-python "/usr/bin/python3 -c '$PY_THUMB' $slide $OUT/py.png" >/dev/null
done

# The batch: BATCH links to CMU-1-Small-Region under distinct names.
mkdir -p "$OUT/batch" "$OUT/batch-ours" "$OUT/batch-vips"
for i in $(seq "$BATCH"); do ln -s "$CMU" "$OUT/batch/cmu-$i.svs"; done
singles="$OUT/singles.sh"
{ echo 'set -e'; for f in "$OUT"/batch/*.svs; do echo "'$BIN' thumbnail '$f' --output '$OUT/single.png' >/dev/null"; done; } >"$singles"
hyperfine -N --warmup 1 --runs "$(( (RUNS + 2) / 3 ))" --export-json "$OUT/batch.json" \
  -n wsi-thumbnail "$BIN thumbnail --out-dir $OUT/batch-ours $(echo "$OUT"/batch/*.svs)" \
  -n vipsthumbnail "vipsthumbnail --size 1024 -o $OUT/batch-vips/%s.png $(echo "$OUT"/batch/*.svs)" \
  -n single-runs "bash $singles" >/dev/null

/usr/bin/python3 - "$OUT" "$BATCH" "${names[@]}" <<'PY'
import json, sys, os
out, batch, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = lambda name: {r["command"]: r["median"] for r in json.load(open(os.path.join(out, name + ".json")))["results"]}
print(f"{'slide':26} {'wsi-thumbnail':>14} {'vipsthumbnail':>14} {'openslide-py':>13} {'ours/vips':>10} {'ours/py':>8}")
for name in names:
    res = med(name)
    ours, vips, py = res["wsi-thumbnail"], res["vipsthumbnail"], res["openslide-python"]
    print(f"{name:26} {ours*1000:11.1f} ms {vips*1000:11.1f} ms {py*1000:10.1f} ms {ours/vips:10.3f} {ours/py:8.3f}")
res = med("batch")
ours, vips, single = res["wsi-thumbnail"], res["vipsthumbnail"], res["single-runs"]
print(f"batch of {batch} x CMU-1-Small-Region, per slide: ours {ours / batch * 1000:.1f} ms (one run), "
      f"vipsthumbnail {vips / batch * 1000:.1f} ms (one run), ours {single / batch * 1000:.1f} ms (a run per slide); "
      f"ours/vips {ours / vips:.3f}, one run / a run per slide {ours / single:.3f}")
PY
