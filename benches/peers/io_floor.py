#!/usr/bin/env python3
"""The I/O floor of an NDVI run: decode every input band (GDAL, multithreaded) and encode an
output of the same size (the reference output's pixels, read beforehand and not timed) with
the same COG options. Prints {"decode_s", "encode_s"} as JSON."""
import argparse
import json
import time

from osgeo import gdal

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_NUM_THREADS", "ALL_CPUS")

COG_OPTIONS = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BLOCKSIZE=512", "OVERVIEWS=AUTO",
               "OVERVIEW_RESAMPLING=AVERAGE", "NUM_THREADS=ALL_CPUS", "BIGTIFF=IF_SAFER"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--like", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    like = gdal.Open(a.like)
    data = like.GetRasterBand(1).ReadAsArray()
    t0 = time.perf_counter()
    for path in a.inputs:
        ds = gdal.Open(path)  # keep the dataset alive while its band is read
        ds.GetRasterBand(1).ReadAsArray()
    t1 = time.perf_counter()
    mem = gdal.GetDriverByName("MEM").Create("", data.shape[1], data.shape[0], 1, gdal.GDT_Float32)
    mem.SetGeoTransform(like.GetGeoTransform())
    mem.SetProjection(like.GetProjection())
    mem.GetRasterBand(1).SetNoDataValue(like.GetRasterBand(1).GetNoDataValue())
    mem.GetRasterBand(1).WriteArray(data)
    gdal.GetDriverByName("COG").CreateCopy(a.out, mem, options=COG_OPTIONS)
    t2 = time.perf_counter()
    print(json.dumps({"decode_s": t1 - t0, "encode_s": t2 - t1}))


if __name__ == "__main__":
    main()
