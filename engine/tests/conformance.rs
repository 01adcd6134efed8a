//! The conformance suite on every backend this build has, plus naga validation of every WGSL
//! shader. The suite itself is `engine::conformance` (also behind `constellation conformance`):
//! every element-wise kernel held to the CPU reference with a tolerance stated per kernel, on
//! fresh random planes each run (seeded from the clock; set `CONFORMANCE_SEED` to replay one).
//! A backend that is not available is reported as NOT RUN on stderr, never counted as passed.

use std::sync::OnceLock;

use engine::backend::{Backend, ExprKernel};
use engine::conformance::{self, Rng, SuiteOptions, EXPRESSIONS, EXPRESSION_BANDS, POISON};

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = std::env::var(conformance::SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(conformance::clock_seed);
        eprintln!(
            "conformance seed: {seed} (replay with {}={seed})",
            conformance::SEED_ENV
        );
        seed
    })
}

/// A backend to put through the suite: started, or why not.
struct Candidate {
    name: &'static str,
    backend: Result<Backend, String>,
    /// Whether to add the big-plane case (on a device's real limits: slow on a CPU).
    big_plane: bool,
}

/// Pixels per dispatch on the capped device backends: odd, not a multiple of the workgroup.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const CHUNK_CAP_PX: usize = 40_961;
/// Workgroups per grid dimension on the capped device backends.
#[cfg(feature = "wgpu")]
const WORKGROUP_CAP: u32 = 13;

/// Every backend this build can try. A device backend runs twice: with small chunk and grid
/// caps, so that every case exercises plane splitting and 2-D dispatch, and on the device's
/// real limits with the big plane.
fn candidates() -> Vec<Candidate> {
    let mut all = vec![Candidate {
        name: "cpu",
        backend: Ok(Backend::Cpu),
        big_plane: false,
    }];
    #[cfg(feature = "wgpu")]
    {
        use engine::backend::{WgpuBackend, WgpuOptions};
        let start = |max_chunk_px: Option<usize>, max_workgroups_per_dim| {
            WgpuBackend::new(&WgpuOptions {
                allow_software: true,
                max_chunk_px,
                max_workgroups_per_dim,
                // Capped runs also get a 2 MiB budget, so long chains take smaller chunks.
                max_device_bytes: max_chunk_px.map(|_| 2 << 20),
            })
            .map(Backend::from)
            .map_err(|e| e.to_string())
        };
        all.push(Candidate {
            name: "wgpu (capped)",
            backend: start(Some(CHUNK_CAP_PX), Some(WORKGROUP_CAP)),
            big_plane: false,
        });
        all.push(Candidate {
            name: "wgpu",
            backend: start(None, None),
            big_plane: true,
        });
    }
    #[cfg(not(feature = "wgpu"))]
    all.push(Candidate {
        name: "wgpu",
        backend: Err("built without the wgpu feature".into()),
        big_plane: false,
    });
    #[cfg(feature = "cuda")]
    {
        use engine::backend::{CudaBackend, CudaOptions};
        let start = |max_chunk_px| {
            CudaBackend::new(&CudaOptions {
                max_chunk_px,
                // Capped runs also get a 2 MiB plane budget, so long chains take smaller chunks.
                max_device_bytes: max_chunk_px.map(|_| 2 << 20),
                ..CudaOptions::default()
            })
            .map(Backend::from)
            .map_err(|e| e.to_string())
        };
        // Capped: several chunks per plane, so both lanes overlap and the tail chunk is short.
        all.push(Candidate {
            name: "cuda (capped)",
            backend: start(Some(CHUNK_CAP_PX)),
            big_plane: false,
        });
        all.push(Candidate {
            name: "cuda",
            backend: start(None),
            big_plane: true,
        });
    }
    #[cfg(not(feature = "cuda"))]
    all.push(Candidate {
        name: "cuda",
        backend: Err("built without the cuda feature".into()),
        big_plane: false,
    });
    all
}

#[test]
fn every_backend_present_passes_the_suite() {
    let seed = seed();
    let mut failed = Vec::new();
    let mut ran = 0;
    for c in candidates() {
        let backend = match c.backend {
            Ok(b) => b,
            Err(reason) => {
                eprintln!("NOT RUN: {} conformance cases: {reason}", c.name);
                continue;
            }
        };
        eprintln!("conformance: {} on {}", c.name, backend.describe());
        let opts = SuiteOptions {
            big_plane: c.big_plane,
            ..SuiteOptions::new(seed)
        };
        let report = conformance::run_with(&backend, c.name, &opts, |case| {
            eprintln!("{}: {case}", c.name);
        });
        eprintln!("{}", report.summary());
        ran += 1;
        if !report.passed() {
            failed.extend(report.failures().map(|f| format!("{}: {f}", c.name)));
        }
    }
    assert!(ran >= 1, "not even the cpu backend ran");
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

#[test]
fn compiled_expressions_match_the_reference_evaluator() {
    // The CPU backend runs the compiled program; tie it to the tree-walking oracle, so that
    // matching the CPU backend means matching eval_reference.
    let len = conformance::DEFAULT_PLANE_PX;
    let p = conformance::random_planes(seed(), 6, 3, len, Rng::value);
    for (text, _) in EXPRESSIONS {
        let kernel = ExprKernel::parse(text, &EXPRESSION_BANDS).expect("valid expression");
        let inputs: Vec<&[f32]> = p.iter().map(Vec::as_slice).collect();
        let mut out = vec![POISON; len];
        Backend::Cpu
            .expr(&kernel, &inputs, &mut out)
            .expect("cpu runs");
        for (i, &o) in out.iter().enumerate().step_by(97) {
            let pixel = [p[0][i], p[1][i], p[2][i]];
            let r = kernels::expr::eval_reference(kernel.typed(), &pixel);
            assert!(
                (r.is_nan() && o.is_nan()) || r == o,
                "{text} at {pixel:?}: {r} vs {o}"
            );
        }
    }
}

/// Every WGSL file and every generated expression shader parses and validates with naga.
#[test]
fn shaders_validate_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders/wgsl");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/wgsl exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no shaders in {}", dir.display());
    // Each kernel file is compiled behind common.wgsl, as the backend embeds it.
    let common = std::fs::read_to_string(dir.join("common.wgsl")).expect("common.wgsl");
    let mut sources: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("readable shader");
            let full = if p.ends_with("common.wgsl") {
                text
            } else {
                format!("{common}{text}")
            };
            (p.display().to_string(), full)
        })
        .collect();
    #[cfg(feature = "wgpu")]
    for (name, _) in engine::backend::wgpu_backend::SHADERS {
        assert!(
            files
                .iter()
                .any(|f| f.file_name().is_some_and(|n| n == name)),
            "embedded shader {name} is not in {}",
            dir.display()
        );
    }
    let mut texts: Vec<&str> = EXPRESSIONS.iter().map(|(t, _)| *t).collect();
    texts.extend([
        "-a",
        "!(a > 1) && b < 2",
        "where(1 < 2, a, 3)",
        "5",
        "$2 ^ $1",
    ]);
    for text in texts {
        let Ok(kernel) = ExprKernel::parse(text, &EXPRESSION_BANDS) else {
            // "!(a > 1) && b < 2" is a boolean: not an expression the language accepts.
            continue;
        };
        let generated = kernels::expr::wgsl::to_wgsl(kernel.typed());
        sources.push((format!("expression {text:?}"), generated.source));
    }
    for (name, source) in sources {
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name} does not parse: {}", e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}"));
    }
}
