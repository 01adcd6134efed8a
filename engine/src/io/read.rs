//! Windowed reads onto the working grid: halos padded with nodata, nodata turned into `NaN`,
//! bands on other grids resampled (nearest for codes, cubic for continuous values).

use gdal::Dataset;
use kernels::warp::{nearest_separable, warp, Resampling, SourceMesh};
use kernels::Plane;

use crate::error::{EngineError, Result};
use crate::grid::Window;
use crate::io::reason;
use crate::io::scene::{open_dataset, Mapping, Scene, SceneBand};
use crate::io::tiff_read::TiffBand;
use crate::recipe::Resample;

/// Open datasets for every band of a scene. GDAL handles are not shared between threads:
/// each worker opens its own reader.
#[derive(Debug)]
pub struct SceneReader<'s> {
    scene: &'s Scene,
    datasets: Vec<Dataset>,
    /// Per band, the direct reader when its file's layout is one it decodes.
    direct: Vec<Option<TiffBand>>,
}

/// Set to `1`, every read goes through GDAL (for comparing the two readers).
pub const GDAL_READS_ENV: &str = "CONSTELLATION_GDAL_READS";

impl<'s> SceneReader<'s> {
    /// Opens a handle on every band's file.
    pub fn open(scene: &'s Scene) -> Result<Self> {
        let datasets = scene
            .bands
            .iter()
            .map(|b| open_dataset(&b.path))
            .collect::<Result<Vec<_>>>()?;
        let gdal_only = std::env::var(GDAL_READS_ENV).is_ok_and(|v| v == "1");
        // A file the direct reader cannot make sense of is read by GDAL, which reports
        // what is wrong with it.
        let direct = scene
            .bands
            .iter()
            .map(|b| {
                (!gdal_only)
                    .then(|| TiffBand::open(&b.path, b.band).ok().flatten())
                    .flatten()
            })
            .collect();
        Ok(Self {
            scene,
            datasets,
            direct,
        })
    }

    /// Reads band `index` of the scene over `window` of the working grid (which may overhang
    /// the grid: outside pixels are nodata). Nodata becomes `NaN`.
    pub fn read(&self, index: usize, window: Window) -> Result<Vec<f32>> {
        let band = &self.scene.bands[index];
        let src = Source {
            ds: &self.datasets[index],
            direct: self.direct[index].as_ref(),
            band,
        };
        match band.mapping {
            Mapping::Identity => read_direct(&src, window),
            Mapping::Affine {
                scale_x,
                offset_x,
                scale_y,
                offset_y,
                resample,
            } => {
                let method = match resample {
                    Resample::Nearest => Resampling::Nearest,
                    Resample::Cubic => Resampling::Cubic,
                };
                read_resampled(
                    &src,
                    window,
                    (scale_x, scale_y),
                    (offset_x, offset_y),
                    method,
                )
            }
        }
    }
}

/// A band to read, with both readers.
struct Source<'a> {
    ds: &'a Dataset,
    direct: Option<&'a TiffBand>,
    band: &'a SceneBand,
}

fn read_err(band: &SceneBand, e: gdal::errors::GdalError) -> EngineError {
    EngineError::Read {
        path: band.path.clone(),
        reason: reason(e),
    }
}

/// Reads a window of the band's own grid, clipped; returns `(clip, values)` with nodata → NaN.
fn read_clipped(src: &Source, w: Window) -> Result<Option<(Window, Vec<f32>)>> {
    let band = src.band;
    let Some(clip) = w.clip(band.grid.width_px, band.grid.height_px) else {
        return Ok(None);
    };
    let mut buf = vec![0.0f32; clip.len_px()];
    // The direct reader turns nodata into NaN as it decodes. A block it cannot place (or
    // decode) is read again through GDAL, whose error, if any, is the one reported.
    if let Some(direct) = src.direct {
        if let Ok(true) = direct.read(clip, band.nodata, &mut buf) {
            return Ok(Some((clip, buf)));
        }
    }
    let rb = src
        .ds
        .rasterband(band.band)
        .map_err(|e| read_err(band, e))?;
    rb.read_into_slice::<f32>(
        (clip.x_px as isize, clip.y_px as isize),
        (clip.width_px, clip.height_px),
        (clip.width_px, clip.height_px),
        &mut buf,
        None,
    )
    .map_err(|e| read_err(band, e))?;
    // One pass: the declared nodata (NaN already means nodata) and infinities become NaN.
    let nd = band.nodata.map_or(f32::NAN, |nd| nd as f32);
    for v in &mut buf {
        if *v == nd || v.is_infinite() {
            *v = f32::NAN;
        }
    }
    Ok(Some((clip, buf)))
}

fn read_direct(src: &Source, w: Window) -> Result<Vec<f32>> {
    let Some((clip, buf)) = read_clipped(src, w)? else {
        return Ok(vec![f32::NAN; w.len_px()]);
    };
    if clip == w {
        return Ok(buf);
    }
    let mut out = vec![f32::NAN; w.len_px()];
    let dx = (clip.x_px - w.x_px) as usize;
    let dy = (clip.y_px - w.y_px) as usize;
    for y in 0..clip.height_px {
        let dst = (y + dy) * w.width_px + dx;
        out[dst..dst + clip.width_px]
            .copy_from_slice(&buf[y * clip.width_px..(y + 1) * clip.width_px]);
    }
    Ok(out)
}

/// The band window covering the source positions of `w`'s pixel centres, `margin_px` wider.
fn covering(w: Window, scale: (f64, f64), offset: (f64, f64), margin_px: i64) -> Window {
    let x0 = scale.0 * (w.x_px as f64 + 0.5) + offset.0;
    let x1 = scale.0 * ((w.x_px + w.width_px as i64) as f64 - 0.5) + offset.0;
    let y0 = scale.1 * (w.y_px as f64 + 0.5) + offset.1;
    let y1 = scale.1 * ((w.y_px + w.height_px as i64) as f64 - 0.5) + offset.1;
    let (cx0, cx1) = (x0.floor() as i64 - margin_px, x1.floor() as i64 + margin_px);
    let (cy0, cy1) = (y0.floor() as i64 - margin_px, y1.floor() as i64 + margin_px);
    Window::new(cx0, cy0, (cx1 - cx0 + 1) as usize, (cy1 - cy0 + 1) as usize)
}

/// Resamples a same-CRS, north-up band onto window `w` of the working grid with the warp
/// kernel. The mesh has a node at every pixel (each computed by the same affine formula), so
/// a pixel's value does not depend on how the grid was tiled.
fn read_resampled(
    src: &Source,
    w: Window,
    scale: (f64, f64),
    offset: (f64, f64),
    method: Resampling,
) -> Result<Vec<f32>> {
    // 3 px beyond the footprint: the cubic support plus one, so window edges act as none.
    let src_w = covering(w, scale, offset, 3);
    let values = read_direct(src, src_w)?;
    let (sx, sy) = (src_w.x_px as f64, src_w.y_px as f64);
    let src_plane = Plane::new(src_w.width_px, src_w.height_px, &values)?;
    let mut out = vec![0.0f32; w.len_px()];
    if method == Resampling::Nearest {
        // The mapping is separable: one source index per column and per row, computed with
        // the mesh's own formula, so the result is the warp's bit for bit.
        let xs: Vec<f64> = (0..w.width_px)
            .map(|tx| scale.0 * (w.x_px as f64 + (tx as f64 + 0.5)) + offset.0 - sx)
            .collect();
        let ys: Vec<f64> = (0..w.height_px)
            .map(|ty| scale.1 * (w.y_px as f64 + (ty as f64 + 0.5)) + offset.1 - sy)
            .collect();
        nearest_separable(src_plane, &xs, &ys, &mut out)?;
        return Ok(out);
    }
    let mesh = SourceMesh::from_fn(1, w.width_px, w.height_px, |tx, ty| {
        (
            scale.0 * (w.x_px as f64 + tx) + offset.0 - sx,
            scale.1 * (w.y_px as f64 + ty) + offset.1 - sy,
        )
    })?;
    warp(src_plane, &mesh, method, w.width_px, w.height_px, &mut out)?;
    Ok(out)
}
