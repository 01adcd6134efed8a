//! Small fixed 2-D convolutions: box and binomial (gaussian) smoothing, and the Sobel gradient
//! magnitude.
//!
//! Every kernel here is a correlation (the weights are applied as written, not flipped; all of
//! them are symmetric or used through a magnitude, so it makes no difference). The input carries
//! a halo of `halo_px` pixels on every side and the output is the inner window. Any `NaN` in a
//! pixel's neighbourhood makes that pixel `NaN`. The arithmetic is done in `f64` and rounded
//! once to `f32`, in an order that depends only on the neighbourhood, so a tiled run equals a
//! whole-scene run bit for bit.
//!
//! The smoothing kernels are separable: a vertical pass over the `2k + 1` input rows of an output
//! row into a scratch row, then a horizontal pass over that scratch row. Both passes are
//! element-wise loops over whole rows, which the compiler vectorises.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::{rows_per_task, Plane};

/// Which convolution to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvolveKind {
    /// 3×3 mean.
    Box3,
    /// 5×5 mean.
    Box5,
    /// 3×3 binomial smoothing: the outer product of `[1 2 1] / 4` with itself.
    Gaussian3,
    /// 5×5 binomial smoothing: the outer product of `[1 4 6 4 1] / 16` with itself.
    Gaussian5,
    /// `hypot(gx, gy)` of the 3×3 Sobel responses, `gx = [1 2 1]ᵀ ⊗ [-1 0 1]` and
    /// `gy = [-1 0 1]ᵀ ⊗ [1 2 1]`, unnormalised (as `scipy.ndimage.sobel`).
    SobelMagnitude,
}

impl ConvolveKind {
    /// All kinds, for tests and catalogs.
    pub const ALL: [ConvolveKind; 5] = [
        ConvolveKind::Box3,
        ConvolveKind::Box5,
        ConvolveKind::Gaussian3,
        ConvolveKind::Gaussian5,
        ConvolveKind::SobelMagnitude,
    ];

    /// The halo (kernel radius) this kind needs on every side of the output window.
    pub const fn halo_px(self) -> usize {
        match self {
            ConvolveKind::Box3 | ConvolveKind::Gaussian3 | ConvolveKind::SobelMagnitude => 1,
            ConvolveKind::Box5 | ConvolveKind::Gaussian5 => 2,
        }
    }
}

/// The inner window of a plane with a halo of `halo_px` on every side: `(width, height)`.
///
/// Checks that `input` holds as many values as its dimensions say and that it is at least
/// `2 * halo_px` wide and tall.
pub(crate) fn inner_dims(input: &Plane<'_>, halo_px: usize) -> Result<(usize, usize), KernelError> {
    check_len(
        "input plane",
        input.width_px * input.height_px,
        input.data.len(),
    )?;
    let margin = 2 * halo_px;
    if input.width_px < margin || input.height_px < margin {
        return Err(KernelError::InvalidParam {
            name: "halo_px",
            reason: format!(
                "an input of {}×{} px cannot carry a halo of {halo_px} px on every side",
                input.width_px, input.height_px
            ),
        });
    }
    Ok((input.width_px - margin, input.height_px - margin))
}

/// `NaN` for anything that is not a finite number, so overflow never leaks out as `±Inf`.
#[inline(always)]
fn finite_or_nan(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        f32::NAN
    }
}

/// Convolves `input` (with a halo of `halo_px ≥ kind.halo_px()` on every side) into `out`,
/// which receives the inner window: `(input.width_px - 2·halo_px) × (input.height_px -
/// 2·halo_px)` pixels, row-major.
///
/// A halo wider than the kernel needs is allowed; the extra border is ignored.
pub fn convolve(
    kind: ConvolveKind,
    input: Plane<'_>,
    halo_px: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let need = kind.halo_px();
    if halo_px < need {
        return Err(KernelError::InvalidParam {
            name: "halo_px",
            reason: format!("{kind:?} needs a halo of at least {need} px, got {halo_px}"),
        });
    }
    let (width, height) = inner_dims(&input, halo_px)?;
    check_len("convolve output", width * height, out.len())?;
    if width == 0 || height == 0 {
        return Ok(());
    }
    // Offset of the kernel's own support window inside the given halo.
    let skip = halo_px - need;
    match kind {
        ConvolveKind::Box3 => separable::<3>(input, skip, width, [1.0; 3], 1.0 / 9.0, out),
        ConvolveKind::Box5 => separable::<5>(input, skip, width, [1.0; 5], 1.0 / 25.0, out),
        ConvolveKind::Gaussian3 => {
            separable::<3>(input, skip, width, [1.0, 2.0, 1.0], 1.0 / 16.0, out)
        }
        ConvolveKind::Gaussian5 => separable::<5>(
            input,
            skip,
            width,
            [1.0, 4.0, 6.0, 4.0, 1.0],
            1.0 / 256.0,
            out,
        ),
        ConvolveKind::SobelMagnitude => sobel_magnitude(input, skip, width, out),
    }
    Ok(())
}

/// A separable `N×N` kernel `weights ⊗ weights · norm`, with `N = 2k + 1`.
///
/// `skip` is how far the kernel's support window starts inside the input (the part of the halo
/// it does not need).
fn separable<const N: usize>(
    input: Plane<'_>,
    skip: usize,
    width: usize,
    weights: [f64; N],
    norm: f64,
    out: &mut [f32],
) {
    // Columns of the input that the horizontal pass reads for one output row.
    let span = width + N - 1;
    let rows = rows_per_task(width);
    out.par_chunks_mut(width * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            let mut vert = vec![0.0f64; span];
            let mut horiz = vec![0.0f64; width];
            for (i, out_row) in chunk.chunks_exact_mut(width).enumerate() {
                let y = task * rows + i;
                // Vertical pass: vert[x] = Σ_k w_k · in[y + skip + k][skip + x].
                for (k, &wk) in weights.iter().enumerate() {
                    let src = &input.row(y + skip + k)[skip..skip + span];
                    if k == 0 {
                        for (v, &s) in vert.iter_mut().zip(src) {
                            *v = wk * f64::from(s);
                        }
                    } else {
                        for (v, &s) in vert.iter_mut().zip(src) {
                            *v += wk * f64::from(s);
                        }
                    }
                }
                // Horizontal pass: horiz[x] = Σ_j w_j · vert[x + j].
                for (j, &wj) in weights.iter().enumerate() {
                    let src = &vert[j..j + width];
                    if j == 0 {
                        for (h, &s) in horiz.iter_mut().zip(src) {
                            *h = wj * s;
                        }
                    } else {
                        for (h, &s) in horiz.iter_mut().zip(src) {
                            *h += wj * s;
                        }
                    }
                }
                for (o, &h) in out_row.iter_mut().zip(horiz.iter()) {
                    *o = finite_or_nan((h * norm) as f32);
                }
            }
        });
}

/// `hypot` of the 3×3 Sobel responses. The centre pixel has weight 0 in both responses, so its
/// `NaN` is propagated explicitly.
fn sobel_magnitude(input: Plane<'_>, skip: usize, width: usize, out: &mut [f32]) {
    let span = width + 2;
    let rows = rows_per_task(width);
    out.par_chunks_mut(width * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            // smooth[x] = in[y-1][x] + 2·in[y][x] + in[y+1][x]; diff[x] = in[y+1][x] - in[y-1][x].
            let mut smooth = vec![0.0f64; span];
            let mut diff = vec![0.0f64; span];
            for (i, out_row) in chunk.chunks_exact_mut(width).enumerate() {
                let y = task * rows + i;
                let top = &input.row(y + skip)[skip..skip + span];
                let mid = &input.row(y + skip + 1)[skip..skip + span];
                let bot = &input.row(y + skip + 2)[skip..skip + span];
                for x in 0..span {
                    let (t, m, b) = (f64::from(top[x]), f64::from(mid[x]), f64::from(bot[x]));
                    smooth[x] = t + 2.0 * m + b;
                    diff[x] = b - t;
                }
                let (s0, s2) = (&smooth[..width], &smooth[2..span]);
                let (d0, d1, d2) = (&diff[..width], &diff[1..width + 1], &diff[2..span]);
                let centre = &mid[1..width + 1];
                for x in 0..width {
                    let gx = s2[x] - s0[x];
                    let gy = d0[x] + 2.0 * d1[x] + d2[x];
                    let mag = (gx * gx + gy * gy).sqrt() as f32;
                    out_row[x] = if centre[x].is_nan() {
                        f32::NAN
                    } else {
                        finite_or_nan(mag)
                    };
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward per-pixel reference: the full 2-D weight matrix, `f64`.
    fn naive(kind: ConvolveKind, w: usize, h: usize, data: &[f32]) -> Vec<f32> {
        let r = kind.halo_px();
        let (ow, oh) = (w - 2 * r, h - 2 * r);
        let at = |x: usize, y: usize| f64::from(data[y * w + x]);
        let mut out = vec![0.0f32; ow * oh];
        for y in 0..oh {
            for x in 0..ow {
                let mut any_nan = false;
                for dy in 0..=2 * r {
                    for dx in 0..=2 * r {
                        any_nan |= at(x + dx, y + dy).is_nan();
                    }
                }
                let v = match kind {
                    ConvolveKind::SobelMagnitude => {
                        let kx = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]];
                        let ky = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]];
                        let (mut gx, mut gy) = (0.0, 0.0);
                        for (dy, (rx, ry)) in kx.iter().zip(&ky).enumerate() {
                            for (dx, (wx, wy)) in rx.iter().zip(ry).enumerate() {
                                gx += wx * at(x + dx, y + dy);
                                gy += wy * at(x + dx, y + dy);
                            }
                        }
                        (gx * gx + gy * gy).sqrt()
                    }
                    _ => {
                        let wts: &[f64] = match kind {
                            ConvolveKind::Box3 => &[1.0 / 3.0; 3],
                            ConvolveKind::Box5 => &[1.0 / 5.0; 5],
                            ConvolveKind::Gaussian3 => &[0.25, 0.5, 0.25],
                            _ => &[1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0],
                        };
                        let mut s = 0.0;
                        for (dy, wy) in wts.iter().enumerate() {
                            for (dx, wx) in wts.iter().enumerate() {
                                s += wy * wx * at(x + dx, y + dy);
                            }
                        }
                        s
                    }
                };
                out[y * ow + x] = if any_nan { f32::NAN } else { v as f32 };
            }
        }
        out
    }

    fn test_data(w: usize, h: usize) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                (x * 0.37).sin() * 40.0 + y * 1.5 + ((i * 7919) % 13) as f32
            })
            .collect()
    }

    #[test]
    fn matches_naive_reference() {
        let (w, h) = (23, 17);
        let mut data = test_data(w, h);
        data[5 * w + 7] = f32::NAN;
        data[12 * w + 18] = f32::NAN;
        for kind in ConvolveKind::ALL {
            let r = kind.halo_px();
            let mut out = vec![0.0f32; (w - 2 * r) * (h - 2 * r)];
            convolve(kind, Plane::new(w, h, &data).unwrap(), r, &mut out).unwrap();
            let want = naive(kind, w, h, &data);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert_eq!(a.is_nan(), b.is_nan(), "{kind:?} nodata at {i}");
                if !a.is_nan() {
                    assert!(
                        (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                        "{kind:?} at {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn constant_plane_is_preserved_and_has_no_gradient() {
        let data = vec![123.25f32; 12 * 9];
        for kind in ConvolveKind::ALL {
            let r = kind.halo_px();
            let mut out = vec![0.0f32; (12 - 2 * r) * (9 - 2 * r)];
            convolve(kind, Plane::new(12, 9, &data).unwrap(), r, &mut out).unwrap();
            let want = if kind == ConvolveKind::SobelMagnitude {
                0.0
            } else {
                123.25
            };
            assert!(out.iter().all(|&v| v == want), "{kind:?}: {out:?}");
        }
    }

    #[test]
    fn sobel_of_a_ramp() {
        // z = 3x + 4y: gx = 8·3, gy = 8·4, magnitude 40.
        let (w, h) = (6, 5);
        let data: Vec<f32> = (0..w * h)
            .map(|i| 3.0 * (i % w) as f32 + 4.0 * (i / w) as f32)
            .collect();
        let mut out = vec![0.0f32; 4 * 3];
        convolve(
            ConvolveKind::SobelMagnitude,
            Plane::new(w, h, &data).unwrap(),
            1,
            &mut out,
        )
        .unwrap();
        assert!(out.iter().all(|&v| v == 40.0), "{out:?}");
    }

    #[test]
    fn centre_nan_propagates_through_sobel() {
        let mut data = vec![1.0f32; 9];
        data[4] = f32::NAN;
        let mut out = [0.0f32];
        convolve(
            ConvolveKind::SobelMagnitude,
            Plane::new(3, 3, &data).unwrap(),
            1,
            &mut out,
        )
        .unwrap();
        assert!(out[0].is_nan());
    }

    #[test]
    fn wider_halo_is_ignored() {
        let (w, h) = (15, 13);
        let data = test_data(w, h);
        for kind in ConvolveKind::ALL {
            let r = kind.halo_px();
            let mut tight = vec![0.0f32; (w - 2 * r) * (h - 2 * r)];
            convolve(kind, Plane::new(w, h, &data).unwrap(), r, &mut tight).unwrap();
            let big = r + 2;
            let mut wide = vec![0.0f32; (w - 2 * big) * (h - 2 * big)];
            convolve(kind, Plane::new(w, h, &data).unwrap(), big, &mut wide).unwrap();
            let tw = w - 2 * r;
            for y in 0..h - 2 * big {
                for x in 0..w - 2 * big {
                    let a = wide[y * (w - 2 * big) + x];
                    let b = tight[(y + 2) * tw + x + 2];
                    assert_eq!(a.to_bits(), b.to_bits(), "{kind:?} ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn overflow_becomes_nodata() {
        let data = vec![f32::MAX; 9];
        let mut out = [0.0f32];
        convolve(
            ConvolveKind::Box3,
            Plane::new(3, 3, &data).unwrap(),
            1,
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0], f32::MAX);
        let mut data = vec![f32::MAX; 9];
        for v in data.iter_mut().step_by(3) {
            *v = -f32::MAX;
        }
        convolve(
            ConvolveKind::SobelMagnitude,
            Plane::new(3, 3, &data).unwrap(),
            1,
            &mut out,
        )
        .unwrap();
        assert!(out[0].is_nan());
    }

    #[test]
    fn rejects_bad_shapes() {
        let data = vec![0.0f32; 16];
        let plane = Plane::new(4, 4, &data).unwrap();
        let mut out = vec![0.0f32; 4];
        assert!(convolve(ConvolveKind::Box5, plane, 1, &mut out).is_err());
        assert!(convolve(ConvolveKind::Box5, plane, 3, &mut out).is_err());
        assert!(convolve(ConvolveKind::Box3, plane, 1, &mut out[..3]).is_err());
        assert!(convolve(ConvolveKind::Box3, plane, 1, &mut out).is_ok());
        let bad = Plane {
            width_px: 5,
            height_px: 4,
            data: &data,
        };
        assert!(convolve(ConvolveKind::Box3, bad, 1, &mut out).is_err());
        let mut empty: [f32; 0] = [];
        assert!(convolve(ConvolveKind::Box5, plane, 2, &mut empty).is_ok());
    }
}
