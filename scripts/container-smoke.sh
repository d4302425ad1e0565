#!/usr/bin/env bash
# Container smoke test, run by hand (not part of CI): builds the Dockerfile's runtime
# stage with podman, without a Docker engine or Docker Hub (the base is a Debian 12
# minbase made by mmdebstrap and imported; the binary is the host's release build), then
# runs the image as its non-root user with a read-only root filesystem and every
# capability dropped: `--version`, `serve --check`, a thumbnail of CMU-1-Small-Region,
# `/healthz` of a running `serve`, and SIGTERM (exit 0). Prints the image size and time.
# Needs root (rootful podman) and the Debian mirror; installs podman, runc and
# mmdebstrap when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
log() { printf '[container-smoke] %s\n' "$*" >&2; }

missing=()
for p in podman runc mmdebstrap; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked --bin wsi-thumbnail

WORK=$(mktemp -d)
NAME=wsi-smoke-$$
cleanup() { podman rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
# A private podman configuration: runc, cgroupfs (no systemd here) and sane ulimits.
cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"

BASE=localhost/debian-bookworm-minbase:latest
if ! podman image exists "$BASE"; then
  log "making the base image with mmdebstrap (once)"
  mmdebstrap --quiet --variant=minbase bookworm "$WORK/base.tar"
  podman import --quiet "$WORK/base.tar" "$BASE" >/dev/null
fi

# The build context: the Dockerfile, the default config and the host's binary.
mkdir -p "$WORK/ctx/prebuilt" "$WORK/ctx/config"
cp Dockerfile "$WORK/ctx/"
cp config/wsi-thumbnail.toml "$WORK/ctx/config/"
cp target/release/wsi-thumbnail "$WORK/ctx/prebuilt/"
# The OpenSlide the binary's RUNPATH names (scripts/install-openslide-bin.sh).
cp "$(readelf -d target/release/wsi-thumbnail | sed -n 's/.*runpath: \[\(.*\)\]/\1/p')/libopenslide.so.1" \
  "$WORK/ctx/prebuilt/"
strip "$WORK/ctx/prebuilt/wsi-thumbnail"
IMAGE=localhost/wsi-thumbnail:smoke
log "building the runtime stage"
# Docker format: the OCI format drops HEALTHCHECK.
podman build --quiet --format docker --target runtime \
  --build-arg RUNTIME_IMAGE="$BASE" --build-arg BINARY_STAGE=prebuilt \
  -t "$IMAGE" "$WORK/ctx" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
[ "$healthcheck" != "null" ] || { log "the image lost its HEALTHCHECK"; exit 1; }

# As the image's user (10001), read-only root, no capabilities, no new privileges.
run() {
  podman run --rm --no-healthcheck --read-only --cap-drop=ALL --security-opt no-new-privileges \
    --tmpfs /var/tmp/wsi-thumbnail:rw,U "$@"
}
log "--version"
run "$IMAGE" --version
log "serve --check"
run "$IMAGE" serve --check >/dev/null
mkdir -p "$WORK/out" && chown 10001 "$WORK/out"
log "thumbnail of CMU-1-Small-Region"
meta=$(run -v "$PWD/../shared/testdata:/data:ro" -v "$WORK/out:/out" "$IMAGE" \
  thumbnail /data/CMU-1-Small-Region.svs --output /out/cmu.png)
echo "$meta"
[[ $meta == *'"width":2220'* ]] || { log "unexpected metadata: $meta"; exit 1; }
[ -s "$WORK/out/cmu.png" ] || { log "no thumbnail written"; exit 1; }

log "serve: /healthz, then SIGTERM"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
podman run -d --name "$NAME" --no-healthcheck --read-only --cap-drop=ALL --security-opt no-new-privileges \
  --tmpfs /var/tmp/wsi-thumbnail:rw,U --network host \
  -e PORT="$PORT" -e KAFKA_BOOTSTRAP_SERVER=127.0.0.1:1 -e THUMBNAIL_OUTPUT_BUCKET=file:///var/tmp/wsi-thumbnail/out/ \
  "$IMAGE" >/dev/null
ok=""
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { podman logs "$NAME" >&2; log "/healthz never answered"; exit 1; }
log "/healthz 200"
podman kill --signal TERM "$NAME" >/dev/null
code=$(podman wait "$NAME")
[ "$code" = 0 ] || { podman logs "$NAME" >&2; log "exit $code after SIGTERM"; exit 1; }
log "SIGTERM: exit 0"
echo "image size: $((size / 1024 / 1024)) MiB; smoke test took $(( $(date +%s) - started )) s"
