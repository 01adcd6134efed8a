//! The scalar rules of the language, one function per operation, and the reference evaluator.
//!
//! Values are `f32`; `NaN` is nodata; a boolean is `1.0`, `0.0` or `NaN`. Every function here
//! returns either a finite value or `NaN`, given finite-or-`NaN` operands. The compiled
//! evaluator and the constant folder call exactly these functions, so their results are
//! bit-identical to [`eval_reference`]. The functions are written branch-free where possible
//! so that the per-chunk loops vectorize.

use super::ast::{BinaryOp, Func, TypedExpr, TypedKind, TypedNode, UnaryOp};

/// Nodata.
pub const NODATA: f32 = f32::NAN;

/// Non-finite values become nodata.
#[inline(always)]
pub fn finite_or_nodata(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        NODATA
    }
}

/// How a band value is read: non-finite input (`NaN`, `±Inf`) is nodata.
#[inline(always)]
pub fn load(x: f32) -> f32 {
    finite_or_nodata(x)
}

#[inline(always)]
fn either_nan(a: f32, b: f32) -> bool {
    a.is_nan() | b.is_nan()
}

#[inline(always)]
fn truth(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[inline(always)]
pub fn neg(x: f32) -> f32 {
    -x
}

/// `!b`: nodata stays nodata.
#[inline(always)]
pub fn not(x: f32) -> f32 {
    if x.is_nan() {
        NODATA
    } else {
        truth(x == 0.0)
    }
}

#[inline(always)]
pub fn abs(x: f32) -> f32 {
    x.abs()
}

#[inline(always)]
pub fn sqrt(x: f32) -> f32 {
    finite_or_nodata(x.sqrt())
}

/// Natural logarithm; `log(0)` and `log(x < 0)` are nodata.
#[inline(always)]
pub fn log(x: f32) -> f32 {
    finite_or_nodata(x.ln())
}

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    finite_or_nodata(x.exp())
}

#[inline(always)]
pub fn add(a: f32, b: f32) -> f32 {
    finite_or_nodata(a + b)
}

#[inline(always)]
pub fn sub(a: f32, b: f32) -> f32 {
    finite_or_nodata(a - b)
}

#[inline(always)]
pub fn mul(a: f32, b: f32) -> f32 {
    finite_or_nodata(a * b)
}

#[inline(always)]
pub fn div(a: f32, b: f32) -> f32 {
    finite_or_nodata(a / b)
}

/// `a ^ b`; unlike IEEE `pow`, `NaN ^ 0` and `1 ^ NaN` are nodata.
#[inline(always)]
pub fn pow(a: f32, b: f32) -> f32 {
    if either_nan(a, b) {
        NODATA
    } else {
        finite_or_nodata(a.powf(b))
    }
}

/// The smaller operand; nodata if either is (for equal operands, `a`).
#[inline(always)]
pub fn min(a: f32, b: f32) -> f32 {
    if either_nan(a, b) {
        NODATA
    } else if b < a {
        b
    } else {
        a
    }
}

/// The larger operand; nodata if either is (for equal operands, `a`).
#[inline(always)]
pub fn max(a: f32, b: f32) -> f32 {
    if either_nan(a, b) {
        NODATA
    } else if b > a {
        b
    } else {
        a
    }
}

macro_rules! comparison {
    ($(#[$doc:meta])* $name:ident, $op:tt) => {
        $(#[$doc])*
        #[inline(always)]
        pub fn $name(a: f32, b: f32) -> f32 {
            if either_nan(a, b) {
                NODATA
            } else {
                truth(a $op b)
            }
        }
    };
}

comparison!(/// `a < b` as a boolean.
    lt, <);
comparison!(/// `a <= b` as a boolean.
    le, <=);
comparison!(/// `a > b` as a boolean.
    gt, >);
comparison!(/// `a >= b` as a boolean.
    ge, >=);
comparison!(/// `a == b` as a boolean.
    eq, ==);
comparison!(/// `a != b` as a boolean.
    ne, !=);

/// `a && b`; nodata if either is.
#[inline(always)]
pub fn and(a: f32, b: f32) -> f32 {
    if either_nan(a, b) {
        NODATA
    } else {
        truth((a != 0.0) & (b != 0.0))
    }
}

/// `a || b`; nodata if either is.
#[inline(always)]
pub fn or(a: f32, b: f32) -> f32 {
    if either_nan(a, b) {
        NODATA
    } else {
        truth((a != 0.0) | (b != 0.0))
    }
}

/// `where(c, a, b)`: nodata when `c` is, else `a` when `c` is true, else `b`.
#[inline(always)]
pub fn select(c: f32, a: f32, b: f32) -> f32 {
    if c.is_nan() {
        NODATA
    } else if c != 0.0 {
        a
    } else {
        b
    }
}

/// `clamp(x, lo, hi)` = `min(max(x, lo), hi)` (so `hi` wins when `lo > hi`).
#[inline(always)]
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    min(max(x, lo), hi)
}

/// The scalar function of a unary operator.
pub fn unary_fn(op: UnaryOp) -> fn(f32) -> f32 {
    match op {
        UnaryOp::Neg => neg,
        UnaryOp::Not => not,
    }
}

/// The scalar function of a binary operator.
pub fn binary_fn(op: BinaryOp) -> fn(f32, f32) -> f32 {
    match op {
        BinaryOp::Add => add,
        BinaryOp::Sub => sub,
        BinaryOp::Mul => mul,
        BinaryOp::Div => div,
        BinaryOp::Pow => pow,
        BinaryOp::Lt => lt,
        BinaryOp::Le => le,
        BinaryOp::Gt => gt,
        BinaryOp::Ge => ge,
        BinaryOp::Eq => eq,
        BinaryOp::Ne => ne,
        BinaryOp::And => and,
        BinaryOp::Or => or,
    }
}

/// Evaluates `expr` at one pixel by walking the tree; `pixel[i]` is band slot `i`.
///
/// The test oracle for [`CompiledExpr`](super::CompiledExpr): slow but obviously right.
/// A band slot beyond `pixel` reads as nodata.
pub fn eval_reference(expr: &TypedExpr, pixel: &[f32]) -> f32 {
    eval_node(&expr.root, pixel)
}

fn eval_node(node: &TypedNode, pixel: &[f32]) -> f32 {
    match &node.kind {
        TypedKind::Num(v) => load(*v),
        TypedKind::Band(b) => load(pixel.get(*b).copied().unwrap_or(NODATA)),
        TypedKind::Unary { op, arg } => unary_fn(*op)(eval_node(arg, pixel)),
        TypedKind::Binary { op, lhs, rhs } => {
            binary_fn(*op)(eval_node(lhs, pixel), eval_node(rhs, pixel))
        }
        TypedKind::Call { func, args } => {
            let mut values = args.iter().map(|a| eval_node(a, pixel));
            let mut next = || values.next().unwrap_or(NODATA);
            match func {
                Func::Where => {
                    let (c, a, b) = (next(), next(), next());
                    select(c, a, b)
                }
                Func::Clamp => {
                    let (x, lo, hi) = (next(), next(), next());
                    clamp(x, lo, hi)
                }
                Func::Abs => abs(next()),
                Func::Sqrt => sqrt(next()),
                Func::Log => log(next()),
                Func::Exp => exp(next()),
                Func::Min | Func::Max => {
                    let f = if *func == Func::Min { min } else { max };
                    let first = next();
                    args[1..]
                        .iter()
                        .fold(first, |acc, a| f(acc, eval_node(a, pixel)))
                }
            }
        }
    }
}
