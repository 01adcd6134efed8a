# syntax=docker/dockerfile:1.7
# the gpu worker image: `constellation worker` built with cuda, nvml and wgpu on top of the
# default gdal feature, on nvidia's cuda runtime image (ubuntu 24.04).
# build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t constellation-worker:0.1.0 .
# cuda is loaded at run time (cudarc's dynamic loading): libcuda and nvml come from the
# nvidia container runtime on the node, libnvrtc.so.13 from this base image; nothing cuda is
# needed to build. cudarc is built for cuda 13.0, which needs a 580 or newer driver.
# the binary is built on the same ubuntu release as the runtime image so that it links the
# gdal that image installs (3.8 on 24.04, where the api image has debian 12's 3.6).
ARG RUST_VERSION=1.95
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04

# only the rust toolchain is taken from here
FROM rust:${RUST_VERSION}-slim-bookworm AS rust

FROM ubuntu:${UBUNTU_VERSION} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev pkg-config libgdal-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
WORKDIR /src
COPY . .
# the runtime gdal package is whatever libgdal-dev depends on here (libgdal34t64 on 24.04)
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p constellation --features cuda,nvml,wgpu,nats,otel \
    && install -D -m 0755 target/release/constellation /out/constellation \
    && dpkg-query -W -f='${Depends}\n' libgdal-dev | tr ',' '\n' | grep -o 'libgdal[0-9a-z]*' | head -n 1 > /out/gdal-package \
    && test -s /out/gdal-package

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}
COPY --from=build /out/gdal-package /tmp/gdal-package
# libvulkan1: the loader for --backend wgpu (the node's nvidia icd is mounted when the
# runtime is asked for the graphics capability). the package file holds one name, left
# unquoted on purpose.
# hadolint ignore=SC2046
RUN apt-get update \
    && apt-get install -y --no-install-recommends $(cat /tmp/gdal-package) libvulkan1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /tmp/gdal-package \
    && groupadd --system --gid 10001 constellation \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home constellation \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /out/constellation /usr/local/bin/constellation
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/nvidia/lib:/usr/local/nvidia/lib64
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/constellation"]
CMD ["worker", "--backend", "auto"]
