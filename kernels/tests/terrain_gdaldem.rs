//! Oracle tests for `kernels::terrain` against the real `gdaldem` (GDAL 3.6), plus tiling.
//!
//! Our kernels read the scene padded with a 1-px `NaN` border, as the engine does at scene
//! edges, so the outermost ring is nodata exactly like gdaldem's default (no
//! `-compute_edges`). Every pixel is compared, nodata included: ours `NaN` ⇔ gdaldem's nodata
//! (0 for the Byte hillshade, -9999 for slope and aspect, which also marks flat aspect).
//!
//! Tolerances:
//! - hillshade: gdaldem rounds the same 1..=255 value to the nearest byte. The contract is
//!   ≤ 1 DN; we assert the stronger |ours − gdaldem| ≤ 0.51, i.e. our value rounds to
//!   gdaldem's byte except within 0.01 of a half-way point, where gdaldem's approximate
//!   reciprocal square root (rsqrt + one Newton step) and its differently associated `f32`
//!   sums may tip the rounding (measured: ≤ 0.5003, a handful of pixels per 10⁵);
//! - slope: ≤ 1e-3° (degrees), ≤ 1e-3 % or 1e-5 relative (percent); Horn's sums are computed
//!   in the same `f32` order as gdaldem, so only the final `f64` steps differ;
//! - aspect: ≤ 1e-3°, compared on the circle (0° = 360°), with no exclusion near flat ground:
//!   the flat test uses gdaldem's own `f32` sums, so even near-flat windows agree.

mod support;

use std::path::{Path, PathBuf};

use kernels::terrain::{aspect, hillshade, slope, SlopeUnits, TerrainParams};
use kernels::{KernelError, Plane};
use support::Rng;

const GDALDEM: &str = "gdaldem";
const GDAL_NODATA: f32 = -9999.0;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "constellation-terrain-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Pads a `w × h` plane with a `NaN` border of `r` pixels.
fn pad_nan(data: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let pw = w + 2 * r;
    let mut padded = vec![f32::NAN; pw * (h + 2 * r)];
    for y in 0..h {
        padded[(y + r) * pw + r..(y + r) * pw + r + w].copy_from_slice(&data[y * w..(y + 1) * w]);
    }
    padded
}

/// One of our terrain kernels, bound to its parameters.
type Kernel<'a> = Box<dyn Fn(Plane<'_>, usize, &mut [f32]) -> Result<(), KernelError> + 'a>;

/// Runs `kernel` over the whole `w × h` DEM padded with a `NaN` border.
fn run_whole(kernel: &Kernel<'_>, dem: &[f32], w: usize, h: usize) -> Vec<f32> {
    let padded = pad_nan(dem, w, h, 1);
    let mut out = vec![0.0f32; w * h];
    kernel(
        Plane::new(w + 2, h + 2, &padded).expect("plane"),
        1,
        &mut out,
    )
    .expect("terrain kernel");
    out
}

/// Runs `gdaldem <mode> <extra> in out.bin -of ENVI` and returns the raster as `f32`
/// (gdaldem's nodata left as it wrote it).
fn gdaldem(dir: &Path, input: &Path, mode: &str, extra: &[&str], name: &str) -> Vec<f32> {
    let out = dir.join(format!("{name}.bin"));
    let mut args = vec![mode, path_str(input), path_str(&out), "-of", "ENVI", "-q"];
    args.extend_from_slice(extra);
    support::tool(GDALDEM, &args);
    if mode == "hillshade" {
        std::fs::read(&out)
            .expect("read gdaldem byte output")
            .into_iter()
            .map(f32::from)
            .collect()
    } else {
        support::read_f32(&out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    /// Byte output, 0 = nodata, ≤ 0.51 DN before our rounding (so ≤ 1 DN after).
    Shade,
    /// Float output, -9999 = nodata, absolute tolerance.
    Linear(f32),
    /// Percent slope: absolute or relative tolerance, whichever is larger.
    Percent,
    /// Degrees on a circle.
    Angle(f32),
}

/// Compares ours with gdaldem over every pixel; returns (max difference, pixels compared,
/// nodata pixels, pixels where our value rounds to a different byte).
fn compare(what: &str, ours: &[f32], oracle: &[f32], m: Measure) -> (f32, usize, usize, usize) {
    assert_eq!(ours.len(), oracle.len(), "{what}: sizes differ");
    let (mut worst, mut worst_at, mut valid, mut nodata, mut rounded_off) = (0.0f32, 0, 0, 0, 0);
    for (i, (&a, &b)) in ours.iter().zip(oracle).enumerate() {
        assert!(!a.is_infinite(), "{what}: infinity at {i}");
        let oracle_nodata = match m {
            Measure::Shade => b == 0.0,
            _ => b == GDAL_NODATA,
        };
        assert_eq!(
            a.is_nan(),
            oracle_nodata,
            "{what}: nodata differs at {i}: ours {a}, gdaldem {b}"
        );
        if a.is_nan() {
            nodata += 1;
            continue;
        }
        valid += 1;
        let (d, tol) = match m {
            Measure::Shade => {
                if (a + 0.5).floor() != b {
                    rounded_off += 1;
                }
                ((a - b).abs(), 0.51)
            }
            Measure::Linear(t) => ((a - b).abs(), t),
            Measure::Percent => ((a - b).abs(), 1e-3f32.max(1e-5 * b.abs())),
            Measure::Angle(t) => {
                let d = (a - b).abs() % 360.0;
                (d.min(360.0 - d), t)
            }
        };
        assert!(
            d <= tol,
            "{what}: at {i} ours {a}, gdaldem {b}, difference {d} > {tol}"
        );
        if d > worst {
            worst = d;
            worst_at = i;
        }
    }
    eprintln!(
        "{what}: max |ours - gdaldem| = {worst:e} (at {worst_at}) over {valid} pixels, \
         {nodata} nodata, {rounded_off} rounding to another byte"
    );
    (worst, valid, nodata, rounded_off)
}

/// A seeded synthetic DEM: gaussian hills on a tilted plain, 1 m noise, an exactly flat
/// plateau and a few nodata holes.
fn synthetic_dem(w: usize, h: usize) -> Vec<f32> {
    let mut rng = Rng::new(0x7E44A1);
    let hills: Vec<[f32; 4]> = (0..14)
        .map(|_| {
            [
                rng.uniform(0.0, w as f32),
                rng.uniform(0.0, h as f32),
                rng.uniform(6.0, 40.0),
                rng.uniform(-150.0, 700.0),
            ]
        })
        .collect();
    let mut dem = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let mut z = 300.0 + 0.4 * fx - 0.25 * fy;
            for [cx, cy, s, a] in &hills {
                let r2 = (fx - cx).powi(2) + (fy - cy).powi(2);
                z += a * (-r2 / (2.0 * s * s)).exp();
            }
            z += rng.uniform(-1.0, 1.0);
            dem[y * w + x] = z;
        }
    }
    // An exactly flat plateau (aspect nodata inside, near-flat windows on its rim).
    for y in 150..200 {
        for x in 20..90 {
            dem[y * w + x] = 412.5;
        }
    }
    // Nodata holes, one touching the scene edge.
    for (x0, y0, hw, hh) in [
        (200, 40, 5, 3),
        (120, 100, 1, 1),
        (250, 180, 8, 8),
        (0, 60, 3, 4),
    ] {
        for y in y0..y0 + hh {
            for x in x0..x0 + hw {
                dem[y * w + x] = f32::NAN;
            }
        }
    }
    dem
}

#[test]
fn matches_gdaldem_on_a_synthetic_projected_dem() {
    let (w, h) = (300usize, 240usize);
    let dem = synthetic_dem(w, h);
    let dir = scratch("synthetic");
    let vrt = support::write_vrt(
        &dir,
        "dem",
        &dem,
        w,
        h,
        [500_000.0, 30.0, 0.0, 4_600_000.0, 0.0, -30.0],
        32633,
    );
    let p = TerrainParams::new(30.0, 30.0);
    let z3 = TerrainParams { z_factor: 3.0, ..p };

    let cases: Vec<(&str, &str, Vec<&str>, Kernel<'_>, Measure)> = vec![
        (
            "hillshade",
            "hillshade",
            vec![],
            Box::new(|d, r, o| hillshade(d, r, &p, 315.0, 45.0, o)),
            Measure::Shade,
        ),
        (
            "hillshade -z 3 -az 120 -alt 30",
            "hillshade",
            vec!["-z", "3", "-az", "120", "-alt", "30"],
            Box::new(|d, r, o| hillshade(d, r, &z3, 120.0, 30.0, o)),
            Measure::Shade,
        ),
        (
            "slope",
            "slope",
            vec![],
            Box::new(|d, r, o| slope(d, r, &p, SlopeUnits::Degrees, o)),
            Measure::Linear(1e-3),
        ),
        (
            "slope -p",
            "slope",
            vec!["-p"],
            Box::new(|d, r, o| slope(d, r, &p, SlopeUnits::Percent, o)),
            Measure::Percent,
        ),
        (
            "aspect",
            "aspect",
            vec![],
            Box::new(|d, r, o| aspect(d, r, &p, o)),
            Measure::Angle(1e-3),
        ),
    ];
    for (i, (what, mode, extra, kernel, m)) in cases.iter().enumerate() {
        let oracle = gdaldem(&dir, &vrt, mode, extra, &format!("out{i}"));
        let ours = run_whole(kernel, &dem, w, h);
        let (_, valid, nodata, _) = compare(what, &ours, &oracle, *m);
        assert!(valid > w * h / 2, "{what}: too few valid pixels");
        // The outer ring (2·300 + 2·240 − 4 = 1076) plus the holes' neighbourhoods, plus
        // the plateau's interior for aspect.
        assert!(nodata >= 2 * (w + h) - 4, "{what}: {nodata} nodata");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Python: finds the highest pixel of the tile and writes a 600×600 crop around it (GeoTIFF
/// for gdaldem, raw `f32` for us); prints the crop's origin and geotransform.
const CROP: &str = r#"
import sys
import numpy as np
from osgeo import gdal
src, tif, raw, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ds = gdal.Open(src)
a = ds.GetRasterBand(1).ReadAsArray()
y, x = np.unravel_index(np.nanargmax(a), a.shape)
x0 = int(min(max(x - size // 2, 0), a.shape[1] - size))
y0 = int(min(max(y - size // 2, 0), a.shape[0] - size))
gdal.Translate(tif, ds, srcWin=[x0, y0, size, size])
crop = gdal.Open(tif)
crop.GetRasterBand(1).ReadAsArray().astype('<f4').tofile(raw)
gt = crop.GetGeoTransform()
print(x0, y0, float(a.max()), *gt)
"#;

#[test]
fn matches_gdaldem_on_the_copernicus_dem() {
    let Some(fixtures) = support::real_fixtures() else {
        eprintln!("real fixtures not present; skipping");
        return;
    };
    let src = fixtures.join("Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif");
    let dir = scratch("copernicus");
    let (tif, raw) = (dir.join("crop.tif"), dir.join("crop.f32"));
    let size = 600usize;
    let line = support::python(
        CROP,
        &[
            path_str(&src),
            path_str(&tif),
            path_str(&raw),
            &size.to_string(),
        ],
    );
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(fields.len(), 9, "crop script printed {line}");
    let gt = &fields[3..];
    eprintln!(
        "crop at ({}, {}) of the tile, peak {} m, geotransform {gt:?}",
        fields[0], fields[1], fields[2]
    );
    let dem = support::read_f32(&raw);
    assert_eq!(dem.len(), size * size);
    // 1 arc-second pixels in degrees, elevations in metres: gdaldem's -s 111120.
    let p = TerrainParams {
        pixel_width: gt[1].abs(),
        pixel_height: gt[5].abs(),
        z_factor: 1.0,
        scale: 111_120.0,
    };
    let cases: Vec<(&str, &str, Vec<&str>, Kernel<'_>, Measure)> = vec![
        (
            "copernicus hillshade",
            "hillshade",
            vec!["-s", "111120"],
            Box::new(|d, r, o| hillshade(d, r, &p, 315.0, 45.0, o)),
            Measure::Shade,
        ),
        (
            "copernicus slope",
            "slope",
            vec!["-s", "111120"],
            Box::new(|d, r, o| slope(d, r, &p, SlopeUnits::Degrees, o)),
            Measure::Linear(1e-3),
        ),
        (
            "copernicus aspect",
            "aspect",
            vec![],
            Box::new(|d, r, o| aspect(d, r, &p, o)),
            Measure::Angle(1e-3),
        ),
    ];
    for (i, (what, mode, extra, kernel, m)) in cases.iter().enumerate() {
        let oracle = gdaldem(&dir, &tif, mode, extra, &format!("out{i}"));
        let ours = run_whole(kernel, &dem, size, size);
        let (_, valid, _, _) = compare(what, &ours, &oracle, *m);
        assert!(valid > size * size / 2, "{what}: too few valid pixels");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tiles_stitch_to_the_whole_plane_bit_for_bit() {
    let (w, h) = (300usize, 240usize);
    let dem = synthetic_dem(w, h);
    let p = TerrainParams {
        z_factor: 1.7,
        ..TerrainParams::new(30.0, 25.0)
    };
    let kernels: Vec<(&str, Kernel<'_>)> = vec![
        (
            "hillshade",
            Box::new(|d, r, o| hillshade(d, r, &p, 315.0, 45.0, o)),
        ),
        (
            "slope",
            Box::new(|d, r, o| slope(d, r, &p, SlopeUnits::Degrees, o)),
        ),
        (
            "slope %",
            Box::new(|d, r, o| slope(d, r, &p, SlopeUnits::Percent, o)),
        ),
        ("aspect", Box::new(|d, r, o| aspect(d, r, &p, o))),
    ];
    // Tiles carry a halo of `r` ≥ 1 (the extra is ignored), cut from a scene padded by 3.
    let pad = 3;
    let padded = pad_nan(&dem, w, h, pad);
    let pw = w + 2 * pad;
    for (what, kernel) in &kernels {
        let whole = run_whole(kernel, &dem, w, h);
        for (tw, th, r) in [
            (1, 1, 1),
            (7, 5, 1),
            (32, 32, 2),
            (61, 13, 1),
            (w, 17, 3),
            (9, h, 1),
        ] {
            let mut stitched = vec![0.0f32; w * h];
            for ty in (0..h).step_by(th) {
                for tx in (0..w).step_by(tw) {
                    let (cw, ch) = (tw.min(w - tx), th.min(h - ty));
                    let (iw, ih) = (cw + 2 * r, ch + 2 * r);
                    let (x0, y0) = (tx + pad - r, ty + pad - r);
                    let mut input = Vec::with_capacity(iw * ih);
                    for y in y0..y0 + ih {
                        input.extend_from_slice(&padded[y * pw + x0..y * pw + x0 + iw]);
                    }
                    let mut tile = vec![0.0f32; cw * ch];
                    kernel(Plane::new(iw, ih, &input).expect("tile"), r, &mut tile).expect("tile");
                    for y in 0..ch {
                        stitched[(ty + y) * w + tx..(ty + y) * w + tx + cw]
                            .copy_from_slice(&tile[y * cw..(y + 1) * cw]);
                    }
                }
            }
            for (i, (a, b)) in stitched.iter().zip(&whole).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{what}, {tw}×{th} tiles with halo {r}: pixel {i} differs ({a} vs {b})"
                );
            }
        }
    }
}
