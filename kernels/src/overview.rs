//! Overview pyramids: 2× downsampling by the mean of the valid pixels of each 2×2 block.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::rows_per_task;

/// Halves a `width_px` × `height_px` plane to `ceil(w/2)` × `ceil(h/2)`: each output pixel is
/// the mean of the valid (non-`NaN`) pixels of its 2×2 block (1×2, 2×1 or 1×1 at odd edges);
/// nodata when the block has none. Returns the output and its size.
pub fn halve_mean(
    data: &[f32],
    width_px: usize,
    height_px: usize,
) -> Result<(Vec<f32>, usize, usize), KernelError> {
    check_len("halve_mean input", width_px * height_px, data.len())?;
    let (w2, h2) = (width_px.div_ceil(2), height_px.div_ceil(2));
    let mut out = vec![0.0f32; w2 * h2];
    if out.is_empty() {
        return Ok((out, w2, h2));
    }
    let rows = rows_per_task(w2);
    out.par_chunks_mut(w2 * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (r, row) in chunk.chunks_mut(w2).enumerate() {
                let y0 = 2 * (task * rows + r);
                let y1 = (y0 + 1).min(height_px - 1);
                let (a, b) = (
                    &data[y0 * width_px..(y0 + 1) * width_px],
                    &data[y1 * width_px..(y1 + 1) * width_px],
                );
                let second_row = y1 != y0;
                // Full 2×2 blocks, branch-free (so it vectorizes): NaN adds 0 and counts 0.
                // The sum runs in the same order as the general loop below and adding +0.0
                // changes nothing, so both give the same bits.
                let full = if second_row { width_px / 2 } else { 0 };
                for ((o, pa), pb) in row[..full]
                    .iter_mut()
                    .zip(a.chunks_exact(2))
                    .zip(b.chunks_exact(2))
                {
                    let (mut sum, mut n) = (0.0f32, 0.0f32);
                    for v in [pa[0], pa[1], pb[0], pb[1]] {
                        let valid = !v.is_nan();
                        sum += if valid { v } else { 0.0 };
                        n += if valid { 1.0 } else { 0.0 };
                    }
                    *o = if n == 0.0 { f32::NAN } else { sum / n };
                }
                for (x, o) in row.iter_mut().enumerate().skip(full) {
                    let x0 = 2 * x;
                    let x1 = (x0 + 1).min(width_px - 1);
                    let mut sum = 0.0f32;
                    let mut n = 0u32;
                    let mut take = |v: f32| {
                        if !v.is_nan() {
                            sum += v;
                            n += 1;
                        }
                    };
                    take(a[x0]);
                    if x1 != x0 {
                        take(a[x1]);
                    }
                    if second_row {
                        take(b[x0]);
                        if x1 != x0 {
                            take(b[x1]);
                        }
                    }
                    *o = if n == 0 { f32::NAN } else { sum / n as f32 };
                }
            }
        });
    Ok((out, w2, h2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean of the valid pixels of each block, one pixel at a time in row order.
    fn reference(data: &[f32], w: usize, h: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let mut sum = 0.0f32;
                let mut n = 0u32;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (xx, yy) = (x + dx, y + dy);
                    if xx < w && yy < h && !data[yy * w + xx].is_nan() {
                        sum += data[yy * w + xx];
                        n += 1;
                    }
                }
                out.push(if n == 0 { f32::NAN } else { sum / n as f32 });
            }
        }
        out
    }

    #[test]
    fn equals_the_pixel_by_pixel_mean_bit_for_bit() {
        for (w, h) in [
            (512, 512),
            (511, 7),
            (1, 1),
            (3, 2),
            (6, 5),
            (2, 1),
            (64, 3),
        ] {
            let data: Vec<f32> = (0..w * h)
                .map(|i| match i % 9 {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => 1e30,
                    _ => (i as f32 * 0.37).sin(),
                })
                .collect();
            let (got, w2, h2) = halve_mean(&data, w, h).expect("shape");
            assert_eq!((w2, h2), (w.div_ceil(2), h.div_ceil(2)));
            let want = reference(&data, w, h);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{w}x{h} pixel {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn means_of_valid_pixels_with_odd_edges() {
        #[rustfmt::skip]
        let data = [
            1.0, 3.0, 5.0,
            f32::NAN, 5.0, 7.0,
            9.0, f32::NAN, f32::NAN,
        ];
        let (out, w, h) = halve_mean(&data, 3, 3).expect("shape");
        assert_eq!((w, h), (2, 2));
        assert_eq!(out[0], 3.0); // (1 + 3 + 5) / 3
        assert_eq!(out[1], 6.0); // (5 + 7) / 2
        assert_eq!(out[2], 9.0);
        assert!(out[3].is_nan());
    }
}
