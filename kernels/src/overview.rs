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
                for (x, o) in row.iter_mut().enumerate() {
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
