#!/usr/bin/env bash
# Cloud-masked NDVI with GDAL's own tools, as people run it today: gdal_calc.py to a tiled
# DEFLATE GeoTIFF, then gdal_translate to a COG with the same options Constellation uses.
# Usage: ndvi_gdal_calc.sh s2|landsat RED NIR QA OUT [BOA_ADD_OFFSET]
set -euo pipefail
sensor=$1 red=$2 nir=$3 qa=$4 out=$5 boa=${6:--1000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
size=$(gdalinfo "$red" | sed -n 's/^Size is \([0-9]*\), \([0-9]*\)$/\1 \2/p')
if [[ $sensor == s2 ]]; then
  # SCL (20 m) onto the 10 m grid, nearest neighbour, as a VRT.
  gdal_translate -q -of VRT -r nearest -outsize $size "$qa" "$tmp/qa.vrt"
  off=$(python3 -c "print($boa * 1e-4)")
  r="(A*0.0001+($off))" n="(B*0.0001+($off))"
  mask="isin(C,[0,1,3,8,9,10])"
else
  gdal_translate -q -of VRT "$qa" "$tmp/qa.vrt"
  r="(A*2.75e-05-0.2)" n="(B*2.75e-05-0.2)"
  mask="((C.astype(uint32) & 31) != 0)"
fi
/usr/bin/python3 /usr/bin/gdal_calc.py --quiet -A "$red" -B "$nir" -C "$tmp/qa.vrt" \
  --outfile "$tmp/ndvi.tif" --type Float32 --NoDataValue -9999 \
  --co COMPRESS=DEFLATE --co PREDICTOR=3 --co TILED=YES --co BIGTIFF=IF_SAFER \
  --calc "where($mask | ($n + $r == 0), -9999, ($n - $r) / ($n + $r))"
gdal_translate -q -of COG -co COMPRESS=DEFLATE -co PREDICTOR=YES -co BLOCKSIZE=512 \
  -co OVERVIEWS=AUTO -co OVERVIEW_RESAMPLING=AVERAGE -co NUM_THREADS=ALL_CPUS -co BIGTIFF=IF_SAFER \
  "$tmp/ndvi.tif" "$out"
