# syntax=docker/dockerfile:1.7
# the api image: `constellation serve` with the web ui, also used for `constellation migrate`.
# build from the repository root:
#   docker build -f deploy/docker/api.Dockerfile -t constellation-api:0.1.0 .
# debian 12 throughout, like the development machines: gdal 3.6 (libgdal32), the version the
# tests run against.
ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# the web ui (vite build into web/dist)
FROM node:${NODE_VERSION}-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
COPY api/openapi.json /src/api/openapi.json
RUN npm run build

# the binary, default features (gdal: raster i/o, postgresql, the api) the nats event bus and otlp traces
FROM rust:${RUST_VERSION}-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libgdal-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p constellation --features nats,otel \
    && install -D -m 0755 target/release/constellation /out/constellation

FROM debian:bookworm-slim
# gdal's runtime library (it brings proj, geos and the codecs); curl's certificates for
# /vsicurl/ and /vsis3/ inputs
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgdal32 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 constellation \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home constellation \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /out/constellation /usr/local/bin/constellation
COPY --from=web /src/web/dist /usr/share/constellation/web
USER 10001:10001
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/constellation"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/data", "--web-dir", "/usr/share/constellation/web"]
