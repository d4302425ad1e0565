# syntax=docker/dockerfile:1.7@sha256:b5f3b260a9678e1d83d2fce86eeddf79420b79147eaba2a25986f47133d73720
# wsi-thumbnail service image: a Debian 12 build stage with the build packages, and a
# slim Debian 12 runtime with only the shared libraries the binary links: OpenSlide is
# OpenSlide's own self-contained build (openslide-bin, pinned by version and SHA-256 in
# scripts/install-openslide-bin.sh, needing only glibc), copied at the path the binary's
# RUNPATH names; zlib; the CA store librdkafka's linked-in OpenSSL verifies SSL and
# SASL_SSL brokers with (OpenSSL and the C++ runtime are linked into the binary).
#
#   docker build -t wsi-thumbnail .
#   docker run --rm -v $PWD/config/wsi-thumbnail.toml:/etc/wsi-thumbnail/config.toml:ro wsi-thumbnail
#
# The base images are build arguments, and the binary can come from the build stage
# (default) or from the host: scripts/container-smoke.sh builds the runtime stage with
# podman on a Debian 12 minbase made by mmdebstrap, around the host's release binary.

# Both bases are pinned by digest (the multi-arch index), so a rebuild from the same
# commit starts from the same bytes; the tag beside each digest says what it was when
# pinned (rust 1.95.0 is the toolchain CI builds with; bookworm-slim as of 2026-07).
# To move them, in lock-step with a test run: `docker buildx imagetools inspect
# rust:1.95.0-bookworm` (and debian:bookworm-slim), and replace tag and digest together.
ARG BUILDER_IMAGE=rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=debian:bookworm-slim@sha256:7b140f374b289a7c2befc338f42ebe6441b7ea838a042bbd5acbfca6ec875818
# `builder`: compile in the image; `prebuilt`: take prebuilt/wsi-thumbnail from the
# build context (the smoke script puts the host's release binary there).
ARG BINARY_STAGE=builder
# Where openslide-bin lives, in both stages: the same path as in .cargo/config.toml.
ARG OPENSLIDE_BIN_PREFIX=/opt/openslide-bin/4.0.1.2

FROM ${BUILDER_IMAGE} AS builder
ARG OPENSLIDE_BIN_PREFIX
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      pkg-config cmake nasm perl make libclang-dev curl ca-certificates python3 \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/install-openslide-bin.sh /tmp/
RUN OPENSLIDE_BIN_PREFIX=${OPENSLIDE_BIN_PREFIX} /tmp/install-openslide-bin.sh
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
COPY .cargo .cargo
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && echo 'fn main() {}' > benches/engine.rs \
 && cargo build --release --locked --bin wsi-thumbnail \
 && rm -rf src benches
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin wsi-thumbnail \
 && strip target/release/wsi-thumbnail

FROM scratch AS prebuilt
ARG OPENSLIDE_BIN_PREFIX
COPY prebuilt/wsi-thumbnail /src/target/release/wsi-thumbnail
COPY prebuilt/libopenslide.so.1 ${OPENSLIDE_BIN_PREFIX}/lib/libopenslide.so.1

FROM ${BINARY_STAGE} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
ARG OPENSLIDE_BIN_PREFIX
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wsi \
 && mkdir -p /etc/wsi-thumbnail /var/tmp/wsi-thumbnail \
 && chown wsi /var/tmp/wsi-thumbnail
COPY --from=binary /src/target/release/wsi-thumbnail /usr/local/bin/wsi-thumbnail
COPY --from=binary ${OPENSLIDE_BIN_PREFIX}/lib/libopenslide.so.1 ${OPENSLIDE_BIN_PREFIX}/lib/libopenslide.so.1
# The documented default; mount your own at the same path (or set WSI_THUMBNAIL_CONFIG).
COPY config/wsi-thumbnail.toml /etc/wsi-thumbnail/config.toml
ENV WSI_THUMBNAIL_CONFIG=/etc/wsi-thumbnail/config.toml \
    TMPDIR=/var/tmp/wsi-thumbnail
USER 10001
EXPOSE 8080
# The binary asks its own /healthz (`wsi-thumbnail health`, which reads PORT): no curl
# in the image. Kubernetes and Cloud Run ignore HEALTHCHECK and probe /healthz, /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/wsi-thumbnail", "health"]
ENTRYPOINT ["/usr/local/bin/wsi-thumbnail"]
CMD ["serve"]
