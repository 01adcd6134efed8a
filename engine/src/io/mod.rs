//! Raster I/O: scenes from band files (opened through GDAL), windowed reads with halos and
//! resampling onto the working grid (common TIFF layouts decoded directly, the rest by GDAL),
//! tile footprints, and atomic COG writing.

pub mod cog;
pub mod footprint;
pub mod read;
pub mod scene;
pub mod tiff;
pub mod tiff_read;

use crate::grid::Grid;

/// Turns a GDAL error into a one-line reason: GDAL's own message without the binding's
/// wrapper ("GDAL method 'X' returned a NULL pointer. Error msg: '…'").
pub(crate) fn reason(e: gdal::errors::GdalError) -> String {
    let full = e.to_string();
    let inner = match full.split_once("Error msg: '") {
        Some((_, rest)) => rest.trim_end().trim_end_matches('\'').to_string(),
        None => match full.split_once("error msg: '") {
            Some((_, rest)) => rest.trim_end().trim_end_matches('\'').to_string(),
            None => full.clone(),
        },
    };
    let inner = if inner.trim().is_empty() {
        "gdal cannot open or read it".to_string()
    } else {
        inner
    };
    let s = inner.trim().trim_end_matches('.');
    // GDAL's messages start with a capital; ours are lowercase.
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::from("unknown gdal error"),
    }
}

/// The grid of an open dataset.
pub(crate) fn grid_of(ds: &gdal::Dataset) -> Grid {
    let (width_px, height_px) = ds.raster_size();
    let geotransform = ds.geo_transform().unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let (crs_wkt, epsg) = match ds.spatial_ref() {
        Ok(mut srs) => {
            let code = srs
                .auth_code()
                .ok()
                .or_else(|| {
                    srs.auto_identify_epsg()
                        .ok()
                        .and_then(|_| srs.auth_code().ok())
                })
                .and_then(|c| u32::try_from(c).ok());
            (srs.to_wkt().unwrap_or_default(), code)
        }
        Err(_) => (String::new(), None),
    };
    Grid {
        width_px,
        height_px,
        geotransform,
        crs_wkt,
        epsg,
    }
}

/// Makes GDAL quiet on stderr (errors still come back as values) and sets sane defaults.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gdal::config::set_error_handler(|_, _, _| {});
        // A bounded block cache: neighbouring tiles share source blocks, and the writer's
        // dirty blocks are flushed as the cache fills, so memory stays flat in scene size.
        if std::env::var_os("GDAL_CACHEMAX").is_none() {
            let _ = gdal::config::set_config_option("GDAL_CACHEMAX", "128");
        }
    });
}
