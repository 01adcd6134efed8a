//! The backend conformance suite: every element-wise kernel on one backend, held to the CPU
//! reference ([`Backend::Cpu`]) with a tolerance stated per kernel.
//!
//! Inputs are random planes drawn from a seed, mixing nodata, infinities, zeros of both signs,
//! negatives, huge, tiny and subnormal values with realistic digital numbers and reflectances.
//! Outputs are poisoned with a sentinel before every call, so a pixel a backend forgets to
//! write is a mismatch. A backend error or panic fails its case; it is never a pass.
//!
//! [`run`] serves every backend (the tests in `engine/tests/conformance.rs` and
//! `constellation conformance` both call it); the same seed replays the same planes.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

use kernels::mask::MaskRule;
use kernels::scale::Scaling;
use serde_json::{json, Value};

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::{Backend, Chain, ChainOp, ExprKernel};
use crate::error::{EngineError, Result};
use crate::pipeline::{GridFacts, Prepared, TileInput, TilePlane};

/// Poison written into outputs before a run: finite, and no kernel's plausible result.
pub const POISON: f32 = -1234.5677;

/// Pixels per random plane by default: several chunks of a device backend capped at 40 961
/// pixels per dispatch (as the tests cap wgpu), with a tail.
pub const DEFAULT_PLANE_PX: usize = 3 * 40_961 + 1_234;

/// Pixels of the big-plane case: over 2²⁴, so that two packed planes exceed a 128 MiB storage
/// binding (lavapipe's) and the first dispatch needs more than 65 535 workgroups (a 2-D grid).
pub const BIG_PLANE_PX: usize = (1 << 24) + 4_097;

/// The environment variable the tests read a seed from, to replay a run.
pub const SEED_ENV: &str = "CONFORMANCE_SEED";

/// What a suite run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteOptions {
    /// Seed of every random plane; the same seed replays the same inputs.
    pub seed: u64,
    /// Pixels per random plane.
    pub plane_px: usize,
    /// Also run normalized_difference on a plane of [`BIG_PLANE_PX`] pixels (slow on a CPU).
    pub big_plane: bool,
}

impl SuiteOptions {
    /// The default plane size, no big plane.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            plane_px: DEFAULT_PLANE_PX,
            big_plane: false,
        }
    }
}

/// A seed from the clock, for a run that is not a replay.
pub fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// How far a backend's result may be from the CPU reference. Nodata must agree exactly; a
/// value matches when it is equal, within `ulps` units in the last place, or within
/// `max(abs, rel · |reference|)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub ulps: u32,
    pub abs: f32,
    pub rel: f32,
}

impl Tolerance {
    /// Bit-exact (up to the sign of zero).
    pub const EXACT: Self = Self {
        ulps: 0,
        abs: 0.0,
        rel: 0.0,
    };
    /// One division at the end of correctly rounded arithmetic: WGSL grants `x / y` 2.5 ulp.
    pub const ONE_DIVISION: Self = Self {
        ulps: 3,
        abs: 0.0,
        rel: 0.0,
    };
    /// `sqrt` (WGSL: inherited from `1 / inverseSqrt`, about 5 ulp) after exact operations.
    pub const SQRT: Self = Self {
        ulps: 5,
        abs: 0.0,
        rel: 0.0,
    };
    /// `log`, `exp`, `^`: WGSL grants `log` 2⁻²¹ absolute near 1 and 3 ulp elsewhere, `exp`
    /// 3 + 2|x| ulp, and `^` inherits from `exp2(y · log2(x))`, so its relative error grows with
    /// `|y · log2(x)|`; 2⁻¹⁴ relative covers exponents up to ~2⁷ (the inputs here).
    pub const TRANSCENDENTAL: Self = Self {
        ulps: 8,
        abs: 1.0 / (1 << 20) as f32,
        rel: 1.0 / (1 << 14) as f32,
    };
}

impl fmt::Display for Tolerance {
    /// `exact`, or the bounds that apply: `8 ulp or 9.54e-7 abs or 6.10e-5 rel`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.ulps > 0 {
            parts.push(format!("{} ulp", self.ulps));
        }
        if self.abs > 0.0 {
            parts.push(format!("{:.2e} abs", self.abs));
        }
        if self.rel > 0.0 {
            parts.push(format!("{:.2e} rel", self.rel));
        }
        if parts.is_empty() {
            f.write_str("exact")
        } else {
            f.write_str(&parts.join(" or "))
        }
    }
}

/// The expressions of the suite, with the tolerance each one needs.
pub const EXPRESSIONS: [(&str, Tolerance); 17] = [
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
    // A sum, not a difference: sqrt(0.94) − sqrt(0.74) cancels, turning each term's allowed few
    // ulp into 8 ulp of the result (seen on NVIDIA's Vulkan driver, seed 1795794433704821519).
    ("sqrt(abs(a)) + sqrt(b)", Tolerance::SQRT),
    ("log(a)", Tolerance::TRANSCENDENTAL),
    ("exp(a / 1000)", Tolerance::TRANSCENDENTAL),
    ("max(a, 0) ^ 1.5", Tolerance::TRANSCENDENTAL),
    // Both terms positive: a sum of two `pow` results that cancel (e.g. b² − 30.35 with
    // b ≈ −5.5) turns the device's allowed pow error into an unbounded relative error of the
    // result, which no per-result tolerance can state (seen with CONFORMANCE_SEED=1795773270409490444).
    ("b ^ 2 + abs(c - 1) ^ -3", Tolerance::TRANSCENDENTAL),
    ("exp(-abs(a)) * log(abs(b) + 1)", Tolerance::TRANSCENDENTAL),
];

/// The band names the suite's expressions are bound against.
pub const EXPRESSION_BANDS: [&str; 3] = ["a", "b", "c"];

/// splitmix64: small, seedable, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

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
    pub fn value(&mut self) -> f32 {
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
    pub fn qa(&mut self) -> f32 {
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

    /// `len` values drawn with `f`.
    pub fn plane(&mut self, len: usize, f: fn(&mut Self) -> f32) -> Vec<f32> {
        (0..len).map(|_| f(self)).collect()
    }
}

/// `count` planes of `len` values drawn with `f` from a stream of `seed` salted with `salt`
/// (each group of cases has its own salt, so adding a case elsewhere changes no input).
pub fn random_planes(
    seed: u64,
    salt: u64,
    count: usize,
    len: usize,
    f: fn(&mut Rng) -> f32,
) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d));
    (0..count).map(|_| rng.plane(len, f)).collect()
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every pixel matched; the worst difference seen (over normal references beyond the
    /// absolute bound) is reported. A check that a call is refused passes with zero pixels.
    Passed {
        compared_px: usize,
        nodata_px: usize,
        /// Pixels that matched only under the subnormal allowance.
        flushed_px: usize,
        max_ulps: u64,
        max_rel: f32,
    },
    /// The first mismatch, error or panic, with the seed to replay it.
    Failed(String),
}

/// One case of the suite: a kernel with its parameters, and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The kernel and its parameters, e.g. `savi l=0.5` or `expr "log(a)"`.
    pub kernel: String,
    /// The tolerance held to, as text (`exact`, `3 ulp` …; `an error` for refusal checks).
    pub tolerance: String,
    pub outcome: Outcome,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Passed { .. })
    }

    /// As JSON: the kernel, tolerance, `passed`, and the numbers or the failure.
    pub fn to_json(&self) -> Value {
        match &self.outcome {
            Outcome::Passed {
                compared_px,
                nodata_px,
                flushed_px,
                max_ulps,
                max_rel,
            } => json!({
                "kernel": self.kernel,
                "tolerance": self.tolerance,
                "passed": true,
                "compared_px": compared_px,
                "nodata_px": nodata_px,
                "flushed_px": flushed_px,
                "max_ulps": max_ulps,
                "max_rel": max_rel,
            }),
            Outcome::Failed(why) => json!({
                "kernel": self.kernel,
                "tolerance": self.tolerance,
                "passed": false,
                "failure": why,
            }),
        }
    }
}

impl fmt::Display for CaseResult {
    /// One line: `ok   <kernel>: …` or `FAIL <kernel>: <first mismatch>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Passed {
                compared_px: 0,
                nodata_px: 0,
                flushed_px: 0,
                max_ulps: 0,
                ..
            } => write!(f, "ok   {}: {}", self.kernel, self.tolerance),
            Outcome::Passed {
                compared_px,
                nodata_px,
                flushed_px,
                max_ulps,
                max_rel,
            } => write!(
                f,
                "ok   {}: {compared_px} px ({nodata_px} nodata, {flushed_px} matched only with \
                 subnormals flushed), max diff {max_ulps} ulp, {max_rel:.2e} relative \
                 (tolerance {})",
                self.kernel, self.tolerance
            ),
            Outcome::Failed(why) => write!(f, "FAIL {}: {why}", self.kernel),
        }
    }
}

/// The suite's result on one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The name the backend was run under (`cpu`, `wgpu` …).
    pub backend: String,
    /// The backend's [`Backend::describe`] line.
    pub device: String,
    pub seed: u64,
    pub plane_px: usize,
    pub big_plane: bool,
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether every case passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(CaseResult::passed)
    }

    /// The cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.cases.iter().filter(|c| !c.passed())
    }

    /// `wgpu: 38 of 38 cases passed (seed 42)`.
    pub fn summary(&self) -> String {
        let passed = self.cases.iter().filter(|c| c.passed()).count();
        format!(
            "{}: {passed} of {} cases passed (seed {})",
            self.backend,
            self.cases.len(),
            self.seed
        )
    }

    /// As JSON: the backend, its device line, the options, `passed` and every case.
    pub fn to_json(&self) -> Value {
        json!({
            "backend": self.backend,
            "device": self.device,
            "seed": self.seed,
            "plane_px": self.plane_px,
            "big_plane": self.big_plane,
            "passed": self.passed(),
            "cases": self.cases.iter().map(CaseResult::to_json).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Report {
    /// One line per case, prefixed with the backend, then the summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            writeln!(f, "{}: {case}", self.backend)?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Runs the whole suite on `backend`, reported under `name`.
pub fn run(backend: &Backend, name: &str, opts: &SuiteOptions) -> Report {
    run_with(backend, name, opts, |_| {})
}

/// [`run`], calling `on_case` as each case finishes (for progress on a slow device).
pub fn run_with(
    backend: &Backend,
    name: &str,
    opts: &SuiteOptions,
    on_case: impl FnMut(&CaseResult),
) -> Report {
    let mut suite = Suite {
        backend,
        name,
        seed: opts.seed,
        cases: Vec::new(),
        on_case,
    };
    let len = opts.plane_px;
    suite.scale(len);
    suite.apply_mask(len);
    suite.indices(len);
    suite.expressions(len);
    suite.chains(len);
    suite.recipes();
    suite.refusals();
    if opts.big_plane {
        suite.big_plane();
    }
    Report {
        backend: name.to_string(),
        device: backend.describe(),
        seed: opts.seed,
        plane_px: opts.plane_px,
        big_plane: opts.big_plane,
        cases: suite.cases,
    }
}

/// A kernel call under test: the backend, the input planes, the (poisoned) output.
type Call<'c> = &'c dyn Fn(&Backend, &[&[f32]], &mut [f32]) -> Result<()>;

/// A call a backend must refuse or accept.
type Probe<'p> = Box<dyn Fn(&Backend) -> Result<()> + 'p>;

/// One run of the suite in progress.
struct Suite<'a, F> {
    backend: &'a Backend,
    name: &'a str,
    seed: u64,
    cases: Vec<CaseResult>,
    on_case: F,
}

impl<F: FnMut(&CaseResult)> Suite<'_, F> {
    fn push(&mut self, kernel: String, tolerance: String, outcome: Outcome) {
        let case = CaseResult {
            kernel,
            tolerance,
            outcome,
        };
        (self.on_case)(&case);
        self.cases.push(case);
    }

    fn replay(&self) -> String {
        format!(
            "replay with seed {} (`constellation conformance --seed {0}`, {SEED_ENV}={0})",
            self.seed
        )
    }

    /// Runs `call` on a poisoned output; an error or a panic is the case's failure.
    fn output(
        &self,
        kernel: &str,
        backend: &Backend,
        backend_name: &str,
        inputs: &[&[f32]],
        call: Call<'_>,
    ) -> Result<Vec<f32>, String> {
        let mut out = vec![POISON; inputs.first().map_or(0, |p| p.len())];
        match guarded(|| call(backend, inputs, &mut out)) {
            Ok(()) => Ok(out),
            Err(why) => Err(format!(
                "{kernel} on {backend_name}: {why}; {}",
                self.replay()
            )),
        }
    }

    /// Runs `call` on the CPU reference (on the inputs and on the inputs with subnormals
    /// flushed) and on the backend, and compares.
    fn check(&mut self, kernel: String, inputs: &[&[f32]], tol: Tolerance, call: Call<'_>) {
        self.check_with(kernel, inputs, tol, call, None);
    }

    /// [`check`](Self::check), where a device that may flush subnormal values (wgpu: WGSL
    /// permits it) may instead match `flushing`, the reference with every intermediate flushed.
    fn check_with(
        &mut self,
        kernel: String,
        inputs: &[&[f32]],
        tol: Tolerance,
        call: Call<'_>,
        flushing: Option<Call<'_>>,
    ) {
        let outcome = (|| {
            let want = self.output(&kernel, &Backend::Cpu, "the cpu reference", inputs, call)?;
            let flushed: Vec<Vec<f32>> = inputs.iter().map(|p| flush(p)).collect();
            let flushed: Vec<&[f32]> = flushed.iter().map(Vec::as_slice).collect();
            let want_flushed =
                self.output(&kernel, &Backend::Cpu, "the cpu reference", &flushed, call)?;
            let want_ftz = match flushing.filter(|_| self.backend.name() == "wgpu") {
                Some(f) => Some(self.output(
                    &kernel,
                    &Backend::Cpu,
                    "the flushing reference",
                    inputs,
                    f,
                )?),
                None => None,
            };
            let got = self.output(&kernel, self.backend, self.name, inputs, call)?;
            compare(inputs, &want, &want_flushed, want_ftz.as_deref(), &got, tol)
                .map_err(|why| format!("{why}: {kernel} on {}; {}", self.name, self.replay()))
        })();
        self.push(
            kernel,
            tol.to_string(),
            outcome.map_or_else(Outcome::Failed, |d| d.outcome()),
        );
    }

    fn scale(&mut self, len: usize) {
        let data = random_planes(self.seed, 1, 1, len, Rng::value).remove(0);
        for scaling in [
            Scaling::LANDSAT_C2_L2_SR,
            Scaling::SENTINEL2_L2A,
            Scaling::IDENTITY,
            Scaling {
                scale: 3.0e5,
                offset: 1.0e30,
            },
        ] {
            // In place: every run starts from the same data; the "poison" is the input itself.
            self.check(
                format!("scale {scaling:?}"),
                &[&data],
                Tolerance::EXACT,
                &|b, inputs, out| {
                    out.copy_from_slice(inputs[0]);
                    b.scale_in_place(out, scaling)
                },
            );
        }
    }

    fn apply_mask(&mut self, len: usize) {
        let data = random_planes(self.seed, 2, 1, len, Rng::value).remove(0);
        let qa = random_planes(self.seed, 3, 1, len, Rng::qa).remove(0);
        for rule in [
            MaskRule::landsat_default(),
            MaskRule::landsat_bits(&[15]),
            MaskRule::scl_default(),
            MaskRule::scl_classes(&[0, 63, 64, 127, 128, 200, 255]),
            MaskRule::LandsatBqaLegacy,
        ] {
            self.check(
                format!("apply_mask {rule:?}"),
                &[&data, &qa],
                Tolerance::EXACT,
                &|b, inputs, out| {
                    out.copy_from_slice(inputs[0]);
                    b.apply_mask(out, inputs[1], &rule)
                },
            );
        }
    }

    fn indices(&mut self, len: usize) {
        let p = random_planes(self.seed, 4, 3, len, Rng::value);
        let (a, b, c) = (&p[0], &p[1], &p[2]);
        self.check(
            "normalized_difference".into(),
            &[a, b],
            Tolerance::ONE_DIVISION,
            &|be, i, out| be.normalized_difference(i[0], i[1], out),
        );
        self.check(
            "evi".into(),
            &[a, b, c],
            Tolerance::ONE_DIVISION,
            &|be, i, out| be.evi(i[0], i[1], i[2], out),
        );
        for l in [0.5, 0.0, 1.0e-3] {
            self.check(
                format!("savi l={l}"),
                &[a, b],
                Tolerance::ONE_DIVISION,
                &|be, i, out| be.savi(i[0], i[1], l, out),
            );
        }
    }

    fn expressions(&mut self, len: usize) {
        let p = random_planes(self.seed, 5, 3, len, Rng::value);
        let inputs: Vec<&[f32]> = p.iter().map(Vec::as_slice).collect();
        for (text, tol) in EXPRESSIONS {
            let kernel = format!("expr {text:?}");
            match ExprKernel::parse(text, &EXPRESSION_BANDS) {
                Ok(expr) => self.check_with(
                    kernel,
                    &inputs,
                    tol,
                    &|be, i, out| be.expr(&expr, i, out),
                    Some(&|_, i, out| Ok(expr.compiled().eval_flushing_subnormals(i, out)?)),
                ),
                Err(e) => self.push(
                    kernel,
                    tol.to_string(),
                    Outcome::Failed(format!("the expression does not parse: {e}")),
                ),
            }
        }
    }

    /// Fused element-wise chains: each output of a chain run in one call, against the same
    /// chain run op by op on the CPU. One chain is a Landsat NDVI (scale, mask, index), one
    /// reads planes out of order (gathered on a device), returns an input and one plane twice.
    fn chains(&mut self, len: usize) {
        let landsat = {
            let ops = vec![
                ChainOp::Scale {
                    src: 0,
                    scaling: Scaling::LANDSAT_C2_L2_SR,
                },
                ChainOp::Scale {
                    src: 1,
                    scaling: Scaling::LANDSAT_C2_L2_SR,
                },
                ChainOp::Mask {
                    src: 3,
                    qa: 2,
                    rule: MaskRule::landsat_default(),
                },
                ChainOp::Mask {
                    src: 4,
                    qa: 2,
                    rule: MaskRule::landsat_default(),
                },
                ChainOp::NormalizedDifference { a: 6, b: 5 },
            ];
            Chain::new(3, ops, vec![7, 5])
        };
        let gathered = (|| -> Result<Chain> {
            let nd = Arc::new(ExprKernel::parse("(a - b) / (a + b)", &EXPRESSION_BANDS)?);
            let pick = Arc::new(ExprKernel::parse(
                "where(c > 0.5, a, b)",
                &EXPRESSION_BANDS,
            )?);
            let ops = vec![
                // Reads planes 2 and 0: gathered.
                ChainOp::Expr {
                    kernel: nd,
                    bands: vec![2, 0, 1],
                },
                ChainOp::Mask {
                    src: 4,
                    qa: 3,
                    rule: MaskRule::landsat_default(),
                },
                ChainOp::Expr {
                    kernel: pick,
                    bands: vec![5, 1, 0],
                },
                // Planes 0, 1, 2: read in place.
                ChainOp::Evi {
                    nir: 0,
                    red: 1,
                    blue: 2,
                },
            ];
            Chain::new(4, ops, vec![6, 7, 1, 5, 6])
        })();
        let values = random_planes(self.seed, 6, 3, len, Rng::value);
        let qa = random_planes(self.seed, 7, 1, len, Rng::qa).remove(0);
        let landsat_in: Vec<&[f32]> = vec![&values[0], &values[1], &qa];
        let gathered_in: Vec<&[f32]> = vec![&values[0], &values[1], &values[2], &qa];
        let cases = [
            (
                "landsat ndvi",
                landsat,
                landsat_in,
                vec![Tolerance::ONE_DIVISION, Tolerance::EXACT],
            ),
            (
                "gathered",
                gathered,
                gathered_in,
                vec![
                    Tolerance::ONE_DIVISION,
                    Tolerance::ONE_DIVISION,
                    Tolerance::EXACT,
                    Tolerance::ONE_DIVISION,
                    Tolerance::ONE_DIVISION,
                ],
            ),
        ];
        for (name, chain, inputs, tolerances) in cases {
            let chain = match chain {
                Ok(c) => c,
                Err(e) => {
                    self.push(
                        format!("chain {name}"),
                        "—".into(),
                        Outcome::Failed(format!("the chain does not build: {e}")),
                    );
                    continue;
                }
            };
            for (j, tol) in tolerances.into_iter().enumerate() {
                self.check_with(
                    format!("chain {name} output {j}"),
                    &inputs,
                    tol,
                    &|be, i, out| {
                        let outputs = be.run_chain(&chain, i)?;
                        out.copy_from_slice(&outputs[j]);
                        Ok(())
                    },
                    Some(&|_, i, out| run_chain_flushing(&chain, i, j, out)),
                );
            }
        }
    }

    /// Whole recipes (every element-wise one in the catalog) over a batch of tiles of mixed
    /// sizes packed into one call, against each tile run step by step on the CPU.
    fn recipes(&mut self) {
        // Sizes that split a capped device's chunks mid-tile, and a one-pixel tile.
        const TILES: [(usize, usize); 5] = [(61, 17), (1, 1), (256, 200), (7, 300), (128, 96)];
        let total: usize = TILES.iter().map(|(w, h)| w * h).sum();
        let grid = GridFacts {
            pixel_width: 30.0,
            pixel_height: 30.0,
            scale: 1.0,
        };
        let recipes = match crate::recipe::catalog(&crate::recipe::Params::new()) {
            Ok(r) => r,
            Err(e) => {
                self.push(
                    "recipes".into(),
                    "—".into(),
                    Outcome::Failed(format!("the catalog does not load: {e}")),
                );
                return;
            }
        };
        for (k, recipe) in recipes.into_iter().enumerate() {
            if recipe.halo_px() != 0 || recipe.outputs.len() != 1 {
                continue;
            }
            let name = format!("recipe {} over {} tiles", recipe.name, TILES.len());
            let prepared = match Prepared::new(recipe) {
                Ok(p) if p.fused_steps() == p.recipe.steps.len() => p,
                Ok(_) => continue,
                Err(e) => {
                    self.push(
                        name,
                        "—".into(),
                        Outcome::Failed(format!("the recipe does not prepare: {e}")),
                    );
                    continue;
                }
            };
            let roles: Vec<String> = prepared.recipe.roles().map(str::to_string).collect();
            let planes: Vec<Vec<f32>> = roles
                .iter()
                .enumerate()
                .map(|(r, role)| {
                    let salt = 100 + 10 * k as u64 + r as u64;
                    let draw = if matches!(role.as_str(), "qa" | "scl" | "bqa") {
                        Rng::qa
                    } else {
                        Rng::value
                    };
                    random_planes(self.seed, salt, 1, total, draw).remove(0)
                })
                .collect();
            let inputs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
            self.check(name, &inputs, Tolerance::ONE_DIVISION, &|be, i, out| {
                let mut tiles = Vec::with_capacity(TILES.len());
                let mut offset = 0;
                for (w, h) in TILES {
                    let planes: HashMap<String, TilePlane> = roles
                        .iter()
                        .zip(i)
                        .map(|(role, p)| {
                            let data = p[offset..offset + w * h].to_vec();
                            (role.clone(), TilePlane { halo_px: 0, data })
                        })
                        .collect();
                    tiles.push(TileInput {
                        width_px: w,
                        height_px: h,
                        planes,
                    });
                    offset += w * h;
                }
                let mut at = 0;
                for tile in prepared.run_tiles_on(be, tiles, &grid) {
                    let band = tile?.into_iter().next().ok_or_else(|| {
                        EngineError::Backend("a recipe tile came back with no band".into())
                    })?;
                    out[at..at + band.len()].copy_from_slice(&band);
                    at += band.len();
                }
                Ok(())
            });
        }
    }

    /// Calls a backend must refuse (planes of different lengths, a bad parameter, the wrong
    /// number of bands) and one it must accept (empty planes).
    fn refusals(&mut self) {
        let expr = match ExprKernel::parse("a + b * c", &EXPRESSION_BANDS) {
            Ok(expr) => expr,
            Err(e) => {
                let why = format!("the expression \"a + b * c\" does not parse: {e}");
                self.push(
                    "refusal checks".into(),
                    "an error".into(),
                    Outcome::Failed(why),
                );
                return;
            }
        };
        let probes: [(&str, bool, Probe<'_>); 6] = [
            (
                "normalized_difference with planes of 3 and 2 px",
                false,
                Box::new(|b: &Backend| {
                    b.normalized_difference(&[1.0; 3], &[1.0; 2], &mut [0.0; 3])
                }),
            ),
            (
                "apply_mask with 3 px of data and 2 px of qa",
                false,
                Box::new(|b: &Backend| {
                    b.apply_mask(&mut [0.0; 3], &[0.0; 2], &MaskRule::scl_default())
                }),
            ),
            (
                "savi with l=-1",
                false,
                Box::new(|b: &Backend| b.savi(&[1.0; 3], &[1.0; 3], -1.0, &mut [0.0; 3])),
            ),
            (
                "expr of 3 bands given 2",
                false,
                Box::new(|b: &Backend| b.expr(&expr, &[&[1.0; 3], &[1.0; 3]], &mut [0.0; 3])),
            ),
            (
                "expr with bands of 3, 3 and 2 px",
                false,
                Box::new(|b: &Backend| {
                    b.expr(&expr, &[&[1.0; 3], &[1.0; 3], &[1.0; 2]], &mut [0.0; 3])
                }),
            ),
            (
                "normalized_difference of empty planes",
                true,
                Box::new(|b: &Backend| b.normalized_difference(&[], &[], &mut [])),
            ),
        ];
        for (what, accept, probe) in probes {
            let expected = if accept { "accepted" } else { "an error" };
            let got = match guarded(|| probe(self.backend)) {
                Ok(()) if accept => None,
                Err(Failure::Error(_)) if !accept => None,
                Ok(()) => Some("accepted".to_string()),
                Err(failure) => Some(failure.to_string()),
            };
            let outcome = match got {
                None => Outcome::Passed {
                    compared_px: 0,
                    nodata_px: 0,
                    flushed_px: 0,
                    max_ulps: 0,
                    max_rel: 0.0,
                },
                Some(got) => Outcome::Failed(format!(
                    "{what} on {}: expected {expected}, got {got}",
                    self.name
                )),
            };
            self.push(format!("refusal check: {what}"), expected.into(), outcome);
        }
    }

    /// normalized_difference on [`BIG_PLANE_PX`] pixels: a device must split it across
    /// bindings and dispatch a 2-D grid.
    fn big_plane(&mut self) {
        let mut rng = Rng::new(self.seed ^ 7);
        let a = rng.plane(BIG_PLANE_PX, Rng::value);
        let b = rng.plane(BIG_PLANE_PX, Rng::value);
        self.check(
            format!("normalized_difference (big plane, {BIG_PLANE_PX} px)"),
            &[&a, &b],
            Tolerance::ONE_DIVISION,
            &|be, i, out| be.normalized_difference(i[0], i[1], out),
        );
    }
}

/// Why a guarded call did not succeed.
#[derive(Debug)]
enum Failure {
    /// The call returned an error (the message).
    Error(String),
    /// The call panicked (the panic's message).
    Panic(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(msg) => f.write_str(msg),
            Failure::Panic(msg) => write!(f, "panicked: {msg}"),
        }
    }
}

/// Output `j` of `chain` as a device that flushes subnormal values computes it op by op on the
/// CPU: every op's inputs and result flushed, and an expression's every intermediate.
fn run_chain_flushing(chain: &Chain, inputs: &[&[f32]], j: usize, out: &mut [f32]) -> Result<()> {
    let len = out.len();
    let mut planes: Vec<Vec<f32>> = inputs.iter().map(|p| flush(p)).collect();
    for op in chain.ops() {
        let mut o = vec![0.0f32; len];
        match op {
            ChainOp::Scale { src, scaling } => {
                o.copy_from_slice(&planes[*src]);
                kernels::scale::scale_in_place(&mut o, *scaling)?;
            }
            ChainOp::Mask { src, qa, rule } => {
                o.copy_from_slice(&planes[*src]);
                kernels::mask::apply_mask(&mut o, &planes[*qa], rule)?;
            }
            ChainOp::NormalizedDifference { a, b } => {
                kernels::index::normalized_difference(&planes[*a], &planes[*b], &mut o)?;
            }
            ChainOp::Evi { nir, red, blue } => {
                kernels::index::evi(&planes[*nir], &planes[*red], &planes[*blue], &mut o)?;
            }
            ChainOp::Savi { nir, red, l } => {
                kernels::index::savi(&planes[*nir], &planes[*red], *l, &mut o)?;
            }
            ChainOp::Expr { kernel, bands } => {
                let bound: Vec<&[f32]> = bands.iter().map(|&b| planes[b].as_slice()).collect();
                kernel.compiled().eval_flushing_subnormals(&bound, &mut o)?;
            }
        }
        planes.push(flush(&o));
    }
    let plane = chain
        .outputs()
        .get(j)
        .and_then(|&p| planes.get(p))
        .ok_or_else(|| EngineError::Backend(format!("the chain has no output {j}")))?;
    out.copy_from_slice(plane);
    Ok(())
}

/// Runs `f`, catching a panic: a backend that panics fails its case, never the whole run.
fn guarded(f: impl FnOnce() -> Result<()>) -> Result<(), Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Error(e.to_string())),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Failure::Panic(msg))
        }
    }
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

impl Diff {
    fn outcome(self) -> Outcome {
        Outcome::Passed {
            compared_px: self.compared_px,
            nodata_px: self.nodata_px,
            flushed_px: self.flushed_px,
            max_ulps: self.max_ulps,
            max_rel: self.max_rel,
        }
    }
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
    inputs: &[&[f32]],
    want: &[f32],
    want_flushed: &[f32],
    want_ftz: Option<&[f32]>,
    got: &[f32],
    tol: Tolerance,
) -> Result<Diff, String> {
    if want.len() != got.len() {
        return Err(format!("{} px came back for {} px", got.len(), want.len()));
    }
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
            }
            Err(why) => {
                let subnormal_input = inputs.iter().any(|p| is_subnormal(p[i]));
                // A flushing device may flush the inputs, the result, or both.
                let flushes_to =
                    |want: f32| matches(want, g, tol).is_ok() || (is_subnormal(want) && g == 0.0);
                let flushed_ok = (subnormal_input && flushes_to(want_flushed[i]))
                    || (is_subnormal(w) && g == 0.0)
                    || want_ftz.is_some_and(|f| matches(f[i], g, tol).is_ok());
                if flushed_ok {
                    diff.flushed_px += 1;
                    continue;
                }
                let pixel: Vec<f32> = inputs.iter().map(|p| p[i]).collect();
                return Err(format!(
                    "{why}: pixel {i} of {}, inputs {pixel:?}: reference {w:?} ({:#010x}), got \
                     {g:?} ({:#010x}); tolerance {tol}",
                    want.len(),
                    w.to_bits(),
                    g.to_bits()
                ));
            }
        }
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulps_count_across_zero() {
        assert_eq!(ulp_distance(0.0, -0.0), 0);
        assert_eq!(ulp_distance(f32::from_bits(1), -f32::from_bits(1)), 2);
        assert_eq!(ulp_distance(1.0, f32::from_bits(1.0f32.to_bits() + 3)), 3);
    }

    #[test]
    fn compare_finds_nodata_poison_and_tolerance_breaches() {
        let inputs: [&[f32]; 1] = [&[1.0, 2.0, 3.0]];
        let want = [1.0, f32::NAN, 3.0];
        let ok = compare(&inputs, &want, &want, None, &want, Tolerance::EXACT);
        assert!(ok.is_ok_and(|d| d.compared_px == 3 && d.nodata_px == 1));
        let poisoned = [1.0, f32::NAN, POISON];
        let err = compare(
            &inputs,
            &want,
            &want,
            None,
            &poisoned,
            Tolerance::ONE_DIVISION,
        );
        assert!(err.is_err_and(|m| m.contains("out of tolerance") && m.contains("pixel 2")));
        let nodata = [1.0, 2.0, 3.0];
        let err = compare(&inputs, &want, &want, None, &nodata, Tolerance::EXACT);
        assert!(err.is_err_and(|m| m.contains("nodata disagrees")));
        let near = [1.0, f32::NAN, f32::from_bits(3.0f32.to_bits() + 2)];
        assert!(compare(&inputs, &want, &want, None, &near, Tolerance::ONE_DIVISION).is_ok());
        assert!(compare(&inputs, &want, &want, None, &near, Tolerance::EXACT).is_err());
    }

    #[test]
    fn a_subnormal_input_may_be_flushed() {
        let tiny = f32::from_bits(5);
        let inputs: [&[f32]; 1] = [&[tiny]];
        // The reference keeps the subnormal; a flushing device sees 0 and gives another value.
        let d = compare(&inputs, &[1.0], &[2.0], None, &[2.0], Tolerance::EXACT);
        assert!(d.is_ok_and(|d| d.flushed_px == 1));
        assert!(compare(&inputs, &[1.0], &[2.0], None, &[3.0], Tolerance::EXACT).is_err());
        // Seen on NVIDIA's Vulkan driver (evi): the flushed input gives a subnormal result,
        // which is flushed in turn.
        let sub = f32::from_bits(0x0040_0000);
        let d = compare(&inputs, &[1.2e-38], &[sub], None, &[0.0], Tolerance::EXACT);
        assert!(d.is_ok_and(|d| d.flushed_px == 1));
        let normal_input: [&[f32]; 1] = [&[1.0]];
        let d = compare(
            &normal_input,
            &[1.2e-38],
            &[sub],
            None,
            &[0.0],
            Tolerance::EXACT,
        );
        assert!(d.is_err(), "only with a subnormal input");
    }

    #[test]
    fn a_flushed_intermediate_passes_only_as_the_flushing_reference_computes_it() {
        // Seen on NVIDIA's Vulkan driver: a − b is subnormal, flushed to zero, so the quotient is 0.
        let expr = ExprKernel::parse("(a - b) / (a + b)", &["a", "b"]).expect("expression");
        let (a, b) = ([-1.102_719_9e-35_f32], [-1.101_964_7e-35_f32]);
        let inputs: [&[f32]; 2] = [&a, &b];
        let (mut want, mut ftz) = ([0.0f32], [0.0f32]);
        expr.compiled().eval(&inputs, &mut want).expect("eval");
        expr.compiled()
            .eval_flushing_subnormals(&inputs, &mut ftz)
            .expect("eval");
        assert!(want[0] > 3.0e-4 && ftz[0] == 0.0, "{want:?} {ftz:?}");
        let tol = Tolerance::ONE_DIVISION;
        assert!(compare(&inputs, &want, &want, None, &ftz, tol).is_err());
        let d = compare(&inputs, &want, &want, Some(&ftz), &ftz, tol);
        assert!(d.is_ok_and(|d| d.flushed_px == 1));
        // Anything else is still a failure.
        assert!(compare(&inputs, &want, &want, Some(&ftz), &[0.5], tol).is_err());
    }

    #[test]
    fn the_flushing_chain_reference_flushes_between_and_inside_ops() {
        // Seen on NVIDIA's Vulkan driver: c − a is subnormal inside the expression.
        let nd = Arc::new(ExprKernel::parse("(a - b) / (a + b)", &["a", "b"]).expect("expr"));
        let chain = Chain::new(
            2,
            vec![ChainOp::Expr {
                kernel: nd,
                bands: vec![1, 0],
            }],
            vec![2],
        )
        .expect("chain");
        let (a, c) = ([2.933_900_4e-37_f32], [2.974_222_1e-37_f32]);
        let inputs: [&[f32]; 2] = [&a, &c];
        let want = Backend::Cpu.run_chain(&chain, &inputs).expect("runs");
        assert!(want[0][0] > 6.0e-3, "{want:?}");
        let mut ftz = [1.0f32];
        run_chain_flushing(&chain, &inputs, 0, &mut ftz).expect("runs");
        assert_eq!(ftz, [0.0]);
    }

    #[test]
    fn a_panic_or_an_error_is_a_failure() {
        let panic = guarded(|| panic!("boom")).map_err(|f| f.to_string());
        assert_eq!(panic, Err("panicked: boom".to_string()));
        let err = guarded(|| Err(EngineError::Backend("lost".into())));
        assert!(matches!(err, Err(Failure::Error(m)) if m.contains("lost")));
    }

    #[test]
    fn the_cpu_passes_its_own_suite_with_every_case_reported() {
        let opts = SuiteOptions {
            plane_px: 4_099,
            ..SuiteOptions::new(11)
        };
        let mut seen = 0;
        let report = run_with(&Backend::Cpu, "cpu", &opts, |_| seen += 1);
        assert!(report.passed(), "{report}");
        assert_eq!(seen, report.cases.len());
        // 4 scalings, 5 mask rules, 5 indices, the expressions, 7 chain outputs, 15 recipes
        // (7 indices on two sensors and the Level-1 NDVI) and 6 refusal checks.
        assert_eq!(
            report.cases.len(),
            4 + 5 + 5 + EXPRESSIONS.len() + 7 + 15 + 6
        );
        let recipes = report
            .cases
            .iter()
            .filter(|c| c.kernel.starts_with("recipe "));
        assert_eq!(recipes.count(), 15);
        let json = report.to_json();
        assert_eq!(json["passed"], true);
        assert_eq!(
            json["cases"].as_array().map(Vec::len),
            Some(report.cases.len())
        );
        assert_eq!(report.to_string().lines().count(), report.cases.len() + 1);
    }

    #[test]
    fn tolerances_read_as_text() {
        assert_eq!(Tolerance::EXACT.to_string(), "exact");
        assert_eq!(Tolerance::ONE_DIVISION.to_string(), "3 ulp");
        assert_eq!(
            Tolerance::TRANSCENDENTAL.to_string(),
            "8 ulp or 9.54e-7 abs or 6.10e-5 rel"
        );
    }
}
