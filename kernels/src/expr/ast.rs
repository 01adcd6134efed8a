//! The syntax trees of the expression language: the untyped tree the parser builds and the
//! typed tree that binding produces (the one the evaluators and code generators walk).

use std::fmt;

/// A half-open byte range `start..end` into the expression's source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// The two value types of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// An `f32`; `NaN` is nodata.
    Num,
    /// A truth value; the evaluators carry it as `1.0` (true), `0.0` (false) or `NaN` (nodata).
    Bool,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Num => "a number",
            Type::Bool => "a boolean",
        })
    }
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`: Num → Num.
    Neg,
    /// `!b`: Bool → Bool.
    Not,
}

impl UnaryOp {
    pub const fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Not => "!",
        }
    }
}

/// Infix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `^`, right-associative.
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// Binding strength of the infix levels; a higher level binds tighter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prec {
    Or = 1,
    And = 2,
    Cmp = 3,
    Add = 4,
    Mul = 5,
    Unary = 6,
    Pow = 7,
    Atom = 8,
}

impl BinaryOp {
    pub const fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Pow => "^",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }

    pub const fn prec(self) -> Prec {
        match self {
            BinaryOp::Or => Prec::Or,
            BinaryOp::And => Prec::And,
            BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Eq
            | BinaryOp::Ne => Prec::Cmp,
            BinaryOp::Add | BinaryOp::Sub => Prec::Add,
            BinaryOp::Mul | BinaryOp::Div => Prec::Mul,
            BinaryOp::Pow => Prec::Pow,
        }
    }

    /// True for `< <= > >= == !=`.
    pub const fn is_comparison(self) -> bool {
        matches!(self.prec(), Prec::Cmp)
    }

    /// True for `&& ||`.
    pub const fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or)
    }

    /// The operand type and the result type.
    pub const fn signature(self) -> (Type, Type) {
        if self.is_logical() {
            (Type::Bool, Type::Bool)
        } else if self.is_comparison() {
            (Type::Num, Type::Bool)
        } else {
            (Type::Num, Type::Num)
        }
    }
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `where(cond, a, b)`: (Bool, Num, Num) → Num.
    Where,
    /// `min(a, b, ...)`, two or more Num.
    Min,
    /// `max(a, b, ...)`, two or more Num.
    Max,
    Abs,
    Sqrt,
    /// Natural logarithm.
    Log,
    Exp,
    /// `clamp(x, lo, hi)` = `min(max(x, lo), hi)`.
    Clamp,
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Arity {
    pub const fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl Func {
    /// Every function, in the order the error messages list them.
    pub const ALL: [Func; 8] = [
        Func::Where,
        Func::Min,
        Func::Max,
        Func::Abs,
        Func::Sqrt,
        Func::Log,
        Func::Exp,
        Func::Clamp,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Func::Where => "where",
            Func::Min => "min",
            Func::Max => "max",
            Func::Abs => "abs",
            Func::Sqrt => "sqrt",
            Func::Log => "log",
            Func::Exp => "exp",
            Func::Clamp => "clamp",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    pub const fn arity(self) -> Arity {
        match self {
            Func::Where | Func::Clamp => Arity::Exactly(3),
            Func::Min | Func::Max => Arity::AtLeast(2),
            Func::Abs | Func::Sqrt | Func::Log | Func::Exp => Arity::Exactly(1),
        }
    }

    /// The type argument `index` must have.
    pub const fn param_type(self, index: usize) -> Type {
        match (self, index) {
            (Func::Where, 0) => Type::Bool,
            _ => Type::Num,
        }
    }
}

/// A band as written in the source: by name or by 1-based index (`$3` is `Index(3)`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BandRef {
    Name(String),
    Index(usize),
}

/// The untyped syntax tree, straight from the parser. Every node carries its byte span.
///
/// Function arity is already checked by the parser; band names and types are not.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The node kinds of [`Expr`].
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal; the parser only produces finite non-negative values (`-1` is `Neg(1)`).
    Num(f32),
    Band(BandRef),
    Unary {
        op: UnaryOp,
        arg: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Self { kind, span }
    }

    /// A copy with every span set to `0..0`, to compare trees by structure only.
    pub fn without_spans(&self) -> Expr {
        let kind = match &self.kind {
            ExprKind::Num(v) => ExprKind::Num(*v),
            ExprKind::Band(b) => ExprKind::Band(b.clone()),
            ExprKind::Unary { op, arg } => ExprKind::Unary {
                op: *op,
                arg: Box::new(arg.without_spans()),
            },
            ExprKind::Binary { op, lhs, rhs } => ExprKind::Binary {
                op: *op,
                lhs: Box::new(lhs.without_spans()),
                rhs: Box::new(rhs.without_spans()),
            },
            ExprKind::Call { func, args } => ExprKind::Call {
                func: *func,
                args: args.iter().map(Expr::without_spans).collect(),
            },
        };
        Expr::new(kind, Span::default())
    }

    /// The children of this node, left to right.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Num(_) | ExprKind::Band(_) => Vec::new(),
            ExprKind::Unary { arg, .. } => vec![arg],
            ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
            ExprKind::Call { args, .. } => args.iter().collect(),
        }
    }

    /// Height of the tree (a leaf has depth 1), computed without recursion.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((node, d)) = stack.pop() {
            deepest = deepest.max(d);
            stack.extend(node.children().into_iter().map(|c| (c, d + 1)));
        }
        deepest
    }
}

/// A bound, type-checked expression: the input of the evaluators and code generators.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedExpr {
    /// The root node; its type is always [`Type::Num`].
    pub root: TypedNode,
    /// How many input bands the expression was bound against (band slots are `0..band_count`).
    pub band_count: usize,
}

/// A node of the typed tree, with its resolved type and source span.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedNode {
    pub kind: TypedKind,
    pub ty: Type,
    pub span: Span,
}

/// The node kinds of [`TypedNode`]. Operand types are guaranteed to match the operators.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedKind {
    /// A finite literal.
    Num(f32),
    /// The input band at 0-based slot `usize`.
    Band(usize),
    Unary {
        op: UnaryOp,
        arg: Box<TypedNode>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<TypedNode>,
        rhs: Box<TypedNode>,
    },
    Call {
        func: Func,
        args: Vec<TypedNode>,
    },
}

impl TypedExpr {
    /// The untyped tree of this expression, with bands written by index (`$1` …); printing it
    /// gives text that parses and binds back to this expression.
    pub fn to_ast(&self) -> Expr {
        self.root.to_ast()
    }

    /// Which band slots the expression reads (sorted, without repeats).
    pub fn bands_used(&self) -> Vec<usize> {
        let mut used = Vec::new();
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            match &node.kind {
                TypedKind::Num(_) => {}
                TypedKind::Band(b) => used.push(*b),
                TypedKind::Unary { arg, .. } => stack.push(arg),
                TypedKind::Binary { lhs, rhs, .. } => {
                    stack.push(lhs);
                    stack.push(rhs);
                }
                TypedKind::Call { args, .. } => stack.extend(args.iter()),
            }
        }
        used.sort_unstable();
        used.dedup();
        used
    }
}

impl TypedNode {
    /// The untyped form of this node (bands by 1-based index).
    pub fn to_ast(&self) -> Expr {
        let kind = match &self.kind {
            TypedKind::Num(v) => ExprKind::Num(*v),
            TypedKind::Band(b) => ExprKind::Band(BandRef::Index(b + 1)),
            TypedKind::Unary { op, arg } => ExprKind::Unary {
                op: *op,
                arg: Box::new(arg.to_ast()),
            },
            TypedKind::Binary { op, lhs, rhs } => ExprKind::Binary {
                op: *op,
                lhs: Box::new(lhs.to_ast()),
                rhs: Box::new(rhs.to_ast()),
            },
            TypedKind::Call { func, args } => ExprKind::Call {
                func: *func,
                args: args.iter().map(TypedNode::to_ast).collect(),
            },
        };
        Expr::new(kind, self.span)
    }
}
