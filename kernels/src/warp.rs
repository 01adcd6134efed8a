//! Reprojection and resampling onto a target grid, driven by a coarse mesh of source pixel
//! coordinates that the caller computes with GDAL/PROJ.
//!
//! # Coordinates
//!
//! The caller (the engine, with GDAL's transformer on the CPU) evaluates the target→source
//! transform at the *centres* of a subset of target pixels — every [`SourceMesh::step_px`]
//! pixels plus the last column and the last row — and hands the kernel the source position of
//! each of those centres in **source pixel units, with (0, 0) at the source raster's top-left
//! corner**. A source pixel `(i, j)` therefore covers `[i, i+1) × [j, j+1)` and has its centre
//! at `(i + 0.5, j + 0.5)`. This is exactly what GDAL's `GDALGenImgProjTransformer` returns for
//! a destination point `(x + 0.5, y + 0.5)` (and what `gdalwarp`'s kernel uses).
//!
//! The kernel interpolates the mesh bilinearly for every target pixel, in `f64`, and samples
//! the source. A mesh node that is `NaN` (a point the transform could not map) makes every
//! target pixel of the mesh cells around it nodata.
//!
//! # Sampling, matched to `gdalwarp` (GDAL 3.6, source nodata set)
//!
//! - A target pixel whose source position `(x, y)` is not inside `0 ≤ x`, `x + 1e-10 ≤ width`
//!   (same for `y`) is outside the source and becomes `NaN`.
//! - The source pixel containing the position, `(trunc(x + 1e-10), trunc(y + 1e-10))` clamped
//!   to the last pixel, must be valid: if it is `NaN` the target pixel is `NaN` whatever the
//!   method (as `gdalwarp` does: it skips a target pixel whose containing source pixel is
//!   masked before resampling).
//! - [`Resampling::Nearest`] takes that containing pixel.
//! - [`Resampling::Bilinear`] weights the 2×2 pixels around the position; pixels that are
//!   `NaN` or outside the raster are dropped and the weights **renormalised** over the valid
//!   ones (`gdalwarp`'s behaviour with a source nodata). When the valid weight is below `1e-5`
//!   the result is `NaN`. At the raster border this equals clamping to the edge pixel.
//! - [`Resampling::Cubic`] is Keys cubic convolution with `a = -0.5` over 4×4 pixels. As in
//!   `gdalwarp`, when the 4×4 support leaves the raster (the outer 1.5 px of the source) or
//!   contains any `NaN`, the pixel falls back to the renormalised bilinear above.
//!
//! Sampling is by point (the 4-sample formulas): `gdalwarp` switches to a wider, scaled
//! (anti-aliasing) kernel for bilinear/cubic when the target is more than ~5 % coarser than the
//! source, which this kernel does not do. For strong downsampling the engine reads a source
//! overview of about the target resolution first.
//!
//! # Source windows and tiles
//!
//! `src` may be a window of a larger raster: the mesh is then relative to the window's top-left
//! corner, and the window's edges behave like raster edges (outside → `NaN`, cubic → bilinear
//! fallback within 1.5 px). A window that extends at least 3 px beyond the source footprint of
//! the target window gives the same result as the whole raster.
//!
//! A target window can be split into tiles, each with its own mesh computed by the same
//! transform at the tile's own target pixels. Where a tile's mesh nodes coincide with the whole
//! window's (tile offsets that are multiples of `step_px`), pixels in mesh cells shared by both
//! are bit-identical; only the last, partial cell of a tile (which ends at the tile's last
//! row/column node instead of the next regular node) can differ, by the mesh interpolation
//! error.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::{rows_per_task, Plane};

/// Source pixel coordinates of target pixel centres on a coarse regular mesh.
///
/// Node `(k, l)` (column `k`, row `l`, stored row-major at `l * cols + k`) is the target pixel
/// `(node_px(k), node_px(l))` where `node_px(n) = min(n * step_px, extent_px - 1)`: every
/// `step_px` pixels plus the last column/row, so `cols = (width_px - 1).div_ceil(step_px) + 1`
/// (see [`SourceMesh::node_count`]). `src_x`/`src_y` hold the source position of that pixel's
/// centre, in source pixel units with `(0, 0)` at the source's top-left corner (a source pixel
/// centre is at `(i + 0.5, j + 0.5)`); `NaN` where the transform failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMesh {
    /// Spacing of the mesh nodes in target pixels (≥ 1).
    pub step_px: usize,
    /// Number of node columns.
    pub cols: usize,
    /// Number of node rows.
    pub rows: usize,
    /// Source column coordinate of each node, row-major, `cols * rows` values.
    pub src_x: Vec<f64>,
    /// Source row coordinate of each node, row-major, `cols * rows` values.
    pub src_y: Vec<f64>,
}

impl SourceMesh {
    /// Number of nodes along a target extent of `extent_px` pixels: `0, step, 2·step, …` plus
    /// the last pixel. Zero for an empty extent.
    pub fn node_count(extent_px: usize, step_px: usize) -> usize {
        if extent_px == 0 {
            0
        } else {
            (extent_px - 1).div_ceil(step_px.max(1)) + 1
        }
    }

    /// Target pixel index of node `n` along an extent of `extent_px` pixels.
    pub fn node_px(n: usize, extent_px: usize, step_px: usize) -> usize {
        (n * step_px).min(extent_px.saturating_sub(1))
    }

    /// Builds a mesh for a `width_px` × `height_px` target window by calling `transform` with
    /// each node's target pixel centre `(col + 0.5, row + 0.5)` (window pixel units) and storing
    /// the source `(x, y)` it returns. Convenient for affine cases and tests; the engine usually
    /// fills [`SourceMesh::src_x`]/[`SourceMesh::src_y`] from one batched GDAL transform call.
    pub fn from_fn(
        step_px: usize,
        width_px: usize,
        height_px: usize,
        mut transform: impl FnMut(f64, f64) -> (f64, f64),
    ) -> Result<Self, KernelError> {
        if step_px == 0 {
            return Err(KernelError::InvalidParam {
                name: "step_px",
                reason: "must be at least 1".into(),
            });
        }
        let cols = Self::node_count(width_px, step_px);
        let rows = Self::node_count(height_px, step_px);
        let mut src_x = Vec::with_capacity(cols * rows);
        let mut src_y = Vec::with_capacity(cols * rows);
        for l in 0..rows {
            let ty = Self::node_px(l, height_px, step_px) as f64 + 0.5;
            for k in 0..cols {
                let tx = Self::node_px(k, width_px, step_px) as f64 + 0.5;
                let (sx, sy) = transform(tx, ty);
                src_x.push(sx);
                src_y.push(sy);
            }
        }
        Ok(Self {
            step_px,
            cols,
            rows,
            src_x,
            src_y,
        })
    }

    /// Checks that the mesh fits a `width_px` × `height_px` target window.
    fn check(&self, width_px: usize, height_px: usize) -> Result<(), KernelError> {
        if self.step_px == 0 {
            return Err(KernelError::InvalidParam {
                name: "step_px",
                reason: "must be at least 1".into(),
            });
        }
        let cols = Self::node_count(width_px, self.step_px);
        let rows = Self::node_count(height_px, self.step_px);
        if self.cols != cols || self.rows != rows {
            return Err(KernelError::InvalidParam {
                name: "mesh",
                reason: format!(
                    "a {width_px}x{height_px} target with step {} needs {cols}x{rows} nodes, \
                     got {}x{}",
                    self.step_px, self.cols, self.rows
                ),
            });
        }
        check_len("mesh src_x", cols * rows, self.src_x.len())?;
        check_len("mesh src_y", cols * rows, self.src_y.len())
    }
}

/// The resampling method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampling {
    /// The source pixel containing the position.
    Nearest,
    /// 2×2 bilinear, renormalised over valid pixels.
    Bilinear,
    /// 4×4 Keys cubic convolution (`a = -0.5`), bilinear fallback at edges and nodata.
    Cubic,
}

/// Warps `src` onto an `out_width_px` × `out_height_px` target window described by `mesh`,
/// writing row-major into `out`. Target pixels outside the source, or whose sampled support
/// is all nodata, are `NaN`. See the module documentation for the exact conventions.
pub fn warp(
    src: Plane,
    mesh: &SourceMesh,
    method: Resampling,
    out_width_px: usize,
    out_height_px: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_len("warp output", out_width_px * out_height_px, out.len())?;
    check_len("warp source", src.width_px * src.height_px, src.data.len())?;
    mesh.check(out_width_px, out_height_px)?;
    if out.is_empty() {
        return Ok(());
    }
    let rows_per = rows_per_task(out_width_px);
    out.par_chunks_mut(out_width_px * rows_per)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (r, row) in chunk.chunks_mut(out_width_px).enumerate() {
                warp_row(
                    src,
                    mesh,
                    method,
                    out_width_px,
                    out_height_px,
                    task * rows_per + r,
                    row,
                );
            }
        });
    Ok(())
}

/// The source index a position along one axis falls in, with [`warp`]'s rules: `None` outside
/// (`x < 0`, `x + 1e-10 > extent`, or NaN), else `trunc(x + 1e-10)` clamped to the last pixel.
#[inline]
fn containing(x: f64, extent_px: usize) -> Option<usize> {
    if x >= 0.0 && x + 1e-10 <= extent_px as f64 {
        Some(((x + 1e-10) as usize).min(extent_px.saturating_sub(1)))
    } else {
        None
    }
}

/// Nearest-neighbour resampling for a separable (north-up, axis-aligned) mapping, where the
/// source position of target pixel `(x, y)` is `(src_x[x], src_y[y])`. Gives exactly what
/// [`warp`] with [`Resampling::Nearest`] gives for a mesh holding those positions (same
/// containing-pixel and outside rules), with one index computation per row and column instead
/// of per pixel.
pub fn nearest_separable(
    src: Plane,
    src_x: &[f64],
    src_y: &[f64],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let (w, h) = (src_x.len(), src_y.len());
    check_len("nearest output", w * h, out.len())?;
    check_len(
        "nearest source",
        src.width_px * src.height_px,
        src.data.len(),
    )?;
    let cols: Vec<Option<usize>> = src_x.iter().map(|&x| containing(x, src.width_px)).collect();
    for (row, &y) in out.chunks_mut(w.max(1)).zip(src_y) {
        match containing(y, src.height_px) {
            None => row.fill(f32::NAN),
            Some(j) => {
                let line = &src.data[j * src.width_px..(j + 1) * src.width_px];
                for (o, c) in row.iter_mut().zip(&cols) {
                    *o = c.map_or(f32::NAN, |i| line[i]);
                }
            }
        }
    }
    Ok(())
}

/// Cell index and interpolation fraction of target pixel `p` along one mesh axis.
#[inline]
fn cell_of(p: usize, nodes: usize, extent_px: usize, step_px: usize) -> (usize, f64) {
    if nodes < 2 {
        return (0, 0.0);
    }
    let cell = (p / step_px).min(nodes - 2);
    let p0 = SourceMesh::node_px(cell, extent_px, step_px);
    let p1 = SourceMesh::node_px(cell + 1, extent_px, step_px);
    (cell, (p - p0) as f64 / (p1 - p0) as f64)
}

/// Warps target row `y`.
fn warp_row(
    src: Plane,
    mesh: &SourceMesh,
    method: Resampling,
    width_px: usize,
    height_px: usize,
    y: usize,
    row: &mut [f32],
) {
    let step = mesh.step_px;
    let cols = mesh.cols;
    let (cell_y, ty) = cell_of(y, mesh.rows, height_px, step);
    let top = cell_y * cols;
    let bottom = if mesh.rows < 2 { top } else { top + cols };
    // Source position along this row at node column `k`, interpolated between mesh rows.
    let at_node = |k: usize| -> (f64, f64) {
        let x = mesh.src_x[top + k] * (1.0 - ty) + mesh.src_x[bottom + k] * ty;
        let yy = mesh.src_y[top + k] * (1.0 - ty) + mesh.src_y[bottom + k] * ty;
        (x, yy)
    };
    if cols < 2 {
        let (sx, sy) = at_node(0);
        row[0] = sample(src, method, sx, sy);
        return;
    }
    for cell_x in 0..cols - 1 {
        let x0 = SourceMesh::node_px(cell_x, width_px, step);
        let x1 = SourceMesh::node_px(cell_x + 1, width_px, step);
        let end = if cell_x + 2 == cols { x1 + 1 } else { x1 };
        let (ax, ay) = at_node(cell_x);
        let (bx, by) = at_node(cell_x + 1);
        let span = (x1 - x0) as f64;
        for (i, out) in row[x0..end].iter_mut().enumerate() {
            let t = i as f64 / span;
            let sx = ax * (1.0 - t) + bx * t;
            let sy = ay * (1.0 - t) + by * t;
            *out = sample(src, method, sx, sy);
        }
    }
}

/// Samples `src` at source position `(x, y)` (corner-origin pixel units).
#[inline]
fn sample(src: Plane, method: Resampling, x: f64, y: f64) -> f32 {
    let w = src.width_px as f64;
    let h = src.height_px as f64;
    // Also rejects NaN positions.
    if !(x >= 0.0 && y >= 0.0 && x + 1e-10 <= w && y + 1e-10 <= h) {
        return f32::NAN;
    }
    // The pixel containing the position: the nearest-neighbour value, and for every method
    // the validity test (`gdalwarp` skips a target pixel whose containing source pixel is
    // masked, before resampling).
    let i = ((x + 1e-10) as usize).min(src.width_px - 1);
    let j = ((y + 1e-10) as usize).min(src.height_px - 1);
    let containing = src.data[j * src.width_px + i];
    if containing.is_nan() {
        return f32::NAN;
    }
    match method {
        Resampling::Nearest => containing,
        Resampling::Bilinear => bilinear(src, x, y),
        Resampling::Cubic => cubic(src, x, y),
    }
}

/// `gdalwarp`'s 4-sample bilinear with validity renormalisation.
#[inline]
fn bilinear(src: Plane, x: f64, y: f64) -> f32 {
    let w = src.width_px as isize;
    let h = src.height_px as isize;
    let mut i = (x - 0.5).floor() as isize;
    let mut j = (y - 0.5).floor() as isize;
    // Weight of column i / row j.
    let mut rx = 1.5 - (x - i as f64);
    let mut ry = 1.5 - (y - j as f64);
    if i == -1 {
        i = 0;
        rx = 1.0;
    }
    if j == -1 {
        j = 0;
        ry = 1.0;
    }
    let mut acc = 0.0f64;
    let mut div = 0.0f64;
    let taps = [
        (i, j, rx * ry),
        (i + 1, j, (1.0 - rx) * ry),
        (i, j + 1, rx * (1.0 - ry)),
        (i + 1, j + 1, (1.0 - rx) * (1.0 - ry)),
    ];
    for (ti, tj, wt) in taps {
        if ti >= 0 && ti < w && tj >= 0 && tj < h {
            let v = src.data[tj as usize * src.width_px + ti as usize];
            if !v.is_nan() {
                acc += f64::from(v) * wt;
                div += wt;
            }
        }
    }
    if div < 1e-5 {
        f32::NAN
    } else if div == 1.0 {
        acc as f32
    } else {
        (acc / div) as f32
    }
}

/// Keys cubic convolution weights (`a = -0.5`) for a fractional offset `t` in `[0, 1)`, for
/// the taps at `-1, 0, 1, 2`.
#[inline]
fn cubic_weights(t: f64) -> [f64; 4] {
    let half = 0.5 * t;
    let three = 3.0 * t;
    let half2 = half * t;
    [
        half * (-1.0 + t * (2.0 - t)),
        1.0 + half2 * (-5.0 + three),
        half * (1.0 + t * (4.0 - three)),
        half2 * (-1.0 + t),
    ]
}

/// `gdalwarp`'s 4×4 cubic convolution, falling back to bilinear at the border and at nodata.
#[inline]
fn cubic(src: Plane, x: f64, y: f64) -> f32 {
    // Positions are ≥ 0 here, so truncation matches GDAL's `(int)(x - 0.5)`.
    let i = (x - 0.5) as isize;
    let j = (y - 0.5) as isize;
    let w = src.width_px as isize;
    let h = src.height_px as isize;
    if i < 1 || i + 2 >= w || j < 1 || j + 2 >= h {
        return bilinear(src, x, y);
    }
    let cx = cubic_weights(x - 0.5 - i as f64);
    let cy = cubic_weights(y - 0.5 - j as f64);
    let mut acc = 0.0f64;
    for (r, wy) in cy.iter().enumerate() {
        let start = (j - 1 + r as isize) as usize * src.width_px + (i - 1) as usize;
        let taps = &src.data[start..start + 4];
        if taps.iter().any(|v| v.is_nan()) {
            return bilinear(src, x, y);
        }
        let line = cx[0] * f64::from(taps[0])
            + cx[1] * f64::from(taps[1])
            + cx[2] * f64::from(taps[2])
            + cx[3] * f64::from(taps[3]);
        acc += wy * line;
    }
    acc as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affine_mesh(step: usize, w: usize, h: usize, scale: f64, off: f64) -> SourceMesh {
        SourceMesh::from_fn(step, w, h, |x, y| (x * scale + off, y * scale + off)).unwrap()
    }

    #[test]
    fn separable_nearest_equals_the_mesh_warp() {
        // A source with holes, target scales and offsets that put positions on, just inside
        // and just outside pixel edges and the source's borders.
        let (sw, sh) = (17, 11);
        let data: Vec<f32> = (0..sw * sh)
            .map(|v| if v % 7 == 3 { f32::NAN } else { v as f32 * 0.5 })
            .collect();
        let src = Plane::new(sw, sh, &data).unwrap();
        for (scale, off) in [
            (0.5, 0.0),
            (0.5, -0.75),
            (2.0, 0.5),
            (1.0 / 3.0, 0.1),
            (1.0, -1e-11),
            (0.7, 5.0),
        ] {
            let (tw, th) = (40, 25);
            let mesh =
                SourceMesh::from_fn(1, tw, th, |x, y| (x * scale + off, y * scale + off)).unwrap();
            let mut want = vec![0.0; tw * th];
            warp(src, &mesh, Resampling::Nearest, tw, th, &mut want).unwrap();
            let xs: Vec<f64> = (0..tw).map(|x| (x as f64 + 0.5) * scale + off).collect();
            let ys: Vec<f64> = (0..th).map(|y| (y as f64 + 0.5) * scale + off).collect();
            let mut got = vec![0.0; tw * th];
            nearest_separable(src, &xs, &ys, &mut got).unwrap();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "scale {scale} offset {off} pixel {i}"
                );
            }
        }
    }

    #[test]
    fn node_layout() {
        assert_eq!(SourceMesh::node_count(1, 8), 1);
        assert_eq!(SourceMesh::node_count(9, 8), 2);
        assert_eq!(SourceMesh::node_count(10, 8), 3);
        assert_eq!(SourceMesh::node_count(0, 8), 0);
        assert_eq!(SourceMesh::node_px(2, 10, 8), 9);
    }

    #[test]
    fn identity_reproduces_source() {
        let (w, h) = (13, 7);
        let data: Vec<f32> = (0..w * h).map(|v| (v as f32).sin() * 10.0).collect();
        let src = Plane::new(w, h, &data).unwrap();
        let mesh = affine_mesh(4, w, h, 1.0, 0.0);
        for method in [Resampling::Nearest, Resampling::Bilinear, Resampling::Cubic] {
            let mut out = vec![0.0; w * h];
            warp(src, &mesh, method, w, h, &mut out).unwrap();
            for (a, b) in out.iter().zip(&data) {
                assert!((a - b).abs() < 1e-5, "{method:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn linear_field_is_exact_for_bilinear_and_cubic() {
        let (w, h) = (20, 20);
        let data: Vec<f32> = (0..w * h)
            .map(|v| (v % w) as f32 * 2.0 + (v / w) as f32)
            .collect();
        let src = Plane::new(w, h, &data).unwrap();
        // Target 2x finer, offset by a quarter source pixel.
        let (tw, th) = (30, 30);
        let mesh = affine_mesh(5, tw, th, 0.5, 2.25);
        for method in [Resampling::Bilinear, Resampling::Cubic] {
            let mut out = vec![0.0; tw * th];
            warp(src, &mesh, method, tw, th, &mut out).unwrap();
            for ty in 0..th {
                for tx in 0..tw {
                    let sx = (tx as f64 + 0.5) * 0.5 + 2.25 - 0.5;
                    let sy = (ty as f64 + 0.5) * 0.5 + 2.25 - 0.5;
                    let want = (sx * 2.0 + sy) as f32;
                    let got = out[ty * tw + tx];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{method:?} at {tx},{ty}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn outside_is_nan_and_nodata_renormalises() {
        let data = vec![1.0, f32::NAN, 3.0, 5.0];
        let src = Plane::new(2, 2, &data).unwrap();
        // One target pixel per position.
        let positions = [
            (1.0, 1.0),
            (-0.1, 0.5),
            (2.0, 0.5),
            (0.5, 0.5),
            (1.5, 0.5),
            (0.9, 0.9),
        ];
        for (px, py) in positions {
            let mesh = SourceMesh {
                step_px: 1,
                cols: 1,
                rows: 1,
                src_x: vec![px],
                src_y: vec![py],
            };
            let mut out = [0.0f32];
            warp(src, &mesh, Resampling::Bilinear, 1, 1, &mut out).unwrap();
            match (px, py) {
                (1.0, 1.0) => assert!((out[0] - 3.0).abs() < 1e-6, "{}", out[0]),
                (0.5, 0.5) => assert_eq!(out[0], 1.0),
                // The containing pixel is nodata.
                (1.5, 0.5) => assert!(out[0].is_nan()),
                // Renormalised over the three valid taps.
                (0.9, 0.9) => {
                    let want = (0.36 + 0.24 * 3.0 + 0.16 * 5.0) / 0.76;
                    assert!((out[0] - want).abs() < 1e-5, "{}", out[0]);
                }
                _ => assert!(out[0].is_nan(), "{px},{py}: {}", out[0]),
            }
        }
    }

    #[test]
    fn nan_mesh_node_gives_nodata() {
        let data = vec![1.0f32; 16];
        let src = Plane::new(4, 4, &data).unwrap();
        let mut mesh = affine_mesh(2, 5, 5, 0.5, 0.5);
        mesh.src_x[0] = f64::NAN;
        let mut out = vec![0.0; 25];
        warp(src, &mesh, Resampling::Cubic, 5, 5, &mut out).unwrap();
        assert!(out[0].is_nan() && out[6].is_nan());
        assert_eq!(out[24], 1.0);
    }

    #[test]
    fn rejects_bad_mesh() {
        let data = vec![0.0f32; 4];
        let src = Plane::new(2, 2, &data).unwrap();
        let mesh = affine_mesh(2, 4, 4, 1.0, 0.0);
        let mut out = vec![0.0; 36];
        let err = warp(src, &mesh, Resampling::Nearest, 6, 6, &mut out).unwrap_err();
        assert!(matches!(
            err,
            KernelError::InvalidParam { name: "mesh", .. }
        ));
        let mut out = vec![0.0; 3];
        assert!(warp(src, &mesh, Resampling::Nearest, 4, 4, &mut out).is_err());
    }
}
