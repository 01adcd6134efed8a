//! Helpers the end-to-end service tests share: synthetic scenes, output paths, raster bits.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The recipe the service tests queue.
pub const RECIPE: &str = "ndvi-sentinel2-l2a";

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A synthetic Sentinel-2 scene; returns the inputs the recipe needs.
pub fn scene(dir: &Path, size_px: usize, seed: u64) -> Vec<String> {
    fixtures::generate(&fixtures::SceneSpec::sentinel2(size_px, seed), dir).expect("fixtures");
    ["B04.tif", "B08.tif", "SCL.tif"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

/// The COG in `out` (the scene id is the scene folder's name).
pub fn cog_of(out: &Path) -> PathBuf {
    let name = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(&format!("_{RECIPE}.tif")))
        .unwrap_or_else(|| "missing.tif".into());
    out.join(name)
}

/// Every band and overview of a raster as bits.
pub fn raster_bits(path: &Path) -> Vec<Vec<u32>> {
    fn bits(band: &gdal::raster::RasterBand<'_>) -> Vec<u32> {
        let (w, h) = band.size();
        let buf = band
            .read_as::<f32>((0, 0), (w, h), (w, h), None)
            .expect("read");
        buf.data().iter().map(|v| v.to_bits()).collect()
    }
    let ds = gdal::Dataset::open(path).expect("open the COG");
    let mut all = Vec::new();
    for b in 1..=ds.raster_count() {
        let band = ds.rasterband(b).expect("band");
        all.push(bits(&band));
        let n = band.overview_count().expect("overviews");
        assert!(n > 0 || band.size().0 <= 512, "overviews are compared too");
        for k in 0..n {
            all.push(bits(&band.overview(k as usize).expect("overview")));
        }
    }
    all
}
