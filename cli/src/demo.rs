//! `constellation demo`: synthetic scenes written and the main recipes run over them, plus
//! the real fixture rasters when their folder is given.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::run::{report, run, RunArgs};

fn args(recipe: &str, inputs: Vec<String>, out: &Path, params: Vec<String>) -> RunArgs {
    RunArgs {
        recipe: Some(recipe.to_string()),
        expr: None,
        inputs,
        out: out.to_path_buf(),
        backend: engine::backend::BackendKind::Cpu,
        tile_px: 512,
        threads: None,
        params,
        compression: "deflate".into(),
        nodata: -9999.0,
        json: false,
    }
}

fn paths(scene: &fixtures::GeneratedScene, roles: &[&str]) -> Result<Vec<String>> {
    roles
        .iter()
        .map(|r| {
            scene
                .path(r)
                .map(|p| format!("{r}={}", p.display()))
                .with_context(|| format!("synthetic scene has no {r} band"))
        })
        .collect()
}

/// Generates fixtures under `out/fixtures` and runs the demo batch into `out`.
pub fn run_demo(out: &Path, size_px: usize, real: Option<&Path>) -> Result<()> {
    let fixtures_dir = out.join("fixtures");
    let mut jobs: Vec<RunArgs> = Vec::new();

    let s2_dir = fixtures_dir.join("sentinel2");
    let s2 = fixtures::generate(&fixtures::SceneSpec::sentinel2(size_px, 7), &s2_dir)
        .with_context(|| format!("cannot write fixtures to {}", s2_dir.display()))?;
    jobs.push(args(
        "ndvi-sentinel2-l2a",
        paths(&s2, &["red", "nir", "scl"])?,
        out,
        vec![],
    ));
    let ls_dir = fixtures_dir.join("landsat");
    let ls = fixtures::generate(&fixtures::SceneSpec::landsat(size_px, size_px, 8), &ls_dir)
        .with_context(|| format!("cannot write fixtures to {}", ls_dir.display()))?;
    jobs.push(args(
        "ndvi-landsat-c2l2",
        paths(&ls, &["red", "nir", "qa"])?,
        out,
        vec![],
    ));
    jobs.push(args(
        "evi-landsat-c2l2",
        paths(&ls, &["nir", "red", "blue", "qa"])?,
        out,
        vec![],
    ));
    let dem_dir = fixtures_dir.join("dem");
    let dem = fixtures::generate(&fixtures::SceneSpec::dem(size_px, size_px, 9), &dem_dir)
        .with_context(|| format!("cannot write fixtures to {}", dem_dir.display()))?;
    jobs.push(args("hillshade", paths(&dem, &["dem"])?, out, vec![]));

    if let Some(real) = real {
        let f = |name: &str| -> String { real.join(name).display().to_string() };
        let c2 = "LC08_L2SP_008059_20191201_20200825_02_T1";
        jobs.push(args(
            "ndvi-landsat-c2l2",
            vec![
                f(&format!("{c2}_SR_B4.TIF")),
                f(&format!("{c2}_SR_B5.TIF")),
                f(&format!("{c2}_QA_PIXEL.TIF")),
            ],
            out,
            vec![],
        ));
        // The 2020 product predates processing baseline 04.00: no BOA offset.
        jobs.push(args(
            "ndvi-sentinel2-l2a",
            vec![f("B04.tif"), f("B08.tif"), f("SCL.tif")],
            out,
            vec!["boa_add_offset=0".into()],
        ));
        jobs.push(args(
            "hillshade",
            vec![f("Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif")],
            out,
            vec![],
        ));
    }
    for job in &jobs {
        let summary = run(job)?;
        report(&summary, false);
    }
    println!("outputs in {}", PathBuf::from(out).display());
    Ok(())
}
