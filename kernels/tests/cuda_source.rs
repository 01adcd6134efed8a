//! The CUDA C sources (`shaders/cuda/*.cu` and generated expressions), checked without a GPU.
//!
//! 1. Every source, behind `common.cuh` as the backend compiles it, must compile as C++17 with
//!    g++ (`-fsyntax-only -Wall -Wextra -Werror`) against `tests/cuda_host/shim.h`, a header-less
//!    stand-in for the CUDA built-ins and intrinsics, and must declare its entry points with
//!    the backend's ABI.
//! 2. Emulated runs: each source is built into a host program (`tests/cuda_host/harness.cpp`,
//!    `-O0 -ffp-contract=off`, AddressSanitizer and UBSan with float-cast-overflow) that runs
//!    the kernels over a simulated grid small enough that the grid-stride loop wraps many times,
//!    on seeded random planes full of edge values; the outputs must match the CPU reference of
//!    the `kernels` crate: bit for bit (nodata as any NaN), apply_mask's pass-through data bit
//!    for bit including NaN payloads, and expressions with `log`, `exp` or `^` within a few
//!    ulps (on the host they call the same C library as Rust, so they come out exact too).
//!
//! Without g++ on `PATH` both report NOT RUN on stderr. The seed comes from the clock; set
//! `CUDA_SOURCE_SEED` to replay one. The ignored test `write_device_cases` writes the same cases
//! (sources, inputs, CPU results) to `$CUDA_SOURCE_DUMP` for `tests/cuda_host/nvrtc_check.cpp`,
//! which runs them on a real GPU through NVRTC.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kernels::expr::{bind, cuda, eval_reference, parse};
use kernels::mask::MaskRule;
use kernels::scale::Scaling;

/// Pixels per random plane: odd, and many strides of every simulated grid.
const PLANE_PX: usize = 20_011;

/// Simulated launches `(blocks, threads per block)`, taken in turn: all far smaller than a
/// plane, so the grid-stride loop wraps, and one of a single thread.
const LAUNCHES: [(u32, u32); 4] = [(3, 32), (1, 1), (7, 64), (2, 256)];

/// The built-in kernel files and their entry points.
const KERNEL_FILES: [(&str, &[&str]); 5] = [
    ("scale.cu", &["scale"]),
    ("apply_mask.cu", &["landsat_qa", "scl", "bqa_legacy"]),
    ("normalized_difference.cu", &["normalized_difference"]),
    ("evi.cu", &["evi"]),
    ("savi.cu", &["savi"]),
];

/// Ulps granted to expressions with `log`, `exp` or `^`: CUDA documents `logf` at 1 ulp,
/// `expf` at 2 and `powf` at 4, against a CPU within 1, and results combine up to two of them.
const TRANSCENDENTAL_ULPS: u32 = 8;

/// The expressions of `engine/tests/conformance.rs` (17), then edge cases, each with whether
/// it needs the transcendental tolerance (everything else must be bit-exact).
const EXPRESSIONS: [(&str, bool); 41] = [
    ("(a - b) / (a + b)", false),
    ("a * 2.75e-5 - 0.2", false),
    ("where(c > 0.5, a, b)", false),
    ("min(a, b, c) + max(a, b)", false),
    ("clamp(a, -1, 1)", false),
    ("abs(a - b) * 0.5 + -c", false),
    ("where(!(a < b) && c != 0 || a == b, 1, 0)", false),
    ("where(a >= b || !(c <= 1), a * b, $3 - 1e30)", false),
    ("1 / 0 + a", false),
    ("2 ^ 3 * a + 4", false),
    ("(a + b + c) / 3", false),
    ("sqrt(abs(a)) - sqrt(b)", false),
    ("log(a)", true),
    ("exp(a / 1000)", true),
    ("max(a, 0) ^ 1.5", true),
    ("b ^ 2 + abs(c - 1) ^ -3", true),
    ("exp(-abs(a)) * log(abs(b) + 1)", true),
    // Edge cases.
    ("-a", false),
    ("where(1 < 2, a, 3)", false),
    ("5", false),
    ("1 / 0", false),
    ("c * 2", false),
    ("c - a", false),
    ("a * b - c", false),
    ("a / b", false),
    ("sqrt(a)", false),
    ("min(a, -0) - max(-0, b)", false),
    ("clamp(a, c, b)", false),
    (
        "where(a == b || a != c, -b, where(!(b > c) || a <= 0, a, c))",
        false,
    ),
    ("where(!(a >= 0) && b < 1e30, a, b)", false),
    ("$2 ^ $1", true),
    ("a ^ b", true),
    ("a ^ 3", true),
    ("a ^ -2", true),
    ("(-abs(a)) ^ 3", true),
    ("a ^ 0.5", true),
    ("a ^ 0 + b ^ (c - c)", true),
    ("abs(a) ^ (b / 65536)", true),
    // No cancellation, and no power of a power: either turns the device's few ulps of
    // `log`, `exp` or `^` into many ulps of the result.
    ("log(abs(a) + 1) + exp(b)", true),
    ("(a ^ b) * c", true),
    ("max(a, -0) * min(-0, b) - clamp(c, -0, 0)", false),
];

/// How a case's output must match the CPU's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Identical bits, NaN payloads included.
    Bits,
    /// Identical bits, except that any NaN matches any NaN (nodata).
    Exact,
    /// Within this many ulps; any NaN matches any NaN, and only NaN.
    Ulps(u32),
}

/// `Params` of `common.cuh`, as the backend packs it.
#[derive(Debug, Clone, Copy, Default)]
struct Params {
    n: u32,
    u0: u32,
    f0: f32,
    f1: f32,
    words: [u32; 8],
}

impl Params {
    fn for_plane(len_px: usize) -> Self {
        Self {
            n: u32::try_from(len_px).expect("plane fits a chunk"),
            ..Self::default()
        }
    }

    /// The 48 bytes the kernels receive.
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48);
        b.extend(self.n.to_ne_bytes());
        b.extend(self.u0.to_ne_bytes());
        b.extend(self.f0.to_ne_bytes());
        b.extend(self.f1.to_ne_bytes());
        for w in self.words {
            b.extend(w.to_ne_bytes());
        }
        b
    }
}

/// One kernel run and the CPU's result for it.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// The complete CUDA source (`common.cuh` first), as the backend compiles it.
    source: String,
    entry: String,
    params: Params,
    /// The packed input planes.
    src: Vec<f32>,
    want: Vec<f32>,
    /// The input planes, for messages: pixel `i` of each.
    planes: Vec<Vec<f32>>,
    matching: Match,
    launch: (u32, u32),
}

/// splitmix64: small, seedable, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// A value for an arithmetic kernel: mostly realistic, often an edge case.
    fn value(&mut self) -> f32 {
        match self.below(100) {
            0..=4 => f32::NAN,
            5 => f32::INFINITY * self.sign(),
            6..=9 => 0.0 * self.sign(),
            10..=13 => self.sign() * 10f32.powf(25.0 + 13.0 * self.unit()), // huge
            14..=16 => self.sign() * 10f32.powf(-37.0 + 7.0 * self.unit()), // tiny normal
            17..=18 => self.sign() * f32::from_bits(1 + self.below(0x007f_ffff) as u32), // subnormal
            19..=24 => self.sign() * self.below(4) as f32, // small integers, equal pairs
            25..=29 => f32::from_bits(self.next_u64() as u32), // any bit pattern, NaN payloads
            30..=34 => self.sign() * self.below(9) as f32 * 0.5, // halves, for `^`
            35..=59 => self.below(65_536) as f32,          // digital numbers
            _ => -0.2 + 1.8 * self.unit(),                 // reflectance
        }
    }

    /// A quality code for a mask: mostly real codes, often an edge case.
    fn qa(&mut self) -> f32 {
        match self.below(100) {
            0..=3 => f32::NAN,
            4 => f32::INFINITY * self.sign(),
            5..=7 => -(1.0 + self.below(1000) as f32) * self.unit(),
            8..=9 => 2_147_483_648.0 * (1.0 + self.unit()), // 2^31..2^32: saturation differs
            10..=11 => 1e10 * (1.0 + self.unit()),          // beyond u32
            12..=15 => self.below(65_536) as f32 + self.unit(), // fractional codes
            16..=33 => self.below(300) as f32,              // SCL classes and beyond
            34..=35 => f32::from_bits(self.next_u64() as u32), // any bit pattern
            36..=45 => [
                21824.0, 21952.0, 22280.0, 1.0, 23888.0, 55052.0, 21762.0, 20480.0, 61440.0,
            ][self.below(9) as usize],
            46..=49 => [
                -0.0,
                -0.5,
                0.5,
                255.0,
                255.5,
                256.0,
                2_147_483_520.0, // the largest f32 below 2^31
                2_147_483_648.0,
                4_294_967_040.0, // the largest f32 below 2^32
                4_294_967_296.0,
                f32::MAX,
                f32::from_bits(1),
            ][self.below(12) as usize],
            _ => self.below(65_536) as f32,
        }
    }

    fn plane(&mut self, len: usize, f: fn(&mut Self) -> f32) -> Vec<f32> {
        (0..len).map(|_| f(self)).collect()
    }
}

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = std::env::var("CUDA_SOURCE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("cuda_source seed: {seed} (replay with CUDA_SOURCE_SEED={seed})");
        seed
    })
}

fn rng(salt: u64) -> Rng {
    Rng(seed() ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d))
}

fn shader_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders/cuda")
}

fn host_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_host")
}

/// A kernel file behind `common.cuh`, as the backend compiles it.
fn kernel_source(file: &str) -> String {
    let read = |name: &str| {
        std::fs::read_to_string(shader_dir().join(name))
            .unwrap_or_else(|e| panic!("cannot read shaders/cuda/{name}: {e}"))
    };
    format!("{}{}", read("common.cuh"), read(file))
}

/// Packs planes back to back, as the backend does.
fn pack(planes: &[&[f32]]) -> Vec<f32> {
    planes.iter().flat_map(|p| p.iter().copied()).collect()
}

/// The built-in kernels on random planes, with the CPU's results.
fn builtin_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut launch = LAUNCHES.iter().copied().cycle();

    // scale
    let data = rng(1).plane(PLANE_PX, Rng::value);
    for scaling in [
        Scaling::LANDSAT_C2_L2_SR,
        Scaling::SENTINEL2_L2A,
        Scaling::IDENTITY,
        Scaling {
            scale: 3.0e5,
            offset: 1.0e30,
        },
        Scaling {
            scale: -1.5,
            offset: 0.25,
        },
    ] {
        let mut want = data.clone();
        kernels::scale::scale_in_place(&mut want, scaling).expect("finite scaling");
        cases.push(Case {
            name: format!("scale {scaling:?}"),
            source: kernel_source("scale.cu"),
            entry: "scale".into(),
            params: Params {
                f0: scaling.scale,
                f1: scaling.offset,
                ..Params::for_plane(PLANE_PX)
            },
            src: data.clone(),
            want,
            planes: vec![data.clone()],
            matching: Match::Exact,
            launch: launch.next().unwrap_or((1, 1)),
        });
    }

    // apply_mask
    let data = rng(2).plane(PLANE_PX, Rng::value);
    let qa = rng(3).plane(PLANE_PX, Rng::qa);
    let mut random_classes = rng(4);
    let classes: Vec<u8> = (0..40).map(|_| random_classes.below(256) as u8).collect();
    for rule in [
        MaskRule::landsat_default(),
        MaskRule::landsat_bits(&[15]),
        MaskRule::landsat_bits(&(0..16).collect::<Vec<_>>()),
        MaskRule::scl_default(),
        MaskRule::scl_classes(&[0, 31, 32, 63, 64, 127, 128, 200, 255]),
        MaskRule::scl_classes(&classes),
        MaskRule::LandsatBqaLegacy,
    ] {
        let mut params = Params::for_plane(PLANE_PX);
        let entry = match &rule {
            MaskRule::LandsatQa { bits } => {
                params.u0 = u32::from(*bits);
                "landsat_qa"
            }
            MaskRule::Scl { classes } => {
                // Each u64 as two u32 words: class c is bit c % 32 of word c / 32.
                for (k, &w) in classes.iter().enumerate() {
                    params.words[2 * k] = w as u32;
                    params.words[2 * k + 1] = (w >> 32) as u32;
                }
                "scl"
            }
            MaskRule::LandsatBqaLegacy => "bqa_legacy",
        };
        let mut want = data.clone();
        kernels::mask::apply_mask(&mut want, &qa, &rule).expect("same lengths");
        cases.push(Case {
            name: format!("apply_mask {rule:?}"),
            source: kernel_source("apply_mask.cu"),
            entry: entry.into(),
            params,
            src: pack(&[&data, &qa]),
            want,
            planes: vec![data.clone(), qa.clone()],
            matching: Match::Bits,
            launch: launch.next().unwrap_or((1, 1)),
        });
    }

    // indices, on whole planes and on a plane smaller than the grid
    let p = rng(5).plane(3 * PLANE_PX, Rng::value);
    let (a, rest) = p.split_at(PLANE_PX);
    let (b, c) = rest.split_at(PLANE_PX);
    for len_px in [PLANE_PX, 100] {
        let (a, b, c) = (&a[..len_px], &b[..len_px], &c[..len_px]);
        let shape = if len_px == PLANE_PX {
            launch.next().unwrap_or((1, 1))
        } else {
            (4, 64)
        };
        let mut want = vec![0.0; len_px];
        kernels::index::normalized_difference(a, b, &mut want).expect("same lengths");
        cases.push(Case {
            name: format!("normalized_difference ({len_px} px)"),
            source: kernel_source("normalized_difference.cu"),
            entry: "normalized_difference".into(),
            params: Params::for_plane(len_px),
            src: pack(&[a, b]),
            want,
            planes: vec![a.to_vec(), b.to_vec()],
            matching: Match::Exact,
            launch: shape,
        });
        let mut want = vec![0.0; len_px];
        kernels::index::evi(a, b, c, &mut want).expect("same lengths");
        cases.push(Case {
            name: format!("evi ({len_px} px)"),
            source: kernel_source("evi.cu"),
            entry: "evi".into(),
            params: Params::for_plane(len_px),
            src: pack(&[a, b, c]),
            want,
            planes: vec![a.to_vec(), b.to_vec(), c.to_vec()],
            matching: Match::Exact,
            launch: shape,
        });
        for l in [0.5, 0.0, 1.0e-3, 1.0, 100.0] {
            let mut want = vec![0.0; len_px];
            kernels::index::savi(a, b, l, &mut want).expect("valid l");
            cases.push(Case {
                name: format!("savi l={l} ({len_px} px)"),
                source: kernel_source("savi.cu"),
                entry: "savi".into(),
                params: Params {
                    f0: l,
                    ..Params::for_plane(len_px)
                },
                src: pack(&[a, b]),
                want,
                planes: vec![a.to_vec(), b.to_vec()],
                matching: Match::Exact,
                launch: shape,
            });
        }
    }

    // Empty and one-pixel chunks.
    for len_px in [0, 1] {
        let mut want = a[..len_px].to_vec();
        kernels::scale::scale_in_place(&mut want, Scaling::SENTINEL2_L2A).expect("finite");
        cases.push(Case {
            name: format!("scale ({len_px} px)"),
            source: kernel_source("scale.cu"),
            entry: "scale".into(),
            params: Params {
                f0: Scaling::SENTINEL2_L2A.scale,
                f1: Scaling::SENTINEL2_L2A.offset,
                ..Params::for_plane(len_px)
            },
            src: a[..len_px].to_vec(),
            want,
            planes: vec![a[..len_px].to_vec()],
            matching: Match::Exact,
            launch: (2, 32),
        });
    }
    cases
}

/// Every expression of [`EXPRESSIONS`] over three random planes `a`, `b`, `c`, with the
/// reference evaluator's results.
fn expression_cases() -> Vec<Case> {
    let mut r = rng(6);
    let planes: Vec<Vec<f32>> = (0..3).map(|_| r.plane(PLANE_PX, Rng::value)).collect();
    let mut launch = LAUNCHES.iter().copied().cycle();
    let mut cases = Vec::new();
    for (text, transcendental) in EXPRESSIONS {
        let typed = bind(&parse(text).expect("parses"), &["a", "b", "c"]).expect("binds");
        let kernel = cuda::to_cuda(&typed);
        let packed: Vec<&[f32]> = kernel.bands.iter().map(|&b| planes[b].as_slice()).collect();
        let want: Vec<f32> = (0..PLANE_PX)
            .map(|i| eval_reference(&typed, &[planes[0][i], planes[1][i], planes[2][i]]))
            .collect();
        cases.push(Case {
            name: format!("expr {text:?}"),
            source: kernel.source,
            entry: cuda::ENTRY_POINT.into(),
            params: Params::for_plane(PLANE_PX),
            src: pack(&packed),
            want,
            planes: planes.clone(),
            matching: if transcendental {
                Match::Ulps(TRANSCENDENTAL_ULPS)
            } else {
                Match::Exact
            },
            launch: launch.next().unwrap_or((1, 1)),
        });
    }
    cases
}

/// Units in the last place between two finite values (counted across zero).
fn ulp_distance(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let magnitude = i64::from(x.to_bits() & 0x7fff_ffff);
        if x.is_sign_negative() {
            -magnitude
        } else {
            magnitude
        }
    };
    key(a).abs_diff(key(b))
}

/// Compares a run's output with the CPU's: the worst ulp difference, or the first mismatch.
fn compare(case: &Case, got: &[f32]) -> Result<u64, String> {
    if got.len() != case.want.len() {
        return Err(format!(
            "{}: {} values out, {} expected",
            case.name,
            got.len(),
            case.want.len()
        ));
    }
    let mut worst = 0;
    for (i, (&w, &g)) in case.want.iter().zip(got).enumerate() {
        let ok = match case.matching {
            Match::Bits => w.to_bits() == g.to_bits(),
            Match::Exact => (w.is_nan() && g.is_nan()) || w.to_bits() == g.to_bits(),
            Match::Ulps(max) => {
                if w.is_nan() || g.is_nan() {
                    w.is_nan() && g.is_nan()
                } else {
                    let d = ulp_distance(w, g);
                    worst = worst.max(d);
                    d <= u64::from(max)
                }
            }
        };
        if !ok {
            let pixel: Vec<String> = case
                .planes
                .iter()
                .map(|p| format!("{:?} ({:#010x})", p[i], p[i].to_bits()))
                .collect();
            return Err(format!(
                "{}: pixel {i} of {}, inputs [{}]: cpu {w:?} ({:#010x}), cuda source {g:?} \
                 ({:#010x}), must match {:?}; replay with CUDA_SOURCE_SEED={}",
                case.name,
                case.want.len(),
                pixel.join(", "),
                w.to_bits(),
                g.to_bits(),
                case.matching,
                seed()
            ));
        }
    }
    Ok(worst)
}

/// Whether g++ runs; if not, says NOT RUN for `what`.
fn have_gxx(what: &str) -> bool {
    match Command::new("g++").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!("NOT RUN: {what}: g++ --version failed with {}", out.status);
            false
        }
        Err(e) => {
            eprintln!("NOT RUN: {what}: g++ is not on PATH ({e})");
            false
        }
    }
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cuda_source-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Runs `command`, feeding it `stdin`; the combined output on failure.
fn run(command: &mut Command, stdin: Option<&str>) -> Result<(), String> {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("cannot feed {command:?}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{command:?} did not finish: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `job` on every item, on as many threads as there are cores; the failures.
fn parallel<T: Sync>(items: &[T], job: impl Fn(&T) -> Result<(), String> + Sync) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = job(item) {
                        failures.lock().expect("no panics while locked").push(e);
                    }
                }
            });
        }
    });
    failures.into_inner().expect("no panics while locked")
}

/// g++ flags shared by every compile: the kernel code must be warning-free C++17.
const CXX_FLAGS: [&str; 5] = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"];

/// Flags of the emulated runs: no contraction into FMA, no fast math, and the sanitizers.
const RUN_FLAGS: [&str; 5] = [
    "-O0",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fsanitize=address,undefined,float-cast-overflow",
    "-fno-sanitize-recover=all",
];

/// Collapses runs of whitespace, to find declarations whatever their line breaks.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn abi_signature(entry: &str) -> String {
    format!(
        "extern \"C\" __global__ void {entry}(const float* __restrict__ src, \
         float* __restrict__ dst, Params p)"
    )
}

#[test]
fn sources_declare_the_abi_and_include_nothing() {
    let common = std::fs::read_to_string(shader_dir().join("common.cuh")).expect("common.cuh");
    let params = squeeze(
        "struct Params { unsigned int n; unsigned int u0; float f0; float f1; \
         unsigned int words[8]; };",
    );
    let without_comments: String = common
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        squeeze(&without_comments).contains(&params),
        "common.cuh does not declare {params}"
    );
    for (file, entries) in KERNEL_FILES {
        let text = kernel_source(file);
        for entry in entries {
            assert!(
                squeeze(&text).contains(&abi_signature(entry)),
                "{file} does not declare {}",
                abi_signature(entry)
            );
        }
    }
    let typed = bind(&parse("a + b").expect("parses"), &["a", "b"]).expect("binds");
    let generated = cuda::to_cuda(&typed).source;
    assert!(squeeze(&generated).contains(&abi_signature(cuda::ENTRY_POINT)));
    assert!(generated.contains(cuda::COMMON));
    let mut all: Vec<String> = KERNEL_FILES.iter().map(|(f, _)| kernel_source(f)).collect();
    all.push(generated);
    for text in all {
        assert!(
            !text.contains("#include"),
            "a cuda source includes a header"
        );
        assert!(!text.contains("size_t"), "a cuda source uses size_t");
    }
}

#[test]
fn sources_compile_as_cpp() {
    let what = "cuda sources compiled by g++";
    if !have_gxx(what) {
        return;
    }
    let mut files: Vec<String> = std::fs::read_dir(shader_dir())
        .expect("shaders/cuda exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    files.sort();
    for (file, _) in KERNEL_FILES {
        assert!(
            files.iter().any(|f| f == file),
            "shaders/cuda/{file} is missing"
        );
    }
    let mut sources: Vec<(String, String)> = files
        .iter()
        .map(|f| (format!("shaders/cuda/{f}"), kernel_source(f)))
        .collect();
    sources.push((
        "shaders/cuda/common.cuh".into(),
        std::fs::read_to_string(shader_dir().join("common.cuh")).expect("common.cuh"),
    ));
    for (text, _) in EXPRESSIONS {
        let typed = bind(&parse(text).expect("parses"), &["a", "b", "c"]).expect("binds");
        sources.push((format!("expression {text:?}"), cuda::to_cuda(&typed).source));
    }
    let shim = host_dir().join("shim.h");
    let failures = parallel(&sources, |(name, source)| {
        let mut cmd = Command::new("g++");
        cmd.args(CXX_FLAGS)
            .arg("-fsyntax-only")
            .arg("-include")
            .arg(&shim)
            .args(["-x", "c++", "-"]);
        run(&mut cmd, Some(source)).map_err(|e| format!("{name} does not compile: {e}"))
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("ok: {what}: {} sources", sources.len());
}

/// The harness's object file, built once per test binary with the run flags (falling back to
/// no sanitizers where the toolchain lacks them): the object and the flags to link it with.
fn harness(dir: &Path) -> Result<(PathBuf, Vec<&'static str>), String> {
    let object = dir.join("harness.o");
    let mut tries = vec![RUN_FLAGS.to_vec()];
    tries.push(RUN_FLAGS[..3].to_vec());
    let mut errors = Vec::new();
    for flags in tries {
        let mut cmd = Command::new("g++");
        cmd.args(CXX_FLAGS)
            .args(&flags)
            .arg("-c")
            .arg(host_dir().join("harness.cpp"))
            .arg("-o")
            .arg(&object);
        match run(&mut cmd, None) {
            Ok(()) => {
                if flags.len() < RUN_FLAGS.len() {
                    eprintln!(
                        "note: emulated runs without sanitizers: {}",
                        errors.join("; ")
                    );
                }
                return Ok((object, flags));
            }
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("\n"))
}

/// Builds the program for one source and runs its cases; the worst ulps of each case.
fn emulate(
    dir: &Path,
    harness: &(PathBuf, Vec<&'static str>),
    index: usize,
    cases: &[&Case],
) -> Result<Vec<(String, u64)>, String> {
    let (object, flags) = harness;
    let mut entries: Vec<&str> = cases.iter().map(|c| c.entry.as_str()).collect();
    entries.sort_unstable();
    entries.dedup();
    let list: Vec<String> = entries.iter().map(|e| format!("X({e})")).collect();
    let exe = dir.join(format!("kernel{index}"));
    let source = format!("{}\n#include \"launch.inc\"\n", cases[0].source);
    let mut cmd = Command::new("g++");
    cmd.args(CXX_FLAGS)
        .args(flags)
        .arg(format!("-I{}", host_dir().display()))
        .arg("-include")
        .arg(host_dir().join("shim.h"))
        .arg(format!("-DHOST_ENTRIES(X)={}", list.join(" ")))
        .args(["-x", "c++", "-", "-x", "none"])
        .arg(object)
        .arg("-o")
        .arg(&exe);
    run(&mut cmd, Some(&source)).map_err(|e| format!("{} does not build: {e}", cases[0].name))?;
    let mut worst = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let input = dir.join(format!("in{index}-{k}.bin"));
        let output = dir.join(format!("out{index}-{k}.bin"));
        let mut bytes = case.params.bytes();
        bytes.extend(case.src.iter().flat_map(|v| v.to_ne_bytes()));
        std::fs::write(&input, bytes).map_err(|e| format!("cannot write the input: {e}"))?;
        let (blocks, threads) = case.launch;
        run(
            Command::new(&exe)
                .arg(&case.entry)
                .arg(blocks.to_string())
                .arg(threads.to_string())
                .arg(&input)
                .arg(&output),
            None,
        )
        .map_err(|e| format!("{} did not run: {e}", case.name))?;
        let got: Vec<f32> = std::fs::read(&output)
            .map_err(|e| format!("{}: cannot read the output: {e}", case.name))?
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        worst.push((case.name.clone(), compare(case, &got)?));
    }
    Ok(worst)
}

/// Runs `cases` as emulated host programs, one program per distinct source.
fn emulate_all(test: &str, cases: &[Case]) {
    if !have_gxx(test) {
        return;
    }
    let dir = scratch(test);
    let harness = harness(&dir).unwrap_or_else(|e| panic!("the harness does not build: {e}"));
    let mut by_source: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    for case in cases {
        by_source.entry(&case.source).or_default().push(case);
    }
    let groups: Vec<(usize, Vec<&Case>)> = by_source.into_values().enumerate().collect();
    let report = Mutex::new(Vec::new());
    let failures = parallel(&groups, |(index, group)| {
        let worst = emulate(&dir, &harness, *index, group)?;
        report.lock().expect("no panics while locked").extend(worst);
        Ok(())
    });
    if !failures.is_empty() {
        panic!(
            "{} of {} sources failed (files kept in {}):\n{}",
            failures.len(),
            groups.len(),
            dir.display(),
            failures.join("\n\n")
        );
    }
    let mut report = report.into_inner().expect("no panics while locked");
    report.sort();
    for (name, ulps) in &report {
        eprintln!("ok: {name}: max diff {ulps} ulp");
    }
    eprintln!("ok: {test}: {} cases", report.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn builtin_kernels_match_the_cpu_reference_emulated() {
    emulate_all("builtin", &builtin_cases());
}

#[test]
fn expressions_match_the_reference_evaluator_emulated() {
    emulate_all("expressions", &expression_cases());
}

/// Writes every case for a GPU run to `$CUDA_SOURCE_DUMP`: `manifest.txt` lists one case per
/// line as `name source entry blocks threads input want match ulps` (files relative to the
/// folder; inputs are the 48-byte Params then the packed planes), for
/// `tests/cuda_host/nvrtc_check.cpp`.
#[test]
#[ignore = "writes the GPU cases; needs CUDA_SOURCE_DUMP"]
fn write_device_cases() {
    let Some(dir) = std::env::var_os("CUDA_SOURCE_DUMP").map(PathBuf::from) else {
        eprintln!("NOT RUN: write_device_cases: set CUDA_SOURCE_DUMP to a folder");
        return;
    };
    std::fs::create_dir_all(&dir).expect("dump folder");
    let mut cases = builtin_cases();
    cases.extend(expression_cases());
    let mut sources: BTreeMap<&str, usize> = BTreeMap::new();
    let mut manifest = String::new();
    for (k, case) in cases.iter().enumerate() {
        let next = sources.len();
        let s = *sources.entry(&case.source).or_insert(next);
        std::fs::write(dir.join(format!("source{s}.cu")), &case.source).expect("write source");
        let mut bytes = case.params.bytes();
        bytes.extend(case.src.iter().flat_map(|v| v.to_ne_bytes()));
        std::fs::write(dir.join(format!("in{k}.bin")), bytes).expect("write input");
        let want: Vec<u8> = case.want.iter().flat_map(|v| v.to_ne_bytes()).collect();
        std::fs::write(dir.join(format!("want{k}.bin")), want).expect("write want");
        let (matching, ulps) = match case.matching {
            Match::Bits => ("bits", 0),
            Match::Exact => ("exact", 0),
            Match::Ulps(u) => ("ulps", u),
        };
        let name: String = case
            .name
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        manifest.push_str(&format!(
            "{name} source{s}.cu {} {} {} in{k}.bin want{k}.bin {matching} {ulps}\n",
            case.entry, case.launch.0, case.launch.1
        ));
    }
    std::fs::write(dir.join("manifest.txt"), manifest).expect("write manifest");
    eprintln!("wrote {} cases to {}", cases.len(), dir.display());
}
