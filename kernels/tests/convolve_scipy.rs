//! Oracle tests for `kernels::convolve` against `scipy.ndimage`, plus tiling and nodata checks.
//!
//! Tolerances. Our kernels accumulate in `f64` and round once to `f32`; scipy works in `f64`
//! throughout. So the difference is one `f32` rounding of the result: at most half an ulp,
//! which is 6.1e-5 for values below 2048. On data in [500, 1500):
//! - box and gaussian smoothing (values < 1500): ≤ 1e-4 absolute;
//! - Sobel magnitude (values up to ~6000): ≤ 1e-7 × |value| (half an ulp is 6e-8 relative).

mod support;

use std::path::{Path, PathBuf};

use kernels::convolve::{convolve, ConvolveKind};
use kernels::Plane;
use support::Rng;

const WIDTH: usize = 257;
const HEIGHT: usize = 203;

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "constellation-convolve-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn read_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("read raw f64");
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// scipy's answer for every kind, in `f64`, over the whole plane (the border is not used).
const SCIPY: &str = r#"
import sys
import numpy as np
from scipy import ndimage
w, h, src, dst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
a = np.fromfile(src, dtype='<f4').reshape(h, w).astype(np.float64)
b3 = np.array([1.0, 2.0, 1.0]) / 4.0
b5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
res = {
    'Box3': ndimage.correlate(a, np.full((3, 3), 1.0 / 9.0), mode='nearest'),
    'Box5': ndimage.correlate(a, np.full((5, 5), 1.0 / 25.0), mode='nearest'),
    'Gaussian3': ndimage.correlate(a, np.outer(b3, b3), mode='nearest'),
    'Gaussian5': ndimage.correlate(a, np.outer(b5, b5), mode='nearest'),
    'SobelMagnitude': np.hypot(ndimage.sobel(a, axis=0, mode='nearest'),
                               ndimage.sobel(a, axis=1, mode='nearest')),
}
for k, v in res.items():
    v.astype('<f8').tofile(f'{dst}/{k}.f64')
"#;

fn run_scipy(dir: &Path, data: &[f32]) {
    let src = dir.join("in.f32");
    support::write_f32(&src, data);
    support::python(
        SCIPY,
        &[
            &WIDTH.to_string(),
            &HEIGHT.to_string(),
            src.to_str().expect("utf-8 path"),
            dir.to_str().expect("utf-8 path"),
        ],
    );
}

/// The interior of scipy's whole-plane answer: the pixels whose neighbourhood is inside.
fn scipy_interior(dir: &Path, kind: ConvolveKind) -> Vec<f64> {
    let full = read_f64(&dir.join(format!("{kind:?}.f64")));
    assert_eq!(full.len(), WIDTH * HEIGHT);
    let r = kind.halo_px();
    let mut inner = Vec::with_capacity((WIDTH - 2 * r) * (HEIGHT - 2 * r));
    for y in r..HEIGHT - r {
        inner.extend_from_slice(&full[y * WIDTH + r..(y + 1) * WIDTH - r]);
    }
    inner
}

/// Ours over the interior of the plane (the plane's own border is the halo).
fn ours_interior(kind: ConvolveKind, data: &[f32]) -> Vec<f32> {
    let r = kind.halo_px();
    let mut out = vec![0.0f32; (WIDTH - 2 * r) * (HEIGHT - 2 * r)];
    convolve(
        kind,
        Plane::new(WIDTH, HEIGHT, data).expect("plane"),
        r,
        &mut out,
    )
    .expect("convolve");
    out
}

fn tolerance(kind: ConvolveKind, oracle: f64) -> f64 {
    match kind {
        ConvolveKind::SobelMagnitude => 1e-7 * oracle.abs(),
        _ => 1e-4,
    }
}

/// Compares, with nodata (`NaN`) required in the same places; returns the largest difference.
fn compare(kind: ConvolveKind, ours: &[f32], oracle: &[f64]) -> f64 {
    assert_eq!(ours.len(), oracle.len());
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in ours.iter().zip(oracle).enumerate() {
        assert!(!a.is_infinite(), "{kind:?}: infinity at {i}");
        assert_eq!(
            a.is_nan(),
            b.is_nan(),
            "{kind:?}: nodata differs at {i}: ours {a}, scipy {b}"
        );
        if a.is_nan() {
            continue;
        }
        let d = (f64::from(a) - b).abs();
        assert!(
            d <= tolerance(kind, b),
            "{kind:?}: at {i} ours {a}, scipy {b}, difference {d}"
        );
        worst = worst.max(d);
    }
    worst
}

#[test]
fn matches_scipy_on_interior_pixels() {
    let dir = scratch("oracle");
    let data = Rng::new(0xC0FFEE).plane(WIDTH * HEIGHT, 500.0, 1500.0);
    run_scipy(&dir, &data);
    for kind in ConvolveKind::ALL {
        let ours = ours_interior(kind, &data);
        let worst = compare(kind, &ours, &scipy_interior(&dir, kind));
        eprintln!("{kind:?}: max |ours - scipy| = {worst:e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// scipy's correlate propagates `NaN` through every non-zero weight, which for box and
/// gaussian kernels is the whole neighbourhood, so nodata must land in the same places.
/// (scipy's Sobel gives the centre weight 0 and does not propagate it; see the next test.)
#[test]
fn matches_scipy_with_nodata() {
    let dir = scratch("oracle-nodata");
    let mut rng = Rng::new(7);
    let mut data = rng.plane(WIDTH * HEIGHT, 500.0, 1500.0);
    for _ in 0..60 {
        let i = (rng.next_u64() % (WIDTH * HEIGHT) as u64) as usize;
        data[i] = f32::NAN;
    }
    run_scipy(&dir, &data);
    for kind in [
        ConvolveKind::Box3,
        ConvolveKind::Box5,
        ConvolveKind::Gaussian3,
        ConvolveKind::Gaussian5,
    ] {
        let ours = ours_interior(kind, &data);
        let oracle = scipy_interior(&dir, kind);
        assert!(oracle.iter().any(|v| v.is_nan()));
        let worst = compare(kind, &ours, &oracle);
        eprintln!("{kind:?} with nodata: max |ours - scipy| = {worst:e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Any `NaN` in the (2r+1)² neighbourhood, and only that, gives `NaN` out, for every kind.
#[test]
fn nodata_propagates_to_exactly_the_neighbourhood() {
    let (w, h) = (64, 48);
    let mut rng = Rng::new(99);
    let mut data = rng.plane(w * h, -100.0, 100.0);
    for _ in 0..25 {
        let i = (rng.next_u64() % (w * h) as u64) as usize;
        data[i] = f32::NAN;
    }
    for kind in ConvolveKind::ALL {
        let r = kind.halo_px();
        let (ow, oh) = (w - 2 * r, h - 2 * r);
        let mut out = vec![0.0f32; ow * oh];
        convolve(kind, Plane::new(w, h, &data).expect("plane"), r, &mut out).expect("convolve");
        for y in 0..oh {
            for x in 0..ow {
                let any_nan = (0..=2 * r)
                    .any(|dy| (0..=2 * r).any(|dx| data[(y + dy) * w + x + dx].is_nan()));
                let v = out[y * ow + x];
                assert_eq!(v.is_nan(), any_nan, "{kind:?} at ({x}, {y}): {v}");
                assert!(!v.is_infinite());
            }
        }
    }
}

/// Pads a `w × h` plane with a `NaN` border of `r` pixels, as the engine does at scene edges.
fn pad_nan(data: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let pw = w + 2 * r;
    let mut padded = vec![f32::NAN; pw * (h + 2 * r)];
    for y in 0..h {
        padded[(y + r) * pw + r..(y + r) * pw + r + w].copy_from_slice(&data[y * w..(y + 1) * w]);
    }
    padded
}

#[test]
fn tiles_stitch_to_the_whole_plane_bit_for_bit() {
    let (w, h) = (150, 110);
    let mut rng = Rng::new(2024);
    let mut data = rng.plane(w * h, 0.0, 3000.0);
    for _ in 0..40 {
        let i = (rng.next_u64() % (w * h) as u64) as usize;
        data[i] = f32::NAN;
    }
    for kind in ConvolveKind::ALL {
        let r = kind.halo_px();
        let padded = pad_nan(&data, w, h, r);
        let pw = w + 2 * r;
        let mut whole = vec![0.0f32; w * h];
        convolve(
            kind,
            Plane::new(pw, h + 2 * r, &padded).expect("plane"),
            r,
            &mut whole,
        )
        .expect("whole");
        for (tw, th) in [(1, 1), (7, 5), (32, 32), (61, 13), (w, 17), (9, h), (w, h)] {
            let mut stitched = vec![f32::NAN; w * h];
            for ty in (0..h).step_by(th) {
                for tx in (0..w).step_by(tw) {
                    let (cw, ch) = (tw.min(w - tx), th.min(h - ty));
                    let (iw, ih) = (cw + 2 * r, ch + 2 * r);
                    let mut input = Vec::with_capacity(iw * ih);
                    for y in ty..ty + ih {
                        input.extend_from_slice(&padded[y * pw + tx..y * pw + tx + iw]);
                    }
                    let mut tile = vec![0.0f32; cw * ch];
                    convolve(
                        kind,
                        Plane::new(iw, ih, &input).expect("tile"),
                        r,
                        &mut tile,
                    )
                    .expect("tile");
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
                    "{kind:?}, {tw}×{th} tiles: pixel {i} differs ({a} vs {b})"
                );
            }
        }
        // The scene's outer ring of r pixels sees the NaN padding.
        assert!(whole[0].is_nan() && whole[w * h - 1].is_nan());
    }
}
