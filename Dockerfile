# syntax=docker/dockerfile:1
# wsi-thumbnail service image: a Debian 12 build stage with the build packages, and a
# slim Debian 12 runtime with only the shared libraries the binary links (OpenSlide and
# its image libraries, OpenSSL for SASL_SSL/SSL clusters, libstdc++ for librdkafka).
#
#   docker build -t wsi-thumbnail .
#   docker run --rm -v $PWD/config/wsi-thumbnail.toml:/etc/wsi-thumbnail/config.toml:ro wsi-thumbnail
#
# The base images are build arguments, and the binary can come from the build stage
# (default) or from the host: scripts/container-smoke.sh builds the runtime stage with
# podman on a Debian 12 minbase made by mmdebstrap, around the host's release binary.

ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# `builder`: compile in the image; `prebuilt`: take prebuilt/wsi-thumbnail from the
# build context (the smoke script puts the host's release binary there).
ARG BINARY_STAGE=builder

FROM ${BUILDER_IMAGE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      pkg-config cmake nasm libopenslide-dev libclang-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
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
COPY prebuilt/wsi-thumbnail /src/target/release/wsi-thumbnail

FROM ${BINARY_STAGE} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libopenslide0 libssl3 libstdc++6 libzstd1 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wsi \
 && mkdir -p /etc/wsi-thumbnail /var/tmp/wsi-thumbnail \
 && chown wsi /var/tmp/wsi-thumbnail
COPY --from=binary /src/target/release/wsi-thumbnail /usr/local/bin/wsi-thumbnail
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
