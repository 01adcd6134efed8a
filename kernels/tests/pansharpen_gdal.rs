//! `weighted_brovey` against GDAL 3.6's `gdal_pansharpen.py` (algorithm `WeightedBrovey`,
//! default cubic resampling) on the real Landsat 8 pan/MS crop and on a synthetic pair.
//!
//! How GDAL 3.6 resamples the MS bands: it reads each whole MS band with `RasterIO` into a
//! buffer of the pan raster's size with cubic resampling, in the pan band's data type
//! (UInt16, so rounded). That is exactly `gdal_translate -outsize PAN_W PAN_H -r cubic ms.tif`:
//! the script checks it bit for bit against the MS that GDAL itself used, extracted by
//! pansharpening a constant pan `K` with the spectral bands `[ms, constant K]` and weights
//! `[0, 1]`, so that `out₀ = ms_up · K / K = ms_up`. (On the real crop, whose pan origin is
//! shifted by half a pan pixel from the MS origin, GDAL 3.6 does not apply that shift: the MS
//! extent is mapped onto the pan extent by pixel counts.)
//!
//! The kernel gets the pan and those GDAL-resampled MS as `f32`. GDAL writes UInt16
//! (`min(trunc(v + 0.5), 65535)` from an `f64` `v`), the kernel unrounded `f32`, so the
//! tolerance is 0.5 DN plus the `f32` rounding of `v` (≤ 0.004 at 65535): `|ours − gdal| ≤
//! 0.51` after clamping ours to 65535, on every pixel (no border excluded, since both sides
//! use the same resampled MS). Rounding ours half up gives GDAL's DN except where `v` lies
//! within 0.01 of a half DN and its `f32` rounding crossed it (≤ 0.2 % of values; measured
//! 425 of 4.5 M on the real crop). The script also recomputes GDAL's output in numpy from the
//! resampled MS and requires zero mismatches. Where the pseudo-pan is 0 GDAL (no NoData set)
//! writes 0 and the kernel `NaN`: those pixels must be 0 in GDAL's output.

mod support;

use std::path::{Path, PathBuf};

use kernels::pansharpen::weighted_brovey;
use kernels::Plane;

const SCRIPT: &str = r#"
import sys, json, subprocess
import numpy as np
from osgeo import gdal
gdal.UseExceptions()
outdir, weights, pan_path = sys.argv[1], sys.argv[2], sys.argv[3]
ms_paths = sys.argv[4:]
pan = gdal.Open(pan_path)
PW, PH = pan.RasterXSize, pan.RasterYSize
wargs = []
for w in [w for w in weights.split(',') if w]:
    wargs += ['-w', w]
subprocess.check_call(['gdal_pansharpen.py', '-q', *wargs, pan_path, *ms_paths, outdir + '/ps.tif'])
gps = gdal.Open(outdir + '/ps.tif').ReadAsArray().astype(np.float64)
gps = gps.reshape(len(ms_paths), PH, PW)
pan.GetRasterBand(1).ReadAsArray().astype('<f4').tofile(outdir + '/pan.bin')
# GDAL's own upsampled MS, band by band: constant pan K, spectral [ms, constant K], weights 0, 1.
K = 10000
def const(name, ref):
    d = gdal.GetDriverByName('GTiff').Create(name, ref.RasterXSize, ref.RasterYSize, 1, gdal.GDT_UInt16)
    d.SetGeoTransform(ref.GetGeoTransform()); d.SetProjection(ref.GetProjection())
    d.GetRasterBand(1).WriteArray(np.full((ref.RasterYSize, ref.RasterXSize), K, np.uint16)); d = None
const(outdir + '/kpan.tif', pan)
ups, extracted_mismatch = [], 0
for i, m in enumerate(ms_paths):
    const(outdir + '/kms.tif', gdal.Open(m))
    subprocess.check_call(['gdal_pansharpen.py', '-q', '-w', '0', '-w', '1', outdir + '/kpan.tif', m,
                           outdir + '/kms.tif', outdir + '/up.tif'])
    ds = gdal.Open(outdir + '/up.tif')  # keep the dataset alive while its band is read
    extracted = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
    subprocess.check_call(['gdal_translate', '-q', '-outsize', str(PW), str(PH), '-r', 'cubic', m,
                           outdir + '/tr.tif'])
    ds = gdal.Open(outdir + '/tr.tif')
    up = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
    ds = None
    extracted_mismatch += int((up != extracted).sum())
    up.astype('<f4').tofile(f'{outdir}/ms{i}.bin')
    gps[i].astype('<f4').tofile(f'{outdir}/gdal{i}.bin')
    ups.append(up)
# GDAL's formula in numpy from the resampled MS.
n = len(ms_paths)
w = [float(v) for v in weights.split(',') if v] or [1.0 / n] * n
p = pan.GetRasterBand(1).ReadAsArray().astype(np.float64)
pseudo = sum(wi * u for wi, u in zip(w, ups))
with np.errstate(divide='ignore', invalid='ignore'):
    factor = np.where(pseudo != 0, p / pseudo, 0.0)
numpy_mismatch = 0
for i in range(n):
    o = np.minimum(np.floor(ups[i] * factor + 0.5), 65535)
    numpy_mismatch += int((o != gps[i]).sum())
print(json.dumps({'w': PW, 'h': PH, 'bands': n, 'extracted_mismatch': extracted_mismatch,
                  'numpy_mismatch': numpy_mismatch, 'zero_pseudo': int((pseudo == 0).sum())}))
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "constellation-pansharpen-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
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

/// Runs GDAL on `pan` and `ms`, runs the kernel on GDAL's resampled MS, and compares.
fn check(dir: &Path, what: &str, pan: &Path, ms: &[PathBuf], weights: &[f32]) {
    let weight_arg = weights
        .iter()
        .map(|w| format!("{w}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        dir.to_str().expect("utf-8 path").to_string(),
        weight_arg,
        pan.to_str().expect("utf-8 path").to_string(),
    ];
    args.extend(
        ms.iter()
            .map(|p| p.to_str().expect("utf-8 path").to_string()),
    );
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = support::python(SCRIPT, &arg_refs);
    let (w, h, n) = (
        json_usize(&out, "w"),
        json_usize(&out, "h"),
        json_usize(&out, "bands"),
    );
    assert_eq!(
        json_usize(&out, "extracted_mismatch"),
        0,
        "{what}: gdal_translate -outsize -r cubic is not GDAL's pansharpen resampling"
    );
    assert_eq!(
        json_usize(&out, "numpy_mismatch"),
        0,
        "{what}: numpy Brovey differs from GDAL"
    );
    let zero_pseudo = json_usize(&out, "zero_pseudo");

    let pan_data = support::read_f32(&dir.join("pan.bin"));
    let ms_data: Vec<Vec<f32>> = (0..n)
        .map(|i| support::read_f32(&dir.join(format!("ms{i}.bin"))))
        .collect();
    let gdal: Vec<Vec<f32>> = (0..n)
        .map(|i| support::read_f32(&dir.join(format!("gdal{i}.bin"))))
        .collect();
    let weights: Vec<f32> = if weights.is_empty() {
        vec![1.0 / n as f32; n]
    } else {
        weights.to_vec()
    };
    let pan_plane = Plane::new(w, h, &pan_data).expect("pan plane");
    let ms_planes: Vec<Plane> = ms_data
        .iter()
        .map(|d| Plane::new(w, h, d).expect("ms plane"))
        .collect();
    let mut outs: Vec<Vec<f32>> = vec![vec![0.0; w * h]; n];
    let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    weighted_brovey(pan_plane, &ms_planes, &weights, &mut out_refs).expect("weighted_brovey");

    let (mut worst, mut round_diff, mut nan_px) = (0.0f32, 0usize, 0usize);
    for b in 0..n {
        for (i, (&ours, &theirs)) in outs[b].iter().zip(&gdal[b]).enumerate() {
            assert!(!ours.is_infinite(), "{what}: infinity in band {b} at {i}");
            if ours.is_nan() {
                // Pseudo-pan 0: GDAL (no NoData) writes 0.
                assert_eq!(
                    theirs, 0.0,
                    "{what}: band {b} px {i}: ours NaN, GDAL {theirs}"
                );
                nan_px += 1;
                continue;
            }
            let clamped = ours.min(65535.0);
            let d = (clamped - theirs).abs();
            assert!(
                d <= 0.51,
                "{what}: band {b} px {i}: ours {ours}, GDAL {theirs}"
            );
            worst = worst.max(d);
            if (clamped + 0.5).floor() != theirs {
                // Only where the f64 value sits at a half DN and its f32 rounding crossed it.
                let frac = clamped - clamped.floor();
                assert!(
                    (frac - 0.5).abs() < 0.01,
                    "{what}: band {b} px {i}: ours {ours} rounds away from GDAL {theirs}"
                );
                round_diff += 1;
            }
        }
    }
    println!(
        "{what}: {w}x{h}x{n}, max |ours − GDAL| {worst} DN, {round_diff} px round differently, \
         {nan_px} NaN band-px (pseudo-pan 0 px: {zero_pseudo})"
    );
    assert_eq!(
        nan_px,
        zero_pseudo * n,
        "{what}: NaN only where the pseudo-pan is 0"
    );
    assert!(
        round_diff * 500 <= w * h * n,
        "{what}: {round_diff} rounding differences"
    );
}

#[test]
fn real_landsat8_matches_gdal_pansharpen() {
    let Some(real) = support::real_fixtures() else {
        println!("real fixtures absent; skipped");
        return;
    };
    let dir = scratch("l8");
    let ms: Vec<PathBuf> = ["l8_B4.tif", "l8_B3.tif", "l8_B2.tif"]
        .iter()
        .map(|f| real.join(f))
        .collect();
    check(&dir, "l8 B8 + B4/B3/B2", &real.join("l8_B8.tif"), &ms, &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 240×200 pan and three 120×100 MS bands (UInt16), with a patch where every MS band is 0
/// (pseudo-pan 0 in its middle), and non-default weights.
#[test]
fn synthetic_pair_matches_gdal_pansharpen() {
    let dir = scratch("synth");
    let (pw, ph) = (240usize, 200usize);
    let (mw, mh) = (pw / 2, ph / 2);
    let mut rng = support::Rng::new(0xB40E_7001);
    let field = |x: f32, y: f32, k: f32| 8000.0 + 5000.0 * (x * 0.05 * k).sin() * (y * 0.04).cos();
    let pan: Vec<f32> = (0..pw * ph)
        .map(|i| {
            let (x, y) = ((i % pw) as f32, (i / pw) as f32);
            (field(x / 2.0, y / 2.0, 1.0) * 1.5 + rng.uniform(-300.0, 300.0)).round()
        })
        .collect();
    let mut bands = Vec::new();
    for k in 0..3 {
        let band: Vec<f32> = (0..mw * mh)
            .map(|i| {
                let (x, y) = ((i % mw) as f32, (i / mw) as f32);
                if (40..52).contains(&(i % mw)) && (30..42).contains(&(i / mw)) {
                    0.0
                } else {
                    (field(x, y, 1.0 + k as f32 * 0.3) + rng.uniform(-200.0, 200.0)).round()
                }
            })
            .collect();
        bands.push(band);
    }
    // Write UInt16 GeoTIFFs: pan 15 m, MS 30 m, same origin (UTM 16N).
    for (name, data, w, h, res) in std::iter::once(("pan", &pan, pw, ph, 15.0)).chain(
        bands
            .iter()
            .enumerate()
            .map(|(k, b)| (["ms0", "ms1", "ms2"][k], b, mw, mh, 30.0)),
    ) {
        support::write_f32(&dir.join(format!("{name}.raw")), data);
        support::python(
            "import sys, numpy as np\nfrom osgeo import gdal, osr\n\
             d, name, w, h, res = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])\n\
             a = np.fromfile(f'{d}/{name}.raw', '<f4').reshape(h, w)\n\
             t = gdal.GetDriverByName('GTiff').Create(f'{d}/{name}.tif', w, h, 1, gdal.GDT_UInt16)\n\
             t.SetGeoTransform((450000.0, res, 0.0, 3400000.0, 0.0, -res)); s = osr.SpatialReference(); s.ImportFromEPSG(32616); t.SetProjection(s.ExportToWkt())\n\
             t.GetRasterBand(1).WriteArray(a.astype(np.uint16)); t = None\n",
            &[dir.to_str().expect("utf-8 path"), name, &w.to_string(), &h.to_string(), &res.to_string()],
        );
    }
    let ms: Vec<PathBuf> = (0..3).map(|k| dir.join(format!("ms{k}.tif"))).collect();
    check(
        &dir,
        "synthetic",
        &dir.join("pan.tif"),
        &ms,
        &[0.5, 0.3, 0.2],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
