//! `constellation conformance`: the backend conformance suite (`engine::conformance`) on each
//! requested backend, one line per case, and every backend's report as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use benches::machine::Machine;
use engine::backend::{self, BackendKind};
use engine::conformance::{self, SuiteOptions};
use engine::EngineError;
use serde_json::{json, Value};

/// The exit statuses, for `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit status:
  0  every backend that ran passed every case
  1  a case failed on some backend (or an error, such as an unwritable --json path)
  2  no case failed, but a backend named with --backend could not start
Backends of the default list that cannot start are reported as NOT RUN and leave the status \
alone; `auto` always starts something.";

/// What runs when `--backend` is not given: everything, reporting what is absent.
const DEFAULT_BACKENDS: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

/// Pixels per chunk of the capped device runs: odd, several chunks per plane.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
const CAPPED_CHUNK_PX: usize = 40_961;

/// Options of `constellation conformance`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConformanceArgs {
    /// Backends to test (auto, cpu, wgpu, cuda), comma-separated or repeated [default:
    /// cpu,wgpu,cuda, where one that cannot start is reported as NOT RUN].
    #[arg(long = "backend", value_delimiter = ',')]
    backends: Vec<BackendKind>,
    /// Seed of the random planes (default: from the clock); a seed replays a run's inputs.
    #[arg(long)]
    seed: Option<u64>,
    /// Also run normalized_difference on one plane of 2^24 + 4097 px, which a device has to
    /// split across bindings and a 2-D grid (slow on a CPU).
    #[arg(long)]
    big_plane: bool,
    /// Write the reports (every backend, the seed, the host) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the suite on every requested backend; the exit status follows [`EXIT_CODES`].
pub(crate) fn run(args: &ConformanceArgs) -> Result<ExitCode> {
    let explicit = !args.backends.is_empty();
    let mut kinds: Vec<BackendKind> = Vec::new();
    for &kind in if explicit {
        args.backends.as_slice()
    } else {
        &DEFAULT_BACKENDS[..]
    } {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let seed = args.seed.unwrap_or_else(conformance::clock_seed);
    let opts = SuiteOptions {
        big_plane: args.big_plane,
        ..SuiteOptions::new(seed)
    };
    println!("conformance seed {seed} (replay with --seed {seed})");
    let (mut failed, mut missing) = (false, false);
    let mut backends = Vec::new();
    for kind in kinds {
        let (backend, note) = match backend::select(kind) {
            Ok(started) => started,
            Err(e) => {
                let reason = match e {
                    EngineError::Backend(reason) => reason,
                    other => other.to_string(),
                };
                println!("NOT RUN: {kind}: {reason}");
                missing |= explicit;
                backends.push(json!({ "requested": kind.name(), "ran": false, "reason": reason }));
                continue;
            }
        };
        if let Some(note) = note {
            println!("{note}");
        }
        let mut suite = |backend: &backend::Backend, name: &str| {
            println!("{name}: {}", backend.describe());
            let report = conformance::run_with(backend, name, &opts, |case| {
                println!("{name}: {case}");
            });
            println!("{}", report.summary());
            failed |= !report.passed();
            backends.push(json!({ "requested": kind.name(), "name": name, "ran": true, "report": report.to_json() }));
        };
        suite(&backend, backend.name());
        #[cfg(feature = "cuda")]
        if kind == BackendKind::Cuda {
            // Again with small chunks: several per plane, so both lanes overlap, the last chunk
            // is short, and in-place kernels write back while later chunks are still packed.
            // A 2 MiB plane budget as well: chains with many planes get smaller chunks still.
            let capped = backend::CudaBackend::new(&backend::CudaOptions {
                max_chunk_px: Some(CAPPED_CHUNK_PX),
                max_device_bytes: Some(2 << 20),
                ..Default::default()
            });
            match capped {
                Ok(capped) => suite(&backend::Backend::from(capped), "cuda (capped)"),
                Err(e) => println!("NOT RUN: cuda (capped): {e}"),
            }
        }
        #[cfg(feature = "wgpu")]
        if kind == BackendKind::Wgpu {
            // Again with small chunks, a 2-D grid of at most 13 workgroups a side and a 2 MiB
            // budget: a resident chain takes several chunks, alternating between its two lanes,
            // with plane slots at aligned offsets past each chunk's end.
            let capped = backend::WgpuBackend::new(&backend::WgpuOptions {
                allow_software: true,
                max_chunk_px: Some(CAPPED_CHUNK_PX),
                max_workgroups_per_dim: Some(13),
                max_device_bytes: Some(2 << 20),
            });
            match capped {
                Ok(capped) => suite(&backend::Backend::from(capped), "wgpu (capped)"),
                Err(e) => println!("NOT RUN: wgpu (capped): {e}"),
            }
        }
    }
    let code: u8 = if failed {
        1
    } else if missing {
        2
    } else {
        0
    };
    if let Some(path) = &args.json {
        let doc = json!({
            "seed": seed,
            "plane_px": opts.plane_px,
            "big_plane": opts.big_plane,
            "passed": !failed,
            "exit_code": code,
            "constellation_version": env!("CARGO_PKG_VERSION"),
            "host": host(),
            "backends": backends,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("report in {}", path.display());
    }
    Ok(ExitCode::from(code))
}

/// The machine that ran the suite: host name, CPU, cores and memory.
fn host() -> Value {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    let machine = Machine::detect();
    json!({ "name": name, "machine": machine.describe(), "cpu": machine.to_json() })
}
