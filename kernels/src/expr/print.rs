//! The printer: `Display` for the syntax trees, with minimal parentheses, so that printing and
//! parsing again gives the same tree.

use std::fmt;

use super::ast::{BandRef, BinaryOp, Expr, ExprKind, Prec, TypedExpr};

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, Prec::Or)
    }
}

impl fmt::Display for TypedExpr {
    /// Prints the expression with bands as `$1`, `$2` …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, &self.to_ast(), Prec::Or)
    }
}

/// How tightly `expr` binds when printed bare.
fn prec_of(expr: &Expr) -> Prec {
    match &expr.kind {
        ExprKind::Num(_) | ExprKind::Band(_) | ExprKind::Call { .. } => Prec::Atom,
        ExprKind::Unary { .. } => Prec::Unary,
        ExprKind::Binary { op, .. } => op.prec(),
    }
}

/// Writes `expr` where the grammar wants a node binding at least as tightly as `min`.
fn write_expr(f: &mut fmt::Formatter<'_>, expr: &Expr, min: Prec) -> fmt::Result {
    if prec_of(expr) < min {
        f.write_str("(")?;
        write_bare(f, expr)?;
        f.write_str(")")
    } else {
        write_bare(f, expr)
    }
}

fn write_bare(f: &mut fmt::Formatter<'_>, expr: &Expr) -> fmt::Result {
    match &expr.kind {
        ExprKind::Num(v) => write_num(f, *v),
        ExprKind::Band(BandRef::Name(name)) => f.write_str(name),
        ExprKind::Band(BandRef::Index(i)) => write!(f, "${i}"),
        ExprKind::Unary { op, arg } => {
            f.write_str(op.symbol())?;
            write_expr(f, arg, Prec::Unary)
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let p = op.prec();
            let (lhs_min, rhs_min) = match p {
                // `atom ^ unary`
                Prec::Pow => (Prec::Atom, Prec::Unary),
                // Comparisons do not chain: both sides are sums.
                Prec::Cmp => (Prec::Add, Prec::Add),
                // Left-associative levels.
                Prec::Or => (Prec::Or, Prec::And),
                Prec::And => (Prec::And, Prec::Cmp),
                Prec::Add => (Prec::Add, Prec::Mul),
                Prec::Mul | Prec::Unary | Prec::Atom => (Prec::Mul, Prec::Unary),
            };
            write_expr(f, lhs, lhs_min)?;
            if *op == BinaryOp::Pow {
                f.write_str("^")?;
            } else {
                write!(f, " {} ", op.symbol())?;
            }
            write_expr(f, rhs, rhs_min)
        }
        ExprKind::Call { func, args } => {
            write!(f, "{}(", func.name())?;
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_expr(f, arg, Prec::Or)?;
            }
            f.write_str(")")
        }
    }
}

/// Writes a literal. Parsed literals are finite and non-negative and print as themselves
/// (Rust's shortest round-trip form); others (only from hand-built trees) print as an
/// equivalent parenthesised expression.
fn write_num(f: &mut fmt::Formatter<'_>, v: f32) -> fmt::Result {
    if !v.is_finite() {
        // Non-finite values are nodata in the language, and `0 / 0` is nodata.
        f.write_str("(0 / 0)")
    } else if v.is_sign_negative() {
        write!(f, "(-{})", literal(-v))
    } else {
        f.write_str(&literal(v))
    }
}

/// The shortest text that parses back to `v` (finite, non-negative): `2`, `0.5`, `1e-7`, `1e30`.
pub(crate) fn literal(v: f32) -> String {
    let text = format!("{v:?}");
    match text.strip_suffix(".0") {
        Some(integer) => integer.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, BinaryOp, Expr, ExprKind, Span};

    fn reprint(text: &str) -> String {
        let e = parse(text).unwrap_or_else(|err| panic!("{text:?}: {err}"));
        let printed = e.to_string();
        let again = parse(&printed).unwrap_or_else(|err| panic!("{printed:?}: {err}"));
        assert_eq!(
            again.without_spans(),
            e.without_spans(),
            "{text:?} -> {printed:?}"
        );
        printed
    }

    #[test]
    fn prints_minimal_parentheses() {
        let cases = [
            ("a+b*c", "a + b * c"),
            ("(a+b)*c", "(a + b) * c"),
            ("a-(b-c)", "a - (b - c)"),
            ("(a-b)-c", "a - b - c"),
            ("a/(b*c)", "a / (b * c)"),
            ("-x^2", "-x^2"),
            ("(-x)^2", "(-x)^2"),
            ("(a^b)^c", "(a^b)^c"),
            ("a^b^c", "a^b^c"),
            ("2^-1", "2^-1"),
            ("-(a+b)", "-(a + b)"),
            ("- -a", "--a"),
            ("!(a<b)", "!(a < b)"),
            ("(a<b)==(c<d)", "(a < b) == (c < d)"),
            ("a||(b||c)", "a || (b || c)"),
            ("(a||b)&&c", "(a || b) && c"),
            ("where(a>0,$1,min(a,b,c))", "where(a > 0, $1, min(a, b, c))"),
            ("1e-4 + 2.75e-5 + 1e30", "0.0001 + 2.75e-5 + 1e30"),
        ];
        for (text, want) in cases {
            assert_eq!(reprint(text), want, "{text:?}");
        }
    }

    #[test]
    fn prints_hand_built_literals_safely() {
        let neg = Expr::new(ExprKind::Num(-2.5), Span::default());
        let pow = Expr::new(
            ExprKind::Binary {
                op: BinaryOp::Pow,
                lhs: Box::new(neg),
                rhs: Box::new(Expr::new(ExprKind::Num(f32::NAN), Span::default())),
            },
            Span::default(),
        );
        assert_eq!(pow.to_string(), "(-2.5)^(0 / 0)");
        assert!(parse(&pow.to_string()).is_ok());
    }
}
