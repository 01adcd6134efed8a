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

use super::ast::{BinaryOp, Func, TypedExpr, TypedKind, TypedNode, UnaryOp};
use super::semantics as sem;

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
    return select(fin(a / b), nodata(), either(a, b) || b == 0.0);
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
    let mut gen = Gen {
        bands: &bands,
        body: String::new(),
        next: 0,
        loaded: vec![None; expr.band_count],
    };
    let result = gen.node(&expr.root);
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
    let _ = write!(source, "    dst[i] = {};\n}}\n", result.text());
    WgslKernel { source, bands }
}

/// A generated value: a folded constant or a named temporary.
enum Value {
    Const(f32),
    Temp(usize),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Const(v) => literal(*v),
            Value::Temp(t) => format!("t{t}"),
        }
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

struct Gen<'b> {
    bands: &'b [usize],
    body: String,
    next: usize,
    /// The temporary holding each band slot once it is loaded.
    loaded: Vec<Option<usize>>,
}

impl Gen<'_> {
    fn temp(&mut self, rhs: &str) -> Value {
        let t = self.next;
        self.next += 1;
        let _ = writeln!(self.body, "    let t{t} = {rhs};");
        Value::Temp(t)
    }

    fn node(&mut self, node: &TypedNode) -> Value {
        match &node.kind {
            TypedKind::Num(v) => Value::Const(sem::load(*v)),
            TypedKind::Band(b) => {
                if let Some(t) = self.loaded.get(*b).copied().flatten() {
                    return Value::Temp(t);
                }
                let Some(packed) = self.bands.iter().position(|s| s == b) else {
                    // Unreachable for a bound expression; reads as nodata like the reference.
                    return Value::Const(sem::NODATA);
                };
                let v = self.temp(&format!("fin(src[{packed}u * params.n + i])"));
                if let (Value::Temp(t), Some(slot)) = (&v, self.loaded.get_mut(*b)) {
                    *slot = Some(*t);
                }
                v
            }
            TypedKind::Unary { op, arg } => {
                let a = self.node(arg);
                if let Value::Const(x) = a {
                    return Value::Const(sem::unary_fn(*op)(x));
                }
                let name = match op {
                    UnaryOp::Neg => "x_neg",
                    UnaryOp::Not => "x_not",
                };
                self.temp(&format!("{name}({})", a.text()))
            }
            TypedKind::Binary { op, lhs, rhs } => {
                let a = self.node(lhs);
                let b = self.node(rhs);
                self.binary(*op, a, b)
            }
            TypedKind::Call { func, args } => {
                let values: Vec<Value> = args.iter().map(|a| self.node(a)).collect();
                self.call(*func, values)
            }
        }
    }

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Value {
        if let (Value::Const(x), Value::Const(y)) = (&a, &b) {
            return Value::Const(sem::binary_fn(op)(*x, *y));
        }
        let name = match op {
            BinaryOp::Add => "x_add",
            BinaryOp::Sub => "x_sub",
            BinaryOp::Mul => "x_mul",
            BinaryOp::Div => "x_div",
            BinaryOp::Pow => "x_pow",
            BinaryOp::Lt => "x_lt",
            BinaryOp::Le => "x_le",
            BinaryOp::Gt => "x_gt",
            BinaryOp::Ge => "x_ge",
            BinaryOp::Eq => "x_eq",
            BinaryOp::Ne => "x_ne",
            BinaryOp::And => "x_and",
            BinaryOp::Or => "x_or",
        };
        self.temp(&format!("{name}({}, {})", a.text(), b.text()))
    }

    fn call(&mut self, func: Func, values: Vec<Value>) -> Value {
        let consts: Option<Vec<f32>> = values
            .iter()
            .map(|v| match v {
                Value::Const(x) => Some(*x),
                Value::Temp(_) => None,
            })
            .collect();
        match func {
            Func::Min | Func::Max => {
                let (name, f): (&str, fn(f32, f32) -> f32) = if func == Func::Min {
                    ("x_min", sem::min)
                } else {
                    ("x_max", sem::max)
                };
                let mut values = values.into_iter();
                let Some(mut acc) = values.next() else {
                    return Value::Const(sem::NODATA);
                };
                for v in values {
                    acc = match (&acc, &v) {
                        (Value::Const(x), Value::Const(y)) => Value::Const(f(*x, *y)),
                        _ => self.temp(&format!("{name}({}, {})", acc.text(), v.text())),
                    };
                }
                acc
            }
            _ => {
                let arg = |k: usize| consts.as_ref().and_then(|c| c.get(k).copied());
                if consts.is_some() {
                    let x = |k| arg(k).unwrap_or(sem::NODATA);
                    return Value::Const(match func {
                        Func::Where => sem::select(x(0), x(1), x(2)),
                        Func::Clamp => sem::clamp(x(0), x(1), x(2)),
                        Func::Abs => sem::abs(x(0)),
                        Func::Sqrt => sem::sqrt(x(0)),
                        Func::Log => sem::log(x(0)),
                        Func::Exp => sem::exp(x(0)),
                        Func::Min | Func::Max => sem::NODATA,
                    });
                }
                let name = match func {
                    Func::Where => "x_where",
                    Func::Clamp => "x_clamp",
                    Func::Abs => "x_abs",
                    Func::Sqrt => "x_sqrt",
                    Func::Log => "x_log",
                    Func::Exp => "x_exp",
                    Func::Min => "x_min",
                    Func::Max => "x_max",
                };
                let texts: Vec<String> = values.iter().map(Value::text).collect();
                self.temp(&format!("{name}({})", texts.join(", ")))
            }
        }
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
