//! The recursive-descent parser: tokens to the untyped [`Expr`] tree.

use super::ast::{Arity, BandRef, BinaryOp, Expr, ExprKind, Func, Span, UnaryOp};
use super::lexer::{lex, Tok, Token};
use super::{ExprError, ExprErrorKind, MAX_NESTING, MAX_TREE_DEPTH};

/// Parses `text`; see the grammar in the module docs.
pub(crate) fn parse(text: &str) -> Result<Expr, ExprError> {
    let tokens = lex(text)?;
    if tokens.first().is_none_or(|t| t.tok == Tok::Eof) {
        return Err(ExprError::at(
            ExprErrorKind::EmptyInput,
            text,
            0,
            "empty expression",
        ));
    }
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
        nesting: 0,
    };
    let expr = parser.expr()?;
    let next = parser.peek();
    if next.tok != Tok::Eof {
        return Err(parser.error_at(
            ExprErrorKind::UnexpectedToken,
            next.span.start,
            format!(
                "expected an operator or end of input but found {}",
                next.tok.describe()
            ),
        ));
    }
    if expr.depth() > MAX_TREE_DEPTH {
        return Err(parser.error_at(
            ExprErrorKind::TooDeep,
            0,
            format!("expression is too deep (more than {MAX_TREE_DEPTH} levels)"),
        ));
    }
    Ok(expr)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    pos: usize,
    nesting: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // `lex` always ends with `Eof` and `bump` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn error_at(&self, kind: ExprErrorKind, offset: usize, message: String) -> ExprError {
        ExprError::at(kind, self.text, offset, message)
    }

    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ExprError>,
    ) -> Result<T, ExprError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.error_at(
                ExprErrorKind::TooDeep,
                self.peek().span.start,
                format!("expression is nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Token, ExprError> {
        let next = self.peek();
        if &next.tok == want {
            Ok(self.bump())
        } else {
            Err(self.error_at(
                ExprErrorKind::UnexpectedToken,
                next.span.start,
                format!("expected {what} but found {}", next.tok.describe()),
            ))
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        self.or()
    }

    /// Parses a left-associative chain of the operators `ops` over `operand`.
    fn left_chain(
        &mut self,
        ops: &[(Tok, BinaryOp)],
        operand: fn(&mut Self) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut lhs = operand(self)?;
        while let Some(op) = ops
            .iter()
            .find(|(tok, _)| *tok == self.peek().tok)
            .map(|(_, op)| *op)
        {
            self.bump();
            let rhs = operand(self)?;
            lhs = binary(op, lhs, rhs);
        }
        Ok(lhs)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.left_chain(&[(Tok::OrOr, BinaryOp::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        self.left_chain(&[(Tok::AndAnd, BinaryOp::And)], Self::cmp)
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let lhs = self.sum()?;
        let Some(op) = comparison(&self.peek().tok) else {
            return Ok(lhs);
        };
        self.bump();
        let rhs = self.sum()?;
        let next = self.peek();
        if comparison(&next.tok).is_some() {
            return Err(self.error_at(
                ExprErrorKind::ChainedComparison,
                next.span.start,
                "comparisons cannot be chained; combine them with '&&'".to_string(),
            ));
        }
        Ok(binary(op, lhs, rhs))
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        self.left_chain(
            &[(Tok::Plus, BinaryOp::Add), (Tok::Minus, BinaryOp::Sub)],
            Self::product,
        )
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        self.left_chain(
            &[(Tok::Star, BinaryOp::Mul), (Tok::Slash, BinaryOp::Div)],
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        let op = match self.peek().tok {
            Tok::Minus => UnaryOp::Neg,
            Tok::Bang => UnaryOp::Not,
            _ => return self.power(),
        };
        let op_token = self.bump();
        let arg = self.nested(Self::unary)?;
        let span = op_token.span.to(arg.span);
        Ok(Expr::new(
            ExprKind::Unary {
                op,
                arg: Box::new(arg),
            },
            span,
        ))
    }

    fn power(&mut self) -> Result<Expr, ExprError> {
        let base = self.atom()?;
        if self.peek().tok != Tok::Caret {
            return Ok(base);
        }
        self.bump();
        let exponent = self.nested(Self::unary)?;
        Ok(binary(BinaryOp::Pow, base, exponent))
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let token = self.bump();
        match token.tok {
            Tok::Num(v) => Ok(Expr::new(ExprKind::Num(v), token.span)),
            Tok::Band(i) => Ok(Expr::new(ExprKind::Band(BandRef::Index(i)), token.span)),
            Tok::Name(name) if self.peek().tok == Tok::LParen => {
                self.nested(|p| p.call(&name, token.span))
            }
            Tok::Name(name) => Ok(Expr::new(ExprKind::Band(BandRef::Name(name)), token.span)),
            Tok::LParen => {
                let mut inner = self.nested(Self::expr)?;
                let close = self.expect(&Tok::RParen, "')'")?;
                // The node's span widens to cover its parentheses.
                inner.span = token.span.to(close.span);
                Ok(inner)
            }
            other => Err(self.error_at(
                ExprErrorKind::UnexpectedToken,
                token.span.start,
                format!(
                    "expected a number, a band or '(' but found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// Parses the argument list of `name(`; `name_span` is where the name sits.
    fn call(&mut self, name: &str, name_span: Span) -> Result<Expr, ExprError> {
        let Some(func) = Func::from_name(name) else {
            let known: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
            return Err(self.error_at(
                ExprErrorKind::UnknownFunction,
                name_span.start,
                format!(
                    "unknown function '{name}'; the functions are {}",
                    known.join(", ")
                ),
            ));
        };
        self.expect(&Tok::LParen, "'('")?;
        let mut args = Vec::new();
        if self.peek().tok != Tok::RParen {
            loop {
                args.push(self.expr()?);
                if self.peek().tok == Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        let close = self.expect(
            &Tok::RParen,
            if args.is_empty() { "')'" } else { "',' or ')'" },
        )?;
        let arity = func.arity();
        if !arity.accepts(args.len()) {
            let (at_least, n) = match arity {
                Arity::Exactly(n) => ("", n),
                Arity::AtLeast(n) => ("at least ", n),
            };
            let plural = if n == 1 { "" } else { "s" };
            return Err(self.error_at(
                ExprErrorKind::WrongArity,
                name_span.start,
                format!(
                    "function '{name}' takes {at_least}{n} argument{plural} but was given {}",
                    args.len()
                ),
            ));
        }
        Ok(Expr::new(
            ExprKind::Call { func, args },
            name_span.to(close.span),
        ))
    }
}

fn comparison(tok: &Tok) -> Option<BinaryOp> {
    Some(match tok {
        Tok::Lt => BinaryOp::Lt,
        Tok::Le => BinaryOp::Le,
        Tok::Gt => BinaryOp::Gt,
        Tok::Ge => BinaryOp::Ge,
        Tok::EqEq => BinaryOp::Eq,
        Tok::Ne => BinaryOp::Ne,
        _ => return None,
    })
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = lhs.span.to(rhs.span);
    Expr::new(
        ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        span,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{ExprErrorKind as K, *};

    /// Fully parenthesised prefix form, to check the tree shape.
    fn sexpr(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Num(v) => format!("{v}"),
            ExprKind::Band(BandRef::Name(n)) => n.clone(),
            ExprKind::Band(BandRef::Index(i)) => format!("${i}"),
            ExprKind::Unary { op, arg } => {
                let op = if *op == UnaryOp::Neg { "neg" } else { "not" };
                format!("({op} {})", sexpr(arg))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", op.symbol(), sexpr(lhs), sexpr(rhs))
            }
            ExprKind::Call { func, args } => {
                let args: Vec<String> = args.iter().map(sexpr).collect();
                format!("({} {})", func.name(), args.join(" "))
            }
        }
    }

    fn shape(text: &str) -> String {
        match parse(text) {
            Ok(e) => sexpr(&e),
            Err(err) => panic!("{text:?} failed to parse: {err}"),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        let cases = [
            ("a + b * c", "(+ a (* b c))"),
            ("a * b + c", "(+ (* a b) c)"),
            ("a - b - c", "(- (- a b) c)"),
            ("a / b / c", "(/ (/ a b) c)"),
            ("a / b * c", "(* (/ a b) c)"),
            ("a ^ b ^ c", "(^ a (^ b c))"),
            ("-x^2", "(neg (^ x 2))"),
            ("-x ^ -2", "(neg (^ x (neg 2)))"),
            ("2^-1", "(^ 2 (neg 1))"),
            ("a^-b^c", "(^ a (neg (^ b c)))"),
            ("-a * b", "(* (neg a) b)"),
            ("--a", "(neg (neg a))"),
            ("!!a", "(not (not a))"),
            ("!a == b", "(== (not a) b)"),
            ("a + b < c * d", "(< (+ a b) (* c d))"),
            ("a < b && c >= d", "(&& (< a b) (>= c d))"),
            ("a || b && c", "(|| a (&& b c))"),
            ("a && b || c", "(|| (&& a b) c)"),
            ("a || b || c", "(|| (|| a b) c)"),
            ("a != b == c", "unreachable"),
            ("(a + b) * c", "(* (+ a b) c)"),
            ("((a))", "a"),
            ("where(a > 1, b, c)", "(where (> a 1) b c)"),
            ("min(a, b, c) + max(1, 2)", "(+ (min a b c) (max 1 2))"),
            ("clamp(x, 0, 1)", "(clamp x 0 1)"),
            (
                "sqrt(abs(x)) * exp(log(y))",
                "(* (sqrt (abs x)) (exp (log y)))",
            ),
            ("$1 + $12", "(+ $1 $12)"),
            ("min + max", "(+ min max)"),
            ("B04_x", "B04_x"),
            ("_a1", "_a1"),
        ];
        for (text, want) in cases {
            if want == "unreachable" {
                assert!(parse(text).is_err(), "{text}");
                continue;
            }
            assert_eq!(shape(text), want, "{text}");
        }
    }

    #[test]
    fn number_literals() {
        let cases: [(&str, f32); 9] = [
            ("1", 1.0),
            ("0.5", 0.5),
            ("1e-4", 1e-4),
            ("2.75e-5", 2.75e-5),
            ("1E+3", 1000.0),
            (".5", 0.5),
            ("3.", 3.0),
            ("007", 7.0),
            ("3.4028235e38", f32::MAX),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(e.kind, ExprKind::Num(want), "{text}");
        }
    }

    #[test]
    fn spans_cover_nodes_and_parentheses() {
        let e = parse(" (a + b) * c ").expect("parses");
        assert_eq!(e.span, Span::new(1, 12));
        let ExprKind::Binary { lhs, rhs, .. } = &e.kind else {
            panic!("not binary")
        };
        assert_eq!(lhs.span, Span::new(1, 8));
        assert_eq!(rhs.span, Span::new(11, 12));
        let call = parse("min(a, 2)").expect("parses");
        assert_eq!(call.span, Span::new(0, 9));
    }

    fn check_err(text: &str, kind: K, column: usize, message: &str) {
        let err = match parse(text) {
            Ok(e) => panic!("{text:?} parsed as {e}"),
            Err(err) => err,
        };
        assert_eq!(
            (err.kind, err.column, err.message.as_str()),
            (kind, column, message),
            "{text:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("invalid expression at column {column}: {message}")
        );
        assert_eq!(
            err.message,
            err.message.to_lowercase(),
            "lowercase: {text:?}"
        );
    }

    #[test]
    fn errors_with_positions() {
        let funcs = "where, min, max, abs, sqrt, log, exp, clamp";
        check_err("", K::EmptyInput, 1, "empty expression");
        check_err("   ", K::EmptyInput, 1, "empty expression");
        check_err(
            "(a + b",
            K::UnexpectedToken,
            7,
            "expected ')' but found end of input",
        );
        check_err(
            "a + ",
            K::UnexpectedToken,
            5,
            "expected a number, a band or '(' but found end of input",
        );
        check_err(
            "a * )",
            K::UnexpectedToken,
            5,
            "expected a number, a band or '(' but found ')'",
        );
        check_err(
            "a b",
            K::UnexpectedToken,
            3,
            "expected an operator or end of input but found name 'b'",
        );
        check_err(
            "(a) 2",
            K::UnexpectedToken,
            5,
            "expected an operator or end of input but found number 2",
        );
        check_err(
            "a < b < c",
            K::ChainedComparison,
            7,
            "comparisons cannot be chained; combine them with '&&'",
        );
        check_err(
            "1 + foo(1)",
            K::UnknownFunction,
            5,
            &format!("unknown function 'foo'; the functions are {funcs}"),
        );
        check_err(
            "clamp(a, b)",
            K::WrongArity,
            1,
            "function 'clamp' takes 3 arguments but was given 2",
        );
        check_err(
            "2 * min(a)",
            K::WrongArity,
            5,
            "function 'min' takes at least 2 arguments but was given 1",
        );
        check_err(
            "abs()",
            K::WrongArity,
            1,
            "function 'abs' takes 1 argument but was given 0",
        );
        check_err(
            "where(a, b, c, d)",
            K::WrongArity,
            1,
            "function 'where' takes 3 arguments but was given 4",
        );
        check_err(
            "min(a, b",
            K::UnexpectedToken,
            9,
            "expected ',' or ')' but found end of input",
        );
        check_err(
            "max(a, b c)",
            K::UnexpectedToken,
            10,
            "expected ',' or ')' but found name 'c'",
        );
        check_err("1 + 2x", K::BadNumber, 5, "invalid number '2x'");
        check_err("1e", K::BadNumber, 1, "invalid number '1e'");
        check_err("a - 1e+", K::BadNumber, 5, "invalid number '1e+'");
        check_err("1.2.3", K::BadNumber, 1, "invalid number '1.2.3'");
        check_err(".", K::BadNumber, 1, "invalid number '.'");
        check_err(
            "1e39",
            K::BadNumber,
            1,
            "number '1e39' is out of range for f32",
        );
        check_err(
            "$0",
            K::BadBandIndex,
            1,
            "band indices start at 1 ('$1' is the first band)",
        );
        check_err(
            "a + $",
            K::BadBandIndex,
            5,
            "expected a band index after '$'",
        );
        check_err("$a", K::BadBandIndex, 1, "invalid band index '$a'");
        check_err(
            "$99999999999999999999999",
            K::BadBandIndex,
            1,
            "band index '$99999999999999999999999' is too large",
        );
        check_err("a # b", K::UnexpectedChar, 3, "unexpected character '#'");
        check_err(
            "a = b",
            K::UnexpectedChar,
            3,
            "unexpected character '='; did you mean '=='?",
        );
        check_err(
            "a & b",
            K::UnexpectedChar,
            3,
            "unexpected character '&'; did you mean '&&'?",
        );
        check_err(
            "a | b",
            K::UnexpectedChar,
            3,
            "unexpected character '|'; did you mean '||'?",
        );
        check_err(
            "a + é",
            K::UnexpectedChar,
            5,
            "unexpected character '\\u{e9}'",
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep_parens = format!("{}a{}", "(".repeat(300), ")".repeat(300));
        let err = parse(&deep_parens).expect_err("too deep");
        assert_eq!(err.kind, K::TooDeep);
        let deep_neg = format!("{}a", "-".repeat(300));
        assert_eq!(parse(&deep_neg).expect_err("too deep").kind, K::TooDeep);
        let long_chain = format!("a{}", " + a".repeat(2000));
        assert_eq!(parse(&long_chain).expect_err("too deep").kind, K::TooDeep);
        let fine = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&fine).is_ok());
    }
}
