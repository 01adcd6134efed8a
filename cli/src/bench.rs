//! `constellation bench`: the memory-bandwidth limit, every kernel's throughput against it,
//! and end-to-end runs against numpy + GDAL, `gdal_calc.py` and the I/O floor, all in one run,
//! written to `benches/results/` as JSON, Markdown and SVG.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use benches::e2e::{self, Inputs};
use benches::machine::Machine;
use benches::report::Report;
use benches::throughput::{self, Kernel};

/// Options of a bench run.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A short run (under 3 minutes on 2 cores): fewer sizes, a 5490² end-to-end scene.
    #[arg(long)]
    quick: bool,
    /// Where results are written.
    #[arg(long, default_value = "benches/results")]
    out: PathBuf,
    /// Scratch folder for generated scenes and outputs.
    #[arg(long, default_value = "out/bench")]
    work: PathBuf,
    /// The folder of real rasters, for end-to-end cases on real band files.
    #[arg(long)]
    real: Option<PathBuf>,
    /// The peer scripts.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/peers"))]
    peers: PathBuf,
    /// Skip the end-to-end comparisons (kernels only).
    #[arg(long)]
    kernels_only: bool,
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    engine::stac::rfc3339(secs)
}

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

/// Runs the bench and writes the reports; returns the Markdown path.
pub fn run(args: &BenchArgs) -> Result<PathBuf> {
    let started = Instant::now();
    let machine = Machine::detect();
    let mode = if args.quick { "quick" } else { "full" };
    eprintln!("bench ({mode}) on {}", machine.describe());
    let (stream_len, stream_reps) = if args.quick {
        (1 << 24, 5)
    } else {
        (1 << 26, 10)
    };
    let bandwidth = benches::stream::measure(stream_len, stream_reps);
    eprintln!(
        "limit: copy {:.1} GB/s, triad {:.1} GB/s",
        bandwidth.copy_bytes_per_s / 1e9,
        bandwidth.triad_bytes_per_s / 1e9
    );
    let (batches, min_time, reps): (&[usize], _, _) = if args.quick {
        (&[1, 16], Duration::from_millis(150), 2)
    } else {
        (&[1, 8, 32], Duration::from_millis(500), 3)
    };
    let mut rows = Vec::new();
    for kernel in Kernel::ALL {
        for tile_px in [256, 512, 1024] {
            for &batch in batches {
                let row = throughput::measure(kernel, tile_px, batch, min_time, reps);
                eprintln!(
                    "{:22} tile {tile_px:4} batch {batch:2}: {:7.0} Mpx/s {:5.1} GB/s",
                    row.kernel,
                    row.mpx_per_s,
                    row.bytes_per_s / 1e9
                );
                rows.push(row);
            }
        }
    }
    // numpy on the same kernels, same pixel count as the largest batch, same run.
    let numpy_px = 1024 * 1024 * batches.last().copied().unwrap_or(1);
    let numpy = std::process::Command::new("/usr/bin/python3")
        .arg(args.peers.join("numpy_kernels.py"))
        .arg(numpy_px.to_string())
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let mut numpy_notes = Vec::new();
    if let Some(v) = numpy.as_ref().and_then(|v| v.as_object()) {
        for (kernel, rate) in v {
            let Some(rate) = rate.as_f64() else { continue };
            let ours = rows
                .iter()
                .filter(|r| {
                    r.kernel == *kernel && r.tile_px == 1024 && r.batch * 1024 * 1024 == numpy_px
                })
                .map(|r| r.mpx_per_s)
                .fold(0.0f64, f64::max);
            numpy_notes.push(format!(
                "{kernel}: numpy {rate:.0} Mpx/s on {numpy_px} px, Constellation CPU {ours:.0} Mpx/s on the same pixel count (1024² tiles): {:.1}× (numpy runs one thread)",
                ours / rate
            ));
        }
    } else {
        numpy_notes.push("numpy kernels did not run".into());
    }
    // The limit again after the kernels: a shared machine's bandwidth drifts, and the higher
    // of the two is the stricter yardstick.
    let again = benches::stream::measure(stream_len, stream_reps);
    let bandwidth = benches::stream::Bandwidth {
        copy_bytes_per_s: bandwidth.copy_bytes_per_s.max(again.copy_bytes_per_s),
        triad_bytes_per_s: bandwidth.triad_bytes_per_s.max(again.triad_bytes_per_s),
    };
    let mut report = Report {
        machine,
        mode: mode.into(),
        date: now_rfc3339(),
        bandwidth,
        rows,
        cases: Vec::new(),
        memory: Vec::new(),
        notes: numpy_notes
            .into_iter()
            .chain(["GPU rows appear only where measured on a GPU; this run had none.".into()])
            .collect(),
    };
    if !args.kernels_only {
        end_to_end(args, &mut report)?;
    }
    report.notes.push(format!(
        "the whole bench took {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let stem = args.out.join(format!("{}-{mode}", report.machine.slug()));
    let md = stem.with_extension("md");
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_vec_pretty(&report.to_json())?,
    )?;
    std::fs::write(&md, report.to_markdown())?;
    std::fs::write(stem.with_extension("svg"), report.to_svg())?;
    Ok(md)
}

fn end_to_end(args: &BenchArgs, report: &mut Report) -> Result<()> {
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
