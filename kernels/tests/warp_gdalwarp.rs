//! `warp` against `gdalwarp` (GDAL 3.6) on a synthetic UTM source and on real rasters.
//!
//! For each case a Python script (osgeo) writes the source as `Float32` with a `NaN` NoData,
//! picks a target grid in another CRS (square pixels at 0.8 × the source pixel size, so that
//! `gdalwarp` uses its 4-sample bilinear/cubic formulas, plus a 3-pixel margin outside the
//! footprint), runs `gdalwarp -et 0` (exact transforms, no approximation) for each method and
//! computes, with `osr` and the same PROJ, the exact source position of every target pixel
//! centre. The test takes the mesh nodes (every 8 px plus the last row/column) from those exact
//! positions, so the only difference from `gdalwarp`'s positions is the kernel's bilinear
//! interpolation of the mesh, whose error the test measures against the exact positions.
//!
//! Tolerances:
//! - nearest: bit-identical values and nodata, except pixels whose exact source position lies
//!   within `1e-3` px of a source pixel edge, where the mesh error may pick the neighbour; such
//!   "tie" mismatches are counted and bounded (≤ 0.1 % of pixels).
//! - bilinear / cubic: `|ours - gdalwarp| ≤ 1e-5 × data range + e × k × s`, where `e` is the
//!   measured mesh error (px), `s` the largest step between adjacent source pixels and `k` 2
//!   (bilinear) or 3 (cubic) — the mesh error pushed through the interpolant's slope —
//!   nodata identical, on pixels whose source position is at least 2 px inside the source.
//!   The outer 2 px are reported apart: a mesh error there can flip the inside/outside test (a
//!   nodata flip, excused when the exact position is within `1e-3` px of the source edge),
//!   and cubic switches to its bilinear fallback within 1.5 px of the edge; as the kernel
//!   copies that fallback, border values are held to the same tolerance (measured: no flips,
//!   differences as small as in the interior). Tie pixels (within `1e-3` px
//!   of a tap boundary, where the cubic→bilinear nodata fallback can switch) may exceed the
//!   tolerance; they are counted and bounded like the nearest ones.

mod support;

use std::path::{Path, PathBuf};

use kernels::warp::{warp, Resampling, SourceMesh};
use kernels::Plane;

const STEP_PX: usize = 8;

const SCRIPT: &str = r#"
import sys, json, math, subprocess
import numpy as np
from osgeo import gdal, osr
gdal.UseExceptions()
src_path, band, t_srs, outdir, methods = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ds = gdal.Open(src_path)
b = ds.GetRasterBand(band)
a = b.ReadAsArray().astype(np.float32)
nd = b.GetNoDataValue()
if nd is not None and not math.isnan(nd):
    a[a == nd] = np.nan
W, H = ds.RasterXSize, ds.RasterYSize
gt = ds.GetGeoTransform()
a.astype('<f4').tofile(outdir + '/src.bin')
s = gdal.GetDriverByName('GTiff').Create(outdir + '/src.tif', W, H, 1, gdal.GDT_Float32)
s.SetGeoTransform(gt); s.SetProjection(ds.GetProjection())
s.GetRasterBand(1).SetNoDataValue(float('nan')); s.GetRasterBand(1).WriteArray(a); s = None
ssrs = osr.SpatialReference(); ssrs.ImportFromWkt(ds.GetProjection())
tsrs = osr.SpatialReference(); tsrs.SetFromUserInput(t_srs)
for r in (ssrs, tsrs):
    r.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
fwd = osr.CoordinateTransformation(ssrs, tsrs); inv = osr.CoordinateTransformation(tsrs, ssrs)
def geo(px, py):
    return (gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5])
edge = []
for t in np.linspace(0, 1, 101):
    edge += [geo(t * W, 0), geo(t * W, H), geo(0, t * H), geo(W, t * H)]
pts = np.array(fwd.TransformPoints(edge))
p0 = np.array(fwd.TransformPoint(*geo(W / 2, H / 2))[:2])
p1 = np.array(fwd.TransformPoint(*geo(W / 2 + 1, H / 2))[:2])
p2 = np.array(fwd.TransformPoint(*geo(W / 2, H / 2 + 1))[:2])
res = 0.8 * min(np.hypot(*(p1 - p0)), np.hypot(*(p2 - p0)))
xmin, xmax = pts[:, 0].min() - 3 * res, pts[:, 0].max() + 3 * res
ymin, ymax = pts[:, 1].min() - 3 * res, pts[:, 1].max() + 3 * res
tw = int(math.ceil((xmax - xmin) / res)); th = int(math.ceil((ymax - ymin) / res))
xmax = xmin + tw * res; ymin = ymax - th * res
tgt = (xmin, (xmax - xmin) / tw, 0.0, ymax, 0.0, -(ymax - ymin) / th)
for m in methods.split(','):
    if not m:
        continue
    out = f'{outdir}/gw_{m}.envi'
    subprocess.check_call(['gdalwarp', '-q', '-overwrite', '-et', '0', '-r', m, '-t_srs', t_srs,
        '-te', repr(xmin), repr(ymin), repr(xmax), repr(ymax), '-ts', str(tw), str(th),
        '-ot', 'Float32', '-of', 'ENVI', outdir + '/src.tif', out])
    o = gdal.Open(out)
    tgt = o.GetGeoTransform()
    o.GetRasterBand(1).ReadAsArray().astype('<f4').tofile(f'{outdir}/gw_{m}.bin')
jj, ii = np.mgrid[0:th, 0:tw].astype(np.float64)
X = tgt[0] + (ii + 0.5) * tgt[1] + (jj + 0.5) * tgt[2]
Y = tgt[3] + (ii + 0.5) * tgt[4] + (jj + 0.5) * tgt[5]
sp = np.array(inv.TransformPoints(np.column_stack([X.ravel(), Y.ravel()]).tolist()))
ig = gdal.InvGeoTransform(gt)
sx = ig[0] + sp[:, 0] * ig[1] + sp[:, 1] * ig[2]
sy = ig[3] + sp[:, 0] * ig[4] + sp[:, 1] * ig[5]
sx.astype('<f8').tofile(outdir + '/ex.bin'); sy.astype('<f8').tofile(outdir + '/ey.bin')
print(json.dumps({'src_w': W, 'src_h': H, 'tw': tw, 'th': th}))
"#;

/// A case prepared by the script: the source, the exact positions and `gdalwarp`'s outputs.
struct Case {
    dir: PathBuf,
    src: Vec<f32>,
    src_w: usize,
    src_h: usize,
    tw: usize,
    th: usize,
    ex: Vec<f64>,
    ey: Vec<f64>,
    /// Largest mesh interpolation error over the target, in source px.
    mesh_err: f64,
}

impl Case {
    fn oracle(&self, method: &str) -> Vec<f32> {
        support::read_f32(&self.dir.join(format!("gw_{method}.bin")))
    }

    /// The mesh of a `w` × `h` sub-window at `(x0, y0)` of the target, nodes taken from the
    /// exact positions.
    fn mesh(&self, x0: usize, y0: usize, w: usize, h: usize) -> SourceMesh {
        let cols = SourceMesh::node_count(w, STEP_PX);
        let rows = SourceMesh::node_count(h, STEP_PX);
        let mut src_x = Vec::with_capacity(cols * rows);
        let mut src_y = Vec::with_capacity(cols * rows);
        for l in 0..rows {
            let y = y0 + SourceMesh::node_px(l, h, STEP_PX);
            for k in 0..cols {
                let x = x0 + SourceMesh::node_px(k, w, STEP_PX);
                src_x.push(self.ex[y * self.tw + x]);
                src_y.push(self.ey[y * self.tw + x]);
            }
        }
        SourceMesh {
            step_px: STEP_PX,
            cols,
            rows,
            src_x,
            src_y,
        }
    }

    fn warp(&self, method: Resampling) -> Vec<f32> {
        let src = Plane::new(self.src_w, self.src_h, &self.src).expect("source plane");
        let mut out = vec![0.0; self.tw * self.th];
        warp(
            src,
            &self.mesh(0, 0, self.tw, self.th),
            method,
            self.tw,
            self.th,
            &mut out,
        )
        .expect("warp");
        out
    }

    /// Largest distance between the mesh-interpolated and the exact source positions, in px.
    fn mesh_error_px(&self) -> f64 {
        let mesh = self.mesh(0, 0, self.tw, self.th);
        let axis = |p: usize, n: usize, extent: usize| -> (usize, f64) {
            if n < 2 {
                return (0, 0.0);
            }
            let c = (p / STEP_PX).min(n - 2);
            let p0 = SourceMesh::node_px(c, extent, STEP_PX);
            let p1 = SourceMesh::node_px(c + 1, extent, STEP_PX);
            (c, (p - p0) as f64 / (p1 - p0) as f64)
        };
        let mut worst = 0.0f64;
        for y in 0..self.th {
            let (l, ty) = axis(y, mesh.rows, self.th);
            for x in 0..self.tw {
                let (k, tx) = axis(x, mesh.cols, self.tw);
                let at = |v: &[f64]| {
                    let n = |kk: usize, ll: usize| v[ll * mesh.cols + kk];
                    let top = n(k, l) * (1.0 - tx) + n(k + 1, l) * tx;
                    let bot = n(k, l + 1) * (1.0 - tx) + n(k + 1, l + 1) * tx;
                    top * (1.0 - ty) + bot * ty
                };
                let i = y * self.tw + x;
                let e = (at(&mesh.src_x) - self.ex[i])
                    .abs()
                    .max((at(&mesh.src_y) - self.ey[i]).abs());
                if e.is_finite() {
                    worst = worst.max(e);
                }
            }
        }
        worst
    }
}

fn read_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("read raw f64");
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

fn json_usize(text: &str, key: &str) -> usize {
    let at = text
        .find(&format!("\"{key}\": "))
        .expect("key in script output")
        + key.len()
        + 4;
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().expect("integer")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("constellation-warp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs the script on band `band` of `src_path` with target CRS `t_srs`.
fn prepare(dir: &Path, src_path: &Path, band: u32, t_srs: &str, methods: &str) -> Case {
    let out = support::python(
        SCRIPT,
        &[
            src_path.to_str().expect("utf-8 path"),
            &band.to_string(),
            t_srs,
            dir.to_str().expect("utf-8 path"),
            methods,
        ],
    );
    let mut case = Case {
        dir: dir.to_path_buf(),
        src: support::read_f32(&dir.join("src.bin")),
        src_w: json_usize(&out, "src_w"),
        src_h: json_usize(&out, "src_h"),
        tw: json_usize(&out, "tw"),
        th: json_usize(&out, "th"),
        ex: read_f64(&dir.join("ex.bin")),
        ey: read_f64(&dir.join("ey.bin")),
        mesh_err: 0.0,
    };
    case.mesh_err = case.mesh_error_px();
    case
}

/// The largest absolute difference between horizontally or vertically adjacent valid source
/// pixels.
fn max_step(case: &Case) -> f32 {
    let (w, h, s) = (case.src_w, case.src_h, &case.src);
    let mut worst = 0.0f32;
    for y in 0..h {
        for x in 0..w {
            let v = s[y * w + x];
            if x + 1 < w && !(v - s[y * w + x + 1]).is_nan() {
                worst = worst.max((v - s[y * w + x + 1]).abs());
            }
            if y + 1 < h && !(v - s[(y + 1) * w + x]).is_nan() {
                worst = worst.max((v - s[(y + 1) * w + x]).abs());
            }
        }
    }
    worst
}

/// Distance of `v` to the nearest integer.
fn to_int(v: f64) -> f64 {
    (v - v.round()).abs()
}

/// Compares one method against `gdalwarp`; returns (interior max diff, tie count).
fn compare(case: &Case, method: Resampling, file: &str, name: &str) -> (f32, usize) {
    let ours = case.warp(method);
    let oracle = case.oracle(file);
    assert_eq!(ours.len(), oracle.len());
    let valid: Vec<f32> = case.src.iter().copied().filter(|v| !v.is_nan()).collect();
    let lo = valid.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = valid.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // f32 rounding of the two computations, plus the mesh error propagated through the
    // interpolant's slope: at most `err · (|∂f/∂x| + |∂f/∂y|)`, bounded by the largest step
    // between neighbouring valid source pixels (×1 per axis for bilinear, ×1.5 for cubic,
    // whose Keys kernel overshoots).
    let slope = match method {
        Resampling::Nearest => 0.0,
        Resampling::Bilinear => 2.0 * max_step(case),
        Resampling::Cubic => 3.0 * max_step(case),
    };
    let tol = 1e-5 * (hi - lo) + (case.mesh_err as f32) * slope;
    let (w, h) = (case.src_w as f64, case.src_h as f64);
    let (mut worst, mut worst_border, mut ties, mut tie_worst) = (0.0f32, 0.0f32, 0usize, 0.0f32);
    let (mut compared, mut border_nan_flips, mut nodata) = (0usize, 0usize, 0usize);
    for (i, (&a, &b)) in ours.iter().zip(&oracle).enumerate() {
        assert!(!a.is_infinite(), "{name}: infinity at {i}");
        let (x, y) = (case.ex[i], case.ey[i]);
        let border = !(x >= 2.0 && y >= 2.0 && x <= w - 2.0 && y <= h - 2.0);
        // A source pixel edge (nearest), or a tap boundary (bilinear/cubic: x - 0.5).
        let tie = match method {
            Resampling::Nearest => to_int(x) < 1e-3 || to_int(y) < 1e-3,
            _ => to_int(x - 0.5) < 1e-3 || to_int(y - 0.5) < 1e-3,
        };
        let near_edge = to_int(x) < 1e-3 && (x.round() == 0.0 || x.round() == w)
            || to_int(y) < 1e-3 && (y.round() == 0.0 || y.round() == h);
        if a.is_nan() != b.is_nan() {
            assert!(
                near_edge || tie,
                "{name}: nodata differs at {i} (src {x:.6},{y:.6}): ours {a}, gdalwarp {b}"
            );
            if border {
                border_nan_flips += 1;
            } else {
                ties += 1;
            }
            continue;
        }
        if a.is_nan() {
            nodata += 1;
            continue;
        }
        let d = (a - b).abs();
        let exact_needed = method == Resampling::Nearest;
        let bad = if exact_needed { d != 0.0 } else { d > tol };
        if bad && tie {
            ties += 1;
            tie_worst = tie_worst.max(d);
            continue;
        }
        if border {
            worst_border = worst_border.max(d);
            continue;
        }
        compared += 1;
        assert!(
            !bad,
            "{name}: pixel {i} (src {x:.6},{y:.6}): ours {a}, gdalwarp {b}, diff {d} > {tol}"
        );
        worst = worst.max(d);
    }
    let n = ours.len();
    println!(
        "{name}: {compared} interior px compared, {nodata} nodata, max diff {worst} (tol {tol}), \
         border max diff {worst_border}, {border_nan_flips} border nodata flips, {ties} ties \
         (worst {tie_worst})"
    );
    assert!(
        compared > n / 4,
        "{name}: too few pixels compared ({compared} of {n})"
    );
    assert!(ties * 1000 <= n, "{name}: {ties} tie mismatches of {n}");
    assert!(
        border_nan_flips * 1000 <= n,
        "{name}: {border_nan_flips} border flips"
    );
    // At the border gdalwarp and this kernel use the same formulas (and the same cubic →
    // bilinear fallback), so the border holds the same tolerance; only nodata flips across the
    // source edge are excused there.
    assert!(
        worst_border <= tol,
        "{name}: border diff {worst_border} > {tol}"
    );
    (worst, ties)
}

fn check_all(case: &Case, what: &str) {
    let err = case.mesh_err;
    println!(
        "{what}: target {}x{}, mesh interpolation error {err:.3e} px",
        case.tw, case.th
    );
    assert!(err < 1e-4, "{what}: mesh error {err} px");
    for (method, name) in [
        (Resampling::Nearest, "near"),
        (Resampling::Bilinear, "bilinear"),
        (Resampling::Cubic, "cubic"),
    ] {
        compare(case, method, name, &format!("{what} {name}"));
    }
}

/// A 400×300 smooth field plus noise with a few nodata holes, UTM 33N at 30 m.
fn synthetic_source(dir: &Path) -> PathBuf {
    let (w, h) = (400usize, 300usize);
    let mut rng = support::Rng::new(0x5EED_0033);
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let smooth = 500.0 + 300.0 * (6.0 * fx).sin() * (4.0 * fy).cos() + 150.0 * fx * fy;
            data.push(smooth + rng.uniform(-20.0, 20.0));
        }
    }
    for (cx, cy, r) in [
        (120usize, 80usize, 3usize),
        (250, 200, 6),
        (330, 40, 1),
        (60, 250, 10),
    ] {
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                data[y * w + x] = f32::NAN;
            }
        }
    }
    let gt = [400_000.0, 30.0, 0.0, 5_010_000.0, 0.0, -30.0];
    support::write_vrt(dir, "synthetic", &data, w, h, gt, 32633)
}

#[test]
fn synthetic_utm_to_geographic_matches_gdalwarp() {
    let dir = scratch("synth4326");
    let vrt = synthetic_source(&dir);
    let case = prepare(&dir, &vrt, 1, "EPSG:4326", "near,bilinear,cubic");
    check_all(&case, "utm33->4326");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synthetic_utm_to_web_mercator_matches_gdalwarp() {
    let dir = scratch("synth3857");
    let vrt = synthetic_source(&dir);
    let case = prepare(&dir, &vrt, 1, "EPSG:3857", "near,bilinear,cubic");
    check_all(&case, "utm33->3857");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_rgb_byte_to_geographic_matches_gdalwarp() {
    let Some(real) = support::real_fixtures() else {
        println!("real fixtures absent; skipped");
        return;
    };
    let dir = scratch("rgb4326");
    // Band 1, EPSG:32618, NoData 0 (the collar) → NaN.
    let case = prepare(
        &dir,
        &real.join("RGB.byte.tif"),
        1,
        "EPSG:4326",
        "near,bilinear,cubic",
    );
    check_all(&case, "RGB.byte b1->4326");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_l7_etm_to_geographic_matches_gdalwarp() {
    let Some(real) = support::real_fixtures() else {
        println!("real fixtures absent; skipped");
        return;
    };
    let dir = scratch("l74326");
    // Band 1, EPSG:31985 (SIRGAS 2000 / UTM 25S), no NoData.
    let case = prepare(
        &dir,
        &real.join("L7_ETMs.tif"),
        1,
        "EPSG:4326",
        "near,bilinear,cubic",
    );
    check_all(&case, "L7_ETMs b1->4326");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tiles whose offsets are multiples of the mesh step, each warped with its own mesh taken
/// from the same transform: pixels in mesh cells shared with the whole-window mesh are
/// bit-identical; the last cell of each tile ends at the tile's own last row/column node
/// instead of the next regular node, so there the interpolated positions (and values) may
/// differ by the mesh error only.
#[test]
fn tiles_stitch_to_the_whole_window() {
    let dir = scratch("tiles");
    let vrt = synthetic_source(&dir);
    let case = prepare(&dir, &vrt, 1, "EPSG:4326", "");
    let src = Plane::new(case.src_w, case.src_h, &case.src).expect("source plane");
    let (tile_w, tile_h) = (8 * STEP_PX, 6 * STEP_PX);
    for method in [Resampling::Nearest, Resampling::Bilinear, Resampling::Cubic] {
        let whole = case.warp(method);
        let mut stitched = vec![0.0f32; whole.len()];
        let mut shared = vec![false; whole.len()];
        for y0 in (0..case.th).step_by(tile_h) {
            for x0 in (0..case.tw).step_by(tile_w) {
                let (w, h) = (tile_w.min(case.tw - x0), tile_h.min(case.th - y0));
                let mesh = case.mesh(x0, y0, w, h);
                let mut out = vec![0.0f32; w * h];
                warp(src, &mesh, method, w, h, &mut out).expect("warp tile");
                // Tile-local pixels before the last node that is a whole-window node too.
                let regular = |extent: usize, full_rest: usize| {
                    if extent == full_rest {
                        extent // the tile ends where the window ends: same nodes
                    } else {
                        (extent - 1) / STEP_PX * STEP_PX + 1
                    }
                };
                let (rx, ry) = (regular(w, case.tw - x0), regular(h, case.th - y0));
                for y in 0..h {
                    for x in 0..w {
                        let i = (y0 + y) * case.tw + x0 + x;
                        stitched[i] = out[y * w + x];
                        shared[i] = x < rx && y < ry;
                    }
                }
            }
        }
        let (mut worst, mut flips, mut n_shared) = (0.0f32, 0usize, 0usize);
        for i in 0..whole.len() {
            let (a, b) = (whole[i], stitched[i]);
            if shared[i] {
                n_shared += 1;
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{method:?}: shared cell pixel {i}"
                );
            } else if a.is_nan() != b.is_nan()
                || (method == Resampling::Nearest && !a.is_nan() && a != b)
            {
                flips += 1;
            } else if !a.is_nan() {
                worst = worst.max((a - b).abs());
            }
        }
        println!(
            "tiles {method:?}: {n_shared} of {} px in shared cells bit-identical; elsewhere max \
             diff {worst}, {flips} nearest/nodata flips",
            whole.len()
        );
        assert!(n_shared * 2 > whole.len());
        assert!(worst < 0.05, "{method:?}: tile edge diff {worst}");
        assert!(flips * 1000 <= whole.len(), "{method:?}: {flips} flips");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
