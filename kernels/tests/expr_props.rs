//! Property tests of the expression language: printing re-parses to the same tree, and the
//! compiled evaluator equals the reference evaluator bit for bit, never producing `±Inf`.

use kernels::expr::{
    bind, eval_reference, parse, BandRef, BinaryOp, Expr, ExprKind, Func, Span, UnaryOp,
};
use proptest::prelude::*;

/// The bands every generated expression is bound against (`min` checks that a band may share
/// a function's name).
const BANDS: [&str; 5] = ["nir", "red", "B04", "qa", "min"];

fn node(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::default())
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    node(ExprKind::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

fn unary(op: UnaryOp, arg: Expr) -> Expr {
    node(ExprKind::Unary {
        op,
        arg: Box::new(arg),
    })
}

fn call(func: Func, args: Vec<Expr>) -> Expr {
    node(ExprKind::Call { func, args })
}

/// Literals as the parser makes them: finite and non-negative, from tidy values to any bits
/// (subnormals and `f32::MAX` included).
fn literal() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0.0f32, 0.5, 1.0, 2.0, 3.0, 10.0, 88.0, 100.0, 1e-4, 2.75e-5, 0.1, 1e30, 3.4e38,
        ]),
        1 => (0u32..0x7f80_0000).prop_map(f32::from_bits),
    ]
}

fn band() -> impl Strategy<Value = BandRef> {
    prop_oneof![
        prop::sample::select(BANDS.to_vec()).prop_map(|n| BandRef::Name(n.to_string())),
        (1usize..=BANDS.len()).prop_map(BandRef::Index),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        literal().prop_map(|v| node(ExprKind::Num(v))),
        band().prop_map(|b| node(ExprKind::Band(b))),
    ]
}

/// Boolean expressions over the number expressions `num`.
fn boolean(num: BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    let cmp_ops = vec![
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Eq,
        BinaryOp::Ne,
    ];
    (prop::sample::select(cmp_ops), num.clone(), num)
        .prop_map(|(op, a, b)| binary(op, a, b))
        .prop_recursive(2, 8, 2, |b| {
            prop_oneof![
                (
                    prop::sample::select(vec![BinaryOp::And, BinaryOp::Or]),
                    b.clone(),
                    b.clone()
                )
                    .prop_map(|(op, x, y)| binary(op, x, y)),
                b.prop_map(|x| unary(UnaryOp::Not, x)),
            ]
        })
        .boxed()
}

/// Well-typed number expressions using every construct of the language.
fn number() -> BoxedStrategy<Expr> {
    leaf()
        .prop_recursive(5, 40, 4, |inner| {
            let arith = vec![
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Pow,
            ];
            let math = vec![Func::Abs, Func::Sqrt, Func::Log, Func::Exp];
            prop_oneof![
                inner.clone().prop_map(|x| unary(UnaryOp::Neg, x)),
                (prop::sample::select(arith), inner.clone(), inner.clone())
                    .prop_map(|(op, a, b)| binary(op, a, b)),
                (prop::sample::select(math), inner.clone()).prop_map(|(f, x)| call(f, vec![x])),
                (
                    prop::sample::select(vec![Func::Min, Func::Max]),
                    prop::collection::vec(inner.clone(), 2..5)
                )
                    .prop_map(|(f, args)| call(f, args)),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(x, lo, hi)| call(Func::Clamp, vec![x, lo, hi])),
                (boolean(inner.clone()), inner.clone(), inner)
                    .prop_map(|(c, a, b)| call(Func::Where, vec![c, a, b])),
            ]
        })
        .boxed()
}

/// Input values: nodata, infinities, signed zeros, negatives, tiny and huge values.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        1 => Just(f32::NAN),
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => prop::sample::select(vec![f32::INFINITY, f32::NEG_INFINITY, 1.0, -1.0, 2.0]),
        6 => -10.0f32..10.0,
        1 => -1e30f32..1e30,
        1 => -1e-30f32..1e-30,
    ]
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// parse(print(e)) == e for random well-typed trees, and such trees always bind.
    #[test]
    fn print_then_parse_is_identity(e in number()) {
        let printed = e.to_string();
        let parsed = parse(&printed)
            .map_err(|err| TestCaseError::fail(format!("{printed:?}: {err}")))?;
        prop_assert_eq!(parsed.without_spans(), e.without_spans(), "printed as {:?}", printed);
        let typed = bind(&parsed, &BANDS)
            .map_err(|err| TestCaseError::fail(format!("{printed:?}: {err}")))?;
        // The typed tree prints (bands as `$n`) to text that parses back to it.
        let typed_text = typed.to_string();
        let reparsed = parse(&typed_text)
            .map_err(|err| TestCaseError::fail(format!("{typed_text:?}: {err}")))?;
        prop_assert_eq!(reparsed.without_spans(), typed.to_ast().without_spans());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The compiled evaluator equals the reference evaluator bit for bit (any NaN equals any
    /// NaN) on inputs with nodata, zeros, negatives and infinities, across chunk boundaries,
    /// and never outputs ±Inf.
    #[test]
    fn compiled_equals_reference(
        e in number(),
        pixels in prop::collection::vec(prop::array::uniform5(value()), 0..2600),
    ) {
        let typed = bind(&e, &BANDS)
            .map_err(|err| TestCaseError::fail(format!("{e}: {err}")))?;
        let program = typed.compile();
        prop_assert_eq!(program.band_count(), BANDS.len());
        let planes: Vec<Vec<f32>> = (0..BANDS.len())
            .map(|b| pixels.iter().map(|p| p[b]).collect())
            .collect();
        let inputs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
        let mut out = vec![0.0f32; pixels.len()];
        program
            .eval(&inputs, &mut out)
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        for (i, (pixel, got)) in pixels.iter().zip(&out).enumerate() {
            let want = eval_reference(&typed, pixel);
            prop_assert!(!got.is_infinite(), "pixel {}: {} gives {}", i, e, got);
            prop_assert!(!want.is_infinite(), "pixel {}: reference gives {}", i, want);
            prop_assert!(
                same(*got, want),
                "pixel {} {:?}: compiled {} vs reference {} for {}\n{}",
                i, pixel, got, want, e, program
            );
        }
    }
}
