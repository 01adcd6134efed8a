//! Binding and type checking: the untyped [`Expr`] to a [`TypedExpr`].

use super::ast::{BandRef, Expr, ExprKind, Span, Type, TypedExpr, TypedKind, TypedNode};
use super::{ExprError, ExprErrorKind};

/// Resolves band names (against `band_names`, case-sensitive; the first match wins) and `$n`
/// indices (1-based, up to `band_names.len()`) to band slots, and type-checks.
///
/// The result's root is a number; a boolean expression is an error (wrap it in `where`).
/// Error positions are byte offsets of the text `ast` was parsed from (which is ASCII, so the
/// column is the offset plus one).
pub fn bind(ast: &Expr, band_names: &[&str]) -> Result<TypedExpr, ExprError> {
    let root = Binder { band_names }.node(ast)?;
    if root.ty == Type::Bool {
        return Err(ExprError::at_ascii(
            ExprErrorKind::BoolResult,
            ast.span.start,
            "expression gives a boolean, not a number; use where(condition, a, b) to turn it \
             into values",
        ));
    }
    Ok(TypedExpr {
        root,
        band_count: band_names.len(),
    })
}

struct Binder<'n> {
    band_names: &'n [&'n str],
}

impl Binder<'_> {
    fn node(&self, expr: &Expr) -> Result<TypedNode, ExprError> {
        let span = expr.span;
        let (kind, ty) = match &expr.kind {
            ExprKind::Num(v) => (TypedKind::Num(*v), Type::Num),
            ExprKind::Band(band) => (TypedKind::Band(self.band(band, span)?), Type::Num),
            ExprKind::Unary { op, arg } => {
                let want = match op {
                    super::UnaryOp::Neg => Type::Num,
                    super::UnaryOp::Not => Type::Bool,
                };
                let arg = self.expect(arg, want, || {
                    format!("operand of '{}' must be {want}", op.symbol())
                })?;
                (
                    TypedKind::Unary {
                        op: *op,
                        arg: Box::new(arg),
                    },
                    want,
                )
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (want, result) = op.signature();
                let lhs = self.expect(lhs, want, || {
                    format!("left operand of '{}' must be {want}", op.symbol())
                })?;
                let rhs = self.expect(rhs, want, || {
                    format!("right operand of '{}' must be {want}", op.symbol())
                })?;
                (
                    TypedKind::Binary {
                        op: *op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    result,
                )
            }
            ExprKind::Call { func, args } => {
                let args = args
                    .iter()
                    .enumerate()
                    .map(|(i, arg)| {
                        let want = func.param_type(i);
                        self.expect(arg, want, || {
                            format!("argument {} of '{}' must be {want}", i + 1, func.name())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (TypedKind::Call { func: *func, args }, Type::Num)
            }
        };
        Ok(TypedNode { kind, ty, span })
    }

    /// Binds `expr` and checks that it has type `want`; `what` describes the slot.
    fn expect(
        &self,
        expr: &Expr,
        want: Type,
        what: impl FnOnce() -> String,
    ) -> Result<TypedNode, ExprError> {
        let node = self.node(expr)?;
        if node.ty == want {
            Ok(node)
        } else {
            let hint = match want {
                Type::Num => "; use where(condition, a, b) to turn a condition into values",
                Type::Bool => "; compare it, e.g. 'x > 0'",
            };
            Err(ExprError::at_ascii(
                ExprErrorKind::TypeMismatch,
                expr.span.start,
                format!("{} but is {}{hint}", what(), node.ty),
            ))
        }
    }

    fn band(&self, band: &BandRef, span: Span) -> Result<usize, ExprError> {
        match band {
            BandRef::Name(name) => {
                self.band_names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| {
                        let known = if self.band_names.is_empty() {
                            "no bands are bound".to_string()
                        } else {
                            format!("the bands are {}", self.band_names.join(", "))
                        };
                        ExprError::at_ascii(
                            ExprErrorKind::UnknownBand,
                            span.start,
                            format!("unknown band '{name}'; {known}"),
                        )
                    })
            }
            BandRef::Index(i) => {
                if (1..=self.band_names.len()).contains(i) {
                    Ok(i - 1)
                } else {
                    Err(ExprError::at_ascii(
                        ExprErrorKind::BandOutOfRange,
                        span.start,
                        format!(
                            "band '${i}' is out of range: there are {} bands",
                            self.band_names.len()
                        ),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ExprErrorKind as K, Type, TypedKind};
    use super::bind;

    const BANDS: [&str; 4] = ["nir", "red", "qa", "min"];

    fn bind_err(text: &str, kind: K, column: usize, message: &str) {
        let ast = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let err = bind(&ast, &BANDS).expect_err(text);
        assert_eq!(
            (err.kind, err.column, err.message.as_str()),
            (kind, column, message),
            "{text:?}"
        );
        assert_eq!(err.offset + 1, err.column);
    }

    #[test]
    fn binds_names_and_indices() {
        let ast = parse("(nir - $2) / (nir + red) + min").expect("parses");
        let typed = bind(&ast, &BANDS).expect("binds");
        assert_eq!(typed.band_count, 4);
        assert_eq!(typed.root.ty, Type::Num);
        assert_eq!(typed.bands_used(), vec![0, 1, 3]);
        assert_eq!(typed.to_string(), "($1 - $2) / ($1 + $2) + $4");
        let leaf = bind(&parse("$3").expect("parses"), &BANDS).expect("binds");
        assert_eq!(leaf.root.kind, TypedKind::Band(2));
    }

    #[test]
    fn bind_errors_with_positions() {
        bind_err(
            "nir + rde",
            K::UnknownBand,
            7,
            "unknown band 'rde'; the bands are nir, red, qa, min",
        );
        bind_err(
            "red * $5",
            K::BandOutOfRange,
            7,
            "band '$5' is out of range: there are 4 bands",
        );
        bind_err(
            "nir > 1",
            K::BoolResult,
            1,
            "expression gives a boolean, not a number; use where(condition, a, b) to turn it \
             into values",
        );
        bind_err(
            "nir + (red > 1)",
            K::TypeMismatch,
            7,
            "right operand of '+' must be a number but is a boolean; use where(condition, a, b) \
             to turn a condition into values",
        );
        bind_err(
            "where(qa, nir, red)",
            K::TypeMismatch,
            7,
            "argument 1 of 'where' must be a boolean but is a number; compare it, e.g. 'x > 0'",
        );
        bind_err(
            "where(qa > 0, nir, red < 1)",
            K::TypeMismatch,
            20,
            "argument 3 of 'where' must be a number but is a boolean; use where(condition, a, b) \
             to turn a condition into values",
        );
        bind_err(
            "where(!qa, 1, 2)",
            K::TypeMismatch,
            8,
            "operand of '!' must be a boolean but is a number; compare it, e.g. 'x > 0'",
        );
        bind_err(
            "-(qa > 1)",
            K::TypeMismatch,
            2,
            "operand of '-' must be a number but is a boolean; use where(condition, a, b) to \
             turn a condition into values",
        );
        bind_err(
            "where(qa > 0 && red, 1, 2)",
            K::TypeMismatch,
            17,
            "right operand of '&&' must be a boolean but is a number; compare it, e.g. 'x > 0'",
        );
        bind_err(
            "where((qa > 0) < 1, 1, 2)",
            K::TypeMismatch,
            7,
            "left operand of '<' must be a number but is a boolean; use where(condition, a, b) \
             to turn a condition into values",
        );
        bind_err(
            "sqrt(nir < 1)",
            K::TypeMismatch,
            6,
            "argument 1 of 'sqrt' must be a number but is a boolean; use where(condition, a, b) \
             to turn a condition into values",
        );
    }
}
