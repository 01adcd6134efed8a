#!/usr/bin/env bash
# The whole gate: setup, formatting, lints, and every test (unit, property, oracle, CLI, API,
# web, browser end to end, and the live API against its OpenAPI document).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# The PostgreSQL and NATS that the machine runs (tests create their own databases/streams).
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
cargo fmt --all -- --check
# Every feature on (the wgpu backend runs for real on Mesa's lavapipe), and the lean builds:
# the engine without GDAL (what a GPU machine carries) and without wgpu.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo clippy -p engine --no-default-features --locked -- -D warnings
# The default binary (no NATS: its `--nats` is a clear error there).
cargo clippy -p constellation --locked -- -D warnings
# The binary a GPU machine carries: no GDAL, no PostgreSQL (conformance, gpus, bench kernels).
cargo clippy -p constellation --no-default-features --features wgpu,cuda,nvml --all-targets --locked -- -D warnings
cargo test --workspace --all-features --locked
# The web UI: lint, type-check, unit tests (Vitest + axe-core), production build; then the
# browser end to end against the real server (Debian's Chromium, installed when missing).
./scripts/web.sh
CONSTELLATION_BIN=target/debug/constellation ./scripts/e2e.sh
# The live API against its committed OpenAPI document (schemathesis): no 5xx, nothing undocumented.
CONSTELLATION_BIN=target/debug/constellation ./scripts/api-check.sh
./scripts/deploy-check.sh  # deploy/ offline: manifests vs the Kubernetes and KEDA schemas, compose, Dockerfiles, dashboards
