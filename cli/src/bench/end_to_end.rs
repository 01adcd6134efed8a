//! `constellation bench`'s end-to-end part (needs GDAL): generated and real scenes run by each
//! contender as its own process, outputs compared before times count, and memory as the scene
//! grows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use benches::e2e::{self, Inputs};
use benches::report::Report;

use super::BenchArgs;

fn s2_inputs(scene: &fixtures::GeneratedScene) -> Result<Inputs> {
    let get = |r: &str| {
        scene
            .path(r)
            .map(Path::to_path_buf)
            .with_context(|| format!("synthetic scene has no {r} band"))
    };
    Ok(Inputs {
        sensor: "s2",
        red: get("red")?,
        nir: get("nir")?,
        qa: get("scl")?,
        boa_add_offset: -1000.0,
    })
}

/// The end-to-end cases: generated and real scenes through every contender, and memory as the
/// scene grows.
pub(super) fn run(args: &BenchArgs, report: &mut Report) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let side_px = if args.quick { 5490 } else { 10980 };
    let work = &args.work;
    eprintln!("generating a synthetic Sentinel-2 scene of {side_px}²");
    let s2 = fixtures::generate(
        &fixtures::SceneSpec::sentinel2(side_px, 2024),
        &work.join(format!("s2-{side_px}")),
    )?;
    let inputs = s2_inputs(&s2)?;
    eprintln!("end to end on the synthetic scene");
    let case = e2e::run_case(
        "synthetic Sentinel-2 L2A, uint16, SCL at 20 m",
        &exe,
        &args.peers,
        &inputs,
        &work.join(format!("e2e-{side_px}")),
    )?;
    let ours = case
        .contenders
        .first()
        .map(|c| (c.seconds, c.peak_rss_bytes))
        .unwrap_or_default();
    report
        .memory
        .push(((side_px * side_px) as u64, ours.0, ours.1));
    report.cases.push(case);

    if let Some(real) = &args.real {
        let c2 = real.join("LC08_L2SP_008059_20191201_20200825_02_T1");
        let landsat = Inputs {
            sensor: "landsat",
            red: PathBuf::from(format!("{}_SR_B4.TIF", c2.display())),
            nir: PathBuf::from(format!("{}_SR_B5.TIF", c2.display())),
            qa: PathBuf::from(format!("{}_QA_PIXEL.TIF", c2.display())),
            boa_add_offset: 0.0,
        };
        if landsat.red.is_file() {
            eprintln!("end to end on the real Landsat C2 L2 bands");
            report.cases.push(e2e::run_case(
                "real Landsat 8 C2 L2 SR (512², QA_PIXEL)",
                &exe,
                &args.peers,
                &landsat,
                &work.join("e2e-landsat"),
            )?);
        }
        let s2_real = Inputs {
            sensor: "s2",
            red: real.join("B04.tif"),
            nir: real.join("B08.tif"),
            qa: real.join("SCL.tif"),
            boa_add_offset: 0.0,
        };
        if s2_real.red.is_file() {
            eprintln!("end to end on the real Sentinel-2 bands");
            report.cases.push(e2e::run_case(
                "real Sentinel-2 L2A (1098², SCL at 200 m)",
                &exe,
                &args.peers,
                &s2_real,
                &work.join("e2e-s2-real"),
            )?);
        }
    }

    // Memory as the scene grows: four times the pixels.
    let big_px = side_px * 2;
    eprintln!("memory check on a {big_px}² scene");
    let big = fixtures::generate(
        &fixtures::SceneSpec::sentinel2(big_px, 2025),
        &work.join(format!("s2-{big_px}")),
    )?;
    let (secs, rss) = e2e::ours_only(&exe, &s2_inputs(&big)?, work)?;
    report.memory.push(((big_px * big_px) as u64, secs, rss));
    // The big scene is only needed for this; free the disk.
    let _ = std::fs::remove_dir_all(work.join(format!("s2-{big_px}")));
    Ok(())
}
