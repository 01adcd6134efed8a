//! Footprints in EPSG:4326: a window's outline with densified edges, transformed by PROJ.

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};

use crate::error::{EngineError, Result};
use crate::grid::{Grid, Window};
use crate::io::reason;

/// Transforms pixel outlines of one grid to longitude/latitude.
#[derive(Debug)]
pub struct Footprinter {
    grid: Grid,
    transform: Option<CoordTransform>,
}

impl Footprinter {
    /// A footprinter for `grid`; errors when the grid has no CRS.
    pub fn new(grid: &Grid) -> Result<Self> {
        if grid.crs_wkt.is_empty() {
            return Err(EngineError::Grid("the working grid has no CRS".into()));
        }
        let mut src =
            SpatialRef::from_wkt(&grid.crs_wkt).map_err(|e| EngineError::Grid(reason(e)))?;
        src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut dst = SpatialRef::from_epsg(4326).map_err(|e| EngineError::Grid(reason(e)))?;
        dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let transform = if src == dst {
            None
        } else {
            Some(CoordTransform::new(&src, &dst).map_err(|e| EngineError::Grid(reason(e)))?)
        };
        Ok(Self {
            grid: grid.clone(),
            transform,
        })
    }

    /// The closed outline of `window` (counter-clockwise, first point repeated last), each
    /// edge densified with `points_per_edge` points, as `(lon, lat)`.
    pub fn outline(&self, window: Window, points_per_edge: usize) -> Result<Vec<(f64, f64)>> {
        let n = points_per_edge.max(1);
        let (x0, y0) = (window.x_px as f64, window.y_px as f64);
        let (x1, y1) = (x0 + window.width_px as f64, y0 + window.height_px as f64);
        // Counter-clockwise in lon/lat for a north-up grid: down the left edge, along the
        // bottom, up the right edge, back along the top.
        let mut px: Vec<(f64, f64)> = Vec::with_capacity(4 * n + 1);
        for i in 0..n {
            px.push((x0, y0 + (y1 - y0) * i as f64 / n as f64));
        }
        for i in 0..n {
            px.push((x0 + (x1 - x0) * i as f64 / n as f64, y1));
        }
        for i in 0..n {
            px.push((x1, y1 - (y1 - y0) * i as f64 / n as f64));
        }
        for i in 0..n {
            px.push((x1 - (x1 - x0) * i as f64 / n as f64, y0));
        }
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = px
            .iter()
            .map(|&(c, r)| self.grid.pixel_to_geo(c, r))
            .unzip();
        if let Some(t) = &self.transform {
            t.transform_coords(&mut xs, &mut ys, &mut []).map_err(|e| {
                EngineError::Grid(format!("footprint transform failed: {}", reason(e)))
            })?;
        }
        let mut ring: Vec<(f64, f64)> = xs.into_iter().zip(ys).collect();
        ring.push(ring[0]);
        Ok(ring)
    }

    /// `[west, south, east, north]` of an outline.
    pub fn bbox(ring: &[(f64, f64)]) -> [f64; 4] {
        ring.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |b, &(x, y)| [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)],
        )
    }
}
