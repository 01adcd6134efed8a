"""Independent oracles for Constellation's outputs: numpy and GDAL's own tools.

Usage: oracle.py <check> <json-args>. Prints one JSON object with the comparison:
max_abs_diff over pixels valid in both, nodata_mismatch (pixels nodata in one only),
valid (pixels compared), inf (infinities in our output). Runs with Debian's python3.
"""
import json
import subprocess
import sys
import tempfile

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def read(path, band=1, nodata_to_nan=True):
    ds = gdal.Open(path)
    b = ds.GetRasterBand(band)
    a = b.ReadAsArray().astype(np.float32)
    nd = b.GetNoDataValue()
    if nodata_to_nan and nd is not None and not np.isnan(nd):
        a[a == np.float32(nd)] = np.nan
    return a


def finite_or_nan(a):
    a = a.astype(np.float32)
    a[~np.isfinite(a)] = np.nan
    return a


def compare(ours, ref, border=0):
    if border:
        ours = ours[border:-border, border:-border]
        ref = ref[border:-border, border:-border]
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    on, rn = np.isnan(ours), np.isnan(ref)
    both = ~on & ~rn
    diff = np.abs(ours[both].astype(np.float64) - ref[both].astype(np.float64))
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "nodata_mismatch": int((on != rn).sum()),
        "valid": int(both.sum()),
        "inf": int(np.isinf(ours).sum()),
    }


def scaled(path, scale, offset):
    return read(path) * np.float32(scale) + np.float32(offset)


def landsat_mask(qa_path):
    qa = read(qa_path, nodata_to_nan=False).astype(np.uint32)
    return (qa & 0b11111) != 0  # fill, dilated cloud, cirrus, cloud, shadow


def scl_mask(scl_path, like_path):
    """The SCL mask on the grid of `like_path`: for each pixel centre, the SCL pixel that
    contains it (nearest neighbour), computed from both geotransforms."""
    scl_ds, like = gdal.Open(scl_path), gdal.Open(like_path)
    scl = scl_ds.GetRasterBand(1).ReadAsArray().astype(np.int64)
    gs, gl = scl_ds.GetGeoTransform(), like.GetGeoTransform()
    xs = gl[0] + (np.arange(like.RasterXSize) + 0.5) * gl[1]
    ys = gl[3] + (np.arange(like.RasterYSize) + 0.5) * gl[5]
    cols = np.floor((xs - gs[0]) / gs[1]).astype(int)
    rows = np.floor((ys - gs[3]) / gs[5]).astype(int)
    inside_c = (cols >= 0) & (cols < scl.shape[1])
    inside_r = (rows >= 0) & (rows < scl.shape[0])
    up = scl[np.ix_(np.clip(rows, 0, scl.shape[0] - 1), np.clip(cols, 0, scl.shape[1] - 1))]
    up[~inside_r, :] = 0
    up[:, ~inside_c] = 0
    return np.isin(up, [0, 1, 3, 8, 9, 10])


def mtl_toa(mtl_path, band):
    """(mult, add, sun elevation) of a Level-1 band from an MTL file."""
    values, group = {}, []
    for line in open(mtl_path):
        if "=" not in line:
            continue
        k, v = (t.strip().strip('"') for t in line.split("=", 1))
        if k == "GROUP":
            group.append(v)
        elif k == "END_GROUP":
            group.pop()
        else:
            values.setdefault((group[-1] if group else "", k), v)
    g = "LEVEL1_RADIOMETRIC_RESCALING" if ("LEVEL1_RADIOMETRIC_RESCALING", f"REFLECTANCE_MULT_BAND_{band}") in values else "RADIOMETRIC_RESCALING"
    sun = next(float(v) for (grp, k), v in values.items() if k == "SUN_ELEVATION")
    return float(values[(g, f"REFLECTANCE_MULT_BAND_{band}")]), float(values[(g, f"REFLECTANCE_ADD_BAND_{band}")]), sun


def legacy_bqa_mask(qa_path):
    qa = read(qa_path, nodata_to_nan=False).astype(np.uint32)
    return ((qa & 1) != 0) | ((qa & 16) != 0) | (((qa >> 14) & 3) == 3) | (((qa >> 12) & 3) == 3)


def bands_for(args):
    if args["sensor"] == "landsat-l1":
        mask = legacy_bqa_mask(args["qa"])
        out = {}
        for role, (path, band) in args["bands"].items():
            mult, add, sun = mtl_toa(args["mtl"], band)
            a = ((read(path).astype(np.float64) * mult + add) / np.sin(np.radians(sun))).astype(np.float32)
            a[mask] = np.nan
            out[role] = a
        return out
    if args["sensor"] == "landsat-c2l2":
        sc, off = 2.75e-5, -0.2
        mask = landsat_mask(args["qa"])
    else:
        sc, off = 1e-4, args.get("boa_add_offset", -1000.0) * 1e-4
        mask = None
    out = {}
    for role, path in args["bands"].items():
        a = scaled(path, sc, off)
        if mask is None:
            mask = scl_mask(args["scl"], path)
        a[mask] = np.nan
        out[role] = a
    return out


def index(args):
    b = bands_for(args)
    kind = args["index"]
    with np.errstate(all="ignore"):
        if kind == "evi":
            ref = np.float32(2.5) * (b["nir"] - b["red"]) / (
                b["nir"] + np.float32(6) * b["red"] - np.float32(7.5) * b["blue"] + np.float32(1))
        elif kind == "savi":
            l = np.float32(0.5)
            ref = (np.float32(1) + l) * (b["nir"] - b["red"]) / (b["nir"] + b["red"] + l)
        else:
            a, c = {"ndvi": ("nir", "red"), "ndwi": ("green", "nir"), "nbr": ("nir", "swir2"),
                    "ndbi": ("swir1", "nir"), "mndwi": ("green", "swir1")}[kind]
            ref = (b[a] - b[c]) / (b[a] + b[c])
    ref = finite_or_nan(ref)
    ours = read(args["ours"])
    res = compare(ours, ref)
    # Statistics of the valid pixels, for the STAC Item.
    v = ref[~np.isnan(ref)].astype(np.float64)
    res["stats"] = [float(v.min()), float(v.max()), float(v.mean()), float(v.std())] if v.size else None
    res["histogram"] = np.histogram(v, bins=64, range=(-1.0, 1.0))[0].tolist()
    return res


def expr(args):
    env = {name: read(path, band) for name, (path, band) in args["bands"].items()}
    env.update({"where": np.where, "sqrt": np.sqrt, "abs": np.abs, "min": np.minimum, "max": np.maximum})
    with np.errstate(all="ignore"):
        ref = finite_or_nan(eval(args["numpy"], {"np": np}, env))
    return compare(read(args["ours"]), ref)


def gdaldem(args):
    with tempfile.TemporaryDirectory() as d:
        out = f"{d}/ref.tif"
        cmd = ["gdaldem", args["mode"], args["dem"], out] + args.get("extra", [])
        subprocess.run(cmd, check=True, capture_output=True)
        ref = read(out)
        if args["mode"] == "hillshade":
            ref[ref == 0] = np.nan  # gdaldem's hillshade nodata
    ours = read(args["ours"])
    return compare(ours, ref, border=1)


def pansharpen(args):
    """Weighted Brovey on multispectral bands resampled onto the pan grid by gdalwarp
    (cubic, georeferenced, Float32), in numpy. gdal_pansharpen.py itself maps MS onto pan by
    pixel counts, ignoring the half-pan-pixel offset of real Level-1 grids, so it is the
    kernel's oracle (kernels/tests/pansharpen_gdal.rs), not the engine's."""
    pan_ds = gdal.Open(args["pan"])
    gt = pan_ds.GetGeoTransform()
    w, h = pan_ds.RasterXSize, pan_ds.RasterYSize
    te = [gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]]
    pan = read(args["pan"]).astype(np.float64)
    ms = []
    with tempfile.TemporaryDirectory() as d:
        for i, path in enumerate(args["ms"]):
            out = f"{d}/ms{i}.tif"
            subprocess.run(["gdalwarp", "-q", "-r", "cubic", "-et", "0", "-ot", "Float32",
                            "-dstnodata", "nan", "-te", *map(str, te), "-ts", str(w), str(h),
                            path, out], check=True, capture_output=True)
            ms.append(read(out).astype(np.float64))
    n = len(ms)
    pseudo = sum(m / n for m in ms)
    with np.errstate(all="ignore"):
        factor = pan / pseudo
        refs = [finite_or_nan(m * factor) for m in ms]
    results = [compare(read(args["ours"], i + 1), ref, border=args.get("border", 0))
               for i, ref in enumerate(refs)]
    return {
        "max_abs_diff": max(r["max_abs_diff"] for r in results),
        "mean_abs_diff": max(r["mean_abs_diff"] for r in results),
        "nodata_mismatch": sum(r["nodata_mismatch"] for r in results),
        "valid": sum(r["valid"] for r in results),
        "inf": sum(r["inf"] for r in results),
    }


def cog(args):
    from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
    warnings, errors, _ = v.validate(args["path"], full_check=True)
    info = gdal.Info(args["path"], format="json")
    band = info["bands"][0]
    ds = gdal.Open(args["path"])
    # Exact statistics, computed by GDAL from the pixels (not the metadata we wrote).
    stats = ds.GetRasterBand(1).ComputeStatistics(False)
    structure = info["metadata"].get("IMAGE_STRUCTURE", {})
    return {
        "errors": errors,
        "warnings": warnings,
        "compression": structure.get("COMPRESSION"),
        "predictor": structure.get("PREDICTOR"),
        # GDAL says COG only when the file declares (and keeps) the COG layout.
        "layout": structure.get("LAYOUT"),
        "block": band["block"],
        "overviews": len(band.get("overviews", [])),
        "nodata": band.get("noDataValue"),
        "stats": stats,
    }


def overview(args):
    """Overview 1 against numpy's mean of the valid pixels of each 2×2 block of the base."""
    ds = gdal.Open(args["path"])
    b = ds.GetRasterBand(1)
    base = read(args["path"])
    h, w = base.shape
    padded = np.full((h + h % 2, w + w % 2), np.nan, dtype=np.float64)
    padded[:h, :w] = base
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        ref = np.nanmean(blocks, axis=(1, 3)).astype(np.float32)
    ov = b.GetOverview(0).ReadAsArray().astype(np.float32)
    ov[ov == np.float32(b.GetNoDataValue())] = np.nan
    res = compare(ov, ref)
    res["overviews"] = b.GetOverviewCount()
    return res


def transform(args):
    from osgeo import osr
    src = osr.SpatialReference()
    src.ImportFromWkt(args["wkt"])
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    return {"points": [list(ct.TransformPoint(x, y)[:2]) for x, y in args["points"]]}


if __name__ == "__main__":
    check, raw = sys.argv[1], sys.argv[2]
    print(json.dumps(globals()[check](json.loads(raw))))
