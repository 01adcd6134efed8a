//! WGSL code generation: a [`TypedExpr`] becomes a compute shader with the semantics of
//! [`eval_reference`](super::eval_reference).
//!
//! The shader follows the layout of every element-wise kernel in `shaders/wgsl/`: binding 0 is
//! a uniform `Params` (`n` = pixels in the chunk, `zero` = always 0), binding 1 a read-only
//! storage buffer that packs the bands the expression reads back to back (packed plane `k` at
//! `src[k * n + i]`, in the order of [`WgslKernel::bands`]), binding 2 the output. The entry
//! point is `main`, with a workgroup size of 256 and a 2-D grid of workgroups.
//!
//! Semantics are carried over exactly: values are `f32`, booleans are `1.0`, `0.0` or nodata,
//! and nodata is tested by bit pattern (never with `x != x`, which a GPU compiler may fold), made
//! at run time as `bitcast<f32>(0x7fc00000u | params.zero)` (WGSL has no NaN literal), and
//! propagated by explicit checks rather than by trusting the device's IEEE behaviour. Products
//! are rounded before they are added (no fused multiply-add, as on the CPU). Constant subtrees
//! are folded on the CPU with [`semantics`](super::semantics), as the CPU compiler does.
//! What the device may still do differently: `/`, `sqrt`, `log`, `exp` and `^` carry the
//! precision WGSL grants them (a few ulps; absolute error near `log(1)`), and a device may
//! flush subnormal values to zero.

use std::fmt::Write as _;

use super::ast::TypedExpr;
use super::codegen::{generate, Dialect};

/// The WGSL entry point of every generated shader.
pub const ENTRY_POINT: &str = "main";
/// Invocations per workgroup of every generated shader.
pub const WORKGROUP_SIZE: u32 = 256;

/// A generated shader and the band slots it reads, in packed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgslKernel {
    /// The complete WGSL module.
    pub source: String,
    /// Band slots (of the bound expression) packed into the input buffer, in order.
    pub bands: Vec<usize>,
}

/// The layout (params, bindings) and nodata helpers shared with the built-in kernels.
const COMMON: &str = include_str!("../../../shaders/wgsl/common.wgsl");

/// The scalar rules of `semantics.rs`, in WGSL, after [`COMMON`]. Bool operands are `1.0`, `0.0` or nodata.
const PRELUDE: &str = r#"
fn fin(x: f32) -> f32 {
    return select(nodata(), x, (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u);
}

fn either(a: f32, b: f32) -> bool {
    return is_nodata(a) || is_nodata(b);
}

fn truth(b: bool) -> f32 {
    return select(0.0, 1.0, b);
}

fn x_neg(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) ^ 0x80000000u);
}

fn x_not(x: f32) -> f32 {
    return select(truth(x == 0.0), nodata(), is_nodata(x));
}

fn x_abs(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu);
}

fn x_sqrt(x: f32) -> f32 {
    if is_nodata(x) || x < 0.0 {
        return nodata();
    }
    return fin(sqrt(x));
}

// Natural log; subnormal arguments are scaled into the normal range first (log(x · 2²³) −
// 23 ln 2), since device log implementations need not be accurate on them.
fn x_log(x: f32) -> f32 {
    if is_nodata(x) || x <= 0.0 {
        return nodata();
    }
    if x < bitcast<f32>(0x00800000u) {
        return fin(log(x * 8388608.0) - 15.942385);
    }
    return fin(log(x));
}

fn x_exp(x: f32) -> f32 {
    if is_nodata(x) {
        return nodata();
    }
    return fin(exp(x));
}

fn x_add(a: f32, b: f32) -> f32 {
    return select(fin(a + b), nodata(), either(a, b));
}

fn x_sub(a: f32, b: f32) -> f32 {
    return select(fin(a - b), nodata(), either(a, b));
}

fn x_mul(a: f32, b: f32) -> f32 {
    return select(fin(rounded(a * b)), nodata(), either(a, b));
}

fn x_div(a: f32, b: f32) -> f32 {
    return select(fin(quotient(a, b)), nodata(), either(a, b) || b == 0.0);
}

fn is_integer(b: f32) -> bool {
    return trunc(b) == b;
}

fn is_odd_integer(b: f32) -> bool {
    let half = b * 0.5;
    return is_integer(b) && x_abs(b) < 16777216.0 && trunc(half) != half;
}

// IEEE pow (as Rust's powf) on finite operands, then non-finite results become nodata.
fn x_pow(a: f32, b: f32) -> f32 {
    if either(a, b) {
        return nodata();
    }
    if b == 0.0 || a == 1.0 {
        return 1.0;
    }
    let m = x_abs(a);
    if m == 0.0 {
        if b < 0.0 {
            return nodata();
        }
        return select(0.0, a, is_odd_integer(b));
    }
    if a < 0.0 && !is_integer(b) {
        return nodata();
    }
    // pow(m, b) for normal m; exp2(b · log2(m)) with log2 scaled out of the subnormal range.
    var p = 0.0;
    if m < bitcast<f32>(0x00800000u) {
        p = exp2(b * (log2(m * 8388608.0) - 23.0));
    } else {
        p = pow(m, b);
    }
    return fin(select(p, x_neg(p), a < 0.0 && is_odd_integer(b)));
}

fn x_min(a: f32, b: f32) -> f32 {
    return select(select(a, b, b < a), nodata(), either(a, b));
}

fn x_max(a: f32, b: f32) -> f32 {
    return select(select(a, b, b > a), nodata(), either(a, b));
}

fn x_lt(a: f32, b: f32) -> f32 {
    return select(truth(a < b), nodata(), either(a, b));
}

fn x_le(a: f32, b: f32) -> f32 {
    return select(truth(a <= b), nodata(), either(a, b));
}

fn x_gt(a: f32, b: f32) -> f32 {
    return select(truth(a > b), nodata(), either(a, b));
}

fn x_ge(a: f32, b: f32) -> f32 {
    return select(truth(a >= b), nodata(), either(a, b));
}

fn x_eq(a: f32, b: f32) -> f32 {
    return select(truth(a == b), nodata(), either(a, b));
}

fn x_ne(a: f32, b: f32) -> f32 {
    return select(truth(a != b), nodata(), either(a, b));
}

fn x_and(a: f32, b: f32) -> f32 {
    return select(truth(a != 0.0 && b != 0.0), nodata(), either(a, b));
}

fn x_or(a: f32, b: f32) -> f32 {
    return select(truth(a != 0.0 || b != 0.0), nodata(), either(a, b));
}

fn x_where(c: f32, a: f32, b: f32) -> f32 {
    return select(select(b, a, c != 0.0), nodata(), is_nodata(c));
}

fn x_clamp(x: f32, lo: f32, hi: f32) -> f32 {
    return x_min(x_max(x, lo), hi);
}
"#;

/// Generates the compute shader for `expr`.
pub fn to_wgsl(expr: &TypedExpr) -> WgslKernel {
    let bands = expr.bands_used();
    let gen = generate(expr, &bands, &Wgsl);
    let mut source = String::with_capacity(PRELUDE.len() + gen.body.len() + 512);
    let _ = writeln!(source, "// generated from: {expr}");
    source.push_str(COMMON);
    source.push_str(PRELUDE);
    let _ = write!(
        source,
        "\n@compute @workgroup_size({WORKGROUP_SIZE})\n\
         fn {ENTRY_POINT}(\n    \
             @builtin(workgroup_id) wid: vec3<u32>,\n    \
             @builtin(num_workgroups) nwg: vec3<u32>,\n    \
             @builtin(local_invocation_index) lid: u32,\n\
         ) {{\n    \
             let i = (wid.y * nwg.x + wid.x) * {WORKGROUP_SIZE}u + lid;\n    \
             if i >= params.n {{\n        return;\n    }}\n"
    );
    source.push_str(&gen.body);
    let _ = write!(source, "    dst[i] = {};\n}}\n", gen.result);
    WgslKernel { source, bands }
}

/// The Wgsl spelling of the shared walk.
struct Wgsl;

impl Dialect for Wgsl {
    fn literal(&self, v: f32) -> String {
        literal(v)
    }

    fn load(&self, packed: usize) -> String {
        format!("src[{packed}u * params.n + i]")
    }

    fn bind(&self, t: usize, rhs: &str) -> String {
        format!("    let t{t} = {rhs};")
    }
}

/// An exact `f32` literal (WGSL has no NaN literal; nodata is made at run time).
fn literal(v: f32) -> String {
    if v.is_nan() {
        "nodata()".to_string()
    } else {
        format!("bitcast<f32>({:#010x}u)", v.to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{bind, parse};

    fn gen(text: &str, bands: &[&str]) -> WgslKernel {
        let typed = bind(&parse(text).expect("parses"), bands).expect("binds");
        to_wgsl(&typed)
    }

    #[test]
    fn packs_only_the_bands_read() {
        let k = gen("(c - a) / (c + a)", &["a", "b", "c"]);
        assert_eq!(k.bands, vec![0, 2]);
        assert!(k.source.contains("src[0u * params.n + i]"));
        assert!(k.source.contains("src[1u * params.n + i]"));
        assert!(!k.source.contains("src[2u"));
    }

    #[test]
    fn constant_subtrees_fold_with_cpu_semantics() {
        let k = gen("a + 1 / 0", &["a"]);
        // 1 / 0 is nodata, folded on the CPU, never a WGSL division by a constant zero.
        assert!(k.source.contains("x_add(t0, nodata())"), "{}", k.source);
        let k = gen("a * (2 + 0.5)", &["a"]);
        assert!(k.source.contains(&literal(2.5)), "{}", k.source);
    }

    #[test]
    fn band_loads_are_shared() {
        let k = gen("a * a + a", &["a"]);
        assert_eq!(k.source.matches("src[0u").count(), 1);
    }
}
