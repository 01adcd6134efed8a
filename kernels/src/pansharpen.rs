//! Weighted Brovey pansharpening onto the panchromatic grid, as GDAL's `WeightedBrovey`.
//!
//! For every pan pixel, with the multispectral bands already resampled onto the pan grid:
//!
//! ```text
//! pseudo_pan = Σ wᵢ · msᵢ
//! outᵢ       = msᵢ · pan / pseudo_pan
//! ```
//!
//! computed in `f64` (as GDAL does) and stored as `f32`. GDAL's default weights are `1/n` for
//! `n` spectral bands; the caller passes them explicitly.
//!
//! # Matching `gdal_pansharpen.py` (GDAL 3.6)
//!
//! GDAL resamples each MS band onto the pan grid by reading the *whole* MS raster with
//! `RasterIO` into a buffer of the pan raster's size (cubic by default), in the pan band's data
//! type — for UInt16 data the resampled MS are rounded to integers before the Brovey step.
//! That is bit for bit `gdal_translate -outsize PAN_W PAN_H -r cubic ms.tif` (checked against
//! the values GDAL uses internally on the Landsat 8 fixture). It maps the MS extent onto the pan
//! extent by pixel counts: a georeferencing offset between the grids (Landsat's half pan pixel)
//! is not applied. To reproduce GDAL, the engine resamples the MS that way and rounds them to
//! the pan's integer type; the georeferenced alternative is [`crate::warp`] with an affine mesh.
//!
//! Differences from GDAL 3.6 (`GDALPansharpenOperation::WeightedBrovey*`), all at the edges of
//! the domain:
//! - `pseudo_pan == 0`: GDAL without a NoData value uses a factor of 0 and writes `0`; with a
//!   NoData value it writes NoData. Here the result is `NaN` (nodata) in every band.
//! - nodata: GDAL with a NoData value writes NoData when the pan or any spectral value equals
//!   it. Here a `NaN` pan or spectral value gives `NaN` in every band (the same rule).
//! - range: GDAL computes in the pan band's data type and clamps (`min(value, 2^bitdepth - 1)`
//!   or the type's maximum, negative values to 0) and rounds half up when writing integers.
//!   This kernel neither clamps nor rounds: the writer converts to the output data type.
//! - A result that is not finite (an overflow) is written as `NaN`.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::{Plane, PIXELS_PER_TASK};

/// The most spectral bands one call takes (GDAL's usual cases are 3 or 4).
pub const MAX_BANDS: usize = 16;

/// Weighted Brovey pansharpening of `ms` (each already on the pan grid, same shape as `pan`)
/// with `weights` (one per band, finite), writing band `i` into `out[i]`.
///
/// A pixel whose pan or any spectral value is `NaN`, or whose pseudo-pan is 0, is `NaN` in
/// every output band.
pub fn weighted_brovey(
    pan: Plane,
    ms: &[Plane],
    weights: &[f32],
    out: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    let n = ms.len();
    if n == 0 || n > MAX_BANDS {
        return Err(KernelError::InvalidParam {
            name: "ms",
            reason: format!("needs 1 to {MAX_BANDS} spectral bands, got {n}"),
        });
    }
    if weights.len() != n {
        return Err(KernelError::InvalidParam {
            name: "weights",
            reason: format!(
                "needs one weight per spectral band ({n}), got {}",
                weights.len()
            ),
        });
    }
    if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
        return Err(KernelError::InvalidParam {
            name: "weights",
            reason: format!("weights must be finite, got {w}"),
        });
    }
    if out.len() != n {
        return Err(KernelError::InvalidParam {
            name: "out",
            reason: format!(
                "needs one output band per spectral band ({n}), got {}",
                out.len()
            ),
        });
    }
    let len = pan.width_px * pan.height_px;
    check_len("pansharpen pan", len, pan.data.len())?;
    for band in ms {
        if band.width_px != pan.width_px || band.height_px != pan.height_px {
            return Err(KernelError::InvalidParam {
                name: "ms",
                reason: format!(
                    "spectral bands must be on the pan grid ({}x{}), got {}x{}",
                    pan.width_px, pan.height_px, band.width_px, band.height_px
                ),
            });
        }
        check_len("pansharpen ms", len, band.data.len())?;
    }
    for band in out.iter() {
        check_len("pansharpen output", len, band.len())?;
    }

    let mut w64 = [0.0f64; MAX_BANDS];
    for (dst, w) in w64.iter_mut().zip(weights) {
        *dst = f64::from(*w);
    }
    let ms_data: Vec<&[f32]> = ms.iter().map(|p| p.data).collect();

    // Split every output band into the same chunks and hand chunk `c` of all bands to one task.
    let mut tasks: Vec<Vec<&mut [f32]>> = Vec::new();
    for band in out.iter_mut() {
        for (c, chunk) in band.chunks_mut(PIXELS_PER_TASK).enumerate() {
            if tasks.len() <= c {
                tasks.push(Vec::with_capacity(n));
            }
            tasks[c].push(chunk);
        }
    }
    tasks
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut bands)| {
            let start = c * PIXELS_PER_TASK;
            let count = bands.first().map_or(0, |b| b.len());
            let pan_chunk = &pan.data[start..start + count];
            let mut vals = [0.0f64; MAX_BANDS];
            for (k, &p) in pan_chunk.iter().enumerate() {
                let px = start + k;
                let mut pseudo = 0.0f64;
                let mut valid = !p.is_nan();
                for b in 0..n {
                    let v = ms_data[b][px];
                    valid &= !v.is_nan();
                    vals[b] = f64::from(v);
                    pseudo += w64[b] * vals[b];
                }
                if !valid || pseudo == 0.0 {
                    for band in bands.iter_mut() {
                        band[k] = f32::NAN;
                    }
                    continue;
                }
                let factor = f64::from(p) / pseudo;
                for (band, v) in bands.iter_mut().zip(&vals[..n]) {
                    let r = (v * factor) as f32;
                    band[k] = if r.is_finite() { r } else { f32::NAN };
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brovey_matches_formula() {
        let pan = [100.0f32, 50.0, 0.0, 10.0];
        let r = [10.0f32, 20.0, 5.0, 0.0];
        let g = [20.0f32, 20.0, 5.0, 0.0];
        let b = [30.0f32, f32::NAN, 5.0, 0.0];
        let planes: Vec<Plane> = [&r[..], &g[..], &b[..]]
            .iter()
            .map(|d| Plane::new(2, 2, d).unwrap())
            .collect();
        let w = [1.0 / 3.0; 3];
        let (mut o0, mut o1, mut o2) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
        let mut out: Vec<&mut [f32]> = vec![&mut o0, &mut o1, &mut o2];
        weighted_brovey(Plane::new(2, 2, &pan).unwrap(), &planes, &w, &mut out).unwrap();
        // pseudo = 20 → factor 5.
        assert!((o0[0] - 50.0).abs() < 1e-4 && (o1[0] - 100.0).abs() < 1e-4);
        assert!((o2[0] - 150.0).abs() < 1e-4);
        // NaN input → NaN everywhere.
        assert!(o0[1].is_nan() && o1[1].is_nan() && o2[1].is_nan());
        // pan 0 → 0.
        assert_eq!(o0[2], 0.0);
        // pseudo-pan 0 → NaN.
        assert!(o0[3].is_nan() && o2[3].is_nan());
    }

    #[test]
    fn rejects_mismatches() {
        let d = [1.0f32; 4];
        let pan = Plane::new(2, 2, &d).unwrap();
        let ms = [pan, pan];
        let mut a = vec![0.0; 4];
        let mut b = vec![0.0; 4];
        let mut out: Vec<&mut [f32]> = vec![&mut a, &mut b];
        assert!(weighted_brovey(pan, &ms, &[0.5], &mut out).is_err());
        assert!(weighted_brovey(pan, &ms, &[0.5, f32::NAN], &mut out).is_err());
        assert!(weighted_brovey(pan, &ms[..1], &[1.0], &mut out).is_err());
        let small = Plane::new(1, 4, &d).unwrap();
        assert!(weighted_brovey(pan, &[small, pan], &[0.5, 0.5], &mut out).is_err());
        assert!(weighted_brovey(pan, &ms, &[0.5, 0.5], &mut out).is_ok());
    }

    #[test]
    fn large_plane_uses_all_chunks() {
        let len = PIXELS_PER_TASK * 2 + 17;
        let pan: Vec<f32> = (0..len).map(|i| (i % 97) as f32 + 1.0).collect();
        let ms: Vec<f32> = (0..len).map(|i| (i % 13) as f32 + 2.0).collect();
        let mut o = vec![0.0; len];
        let mut out: Vec<&mut [f32]> = vec![&mut o];
        let p = Plane::new(len, 1, &pan).unwrap();
        let m = Plane::new(len, 1, &ms).unwrap();
        weighted_brovey(p, &[m], &[1.0], &mut out).unwrap();
        for (a, b) in o.iter().zip(&pan) {
            assert!((a - b).abs() < 1e-3);
        }
    }
}
