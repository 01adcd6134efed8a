//! Web Mercator (EPSG:3857) XYZ map tiles rendered from a single-band raster (a job's output
//! COG): overview choice, a source mesh through GDAL/PROJ, bilinear warp, rescale + colormap
//! to RGBA and PNG encoding.
//!
//! # Geometry
//!
//! Tile `(z, x, y)` covers `[-H + x·S, -H + (x+1)·S] × [H - (y+1)·S, H - y·S]` metres of EPSG:3857,
//! with `H = 20037508.342789244` and `S = 2H / 2^z`; a `size_px` tile samples it at the centres
//! of `size_px × size_px` pixels, exactly the grid `gdalwarp -t_srs EPSG:3857 -te <bounds> -ts
//! <size> <size>` writes. The target→source transform (3857 → the raster's CRS → its pixels)
//! is evaluated by PROJ at every [`MESH_STEP_PX`]-th pixel centre (plus the last row and
//! column), checked by transforming the result back, and interpolated in between by
//! [`kernels::warp`], which samples like `gdalwarp -r bilinear` with a source nodata.
//!
//! # Overviews
//!
//! The raster level read is the coarsest one (full resolution or an overview) whose pixels
//! are still no larger than the tile's pixels, measured along both axes from the mesh: what
//! `gdalwarp -ovr <k>` with that level reads. Because the level is at most 2× finer than the
//! tile (when overviews halve), the kernel's point-sampling bilinear stays close to an
//! area average.

use std::path::Path;

use gdal::raster::RasterBand;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::Dataset;
use gdal::Metadata as _;
use kernels::warp::{warp, Resampling, SourceMesh};
use kernels::Plane;

use crate::error::{EngineError, Result};
use crate::grid::{Grid, Window};
use crate::io::reason;
use crate::io::scene::open_dataset;

pub use kernels::colormap::Colormap;

/// Half the width of the Web Mercator square, in metres.
pub const WEB_MERCATOR_HALF_M: f64 = 20_037_508.342_789_244;

/// Deepest zoom level a tile may have.
pub const MAX_ZOOM: u8 = 30;

/// Spacing of the nodes where PROJ evaluates the transform, in tile pixels.
pub const MESH_STEP_PX: usize = 8;

/// The tile sizes served: 256 px (`.png`) and 512 px (`@2x.png`).
pub const TILE_SIZES_PX: [usize; 2] = [256, 512];

/// A read wider than this many times the tile (an unexpectedly coarse tile over a raster
/// without overviews) is decimated by GDAL on the way in.
const MAX_READ_FACTOR: usize = 4;

/// An XYZ tile address (row 0 at the north).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileId {
    /// A tile address; errors when `z` is beyond [`MAX_ZOOM`] or `x`/`y` beyond `2^z - 1`.
    pub fn new(z: u8, x: u32, y: u32) -> Result<Self> {
        if z > MAX_ZOOM {
            return Err(EngineError::InvalidInput(format!(
                "zoom {z} is beyond the deepest zoom {MAX_ZOOM}"
            )));
        }
        let n = 1u64 << z;
        if u64::from(x) >= n || u64::from(y) >= n {
            return Err(EngineError::InvalidInput(format!(
                "tile {x}/{y} does not exist at zoom {z} (0..{} on each axis)",
                n - 1
            )));
        }
        Ok(Self { z, x, y })
    }

    /// `[xmin, ymin, xmax, ymax]` in EPSG:3857 metres.
    pub fn bounds_m(self) -> [f64; 4] {
        let span_m = 2.0 * WEB_MERCATOR_HALF_M / (1u64 << self.z) as f64;
        let xmin = -WEB_MERCATOR_HALF_M + f64::from(self.x) * span_m;
        let ymax = WEB_MERCATOR_HALF_M - f64::from(self.y) * span_m;
        [xmin, ymax - span_m, xmin + span_m, ymax]
    }
}

/// Pixel size in EPSG:3857 metres of a 256 px tile at zoom `z`.
pub fn tile_resolution_m(z: u8) -> f64 {
    2.0 * WEB_MERCATOR_HALF_M / (256.0 * (1u64 << z) as f64)
}

/// How values become colours.
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    /// Value mapped to the colormap's first entry.
    pub vmin: f32,
    /// Value mapped to the colormap's last entry.
    pub vmax: f32,
    pub colormap: Colormap,
}

/// The warped values of one tile, before colouring.
#[derive(Debug, Clone, PartialEq)]
pub struct WarpedTile {
    pub size_px: usize,
    /// Row-major `size_px²` values; `NaN` where there is no data.
    pub values: Vec<f32>,
    /// The raster level read: `None` for full resolution, `Some(k)` for overview `k`
    /// (0-based, as `gdalwarp -ovr k` counts).
    pub overview: Option<usize>,
}

/// A raster opened for rendering tiles of one band. Not shared between threads (GDAL
/// handles are not); open one per rendering thread.
#[derive(Debug)]
pub struct TileSource {
    path: String,
    ds: Dataset,
    grid: Grid,
    band: usize,
    nodata: Option<f64>,
    /// EPSG:3857 → the raster's CRS (`None` when it is EPSG:3857 itself).
    to_src: Option<CoordTransform>,
    /// The raster's CRS → EPSG:3857, for the round-trip check.
    to_mercator: Option<CoordTransform>,
    /// `(width_px, height_px)` of each overview of the band, finest first.
    overview_sizes_px: Vec<(usize, usize)>,
}

fn srs_err(path: &str, e: gdal::errors::GdalError) -> EngineError {
    EngineError::Grid(format!("{path}: {}", reason(e)))
}

impl TileSource {
    /// Opens band `band` (1-based) of the raster at `path`.
    pub fn open(path: &Path, band: usize) -> Result<Self> {
        crate::io::init();
        let path = path.to_string_lossy().into_owned();
        let ds = open_dataset(&path)?;
        let count = ds.raster_count();
        if band == 0 || band > count {
            return Err(EngineError::NoSuchBand { path, band, count });
        }
        let grid = crate::io::grid_of(&ds);
        if grid.crs_wkt.is_empty() {
            return Err(EngineError::Grid(format!(
                "{path} has no CRS, so it cannot be placed on a map"
            )));
        }
        let read_err = |e| EngineError::Read {
            path: path.clone(),
            reason: reason(e),
        };
        let rb = ds.rasterband(band).map_err(read_err)?;
        let nodata = rb.no_data_value();
        let overviews = usize::try_from(rb.overview_count().map_err(read_err)?).unwrap_or(0);
        let overview_sizes_px = (0..overviews)
            .map(|k| rb.overview(k).map(|o| o.size()).map_err(read_err))
            .collect::<Result<Vec<_>>>()?;
        let mut src = SpatialRef::from_wkt(&grid.crs_wkt).map_err(|e| srs_err(&path, e))?;
        src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut merc = SpatialRef::from_epsg(3857).map_err(|e| srs_err(&path, e))?;
        merc.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let (to_src, to_mercator) = if src == merc {
            (None, None)
        } else {
            (
                Some(CoordTransform::new(&merc, &src).map_err(|e| srs_err(&path, e))?),
                Some(CoordTransform::new(&src, &merc).map_err(|e| srs_err(&path, e))?),
            )
        };
        Ok(Self {
            path,
            ds,
            grid,
            band,
            nodata,
            to_src,
            to_mercator,
            overview_sizes_px,
        })
    }

    /// The raster's grid (full resolution).
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Number of bands of the raster.
    pub fn band_count(&self) -> usize {
        self.ds.raster_count()
    }

    /// `(min, max)` from the band's statistics metadata (`STATISTICS_MINIMUM`/`MAXIMUM`, as
    /// the COG writer stores them), widened to a non-empty range; `None` when absent.
    pub fn statistics_range(&self) -> Option<(f32, f32)> {
        let rb = self.ds.rasterband(self.band).ok()?;
        let item = |k: &str| -> Option<f32> {
            rb.metadata_item(k, "")?
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
        };
        let (lo, hi) = (item("STATISTICS_MINIMUM")?, item("STATISTICS_MAXIMUM")?);
        if lo < hi {
            Some((lo, hi))
        } else if lo == hi {
            Some((lo, lo + 1.0))
        } else {
            None
        }
    }

    /// `(minzoom, maxzoom)` worth serving: `maxzoom` is the first zoom whose 256 px tiles are
    /// at least as fine as the raster's pixels (measured in EPSG:3857 at its centre),
    /// `minzoom` the zoom whose tiles are about as coarse as the coarsest overview's pixels.
    pub fn zoom_range(&self) -> Result<(u8, u8)> {
        let (w, h) = (self.grid.width_px as f64, self.grid.height_px as f64);
        let (cx, cy) = (w / 2.0, h / 2.0);
        let mut xs = Vec::with_capacity(3);
        let mut ys = Vec::with_capacity(3);
        for (c, r) in [(cx, cy), (cx + 1.0, cy), (cx, cy + 1.0)] {
            let (x, y) = self.grid.pixel_to_geo(c, r);
            xs.push(x);
            ys.push(y);
        }
        if let Some(t) = &self.to_mercator {
            t.transform_coords(&mut xs, &mut ys, &mut [])
                .map_err(|e| srs_err(&self.path, e))?;
        }
        let dx = (xs[1] - xs[0]).hypot(ys[1] - ys[0]);
        let dy = (xs[2] - xs[0]).hypot(ys[2] - ys[0]);
        let native_m = dx.min(dy);
        if !(native_m.is_finite() && native_m > 0.0) {
            return Err(EngineError::Grid(format!(
                "{}: cannot measure its pixel size in web mercator",
                self.path
            )));
        }
        let coarsest = self
            .overview_sizes_px
            .last()
            .map_or(1.0, |&(ow, oh)| (w / ow as f64).max(h / oh as f64));
        let zoom_for = |res_m: f64| (tile_resolution_m(0) / res_m).log2();
        // A hair of slack so a raster made at exactly a zoom's resolution gets that zoom.
        let maxzoom = (zoom_for(native_m) - 1e-6)
            .ceil()
            .clamp(0.0, f64::from(MAX_ZOOM)) as u8;
        let minzoom = zoom_for(native_m * coarsest)
            .floor()
            .clamp(0.0, f64::from(maxzoom)) as u8;
        Ok((minzoom, maxzoom))
    }

    /// The tile at `zoom` that contains the point at pixel `(col_px, row_px)` of the raster
    /// (pixel corners at integers).
    pub fn tile_at(&self, zoom: u8, col_px: f64, row_px: f64) -> Result<TileId> {
        let (x, y) = self.grid.pixel_to_geo(col_px, row_px);
        let (mut xs, mut ys) = ([x], [y]);
        if let Some(t) = &self.to_mercator {
            t.transform_coords(&mut xs, &mut ys, &mut [])
                .map_err(|e| srs_err(&self.path, e))?;
        }
        let n = (1u64 << zoom.min(MAX_ZOOM)) as f64;
        let span_m = 2.0 * WEB_MERCATOR_HALF_M / n;
        let index = |v: f64| (v / span_m).floor().clamp(0.0, n - 1.0) as u32;
        TileId::new(
            zoom,
            index(xs[0] + WEB_MERCATOR_HALF_M),
            index(WEB_MERCATOR_HALF_M - ys[0]),
        )
    }

    /// The tile's values, warped bilinearly from the chosen raster level; `None` when the
    /// tile holds no valid pixel (outside the raster, or only nodata there).
    pub fn warp_tile(&self, tile: TileId, size_px: usize) -> Result<Option<WarpedTile>> {
        if size_px == 0 {
            return Err(EngineError::InvalidInput(
                "tile size must be positive".into(),
            ));
        }
        // Mesh nodes in full-resolution source pixels.
        let Some(mut mesh) = self.mesh(tile, size_px)? else {
            return Ok(None);
        };
        let overview = self.choose_overview(&mesh, size_px);
        let (level_w, level_h) = match overview {
            Some(k) => self.overview_sizes_px[k],
            None => (self.grid.width_px, self.grid.height_px),
        };
        if overview.is_some() {
            let fx = level_w as f64 / self.grid.width_px as f64;
            let fy = level_h as f64 / self.grid.height_px as f64;
            mesh.src_x.iter_mut().for_each(|v| *v *= fx);
            mesh.src_y.iter_mut().for_each(|v| *v *= fy);
        }
        // The level's pixels the mesh reaches, 3 px wider (the warp kernel's rule for
        // windows that act like the whole raster), clipped to the level.
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (&x, &y) in mesh.src_x.iter().zip(&mesh.src_y) {
            if x.is_finite() && y.is_finite() {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        let reach = |lo: f64, hi: f64, extent: usize| -> Option<(i64, i64)> {
            let lo = (lo.floor() - 3.0).max(0.0);
            let hi = (hi.floor() + 4.0).min(extent as f64);
            (hi > lo).then_some((lo as i64, hi as i64))
        };
        let (Some((wx0, wx1)), Some((wy0, wy1))) = (reach(x0, x1, level_w), reach(y0, y1, level_h))
        else {
            return Ok(None);
        };
        let window = Window::new(wx0, wy0, (wx1 - wx0) as usize, (wy1 - wy0) as usize);
        // Guard: never read much more than the tile's worth of pixels.
        let limit_px = MAX_READ_FACTOR * size_px;
        let decimate = window
            .width_px
            .max(window.height_px)
            .div_ceil(limit_px)
            .max(1);
        let buf_w = window.width_px.div_ceil(decimate);
        let buf_h = window.height_px.div_ceil(decimate);
        let src = self.read_level(overview, window, (buf_w, buf_h))?;
        let (sx, sy) = (
            buf_w as f64 / window.width_px as f64,
            buf_h as f64 / window.height_px as f64,
        );
        for (x, y) in mesh.src_x.iter_mut().zip(mesh.src_y.iter_mut()) {
            *x = (*x - wx0 as f64) * sx;
            *y = (*y - wy0 as f64) * sy;
        }
        let mut values = vec![0.0f32; size_px * size_px];
        warp(
            Plane::new(buf_w, buf_h, &src)?,
            &mesh,
            Resampling::Bilinear,
            size_px,
            size_px,
            &mut values,
        )?;
        if values.iter().all(|v| v.is_nan()) {
            return Ok(None);
        }
        Ok(Some(WarpedTile {
            size_px,
            values,
            overview,
        }))
    }

    /// The tile as PNG (RGBA, nodata transparent); `None` when it holds no valid pixel.
    pub fn render_png(
        &self,
        tile: TileId,
        size_px: usize,
        style: &Style,
    ) -> Result<Option<Vec<u8>>> {
        let Some(warped) = self.warp_tile(tile, size_px)? else {
            return Ok(None);
        };
        let mut rgba = vec![0u8; warped.values.len() * 4];
        style
            .colormap
            .apply(&warped.values, style.vmin, style.vmax, &mut rgba)?;
        encode_png(size_px, size_px, &rgba).map(Some)
    }

    /// Mesh of the tile's pixel centres in full-resolution source pixels; `None` when no
    /// node maps onto the source CRS.
    fn mesh(&self, tile: TileId, size_px: usize) -> Result<Option<SourceMesh>> {
        let [xmin, _, _, ymax] = tile.bounds_m();
        let res_m = 2.0 * WEB_MERCATOR_HALF_M / ((1u64 << tile.z) as f64 * size_px as f64);
        let mut mesh = SourceMesh::from_fn(MESH_STEP_PX, size_px, size_px, |tx, ty| {
            (xmin + tx * res_m, ymax - ty * res_m)
        })?;
        let (merc_x, merc_y) = (mesh.src_x.clone(), mesh.src_y.clone());
        if let Some(t) = &self.to_src {
            transform_or_nan(t, &mut mesh.src_x, &mut mesh.src_y);
            // Round trip: a point PROJ maps somewhere but not back (outside the projection's
            // domain) is no data rather than a wrong place.
            if let Some(back) = &self.to_mercator {
                let (mut bx, mut by) = (mesh.src_x.clone(), mesh.src_y.clone());
                transform_or_nan(back, &mut bx, &mut by);
                let tolerance_m = res_m * 0.01;
                for i in 0..bx.len() {
                    let off = (bx[i] - merc_x[i]).hypot(by[i] - merc_y[i]);
                    if off.is_nan() || off > tolerance_m {
                        mesh.src_x[i] = f64::NAN;
                        mesh.src_y[i] = f64::NAN;
                    }
                }
            }
        }
        let mut any = false;
        for (x, y) in mesh.src_x.iter_mut().zip(mesh.src_y.iter_mut()) {
            match self.grid.geo_to_pixel(*x, *y) {
                Ok((c, r)) if c.is_finite() && r.is_finite() => {
                    (*x, *y) = (c, r);
                    any = true;
                }
                _ => (*x, *y) = (f64::NAN, f64::NAN),
            }
        }
        Ok(any.then_some(mesh))
    }

    /// The coarsest overview whose pixels are no larger than the tile's along both axes.
    fn choose_overview(&self, mesh: &SourceMesh, size_px: usize) -> Option<usize> {
        // Mean source pixels per tile pixel between neighbouring nodes, along each axis.
        let (mut sum_x, mut n_x, mut sum_y, mut n_y) = (0.0, 0usize, 0.0, 0usize);
        // Tile pixels between node `n` and the next (the last gap is the short one).
        let gap = |n: usize| {
            (SourceMesh::node_px(n + 1, size_px, mesh.step_px)
                - SourceMesh::node_px(n, size_px, mesh.step_px)) as f64
        };
        for r in 0..mesh.rows {
            for c in 0..mesh.cols {
                let i = r * mesh.cols + c;
                if c + 1 < mesh.cols {
                    let d = (mesh.src_x[i + 1] - mesh.src_x[i])
                        .hypot(mesh.src_y[i + 1] - mesh.src_y[i]);
                    let g = gap(c);
                    if d.is_finite() && g > 0.0 {
                        sum_x += d / g;
                        n_x += 1;
                    }
                }
                if r + 1 < mesh.rows {
                    let j = i + mesh.cols;
                    let d = (mesh.src_x[j] - mesh.src_x[i]).hypot(mesh.src_y[j] - mesh.src_y[i]);
                    let g = gap(r);
                    if d.is_finite() && g > 0.0 {
                        sum_y += d / g;
                        n_y += 1;
                    }
                }
            }
        }
        if n_x == 0 || n_y == 0 {
            return None;
        }
        let scale = (sum_x / n_x as f64).min(sum_y / n_y as f64);
        let (w, h) = (self.grid.width_px as f64, self.grid.height_px as f64);
        let mut chosen = None;
        for (k, &(ow, oh)) in self.overview_sizes_px.iter().enumerate() {
            let factor = (w / ow as f64).max(h / oh as f64);
            if factor <= scale {
                chosen = Some(k);
            }
        }
        chosen
    }

    /// Reads `window` of a raster level into a `buf` sized buffer (GDAL decimates when the
    /// buffer is smaller), nodata and infinities as `NaN`.
    fn read_level(
        &self,
        overview: Option<usize>,
        window: Window,
        buf_px: (usize, usize),
    ) -> Result<Vec<f32>> {
        let read_err = |e| EngineError::Read {
            path: self.path.clone(),
            reason: reason(e),
        };
        let rb = self.ds.rasterband(self.band).map_err(read_err)?;
        let level: RasterBand<'_> = match overview {
            Some(k) => rb.overview(k).map_err(read_err)?,
            None => rb,
        };
        let mut buf = vec![0.0f32; buf_px.0 * buf_px.1];
        level
            .read_into_slice::<f32>(
                (window.x_px as isize, window.y_px as isize),
                (window.width_px, window.height_px),
                buf_px,
                &mut buf,
                None,
            )
            .map_err(read_err)?;
        let nodata = self.nodata.map(|v| v as f32);
        for v in &mut buf {
            if v.is_infinite() || Some(*v) == nodata {
                *v = f32::NAN;
            }
        }
        Ok(buf)
    }
}

/// Transforms points in place; points PROJ cannot map become `NaN`.
fn transform_or_nan(t: &CoordTransform, xs: &mut [f64], ys: &mut [f64]) {
    let (x_in, y_in) = (xs.to_vec(), ys.to_vec());
    if t.transform_coords(xs, ys, &mut []).is_err() {
        // Some point failed: redo them one by one so the others survive.
        for i in 0..xs.len() {
            let (mut x, mut y) = ([x_in[i]], [y_in[i]]);
            if t.transform_coords(&mut x, &mut y, &mut []).is_ok() {
                (xs[i], ys[i]) = (x[0], y[0]);
            } else {
                (xs[i], ys[i]) = (f64::NAN, f64::NAN);
            }
        }
    }
    for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
        // PROJ marks failures with HUGE_VAL.
        if !(x.is_finite() && y.is_finite()) || x.abs() > 1e30 || y.abs() > 1e30 {
            (*x, *y) = (f64::NAN, f64::NAN);
        }
    }
}

/// Encodes 8-bit RGBA pixels as a PNG.
pub fn encode_png(width_px: usize, height_px: usize, rgba: &[u8]) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| EngineError::Backend(format!("png encoding failed: {e}"));
    let (w, h) = (
        u32::try_from(width_px).map_err(|_| EngineError::InvalidInput("tile too wide".into()))?,
        u32::try_from(height_px).map_err(|_| EngineError::InvalidInput("tile too tall".into()))?,
    );
    let mut out = Vec::with_capacity(rgba.len() / 4);
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgba).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_bounds_tile_the_mercator_square() {
        assert_eq!(
            TileId::new(0, 0, 0).unwrap().bounds_m(),
            [
                -WEB_MERCATOR_HALF_M,
                -WEB_MERCATOR_HALF_M,
                WEB_MERCATOR_HALF_M,
                WEB_MERCATOR_HALF_M
            ]
        );
        // z1: (1, 0) is the north-east quarter.
        assert_eq!(
            TileId::new(1, 1, 0).unwrap().bounds_m(),
            [0.0, 0.0, WEB_MERCATOR_HALF_M, WEB_MERCATOR_HALF_M]
        );
        assert!(TileId::new(2, 4, 0).is_err());
        assert!(TileId::new(2, 0, 4).is_err());
        assert!(TileId::new(MAX_ZOOM + 1, 0, 0).is_err());
        assert!((tile_resolution_m(0) - 156_543.033_928_041).abs() < 1e-6);
    }

    #[test]
    fn png_round_trips_through_the_decoder() {
        let rgba: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 5) as u8).collect();
        let bytes = encode_png(4, 3, &rgba).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut out = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut out).unwrap();
        assert_eq!((info.width, info.height), (4, 3));
        assert_eq!(info.color_type, png::ColorType::Rgba);
        assert_eq!(&out[..info.buffer_size()], &rgba[..]);
    }
}
