//! The expression evaluator against numpy: realistic band-math formulas on 100k deterministic
//! pixels (with zeros, negatives and nodata), evaluated by our compiled program and by numpy
//! in float32 with the language's nodata rules spelled out (`np.where`, non-finite → nan).
//!
//! Tolerance: per pixel `|ours - numpy| <= 1e-5 + 1e-6 * |numpy|` (1e-5 absolute plus 1e-6
//! relative), and nodata in exactly the same pixels. `+ - * /` and `sqrt` are correctly
//! rounded in both, so only `log`, `exp` and `^` (different libm/SIMD implementations, a few
//! ulp) can differ at all.

mod support;

use kernels::expr;
use support::{assert_close, python, write_f32, Rng};

const PIXELS: usize = 100_000;
const BANDS: [&str; 6] = ["nir", "red", "green", "blue", "swir", "qa"];

/// (name, our expression, the same in numpy with the helpers of `NUMPY_PRELUDE`).
const CASES: &[(&str, &str, &str)] = &[
    ("ndvi", "(nir - red) / (nir + red)", "DIV(SUB(nir, red), ADD(nir, red))"),
    (
        "ndvi_qa_masked",
        "where(qa > 2, -1, (nir - red) / (nir + red))",
        "W(GT(qa, C(2)), C(-1), DIV(SUB(nir, red), ADD(nir, red)))",
    ),
    (
        "evi",
        "2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)",
        "DIV(MUL(C(2.5), SUB(nir, red)), ADD(SUB(ADD(nir, MUL(C(6), red)), MUL(C(7.5), blue)), C(1)))",
    ),
    (
        "savi",
        "1.5 * (nir - red) / (nir + red + 0.5)",
        "DIV(MUL(C(1.5), SUB(nir, red)), ADD(ADD(nir, red), C(0.5)))",
    ),
    (
        "ndmi_by_index",
        "($1 - $5) / ($1 + $5)",
        "DIV(SUB(nir, swir), ADD(nir, swir))",
    ),
    (
        "ndvi_clamped",
        "clamp((nir - red) / (nir + red), -0.2, 0.8)",
        "CLAMP(DIV(SUB(nir, red), ADD(nir, red)), C(-0.2), C(0.8))",
    ),
    (
        "sqrt_abs",
        "sqrt(abs(nir - swir)) * 10",
        "MUL(SQRT(np.abs(SUB(nir, swir))), C(10))",
    ),
    ("log_ratio", "log(nir / red)", "LOG(DIV(nir, red))"),
    (
        "nested_where",
        "where(qa == 0, nir, where(qa == 1, red, where(qa < 4, green, blue)))",
        "W(EQ(qa, C(0)), nir, W(EQ(qa, C(1)), red, W(LT(qa, C(4)), green, blue)))",
    ),
    (
        "min_max_3",
        "min(nir, red, green) + max(red, green, blue)",
        "ADD(MIN(nir, red, green), MAX(red, green, blue))",
    ),
    (
        "powers",
        "nir^2 - red^0.5 + 2^-nir",
        "ADD(SUB(POW(nir, C(2)), POW(red, C(0.5))), POW(C(2), NEG(nir)))",
    ),
    (
        "neg_pow_precedence",
        "-nir^2 + 2 * -red",
        "ADD(NEG(POW(nir, C(2))), MUL(C(2), NEG(red)))",
    ),
    (
        "comparisons_and_or",
        "where(nir > 0.3 && red < 0.1 || qa != 5, 1, 0)",
        "W(OR(AND(GT(nir, C(0.3)), LT(red, C(0.1))), NE(qa, C(5))), C(1), C(0))",
    ),
    (
        "not_and_log_exp",
        "where(qa < 2 && !(nir <= 0), log(1 + nir) - sqrt(red), exp(min(swir, 1)))",
        "W(AND(LT(qa, C(2)), NOT(LE(nir, C(0)))), SUB(LOG(ADD(C(1), nir)), SQRT(red)), EXP(MIN(swir, C(1))))",
    ),
    ("exp_decay", "exp(-nir * 3) * 100", "MUL(EXP(MUL(NEG(nir), C(3))), C(100))"),
    (
        "ndwi_ge",
        "where(green >= nir, (green - nir) / (green + nir), 0)",
        "W(GE(green, nir), DIV(SUB(green, nir), ADD(green, nir)), C(0))",
    ),
    ("division_by_zero", "1 / qa + 1 / (nir - nir)", "ADD(DIV(C(1), qa), DIV(C(1), SUB(nir, nir)))"),
    ("exp_overflow", "exp(nir * 300)", "EXP(MUL(nir, C(300)))"),
];

/// numpy float32 helpers that spell out the language's semantics.
const NUMPY_PRELUDE: &str = r#"
import sys, functools
import numpy as np
np.seterr(all="ignore")
f32 = np.float32
nan = f32(np.nan)
d = sys.argv[1]
def C(v): return f32(v)
def load(name):
    a = np.fromfile(f"{d}/{name}.bin", dtype="<f4")
    return np.where(np.isfinite(a), a, nan).astype(f32)
def F(x):
    x = np.asarray(x)
    assert x.dtype == f32 or x.ndim == 0, x.dtype
    x = x.astype(f32)
    return np.where(np.isfinite(x), x, nan).astype(f32)
def anynan(*xs): return functools.reduce(np.logical_or, [np.isnan(x) for x in xs])
def ADD(a, b): return F(a + b)
def SUB(a, b): return F(a - b)
def MUL(a, b): return F(a * b)
def DIV(a, b): return F(a / b)
def NEG(a): return F(-a)
def POW(a, b): return F(np.where(anynan(a, b), nan, np.power(a, b)))
def SQRT(a): return F(np.sqrt(a))
def LOG(a): return F(np.log(a))
def EXP(a): return F(np.exp(a))
def MIN(*xs): return F(functools.reduce(np.minimum, xs))
def MAX(*xs): return F(functools.reduce(np.maximum, xs))
def CLAMP(x, lo, hi): return MIN(MAX(x, lo), hi)
def B(mask, *xs): return np.where(anynan(*xs), nan, mask.astype(f32)).astype(f32)
def LT(a, b): return B(a < b, a, b)
def LE(a, b): return B(a <= b, a, b)
def GT(a, b): return B(a > b, a, b)
def GE(a, b): return B(a >= b, a, b)
def EQ(a, b): return B(a == b, a, b)
def NE(a, b): return B(a != b, a, b)
def AND(a, b): return B((a != 0) & (b != 0), a, b)
def OR(a, b): return B((a != 0) | (b != 0), a, b)
def NOT(a): return B(a == 0, a)
def W(c, a, b): return F(np.where(np.isnan(c), nan, np.where(c != 0, a, b)))
"#;

const NUMPY_MAIN: &str = r#"
bands = {name: load(name) for name in ["nir", "red", "green", "blue", "swir", "qa"]}
globals().update(bands)
n = len(bands["nir"])
for line in open(f"{d}/cases.txt"):
    name, code = line.rstrip("\n").split("\t")
    out = np.broadcast_to(F(eval(code)), (n,)).astype("<f4")
    out.tofile(f"{d}/numpy_{name}.bin")
"#;

/// Deterministic test bands: reflectances in [0, 0.6) with ~3% exact zeros, ~2% small
/// negatives and ~2% nodata; `qa` holds the integers 0..=5 with ~2% nodata.
fn bands() -> Vec<Vec<f32>> {
    let mut rng = Rng::new(0x0e_c5_9e_55);
    BANDS
        .iter()
        .map(|name| {
            (0..PIXELS)
                .map(|_| {
                    let roll = rng.uniform(0.0, 1.0);
                    if roll < 0.02 {
                        f32::NAN
                    } else if *name == "qa" {
                        rng.uniform(0.0, 6.0).floor()
                    } else if roll < 0.05 {
                        0.0
                    } else if roll < 0.07 {
                        rng.uniform(-0.05, 0.0)
                    } else {
                        rng.uniform(0.0, 0.6)
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn expressions_match_numpy() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("expr_numpy");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let planes = bands();
    for (name, plane) in BANDS.iter().zip(&planes) {
        write_f32(&dir.join(format!("{name}.bin")), plane);
    }
    let cases: String = CASES
        .iter()
        .map(|(name, _, numpy)| format!("{name}\t{numpy}\n"))
        .collect();
    std::fs::write(dir.join("cases.txt"), cases).expect("write cases");
    let dir_arg = dir.to_str().expect("utf-8 temp dir");
    python(&format!("{NUMPY_PRELUDE}{NUMPY_MAIN}"), &[dir_arg]);

    let inputs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
    for (name, text, _) in CASES {
        let program = expr::compile(text, &BANDS).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut ours = vec![0.0f32; PIXELS];
        program.eval(&inputs, &mut ours).expect("evaluates");
        let oracle = support::read_f32(&dir.join(format!("numpy_{name}.bin")));

        // Nodata positions and the absence of ±Inf, with the loosest per-pixel bound.
        let scale = oracle
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        assert_close(name, &ours, &oracle, 1e-5 + 1e-6 * scale);
        // The stated per-pixel tolerance.
        for (i, (a, b)) in ours.iter().zip(&oracle).enumerate() {
            if !b.is_nan() {
                assert!(
                    (a - b).abs() <= 1e-5 + 1e-6 * b.abs(),
                    "{name} ({text}) at {i}: ours {a}, numpy {b}"
                );
            }
        }
        let nodata = ours.iter().filter(|v| v.is_nan()).count();
        let worst = ours
            .iter()
            .zip(&oracle)
            .filter(|(_, b)| !b.is_nan())
            .fold(0.0f32, |m, (a, b)| {
                m.max((a - b).abs() / (1e-5 + 1e-6 * b.abs()))
            });
        eprintln!("{name}: {nodata} nodata pixels, worst error {worst:.3} of the tolerance");
        assert!(
            nodata < PIXELS || *name == "division_by_zero",
            "{name}: all nodata"
        );
    }
}
