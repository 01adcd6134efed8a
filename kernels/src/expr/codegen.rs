//! The walk shared by the device code generators (`wgsl`, `cuda`): constants folded on the CPU
//! with [`semantics`](super::semantics), as the CPU compiler does; one temporary per operation,
//! named `t<n>`, calling the prelude's `x_*` functions; each band loaded once. A [`Dialect`]
//! supplies the spelling of literals, loads and bindings.

use std::fmt::Write as _;

use super::ast::{BinaryOp, Func, TypedExpr, TypedKind, TypedNode, UnaryOp};
use super::semantics as sem;

/// How one device language spells what the walk emits.
pub(super) trait Dialect {
    /// An exact literal for `v`; nodata (NaN) as a call to the prelude's `nodata()`.
    fn literal(&self, v: f32) -> String;
    /// The expression reading packed input plane `packed` at the current pixel.
    fn load(&self, packed: usize) -> String;
    /// The statement (with its indentation) binding temporary `t` to `rhs`.
    fn bind(&self, t: usize, rhs: &str) -> String;
}

/// The statements computing an expression, and the text of its result.
pub(super) struct Generated {
    pub(super) body: String,
    pub(super) result: String,
}

/// Walks `expr`, whose bands are packed in the order of `bands`, in `dialect`.
pub(super) fn generate(expr: &TypedExpr, bands: &[usize], dialect: &dyn Dialect) -> Generated {
    let mut gen = Gen {
        dialect,
        bands,
        body: String::new(),
        next: 0,
        loaded: vec![None; expr.band_count],
    };
    let value = gen.node(&expr.root);
    let result = gen.text(&value);
    Generated {
        body: gen.body,
        result,
    }
}

/// A generated value: a folded constant or a named temporary.
enum Value {
    Const(f32),
    Temp(usize),
}

struct Gen<'b> {
    dialect: &'b dyn Dialect,
    bands: &'b [usize],
    body: String,
    next: usize,
    /// The temporary holding each band slot once it is loaded.
    loaded: Vec<Option<usize>>,
}

impl Gen<'_> {
    fn text(&self, v: &Value) -> String {
        match v {
            Value::Const(x) => self.dialect.literal(*x),
            Value::Temp(t) => format!("t{t}"),
        }
    }

    fn temp(&mut self, rhs: &str) -> Value {
        let t = self.next;
        self.next += 1;
        let _ = writeln!(self.body, "{}", self.dialect.bind(t, rhs));
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
                let load = self.dialect.load(packed);
                let v = self.temp(&format!("fin({load})"));
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
                let a = self.text(&a);
                self.temp(&format!("{name}({a})"))
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
        let (a, b) = (self.text(&a), self.text(&b));
        self.temp(&format!("{name}({a}, {b})"))
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
                        _ => {
                            let (a, b) = (self.text(&acc), self.text(&v));
                            self.temp(&format!("{name}({a}, {b})"))
                        }
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
                let texts: Vec<String> = values.iter().map(|v| self.text(v)).collect();
                self.temp(&format!("{name}({})", texts.join(", ")))
            }
        }
    }
}
