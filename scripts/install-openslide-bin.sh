#!/usr/bin/env bash
# Installs OpenSlide's own binary build (openslide-bin) under one versioned prefix, for
# the build (headers, pkg-config) and for the binary at run time (its RUNPATH points
# there). openslide-bin's libopenslide.so.1 is self-contained: it carries its own
# libjpeg-turbo, OpenJPEG, libtiff, libdicom, glib and cairo, statically linked and not
# exported, and needs only glibc. So the service runs the OpenSlide the OpenSlide
# project ships and tests, whatever the distribution packages.
#
# The library comes from the project's manylinux wheel; the headers, and the versions of
# what it bundles, from the source distribution of the same release. Both are pinned by
# version and SHA-256. Idempotent: does nothing when the prefix is complete.
#
#   scripts/install-openslide-bin.sh            # installs into $OPENSLIDE_BIN_PREFIX
#
# Used by scripts/setup.sh and by the Dockerfile's build stage.
set -euo pipefail

VERSION=4.0.1.2 # openslide-bin 4.0.1.2 = OpenSlide 4.0.1
WHEEL=openslide_bin-${VERSION}-py3-none-manylinux_2_28_x86_64.whl
WHEEL_URL=https://files.pythonhosted.org/packages/da/f0/f4d494e1df28594cff1ea0f3921665011ee3fc48a903653ce864cb27e180/${WHEEL}
WHEEL_SHA256=8ac4aa3a2277ed5e218ca0019db65bdd6e853f865eb4edd3da00e2f4acf0c923
SDIST=openslide_bin-${VERSION}.tar.gz
SDIST_URL=https://files.pythonhosted.org/packages/59/8b/1bf9f45af355b2679444b3452e034f133b36af69c3aa710ff5f56b440345/${SDIST}
SDIST_SHA256=83c9a4a598f3a5fe1dea83e123745e48b94ce7eab99833f04902bdf4fa0af1db
# The same path is in .cargo/config.toml (build) and in the Dockerfile (run time).
PREFIX=${OPENSLIDE_BIN_PREFIX:-/opt/openslide-bin/${VERSION}}

log() { printf '[openslide-bin] %s\n' "$*" >&2; }

if [ "$(uname -m)" != "x86_64" ]; then
  log "this script pins the x86_64 wheel; add the $(uname -m) one's URL and checksum"
  exit 1
fi
if [ -f "$PREFIX/lib/libopenslide.so.1" ] && [ -f "$PREFIX/lib/pkgconfig/openslide.pc" ] \
  && [ -f "$PREFIX/include/openslide/openslide.h" ] && [ -f "$PREFIX/share/bundled" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$(dirname "$PREFIX")")" ]; then SUDO="sudo"; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetch() { # url file sha256
  log "downloading $2"
  curl -fsSL --retry 3 -o "$work/$2" "$1"
  echo "$3  $work/$2" | sha256sum --check --quiet - || {
    log "$2 does not match its pinned SHA-256; refusing to install it"
    exit 1
  }
}
fetch "$WHEEL_URL" "$WHEEL" "$WHEEL_SHA256"
fetch "$SDIST_URL" "$SDIST" "$SDIST_SHA256"

stage="$work/prefix"
mkdir -p "$stage/lib/pkgconfig" "$stage/include/openslide" "$stage/share"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("openslide_bin/libopenslide.so.1", sys.argv[2])' \
  "$work/$WHEEL" "$work"
install -m 0644 "$work/openslide_bin/libopenslide.so.1" "$stage/lib/libopenslide.so.1"
ln -s libopenslide.so.1 "$stage/lib/libopenslide.so"

src="openslide-bin-${VERSION}/subprojects"
tar -xzf "$work/$SDIST" -C "$work" "$src/openslide-4.0.1/src/openslide.h" \
  "$src/openslide-4.0.1/src/openslide-features.h"
install -m 0644 "$work/$src/openslide-4.0.1/src/openslide.h" \
  "$work/$src/openslide-4.0.1/src/openslide-features.h" "$stage/include/openslide/"
# What the library bundles, one "name version" per line, from the release's subproject
# folders (e.g. openjpeg-2.5.4): `wsi-thumbnail --version` reports them.
tar -tzf "$work/$SDIST" | awk -F/ -v OFS=' ' '$2 == "subprojects" && NF == 4 && $4 == "" {
  n = split($3, part, "-"); version = part[n]
  if (version !~ /^[0-9]/) next
  name = substr($3, 1, length($3) - length(version) - 1)
  print name, version
}' | sort > "$stage/share/bundled"

cat > "$stage/lib/pkgconfig/openslide.pc" <<EOF
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: OpenSlide
Description: OpenSlide ${VERSION%.*} from openslide-bin ${VERSION} (self-contained)
Version: ${VERSION%.*}
Libs: -L\${libdir} -lopenslide
Cflags: -I\${includedir}/openslide
EOF

log "installing into $PREFIX"
$SUDO mkdir -p "$(dirname "$PREFIX")"
$SUDO rm -rf "$PREFIX"
$SUDO cp -a "$stage" "$PREFIX"
log "OpenSlide ${VERSION%.*} ready ($(wc -l < "$PREFIX/share/bundled") bundled libraries)"
