//! The band-math expression language: parse, bind, type-check, print and evaluate per-pixel
//! formulas over input bands, such as `(nir - red) / (nir + red)`.
//!
//! # Pipeline
//!
//! 1. [`Expr::parse`] (or [`parse`]) lexes and parses the text into an untyped [`Expr`] tree with
//!    byte spans on every node; function names and arities are checked here.
//! 2. [`bind`] resolves band names and `$n` indices to band slots and type-checks, giving a
//!    [`TypedExpr`] whose root is a number. This typed tree is the one code generators walk.
//! 3. [`TypedExpr::compile`] lowers it to a [`CompiledExpr`]: a flat register program (with
//!    constant folding and common-subexpression sharing) that runs over chunks of up to
//!    [`CHUNK_PX`] pixels, each instruction a tight loop over the chunk, in parallel with rayon.
//!    [`eval_reference`] is the slow per-pixel tree walker that serves as the test oracle.
//!
//! `Display` on [`Expr`] (and on [`TypedExpr`], with bands as `$n`) prints text that parses back
//! to the same tree, with minimal parentheses.
//!
//! # Grammar
//!
//! ```text
//! expr    := or
//! or      := and ( "||" and )*
//! and     := cmp ( "&&" cmp )*
//! cmp     := sum ( ("<" | "<=" | ">" | ">=" | "==" | "!=") sum )?    -- not chainable
//! sum     := product ( ("+" | "-") product )*
//! product := unary ( ("*" | "/") unary )*
//! unary   := ("-" | "!") unary | power
//! power   := atom ( "^" unary )?                                    -- right-associative
//! atom    := NUMBER | NAME | "$" INDEX | NAME "(" expr ( "," expr )* ")" | "(" expr ")"
//! NUMBER  := digits [ "." digits? ] [ ("e" | "E") ["+" | "-"] digits ]  |  "." digits [exp]
//! NAME    := [A-Za-z_][A-Za-z0-9_]*       INDEX := [1-9][0-9]*  (1-based)
//! ```
//!
//! So `-x^2` is `-(x^2)`, `2^-1` is `2^(-1)`, `a^b^c` is `a^(b^c)`, and `a < b < c` is an error.
//! A name directly followed by `(` is a function call: `where(cond, a, b)`, `min(a, b, ...)`,
//! `max(a, b, ...)` (two or more arguments), `abs`, `sqrt`, `log` (natural), `exp`,
//! `clamp(x, lo, hi)`. Any other name is a band name. Whitespace is free; only ASCII is valid.
//!
//! # Types
//!
//! `Num` (f32) and `Bool`. Arithmetic, `^` and the math functions take and give `Num`;
//! comparisons take `Num` and give `Bool`; `&&`, `||` and `!` take and give `Bool`;
//! `where` takes `(Bool, Num, Num)`. The whole expression must be a `Num`.
//!
//! # Semantics
//!
//! Evaluation is in `f32`, and `NaN` is nodata. Inside the evaluators a `Bool` is `1.0` (true),
//! `0.0` (false) or `NaN` (nodata).
//! - A band value that is not finite (`NaN`, `±Inf`) reads as nodata.
//! - Any nodata operand of an operator or function gives nodata — including `NaN ^ 0`, `min`,
//!   `max` and `clamp` (which is `min(max(x, lo), hi)`).
//! - A comparison with a nodata operand is nodata; `&&`, `||`, `!` propagate nodata (no
//!   short-circuit: `false && nodata` is nodata).
//! - `where(c, a, b)` is nodata when `c` is nodata, otherwise `a` when `c` is true, else `b`
//!   (the branch not taken may be nodata without effect).
//! - Every non-finite result (division by zero, `log(0)`, `sqrt(-1)`, overflow of `*`, `exp`
//!   or `^`) becomes nodata, so neither evaluator ever produces `±Inf`.
//!
//! The scalar rules are the functions of [`semantics`]; both evaluators and the constant
//! folder call exactly these, so compiled and reference results agree bit for bit.

mod ast;
mod codegen;
mod compile;
pub mod cuda;
mod lexer;
mod parser;
mod print;
pub mod semantics;
mod typecheck;
pub mod wgsl;

pub use ast::{
    Arity, BandRef, BinaryOp, Expr, ExprKind, Func, Prec, Span, Type, TypedExpr, TypedKind,
    TypedNode, UnaryOp,
};
pub use compile::{CompiledExpr, Instr, Operand, CHUNK_PX};
pub use semantics::eval_reference;
pub use typecheck::bind;

use thiserror::Error;

/// Deepest nesting of parentheses, calls and prefix operators the parser accepts.
pub const MAX_NESTING: usize = 256;
/// Tallest syntax tree the parser accepts (keeps every recursive walk far from stack limits).
pub const MAX_TREE_DEPTH: usize = 1024;

/// What kind of mistake an [`ExprError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExprErrorKind {
    /// The text holds no expression.
    EmptyInput,
    /// A character that starts no token.
    UnexpectedChar,
    /// A malformed or out-of-range number literal.
    BadNumber,
    /// `$` without a valid 1-based index.
    BadBandIndex,
    /// The parser found a token it cannot use here (includes trailing garbage).
    UnexpectedToken,
    /// `a < b < c`.
    ChainedComparison,
    /// Too deep nesting.
    TooDeep,
    /// A call to a function that does not exist.
    UnknownFunction,
    /// A call with the wrong number of arguments.
    WrongArity,
    /// A band name that is not among the bound names.
    UnknownBand,
    /// A `$n` beyond the bound bands.
    BandOutOfRange,
    /// An operand or argument of the wrong type.
    TypeMismatch,
    /// The whole expression is a boolean.
    BoolResult,
}

/// A parse, bind or type error, with the position it points at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid expression at column {column}: {message}")]
pub struct ExprError {
    pub kind: ExprErrorKind,
    /// Byte offset into the source text.
    pub offset: usize,
    /// 1-based column (in characters) of `offset`.
    pub column: usize,
    /// Lowercase description, without the position.
    pub message: String,
}

impl ExprError {
    /// An error at byte `offset` of `text`.
    pub(crate) fn at(
        kind: ExprErrorKind,
        text: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let column = text
            .get(..offset)
            .map_or(offset, |prefix| prefix.chars().count())
            + 1;
        Self {
            kind,
            offset,
            column,
            message: message.into(),
        }
    }

    /// An error at byte `offset` of a text known to be ASCII (every parsed text is).
    pub(crate) fn at_ascii(kind: ExprErrorKind, offset: usize, message: impl Into<String>) -> Self {
        Self {
            kind,
            offset,
            column: offset + 1,
            message: message.into(),
        }
    }
}

impl Expr {
    /// Parses `text` into an untyped tree.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        parser::parse(text)
    }
}

/// Parses `text` into an untyped tree (same as [`Expr::parse`]).
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    parser::parse(text)
}

/// Parses, binds against `band_names` and compiles `text` in one go.
pub fn compile(text: &str, band_names: &[&str]) -> Result<CompiledExpr, ExprError> {
    let ast = parse(text)?;
    Ok(bind(&ast, band_names)?.compile())
}
