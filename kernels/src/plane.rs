//! Borrowed views of row-major `f32` planes with their dimensions.

use crate::error::{check_len, KernelError};

/// A read-only row-major plane; `NaN` is nodata.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub width_px: usize,
    pub height_px: usize,
    pub data: &'a [f32],
}

impl<'a> Plane<'a> {
    /// Wraps `data`, checking that it holds `width_px * height_px` values.
    pub fn new(width_px: usize, height_px: usize, data: &'a [f32]) -> Result<Self, KernelError> {
        check_len("plane", width_px * height_px, data.len())?;
        Ok(Self {
            width_px,
            height_px,
            data,
        })
    }

    /// Row `y` as a slice.
    pub fn row(&self, y: usize) -> &'a [f32] {
        &self.data[y * self.width_px..(y + 1) * self.width_px]
    }

    /// Number of pixels.
    pub fn len_px(&self) -> usize {
        self.data.len()
    }
}

/// A writable row-major plane.
#[derive(Debug)]
pub struct PlaneMut<'a> {
    pub width_px: usize,
    pub height_px: usize,
    pub data: &'a mut [f32],
}

impl<'a> PlaneMut<'a> {
    /// Wraps `data`, checking that it holds `width_px * height_px` values.
    pub fn new(
        width_px: usize,
        height_px: usize,
        data: &'a mut [f32],
    ) -> Result<Self, KernelError> {
        check_len("plane", width_px * height_px, data.len())?;
        Ok(Self {
            width_px,
            height_px,
            data,
        })
    }
}

/// Rows per rayon task: big enough to amortise scheduling, small enough to balance.
pub const fn rows_per_task(width_px: usize) -> usize {
    let rows = 16_384 / if width_px == 0 { 1 } else { width_px };
    if rows == 0 {
        1
    } else {
        rows
    }
}

/// Pixels per rayon task for element-wise kernels.
pub const PIXELS_PER_TASK: usize = 1 << 15;
