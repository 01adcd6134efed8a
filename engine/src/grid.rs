//! Raster grids (size, affine geotransform, CRS) and pixel windows on them.

use crate::error::{EngineError, Result};

/// A GDAL-style affine geotransform: `x = gt[0] + col·gt[1] + row·gt[2]`,
/// `y = gt[3] + col·gt[4] + row·gt[5]`, for pixel-corner coordinates.
pub type GeoTransform = [f64; 6];

/// A pixel rectangle of a grid. Offsets may be negative and extents may overhang the grid
/// when the window carries a halo; [`Window::clip`] gives the part that lies on the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub x_px: i64,
    pub y_px: i64,
    pub width_px: usize,
    pub height_px: usize,
}

impl Window {
    /// A window.
    pub const fn new(x_px: i64, y_px: i64, width_px: usize, height_px: usize) -> Self {
        Self {
            x_px,
            y_px,
            width_px,
            height_px,
        }
    }

    /// The window grown by `halo_px` on every side.
    pub fn with_halo(self, halo_px: usize) -> Self {
        let h = halo_px as i64;
        Self {
            x_px: self.x_px - h,
            y_px: self.y_px - h,
            width_px: self.width_px + 2 * halo_px,
            height_px: self.height_px + 2 * halo_px,
        }
    }

    /// The part of this window inside a `width_px` × `height_px` grid, or `None` if disjoint.
    pub fn clip(self, width_px: usize, height_px: usize) -> Option<Self> {
        let x0 = self.x_px.max(0);
        let y0 = self.y_px.max(0);
        let x1 = (self.x_px + self.width_px as i64).min(width_px as i64);
        let y1 = (self.y_px + self.height_px as i64).min(height_px as i64);
        (x1 > x0 && y1 > y0).then(|| Self::new(x0, y0, (x1 - x0) as usize, (y1 - y0) as usize))
    }

    /// Number of pixels.
    pub fn len_px(self) -> usize {
        self.width_px * self.height_px
    }
}

/// A raster grid: size, geotransform and coordinate reference system.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub width_px: usize,
    pub height_px: usize,
    pub geotransform: GeoTransform,
    /// The CRS as WKT (empty when the file has none).
    pub crs_wkt: String,
    /// The EPSG code, when the CRS has one.
    pub epsg: Option<u32>,
}

impl Grid {
    /// Georeferenced coordinates of a pixel-space point (pixel corners at integers).
    pub fn pixel_to_geo(&self, col: f64, row: f64) -> (f64, f64) {
        let g = &self.geotransform;
        (
            g[0] + col * g[1] + row * g[2],
            g[3] + col * g[4] + row * g[5],
        )
    }

    /// Pixel-space coordinates of a georeferenced point; errors on a degenerate transform.
    pub fn geo_to_pixel(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        let g = &self.geotransform;
        let det = g[1] * g[5] - g[2] * g[4];
        if det == 0.0 || !det.is_finite() {
            return Err(EngineError::Grid(format!(
                "degenerate geotransform {:?}",
                self.geotransform
            )));
        }
        let (dx, dy) = (x - g[0], y - g[3]);
        Ok(((g[5] * dx - g[2] * dy) / det, (g[1] * dy - g[4] * dx) / det))
    }

    /// Whether the geotransform has no rotation terms.
    pub fn is_north_up(&self) -> bool {
        self.geotransform[2] == 0.0 && self.geotransform[4] == 0.0
    }

    /// The geotransform of a window of this grid.
    pub fn window_geotransform(&self, w: Window) -> GeoTransform {
        let (x, y) = self.pixel_to_geo(w.x_px as f64, w.y_px as f64);
        let g = self.geotransform;
        [x, g[1], g[2], y, g[4], g[5]]
    }

    /// The sub-grid covered by a window.
    pub fn window_grid(&self, w: Window) -> Self {
        Self {
            width_px: w.width_px,
            height_px: w.height_px,
            geotransform: self.window_geotransform(w),
            crs_wkt: self.crs_wkt.clone(),
            epsg: self.epsg,
        }
    }

    /// Pixel width and height in CRS units (absolute values).
    pub fn pixel_size(&self) -> (f64, f64) {
        let g = &self.geotransform;
        (g[1].hypot(g[4]), g[2].hypot(g[5]))
    }

    /// Whether `other` covers the same extent, within a tenth of this grid's pixel.
    pub fn same_extent(&self, other: &Self) -> bool {
        let (pw, ph) = self.pixel_size();
        let corners = [(0.0, 0.0), (1.0, 1.0)];
        corners.iter().all(|&(fx, fy)| {
            let a = self.pixel_to_geo(fx * self.width_px as f64, fy * self.height_px as f64);
            let b = other.pixel_to_geo(fx * other.width_px as f64, fy * other.height_px as f64);
            (a.0 - b.0).abs() <= 0.1 * pw && (a.1 - b.1).abs() <= 0.1 * ph
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            width_px: 100,
            height_px: 50,
            geotransform: [300_000.0, 10.0, 0.0, 2_800_020.0, 0.0, -10.0],
            crs_wkt: String::new(),
            epsg: Some(32629),
        }
    }

    #[test]
    fn pixel_geo_round_trip() {
        let g = grid();
        let (x, y) = g.pixel_to_geo(12.5, 7.25);
        let (c, r) = g.geo_to_pixel(x, y).expect("invertible");
        assert!((c - 12.5).abs() < 1e-9 && (r - 7.25).abs() < 1e-9);
    }

    #[test]
    fn halo_and_clip() {
        let w = Window::new(0, 40, 64, 64).with_halo(2);
        assert_eq!(w, Window::new(-2, 38, 68, 68));
        assert_eq!(w.clip(100, 50), Some(Window::new(0, 38, 66, 12)));
        assert_eq!(Window::new(200, 0, 5, 5).clip(100, 50), None);
    }
}
