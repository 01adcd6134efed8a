//! Atomic Cloud-Optimized GeoTIFF output: tiles stream into a hidden tiled GeoTIFF beside the
//! target, which GDAL's COG driver then copies (compression, predictor, overviews) into a
//! hidden file that is renamed into place only when complete.

use std::path::{Path, PathBuf};

use gdal::cpl::CslStringList;
use gdal::raster::Buffer;
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DriverManager, Metadata};

use crate::error::{EngineError, Result};
use crate::grid::{Grid, Window};
use crate::io::reason;

/// Compression for the COG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Deflate,
    Zstd,
}

impl Compression {
    fn gdal_name(self) -> &'static str {
        match self {
            Self::Deflate => "DEFLATE",
            Self::Zstd => "ZSTD",
        }
    }

    /// Parses `deflate` or `zstd`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "deflate" => Ok(Self::Deflate),
            "zstd" => Ok(Self::Zstd),
            other => Err(EngineError::InvalidInput(format!(
                "compression {other:?}: expected deflate or zstd"
            ))),
        }
    }
}

/// Per-band facts written into the COG's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct BandMeta {
    pub description: String,
    /// `(min, max, mean, std)` of the valid pixels, when any.
    pub statistics: Option<(f64, f64, f64, f64)>,
}

/// A COG being written. Dropping it without [`CogWriter::finish`] removes every partial file.
#[derive(Debug)]
pub struct CogWriter {
    staging: Option<Dataset>,
    staging_path: PathBuf,
    cog_partial_path: PathBuf,
    final_path: PathBuf,
    nodata: f64,
    compression: Compression,
    band_count: usize,
    /// Overview levels the writer builds from each tile (empty: GDAL builds them at the end).
    overview_levels: usize,
}

/// Overview decimation factors the COG gets: halve until the image fits one 512 px block.
pub fn overview_factors(width_px: usize, height_px: usize) -> Vec<i32> {
    let mut factors = Vec::new();
    let (mut w, mut h, mut f) = (width_px, height_px, 1i32);
    while w > 512 || h > 512 {
        f *= 2;
        w = w.div_ceil(2);
        h = h.div_ceil(2);
        factors.push(f);
    }
    factors
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl CogWriter {
    /// Starts a `band_count`-band `Float32` COG at `final_path` on `grid`, to be written in
    /// tiles of `tile_px`. When `tile_px` is divisible by every overview factor, each tile's
    /// overview blocks are computed as it is written (the mean of valid pixels, level from
    /// level), which saves GDAL a second pass over the whole image.
    pub fn create(
        final_path: &Path,
        grid: &Grid,
        band_count: usize,
        nodata: f64,
        compression: Compression,
        tile_px: usize,
    ) -> Result<Self> {
        crate::io::init();
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let name = final_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| write_err(final_path, "output path has no file name"))?;
        let staging_path = dir.join(format!(".{name}.staging.tif"));
        let cog_partial_path = dir.join(format!(".{name}.partial"));
        let driver = DriverManager::get_driver_by_name("GTiff")
            .map_err(|e| write_err(final_path, reason(e)))?;
        let options: CslStringList = [
            "TILED=YES",
            "BLOCKXSIZE=512",
            "BLOCKYSIZE=512",
            "COMPRESS=ZSTD",
            "ZSTD_LEVEL=1",
            "BIGTIFF=IF_SAFER",
            "INTERLEAVE=BAND",
        ]
        .into_iter()
        .collect();
        let mut ds = driver
            .create_with_band_type_with_options::<f32, _>(
                &staging_path,
                grid.width_px,
                grid.height_px,
                band_count,
                &options,
            )
            .map_err(|e| write_err(&staging_path, reason(e)))?;
        ds.set_geo_transform(&grid.geotransform)
            .map_err(|e| write_err(&staging_path, reason(e)))?;
        if !grid.crs_wkt.is_empty() {
            let srs = SpatialRef::from_wkt(&grid.crs_wkt)
                .map_err(|e| write_err(&staging_path, reason(e)))?;
            ds.set_spatial_ref(&srs)
                .map_err(|e| write_err(&staging_path, reason(e)))?;
        }
        for b in 1..=band_count {
            let mut rb = ds
                .rasterband(b)
                .map_err(|e| write_err(&staging_path, reason(e)))?;
            rb.set_no_data_value(Some(nodata))
                .map_err(|e| write_err(&staging_path, reason(e)))?;
        }
        let factors = overview_factors(grid.width_px, grid.height_px);
        let aligned = factors.last().is_some_and(|&f| tile_px % (f as usize) == 0);
        let overview_levels = if aligned {
            // Empty overviews, filled tile by tile.
            ds.build_overviews("NONE", &factors, &[])
                .map_err(|e| write_err(&staging_path, reason(e)))?;
            factors.len()
        } else {
            0
        };
        Ok(Self {
            staging: Some(ds),
            staging_path,
            cog_partial_path,
            final_path: final_path.to_path_buf(),
            nodata,
            compression,
            band_count,
            overview_levels,
        })
    }

    /// Writes one tile's bands (each `window.len_px()` values, `NaN` = nodata).
    pub fn write_tile(&mut self, window: Window, mut bands: Vec<Vec<f32>>) -> Result<()> {
        let ds = self
            .staging
            .as_mut()
            .ok_or_else(|| write_err(&self.staging_path, "writer already finished"))?;
        let nodata = self.nodata as f32;
        let err = |e| write_err(&self.staging_path, reason(e));
        for (i, data) in bands.iter_mut().enumerate() {
            let rb = ds.rasterband(i + 1).map_err(err)?;
            // The pyramid first, from the NaN-marked data.
            let (mut level, mut w, mut h) = (Vec::new(), window.width_px, window.height_px);
            for k in 0..self.overview_levels {
                let src = if k == 0 { &data[..] } else { &level[..] };
                let (next, w2, h2) = kernels::overview::halve_mean(src, w, h)?;
                (level, w, h) = (next, w2, h2);
                let div = 1i64 << (k + 1);
                let mut ov = rb.overview(k).map_err(err)?;
                let mut buf = Buffer::new((w, h), to_nodata(level.clone(), nodata));
                ov.write(
                    ((window.x_px / div) as isize, (window.y_px / div) as isize),
                    (w, h),
                    &mut buf,
                )
                .map_err(err)?;
            }
            let mut rb = rb;
            let mut buf = Buffer::new(
                (window.width_px, window.height_px),
                to_nodata(std::mem::take(data), nodata),
            );
            rb.write(
                (window.x_px as isize, window.y_px as isize),
                (window.width_px, window.height_px),
                &mut buf,
            )
            .map_err(err)?;
        }
        Ok(())
    }

    /// Writes band metadata, converts to COG and renames into place. Returns the final path.
    pub fn finish(mut self, bands: &[BandMeta]) -> Result<PathBuf> {
        let mut ds = self
            .staging
            .take()
            .ok_or_else(|| write_err(&self.staging_path, "writer already finished"))?;
        for (i, meta) in bands.iter().enumerate().take(self.band_count) {
            let mut rb = ds
                .rasterband(i + 1)
                .map_err(|e| write_err(&self.staging_path, reason(e)))?;
            rb.set_description(&meta.description)
                .map_err(|e| write_err(&self.staging_path, reason(e)))?;
            if let Some((min, max, mean, std)) = meta.statistics {
                for (k, v) in [
                    ("STATISTICS_MINIMUM", min),
                    ("STATISTICS_MAXIMUM", max),
                    ("STATISTICS_MEAN", mean),
                    ("STATISTICS_STDDEV", std),
                ] {
                    rb.set_metadata_item(k, &format!("{v}"), "")
                        .map_err(|e| write_err(&self.staging_path, reason(e)))?;
                }
            }
        }
        ds.flush_cache()
            .map_err(|e| write_err(&self.staging_path, reason(e)))?;
        let cog = DriverManager::get_driver_by_name("COG")
            .map_err(|e| write_err(&self.final_path, reason(e)))?;
        let compress = format!("COMPRESS={}", self.compression.gdal_name());
        let options: CslStringList = [
            compress.as_str(),
            "PREDICTOR=YES",
            "BLOCKSIZE=512",
            if self.overview_levels > 0 {
                "OVERVIEWS=FORCE_USE_EXISTING"
            } else {
                "OVERVIEWS=AUTO"
            },
            "OVERVIEW_RESAMPLING=AVERAGE",
            "NUM_THREADS=ALL_CPUS",
            "BIGTIFF=IF_SAFER",
        ]
        .into_iter()
        .collect();
        let out = ds
            .create_copy(&cog, &self.cog_partial_path, &options)
            .map_err(|e| write_err(&self.final_path, reason(e)))?;
        out.close()
            .map_err(|e| write_err(&self.final_path, reason(e)))?;
        drop(ds);
        std::fs::rename(&self.cog_partial_path, &self.final_path)
            .map_err(|e| write_err(&self.final_path, e))?;
        let _ = std::fs::remove_file(&self.staging_path);
        Ok(self.final_path.clone())
    }
}

fn to_nodata(mut data: Vec<f32>, nodata: f32) -> Vec<f32> {
    for v in &mut data {
        if !v.is_finite() {
            *v = nodata;
        }
    }
    data
}

impl Drop for CogWriter {
    fn drop(&mut self) {
        self.staging = None;
        let _ = std::fs::remove_file(&self.staging_path);
        let _ = std::fs::remove_file(&self.cog_partial_path);
    }
}
