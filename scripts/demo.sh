#!/usr/bin/env bash
# The main job on fixtures: synthetic Sentinel-2, Landsat and DEM scenes (and the real rasters
# in ../shared/fixtures/real when present) through NDVI, EVI and hillshade, into out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
real=()
[[ -d ../shared/fixtures/real ]] && real=(--real ../shared/fixtures/real)
cargo run --release --locked -p constellation -- demo --out out/demo "${real[@]}" "$@"
