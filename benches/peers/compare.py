#!/usr/bin/env python3
"""Checks a peer's output against Constellation's: same nodata pixels, values within a
tolerance. Prints {"equal", "max_abs_diff", "nodata_mismatch", "valid"} as JSON."""
import json
import sys

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def read(path):
    ds = gdal.Open(path)  # keep the dataset alive while its band is used
    b = ds.GetRasterBand(1)
    a = b.ReadAsArray().astype(np.float64)
    nd = b.GetNoDataValue()
    if nd is not None:
        a[a == nd] = np.nan
    return a


ours, theirs, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
on, tn = np.isnan(ours), np.isnan(theirs)
both = ~on & ~tn
diff = float(np.abs(ours[both] - theirs[both]).max()) if both.any() else 0.0
mismatch = int((on != tn).sum())
print(json.dumps({"equal": bool(mismatch == 0 and diff <= tol and both.any()),
                  "max_abs_diff": diff, "nodata_mismatch": mismatch, "valid": int(both.sum())}))
