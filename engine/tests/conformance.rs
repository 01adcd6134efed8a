//! The conformance suite: every element-wise kernel on every available backend, held to the CPU
//! reference with a tolerance stated per kernel, plus naga validation of every WGSL shader.
//!
//! Inputs are fresh random planes each run (seeded from the clock; set `CONFORMANCE_SEED` to
//! replay one), mixing nodata, infinities, zeros of both signs, negatives, huge, tiny and
//! subnormal values with realistic digital numbers and reflectances. Outputs are poisoned with
//! a sentinel before every run. A backend that is not available is reported as NOT RUN on
//! stderr, never counted as passed.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use engine::backend::{Backend, ExprKernel};
use kernels::mask::MaskRule;
use kernels::scale::Scaling;

/// Poison written into outputs before a run: finite, and no kernel's plausible result.
const POISON: f32 = -1234.5677;

/// How far a backend's result may be from the CPU reference. Nodata must agree exactly; a
/// value matches when it is equal, within `ulps` units in the last place, or within
/// `max(abs, rel · |reference|)`.
#[derive(Debug, Clone, Copy)]
struct Tolerance {
    ulps: u32,
    abs: f32,
    rel: f32,
}

impl Tolerance {
    /// Bit-exact (up to the sign of zero).
    const EXACT: Self = Self {
        ulps: 0,
        abs: 0.0,
        rel: 0.0,
    };
    /// One division at the end of correctly rounded arithmetic: WGSL grants `x / y` 2.5 ulp.
    const ONE_DIVISION: Self = Self {
        ulps: 3,
        abs: 0.0,
        rel: 0.0,
    };
    /// `sqrt` (WGSL: inherited from `1 / inverseSqrt`, about 5 ulp) after exact operations.
    const SQRT: Self = Self {
        ulps: 5,
        abs: 0.0,
        rel: 0.0,
    };
    /// `log`, `exp`, `^`: WGSL grants `log` 2⁻²¹ absolute near 1 and 3 ulp elsewhere, `exp`
    /// 3 + 2|x| ulp, and `^` inherits from `exp2(y · log2(x))`, so its relative error grows with
    /// `|y · log2(x)|`; 2⁻¹⁴ relative covers exponents up to ~2⁷ (the inputs here).
    const TRANSCENDENTAL: Self = Self {
        ulps: 8,
        abs: 1.0 / (1 << 20) as f32,
        rel: 1.0 / (1 << 14) as f32,
    };
}

/// Units in the last place between two finite values (counted across zero).
fn ulp_distance(a: f32, b: f32) -> u64 {
    // Map to a monotonic integer line: negatives below zero, both zeros at 0.
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

/// What one comparison found: the worst difference seen, for the report.
#[derive(Debug, Default)]
struct Diff {
    max_ulps: u64,
    max_rel: f32,
    compared_px: usize,
    nodata_px: usize,
    /// Pixels that matched only under the subnormal allowance.
    flushed_px: usize,
}

fn is_subnormal(x: f32) -> bool {
    x != 0.0 && x.abs() < f32::MIN_POSITIVE
}

/// Subnormals replaced by a zero of the same sign, as a flush-to-zero device reads them.
fn flush(plane: &[f32]) -> Vec<f32> {
    plane
        .iter()
        .map(|&x| {
            if is_subnormal(x) {
                0.0f32.copysign(x)
            } else {
                x
            }
        })
        .collect()
}

/// Whether `got` matches `want` under `tol`: `Ok((ulps, abs))` or why not.
fn matches(want: f32, got: f32, tol: Tolerance) -> Result<(u64, f32), &'static str> {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            Ok((0, 0.0))
        } else {
            Err("nodata disagrees")
        };
    }
    if want == got {
        return Ok((0, 0.0));
    }
    if !got.is_finite() {
        return Err("non-finite data leaked");
    }
    let ulps = ulp_distance(want, got);
    let abs = (want - got).abs();
    if ulps > u64::from(tol.ulps) && abs > tol.abs.max(tol.rel * want.abs()) {
        return Err("out of tolerance");
    }
    Ok((ulps, abs))
}

/// Compares `got` against `want`, returning the first mismatch as a message.
///
/// The subnormal allowance (WGSL lets a device flush subnormal values to zero): a pixel with a
/// subnormal input may instead match `want_flushed`, the reference on flushed inputs, and a
/// subnormal reference value may come back as zero.
fn compare(
    what: &str,
    seed: u64,
    inputs: &[&[f32]],
    want: &[f32],
    want_flushed: &[f32],
    got: &[f32],
    tol: Tolerance,
) -> Result<Diff, String> {
    assert_eq!(want.len(), got.len());
    let mut diff = Diff {
        compared_px: want.len(),
        ..Diff::default()
    };
    for (i, (&w, &g)) in want.iter().zip(got).enumerate() {
        match matches(w, g, tol) {
            Ok((ulps, abs)) => {
                diff.nodata_px += usize::from(w.is_nan());
                // Worst ulps over normal references beyond the absolute bound (a subnormal one may
                // legally come back 0; near-zero results are held to `abs`).
                if w.abs() >= f32::MIN_POSITIVE && abs > tol.abs {
                    diff.max_ulps = diff.max_ulps.max(ulps);
                    diff.max_rel = diff.max_rel.max(abs / w.abs());
                }
                continue;
            }
            Err(why) => {
                let subnormal_input = inputs.iter().any(|p| is_subnormal(p[i]));
                let flushed_ok = (subnormal_input && matches(want_flushed[i], g, tol).is_ok())
                    || (is_subnormal(w) && g == 0.0);
                if flushed_ok {
                    diff.flushed_px += 1;
                    continue;
                }
                let pixel: Vec<f32> = inputs.iter().map(|p| p[i]).collect();
                return Err(format!(
                    "{why}: {what}: pixel {i} of {}, inputs {pixel:?}: reference {w:?} \
                     ({:#010x}), got {g:?} ({:#010x}); tolerance {tol:?}; replay with \
                     CONFORMANCE_SEED={seed}",
                    want.len(),
                    w.to_bits(),
                    g.to_bits()
                ));
            }
        }
    }
    Ok(diff)
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
            25..=29 => f32::from_bits(self.next_u64() as u32), // any bit pattern
            30..=59 => self.below(65_536) as f32,          // digital numbers
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
            16..=35 => self.below(300) as f32,              // SCL classes and beyond
            36..=45 => [
                21824.0, 21952.0, 22280.0, 1.0, 23888.0, 55052.0, 21762.0, 20480.0, 61440.0,
            ][self.below(9) as usize],
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
        let seed = std::env::var("CONFORMANCE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("conformance seed: {seed} (replay with CONFORMANCE_SEED={seed})");
        seed
    })
}

/// A backend under test: its name and, when it started, the backend.
struct Candidate {
    name: &'static str,
    backend: Option<Backend>,
}

/// Every backend this build can try, started once per test binary. Device backends are
/// started with small chunk and grid caps so that every case exercises plane splitting and
/// 2-D dispatch.
fn candidates() -> &'static [Candidate] {
    static ALL: OnceLock<Vec<Candidate>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = vec![Candidate {
            name: "cpu",
            backend: Some(Backend::Cpu),
        }];
        #[cfg(feature = "wgpu")]
        {
            use engine::backend::{WgpuBackend, WgpuOptions};
            let backend = WgpuBackend::new(&WgpuOptions {
                allow_software: true,
                max_chunk_px: Some(CHUNK_CAP_PX),
                max_workgroups_per_dim: Some(WORKGROUP_CAP),
            });
            match backend {
                Ok(b) => {
                    eprintln!("conformance: wgpu on {}", b.adapter_summary());
                    all.push(Candidate {
                        name: "wgpu",
                        backend: Some(Backend::from(b)),
                    });
                }
                Err(e) => all.push(not_run("wgpu", &e.to_string())),
            }
        }
        #[cfg(not(feature = "wgpu"))]
        all.push(not_run("wgpu", "built without the wgpu feature"));
        all.push(not_run("cuda", "the cuda backend is not built yet"));
        all
    })
}

/// Pixels per dispatch on the capped device backends: odd, not a multiple of the workgroup.
#[cfg(feature = "wgpu")]
const CHUNK_CAP_PX: usize = 40_961;
/// Workgroups per grid dimension on the capped device backends.
#[cfg(feature = "wgpu")]
const WORKGROUP_CAP: u32 = 13;

fn not_run(name: &'static str, reason: &str) -> Candidate {
    eprintln!("NOT RUN: {name} conformance cases: {reason}");
    Candidate {
        name,
        backend: None,
    }
}

/// Pixels per random plane: several chunks of the capped device backends, with a tail.
const PLANE_PX: usize = 3 * 40_961 + 1_234;

/// Runs `run` on every started backend and compares with the CPU's result.
fn check(
    what: &str,
    inputs: &[&[f32]],
    tol: Tolerance,
    run: impl Fn(&Backend, &[&[f32]], &mut [f32]) -> engine::Result<()>,
) {
    let seed = seed();
    let reference = |inputs: &[&[f32]]| {
        let mut want = vec![POISON; inputs[0].len()];
        if let Err(e) = run(&Backend::Cpu, inputs, &mut want) {
            panic!("{what} on the cpu reference: {e}");
        }
        want
    };
    let want = reference(inputs);
    let flushed: Vec<Vec<f32>> = inputs.iter().map(|p| flush(p)).collect();
    let flushed_refs: Vec<&[f32]> = flushed.iter().map(Vec::as_slice).collect();
    let want_flushed = reference(&flushed_refs);
    for c in candidates() {
        let Some(backend) = &c.backend else {
            eprintln!("NOT RUN: {what} on {}", c.name);
            continue;
        };
        if c.name == "cpu" {
            continue;
        }
        let mut got = vec![POISON; want.len()];
        if let Err(e) = run(backend, inputs, &mut got) {
            panic!("{what} on {}: {e} (CONFORMANCE_SEED={seed})", c.name);
        }
        let name = format!("{what} on {}", c.name);
        match compare(&name, seed, inputs, &want, &want_flushed, &got, tol) {
            Ok(d) => eprintln!(
                "ok: {name}: {} px ({} nodata, {} matched only with subnormals flushed), max diff \
                 {} ulp, {:e} relative (tolerance {:?})",
                d.compared_px, d.nodata_px, d.flushed_px, d.max_ulps, d.max_rel, tol
            ),
            Err(msg) => panic!("{msg}"),
        }
    }
}

fn random_planes(salt: u64, count: usize, f: fn(&mut Rng) -> f32) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed() ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d));
    (0..count).map(|_| rng.plane(PLANE_PX, f)).collect()
}

#[test]
fn scale() {
    let [data] = <[Vec<f32>; 1]>::try_from(random_planes(1, 1, Rng::value)).expect("one plane");
    for scaling in [
        Scaling::LANDSAT_C2_L2_SR,
        Scaling::SENTINEL2_L2A,
        Scaling::IDENTITY,
        Scaling {
            scale: 3.0e5,
            offset: 1.0e30,
        },
    ] {
        // In place: both backends start from the same data; "poison" is the input itself.
        check(
            &format!("scale {scaling:?}"),
            &[&data],
            Tolerance::EXACT,
            |b, inputs, out| {
                out.copy_from_slice(inputs[0]);
                b.scale_in_place(out, scaling)
            },
        );
    }
}

#[test]
fn apply_mask() {
    let planes = random_planes(2, 2, Rng::value);
    let data = &planes[0];
    let qa = random_planes(3, 1, Rng::qa).remove(0);
    for rule in [
        MaskRule::landsat_default(),
        MaskRule::landsat_bits(&[15]),
        MaskRule::scl_default(),
        MaskRule::scl_classes(&[0, 63, 64, 127, 128, 200, 255]),
        MaskRule::LandsatBqaLegacy,
    ] {
        check(
            &format!("apply_mask {rule:?}"),
            &[data, &qa],
            Tolerance::EXACT,
            |b, inputs, out| {
                out.copy_from_slice(inputs[0]);
                b.apply_mask(out, inputs[1], &rule)
            },
        );
    }
}

#[test]
fn indices() {
    let p = random_planes(4, 3, Rng::value);
    let (a, b, c) = (&p[0], &p[1], &p[2]);
    check(
        "normalized_difference",
        &[a, b],
        Tolerance::ONE_DIVISION,
        |be, i, out| be.normalized_difference(i[0], i[1], out),
    );
    check("evi", &[a, b, c], Tolerance::ONE_DIVISION, |be, i, out| {
        be.evi(i[0], i[1], i[2], out)
    });
    for l in [0.5, 0.0, 1.0e-3] {
        check(
            &format!("savi l={l}"),
            &[a, b],
            Tolerance::ONE_DIVISION,
            |be, i, out| be.savi(i[0], i[1], l, out),
        );
    }
}

/// The expressions of the suite, with the tolerance each one needs.
const EXPRESSIONS: [(&str, Tolerance); 17] = [
    ("(a - b) / (a + b)", Tolerance::ONE_DIVISION),
    ("a * 2.75e-5 - 0.2", Tolerance::EXACT),
    ("where(c > 0.5, a, b)", Tolerance::EXACT),
    ("min(a, b, c) + max(a, b)", Tolerance::EXACT),
    ("clamp(a, -1, 1)", Tolerance::EXACT),
    ("abs(a - b) * 0.5 + -c", Tolerance::EXACT),
    (
        "where(!(a < b) && c != 0 || a == b, 1, 0)",
        Tolerance::EXACT,
    ),
    (
        "where(a >= b || !(c <= 1), a * b, $3 - 1e30)",
        Tolerance::EXACT,
    ),
    ("1 / 0 + a", Tolerance::EXACT),
    ("2 ^ 3 * a + 4", Tolerance::EXACT),
    ("(a + b + c) / 3", Tolerance::ONE_DIVISION),
    ("sqrt(abs(a)) - sqrt(b)", Tolerance::SQRT),
    ("log(a)", Tolerance::TRANSCENDENTAL),
    ("exp(a / 1000)", Tolerance::TRANSCENDENTAL),
    ("max(a, 0) ^ 1.5", Tolerance::TRANSCENDENTAL),
    // Both terms positive: a sum of two `pow` results that cancel (e.g. b² − 30.35 with
    // b ≈ −5.5) turns the device's allowed pow error into an unbounded relative error of the
    // result, which no per-result tolerance can state (seen with CONFORMANCE_SEED=1795773270409490444).
    ("b ^ 2 + abs(c - 1) ^ -3", Tolerance::TRANSCENDENTAL),
    ("exp(-abs(a)) * log(abs(b) + 1)", Tolerance::TRANSCENDENTAL),
];

#[test]
fn expressions() {
    let p = random_planes(5, 3, Rng::value);
    let inputs: Vec<&[f32]> = p.iter().map(Vec::as_slice).collect();
    for (text, tol) in EXPRESSIONS {
        let kernel = ExprKernel::parse(text, &["a", "b", "c"]).expect("valid expression");
        check(&format!("expr {text:?}"), &inputs, tol, |be, i, out| {
            be.expr(&kernel, i, out)
        });
    }
}

#[test]
fn compiled_expressions_match_the_reference_evaluator() {
    // The CPU backend runs the compiled program; tie it to the tree-walking oracle, so that
    // matching the CPU backend means matching eval_reference.
    let p = random_planes(6, 3, Rng::value);
    for (text, _) in EXPRESSIONS {
        let kernel = ExprKernel::parse(text, &["a", "b", "c"]).expect("valid expression");
        let inputs: Vec<&[f32]> = p.iter().map(Vec::as_slice).collect();
        let mut out = vec![POISON; PLANE_PX];
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

#[test]
fn shape_mismatches_are_errors_on_every_backend() {
    for c in candidates() {
        let Some(b) = &c.backend else { continue };
        let mut out = vec![0.0; 3];
        assert!(b
            .normalized_difference(&[1.0; 3], &[1.0; 2], &mut out)
            .is_err());
        assert!(b
            .apply_mask(&mut out, &[0.0; 2], &MaskRule::scl_default())
            .is_err());
        assert!(b.savi(&[1.0; 3], &[1.0; 3], -1.0, &mut out).is_err());
        // Empty planes are fine.
        assert!(b.normalized_difference(&[], &[], &mut []).is_ok());
    }
}

/// A plane bigger than one storage binding on the device's real limits (128 MiB on lavapipe):
/// normalized_difference packs two planes, so 2²⁴ + 1 pixels need two dispatches, and the first
/// one needs more than 65 535 workgroups, i.e. a 2-D grid.
#[cfg(feature = "wgpu")]
#[test]
fn plane_bigger_than_a_binding_on_real_limits() {
    use engine::backend::{WgpuBackend, WgpuOptions};
    let backend = match WgpuBackend::new(&WgpuOptions {
        allow_software: true,
        ..WgpuOptions::default()
    }) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("NOT RUN: wgpu plane_bigger_than_a_binding_on_real_limits: {e}");
            return;
        }
    };
    let chunk = backend.chunk_px(2);
    let len = chunk + 4_097;
    eprintln!(
        "big plane: {len} px, {chunk} px per dispatch on {}",
        backend.adapter_summary()
    );
    let mut rng = Rng(seed() ^ 7);
    let a = rng.plane(len, Rng::value);
    let b = rng.plane(len, Rng::value);
    let mut want = vec![POISON; len];
    kernels::index::normalized_difference(&a, &b, &mut want).expect("cpu");
    let mut got = vec![POISON; len];
    Backend::from(backend)
        .normalized_difference(&a, &b, &mut got)
        .expect("wgpu runs");
    let d = compare(
        "normalized_difference (big plane) on wgpu",
        seed(),
        &[&a, &b],
        &want,
        &want,
        &got,
        Tolerance::ONE_DIVISION,
    )
    .unwrap_or_else(|m| panic!("{m}"));
    eprintln!("ok: big plane: max diff {} ulp", d.max_ulps);
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
        let Ok(kernel) = ExprKernel::parse(text, &["a", "b", "c"]) else {
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
