//! `constellation bench`: the memory-bandwidth limit, every kernel's throughput against it,
//! and end-to-end runs against numpy + GDAL, `gdal_calc.py` and the I/O floor, all in one run,
//! written to `benches/results/` as JSON, Markdown and SVG.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use benches::machine::Machine;
use benches::report::Report;
use benches::throughput::{self, Kernel};

#[cfg(feature = "gdal")]
mod end_to_end;

/// The end-to-end part of the bench: runs on scenes, so only in a build with GDAL.
type EndToEnd = fn(&BenchArgs, &mut Report) -> Result<()>;
#[cfg(feature = "gdal")]
const END_TO_END: Option<EndToEnd> = Some(end_to_end::run);
#[cfg(not(feature = "gdal"))]
const END_TO_END: Option<EndToEnd> = None;

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
    #[cfg(feature = "gdal")]
    #[arg(long, default_value = "out/bench")]
    work: PathBuf,
    /// The folder of real rasters, for end-to-end cases on real band files.
    #[cfg(feature = "gdal")]
    #[arg(long)]
    real: Option<PathBuf>,
    /// The peer scripts.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/peers"))]
    peers: PathBuf,
    /// Skip the end-to-end comparisons (kernels only; always so in a build without GDAL).
    #[arg(long)]
    kernels_only: bool,
    /// Also measure the element-wise kernels through these backends (`cpu`, `wgpu`, `cuda`),
    /// host to host and, on CUDA and wgpu, resident on the device, each against limits measured
    /// in the same run. A backend that cannot start is reported as not run.
    #[arg(long, value_delimiter = ',')]
    backend: Vec<engine::backend::BackendKind>,
}

/// What the backend part of a run measured, and notes on what it could not.
struct DeviceRows {
    reports: Vec<benches::device::DeviceReport>,
    notes: Vec<String>,
}

/// Measures the kernels through every backend `--backend` names.
fn device_rows(args: &BenchArgs, batches: &[usize], min_time: Duration, reps: usize) -> DeviceRows {
    let mut out = DeviceRows {
        reports: Vec::new(),
        notes: Vec::new(),
    };
    // Bigger batches than the CPU table: a device call is worth making only with many tiles.
    let device_batches: Vec<usize> = batches.iter().copied().chain([64]).collect();
    for &kind in &args.backend {
        let backend = match engine::backend::select(kind) {
            Ok((backend, _)) => backend,
            Err(e) => {
                eprintln!("NOT RUN: bench on {kind}: {e}");
                out.notes.push(format!("{kind}: not run ({e})"));
                continue;
            }
        };
        eprintln!("bench: kernels through {}", backend.describe());
        match benches::device::measure(&backend, &[256, 512, 1024], &device_batches, min_time, reps)
        {
            Ok(report) => out.reports.push(report),
            Err(e) => {
                eprintln!("FAILED: bench on {kind}: {e}");
                out.notes.push(format!("{kind}: failed ({e})"));
            }
        }
    }
    if !out.reports.iter().any(|r| r.backend != "cpu") {
        out.notes
            .push("GPU rows appear only where measured on a GPU; this run had none.".into());
    }
    out
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    engine::stac::rfc3339(secs)
}

/// Runs the bench and writes the reports; returns the Markdown path.
pub fn run(args: &BenchArgs) -> Result<PathBuf> {
    let started = Instant::now();
    let machine = Machine::detect();
    let mode = if args.quick { "quick" } else { "full" };
    let end_to_end = END_TO_END.filter(|_| !args.kernels_only);
    if END_TO_END.is_none() && !args.kernels_only {
        eprintln!("bench: built without gdal, so kernels only (no end-to-end comparisons)");
    }
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
    let devices = device_rows(args, batches, min_time, reps);
    let mut report = Report {
        machine,
        mode: mode.into(),
        date: now_rfc3339(),
        bandwidth,
        rows,
        cases: Vec::new(),
        memory: Vec::new(),
        devices: devices.reports,
        notes: numpy_notes.into_iter().chain(devices.notes).collect(),
    };
    if let Some(end_to_end) = end_to_end {
        end_to_end(args, &mut report)?;
    }
    report.notes.push(format!(
        "the whole bench took {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // A run that measured a GPU is named after the card, so its results sit beside the CPU's.
    let gpu = report
        .devices
        .iter()
        .find(|d| d.backend == "cuda")
        .map(|d| {
            // "cuda (NVIDIA H200, compute 9.0, …)": the card's name.
            let inner = d
                .device
                .split_once('(')
                .map_or(d.device.as_str(), |(_, r)| r);
            benches::machine::slug_of(inner.split(',').next().unwrap_or(inner))
        });
    let name = gpu.map_or_else(|| report.machine.slug(), |card| format!("gpu-{card}"));
    let stem = args.out.join(format!("{name}-{mode}"));
    let md = stem.with_extension("md");
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_vec_pretty(&report.to_json())?,
    )?;
    std::fs::write(&md, report.to_markdown())?;
    std::fs::write(stem.with_extension("svg"), report.to_svg())?;
    Ok(md)
}
