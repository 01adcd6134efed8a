//! The compiled evaluator: a typed tree lowered to a flat register program that runs over
//! chunks of pixels, one tight (vectorizable) loop per instruction.
//!
//! Lowering hash-conses the tree into a DAG (so a band or sub-expression used twice is
//! computed once), folds constant sub-expressions with the same scalar functions the
//! reference evaluator uses, drops dead code, and assigns registers by last use.

use std::collections::HashMap;
use std::fmt;

use rayon::prelude::*;

use super::ast::{BinaryOp, Func, TypedExpr, TypedKind, TypedNode, UnaryOp};
use super::semantics as sem;
use crate::error::{check_len, KernelError};
use crate::plane::{Plane, PlaneMut, PIXELS_PER_TASK};

/// Pixels per chunk: the length of every register.
///
/// Small on purpose. Each instruction streams its operands alone, so with long chunks the
/// program reads one band from memory at a time (a 4 KiB page per band at 1024 px), where a
/// fused loop keeps every band's stream in flight at once; measured on tiles that do not fit in
/// cache, NDVI ran at about half the fused kernel's speed with 1024 px and about 80 % with
/// 128–256 px. Shorter still, the per-instruction dispatch starts to cost more than it saves.
pub const CHUNK_PX: usize = 256;

/// One-operand operations of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryFn {
    Neg,
    Not,
    Abs,
    Sqrt,
    Log,
    Exp,
}

/// Two-operand operations of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryFn {
    Op(BinaryOp),
    Min,
    Max,
}

/// An instruction operand: a register or a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    Reg(usize),
    Const(f32),
}

/// One instruction; each runs over a whole chunk. `dst` never equals an operand register.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Instr {
    /// `dst = load(band)` (non-finite input becomes nodata).
    Load { dst: usize, band: usize },
    Unary {
        op: UnaryFn,
        dst: usize,
        arg: Operand,
    },
    Binary {
        op: BinaryFn,
        dst: usize,
        lhs: Operand,
        rhs: Operand,
    },
    /// `dst = where(cond, a, b)`.
    Select {
        dst: usize,
        cond: Operand,
        a: Operand,
        b: Operand,
    },
}

/// A compiled expression, ready to run over planes.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledExpr {
    instrs: Vec<Instr>,
    result: Operand,
    reg_count: usize,
    band_count: usize,
}

impl TypedExpr {
    /// Lowers the expression to a register program.
    pub fn compile(&self) -> CompiledExpr {
        let mut dag = Dag::default();
        let root = dag.lower(&self.root);
        // A hand-built tree may read past `band_count`; demand enough inputs rather than
        // index out of bounds.
        let band_count = self
            .bands_used()
            .last()
            .map_or(self.band_count, |b| self.band_count.max(b + 1));
        dag.into_program(root, band_count)
    }
}

impl CompiledExpr {
    /// How many input bands [`eval`](Self::eval) expects.
    pub fn band_count(&self) -> usize {
        self.band_count
    }

    /// The instructions, in execution order.
    pub fn instrs(&self) -> &[Instr] {
        &self.instrs
    }

    /// Where the result lives after the last instruction.
    pub fn result(&self) -> Operand {
        self.result
    }

    /// How many chunk-long registers the program uses.
    pub fn reg_count(&self) -> usize {
        self.reg_count
    }

    /// Evaluates per pixel: `out[i] = expr(inputs[0][i], inputs[1][i], …)`.
    ///
    /// `inputs` must hold [`band_count`](Self::band_count) slices as long as `out`. Runs in
    /// parallel with rayon; each task allocates its registers once.
    pub fn eval(&self, inputs: &[&[f32]], out: &mut [f32]) -> Result<(), KernelError> {
        self.eval_with(inputs, out, false)
    }

    fn eval_with(
        &self,
        inputs: &[&[f32]],
        out: &mut [f32],
        flush: bool,
    ) -> Result<(), KernelError> {
        if inputs.len() != self.band_count {
            return Err(KernelError::InvalidParam {
                name: "inputs",
                reason: format!(
                    "the expression reads {} bands but {} were given",
                    self.band_count,
                    inputs.len()
                ),
            });
        }
        for input in inputs {
            check_len("expression input band", out.len(), input.len())?;
        }
        out.par_chunks_mut(PIXELS_PER_TASK)
            .enumerate()
            .for_each(|(task, out_task)| {
                self.run_task(inputs, task * PIXELS_PER_TASK, out_task, flush);
            });
        Ok(())
    }

    /// Runs the program over `out` (the pixels from `start` on), chunk by chunk, with AVX2
    /// where the CPU has it (same bits either way: see `crate::simd`). Dispatched here rather
    /// than through `simd::with_avx2`, whose closure keeps this much code out of the AVX2
    /// build (measured: half the speed).
    #[allow(unsafe_code)]
    fn run_task(&self, inputs: &[&[f32]], start: usize, out: &mut [f32], flush: bool) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.run_task_avx2(inputs, start, out, flush) };
            return;
        }
        self.run_task_portable(inputs, start, out, flush);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_task_avx2(&self, inputs: &[&[f32]], start: usize, out: &mut [f32], flush: bool) {
        self.run_task_portable(inputs, start, out, flush);
    }

    #[inline(always)]
    fn run_task_portable(&self, inputs: &[&[f32]], start: usize, out: &mut [f32], flush: bool) {
        let mut regs = vec![vec![0.0f32; CHUNK_PX]; self.reg_count];
        for (chunk, out_chunk) in out.chunks_mut(CHUNK_PX).enumerate() {
            self.run_chunk(
                &mut regs,
                inputs,
                start + chunk * CHUNK_PX,
                out_chunk,
                flush,
            );
        }
    }

    /// [`eval`](Self::eval) as a device that flushes subnormal values to zero computes it: every
    /// loaded value and every intermediate result that is subnormal becomes a zero of its sign.
    /// WGSL permits that flush, so the conformance suite accepts a device result that matches
    /// this instead of [`eval`](Self::eval) where they differ.
    pub fn eval_flushing_subnormals(
        &self,
        inputs: &[&[f32]],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        self.eval_with(inputs, out, true)
    }

    /// [`eval`](Self::eval) over planes, which must all share `out`'s shape.
    pub fn eval_planes(
        &self,
        inputs: &[Plane<'_>],
        out: &mut PlaneMut<'_>,
    ) -> Result<(), KernelError> {
        for input in inputs {
            check_len("expression input width", out.width_px, input.width_px)?;
            check_len("expression input height", out.height_px, input.height_px)?;
        }
        let slices: Vec<&[f32]> = inputs.iter().map(|p| p.data).collect();
        self.eval(&slices, out.data)
    }

    /// Runs the program over the pixels `start..start + out.len()`. The last instruction
    /// writes the result straight into `out` when it computes it (no copy pass).
    #[inline(always)]
    fn run_chunk(
        &self,
        regs: &mut [Vec<f32>],
        inputs: &[&[f32]],
        start: usize,
        out: &mut [f32],
        flush: bool,
    ) {
        let n = out.len();
        let last = self.instrs.len().wrapping_sub(1);
        for (at, instr) in self.instrs.iter().enumerate() {
            let dst = instr.dst();
            if at == last && !flush && self.result == Operand::Reg(dst) {
                exec(instr, out, regs, inputs, start);
                return;
            }
            let mut d = std::mem::take(&mut regs[dst]);
            exec(instr, &mut d[..n], regs, inputs, start);
            if flush {
                for v in &mut d[..n] {
                    if v.is_subnormal() {
                        *v = 0.0f32.copysign(*v);
                    }
                }
            }
            regs[dst] = d;
        }
        match self.result {
            Operand::Const(c) => out.fill(c),
            Operand::Reg(r) => out.copy_from_slice(&regs[r][..n]),
        }
    }
}

impl Instr {
    /// The register the instruction writes.
    fn dst(&self) -> usize {
        match *self {
            Instr::Load { dst, .. }
            | Instr::Unary { dst, .. }
            | Instr::Binary { dst, .. }
            | Instr::Select { dst, .. } => dst,
        }
    }
}

/// Runs one instruction over `d` (the pixels from `start` on). Its operands are other
/// registers than the one `d` was taken from.
#[inline(always)]
fn exec(instr: &Instr, d: &mut [f32], regs: &[Vec<f32>], inputs: &[&[f32]], start: usize) {
    let n = d.len();
    match *instr {
        Instr::Load { band, .. } => {
            let src = &inputs[band][start..start + n];
            for (d, s) in d.iter_mut().zip(src) {
                *d = sem::load(*s);
            }
        }
        Instr::Unary { op, arg, .. } => run_unary(op, d, Src::of(arg, regs, n)),
        Instr::Binary { op, lhs, rhs, .. } => {
            run_binary(op, d, Src::of(lhs, regs, n), Src::of(rhs, regs, n));
        }
        Instr::Select { cond, a, b, .. } => {
            let cond = Src::of(cond, regs, n);
            run_select(d, cond, Src::of(a, regs, n), Src::of(b, regs, n));
        }
    }
}

impl fmt::Display for CompiledExpr {
    /// A readable listing of the program, one instruction per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |o: &Operand| match o {
            Operand::Reg(r) => format!("r{r}"),
            Operand::Const(c) => format!("{c:?}"),
        };
        for instr in &self.instrs {
            match instr {
                Instr::Load { dst, band } => writeln!(f, "r{dst} = load ${}", band + 1)?,
                Instr::Unary { op: u, dst, arg } => writeln!(f, "r{dst} = {u:?} {}", op(arg))?,
                Instr::Binary {
                    op: b,
                    dst,
                    lhs,
                    rhs,
                } => {
                    writeln!(f, "r{dst} = {b:?} {}, {}", op(lhs), op(rhs))?;
                }
                Instr::Select { dst, cond, a, b } => {
                    writeln!(f, "r{dst} = where {}, {}, {}", op(cond), op(a), op(b))?;
                }
            }
        }
        write!(f, "result {}", op(&self.result))
    }
}

/// A chunk-long operand while running: a register's slice or a broadcast constant.
#[derive(Clone, Copy)]
enum Src<'a> {
    Slice(&'a [f32]),
    Scalar(f32),
}

impl<'a> Src<'a> {
    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        match self {
            Src::Slice(s) => s[i],
            Src::Scalar(c) => c,
        }
    }

    fn of(operand: Operand, regs: &'a [Vec<f32>], n: usize) -> Self {
        match operand {
            Operand::Reg(r) => Src::Slice(&regs[r][..n]),
            Operand::Const(c) => Src::Scalar(c),
        }
    }
}

#[inline(always)]
fn map1(d: &mut [f32], a: Src<'_>, f: impl Fn(f32) -> f32) {
    match a {
        Src::Slice(a) => {
            for (d, a) in d.iter_mut().zip(a) {
                *d = f(*a);
            }
        }
        Src::Scalar(a) => d.fill(f(a)),
    }
}

#[inline(always)]
fn run_unary(op: UnaryFn, d: &mut [f32], a: Src<'_>) {
    match op {
        UnaryFn::Neg => map1(d, a, sem::neg),
        UnaryFn::Not => map1(d, a, sem::not),
        UnaryFn::Abs => map1(d, a, sem::abs),
        UnaryFn::Sqrt => map1(d, a, sem::sqrt),
        UnaryFn::Log => map1(d, a, sem::log),
        UnaryFn::Exp => map1(d, a, sem::exp),
    }
}

/// One monomorphic loop per operand shape.
#[inline(always)]
fn map2(d: &mut [f32], lhs: Src<'_>, rhs: Src<'_>, f: impl Fn(f32, f32) -> f32) {
    match (lhs, rhs) {
        (Src::Slice(a), Src::Slice(b)) => {
            for ((d, a), b) in d.iter_mut().zip(a).zip(b) {
                *d = f(*a, *b);
            }
        }
        (Src::Slice(a), Src::Scalar(b)) => {
            for (d, a) in d.iter_mut().zip(a) {
                *d = f(*a, b);
            }
        }
        (Src::Scalar(a), Src::Slice(b)) => {
            for (d, b) in d.iter_mut().zip(b) {
                *d = f(a, *b);
            }
        }
        (Src::Scalar(a), Src::Scalar(b)) => d.fill(f(a, b)),
    }
}

#[inline(always)]
fn run_binary(op: BinaryFn, d: &mut [f32], lhs: Src<'_>, rhs: Src<'_>) {
    match op {
        BinaryFn::Min => map2(d, lhs, rhs, sem::min),
        BinaryFn::Max => map2(d, lhs, rhs, sem::max),
        BinaryFn::Op(op) => match op {
            BinaryOp::Add => map2(d, lhs, rhs, sem::add),
            BinaryOp::Sub => map2(d, lhs, rhs, sem::sub),
            BinaryOp::Mul => map2(d, lhs, rhs, sem::mul),
            BinaryOp::Div => map2(d, lhs, rhs, sem::div),
            BinaryOp::Pow => map2(d, lhs, rhs, sem::pow),
            BinaryOp::Lt => map2(d, lhs, rhs, sem::lt),
            BinaryOp::Le => map2(d, lhs, rhs, sem::le),
            BinaryOp::Gt => map2(d, lhs, rhs, sem::gt),
            BinaryOp::Ge => map2(d, lhs, rhs, sem::ge),
            BinaryOp::Eq => map2(d, lhs, rhs, sem::eq),
            BinaryOp::Ne => map2(d, lhs, rhs, sem::ne),
            BinaryOp::And => map2(d, lhs, rhs, sem::and),
            BinaryOp::Or => map2(d, lhs, rhs, sem::or),
        },
    }
}

#[inline(always)]
fn run_select(d: &mut [f32], cond: Src<'_>, a: Src<'_>, b: Src<'_>) {
    let cond = match cond {
        Src::Slice(c) => c,
        // Constant conditions are folded away by the compiler; handle them anyway.
        Src::Scalar(c) => {
            for (i, d) in d.iter_mut().enumerate() {
                *d = sem::select(c, a.at(i), b.at(i));
            }
            return;
        }
    };
    match (a, b) {
        (Src::Slice(a), Src::Slice(b)) => {
            for (((d, c), a), b) in d.iter_mut().zip(cond).zip(a).zip(b) {
                *d = sem::select(*c, *a, *b);
            }
        }
        (Src::Slice(a), Src::Scalar(b)) => {
            for ((d, c), a) in d.iter_mut().zip(cond).zip(a) {
                *d = sem::select(*c, *a, b);
            }
        }
        (Src::Scalar(a), Src::Slice(b)) => {
            for ((d, c), b) in d.iter_mut().zip(cond).zip(b) {
                *d = sem::select(*c, a, *b);
            }
        }
        (Src::Scalar(a), Src::Scalar(b)) => {
            for (d, c) in d.iter_mut().zip(cond) {
                *d = sem::select(*c, a, b);
            }
        }
    }
}

/// A value during lowering: a constant (as bits, so it can be hashed) or a DAG node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Val {
    Const(u32),
    Node(usize),
}

impl Val {
    fn konst(v: f32) -> Val {
        Val::Const(v.to_bits())
    }

    fn as_const(self) -> Option<f32> {
        match self {
            Val::Const(bits) => Some(f32::from_bits(bits)),
            Val::Node(_) => None,
        }
    }
}

/// A DAG node; children always precede their parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Load(usize),
    Unary(UnaryFn, Val),
    Binary(BinaryFn, Val, Val),
    Select(Val, Val, Val),
}

impl Node {
    fn operands(&self) -> [Option<Val>; 3] {
        match *self {
            Node::Load(_) => [None, None, None],
            Node::Unary(_, a) => [Some(a), None, None],
            Node::Binary(_, a, b) => [Some(a), Some(b), None],
            Node::Select(c, a, b) => [Some(c), Some(a), Some(b)],
        }
    }
}

#[derive(Debug, Default)]
struct Dag {
    nodes: Vec<Node>,
    index: HashMap<Node, usize>,
}

fn unary_scalar(op: UnaryFn) -> fn(f32) -> f32 {
    match op {
        UnaryFn::Neg => sem::neg,
        UnaryFn::Not => sem::not,
        UnaryFn::Abs => sem::abs,
        UnaryFn::Sqrt => sem::sqrt,
        UnaryFn::Log => sem::log,
        UnaryFn::Exp => sem::exp,
    }
}

fn binary_scalar(op: BinaryFn) -> fn(f32, f32) -> f32 {
    match op {
        BinaryFn::Min => sem::min,
        BinaryFn::Max => sem::max,
        BinaryFn::Op(op) => sem::binary_fn(op),
    }
}

impl Dag {
    fn intern(&mut self, node: Node) -> Val {
        if let Some(&i) = self.index.get(&node) {
            return Val::Node(i);
        }
        let i = self.nodes.len();
        self.nodes.push(node);
        self.index.insert(node, i);
        Val::Node(i)
    }

    fn unary(&mut self, op: UnaryFn, a: Val) -> Val {
        match a.as_const() {
            Some(a) => Val::konst(unary_scalar(op)(a)),
            None => self.intern(Node::Unary(op, a)),
        }
    }

    fn binary(&mut self, op: BinaryFn, a: Val, b: Val) -> Val {
        match (a.as_const(), b.as_const()) {
            (Some(a), Some(b)) => Val::konst(binary_scalar(op)(a, b)),
            _ => self.intern(Node::Binary(op, a, b)),
        }
    }

    fn select(&mut self, c: Val, a: Val, b: Val) -> Val {
        match c.as_const() {
            Some(c) if c.is_nan() => Val::konst(sem::NODATA),
            Some(c) if c != 0.0 => a,
            Some(_) => b,
            None => self.intern(Node::Select(c, a, b)),
        }
    }

    fn lower(&mut self, node: &TypedNode) -> Val {
        match &node.kind {
            TypedKind::Num(v) => Val::konst(sem::load(*v)),
            TypedKind::Band(b) => self.intern(Node::Load(*b)),
            TypedKind::Unary { op, arg } => {
                let a = self.lower(arg);
                let op = match op {
                    UnaryOp::Neg => UnaryFn::Neg,
                    UnaryOp::Not => UnaryFn::Not,
                };
                self.unary(op, a)
            }
            TypedKind::Binary { op, lhs, rhs } => {
                let a = self.lower(lhs);
                let b = self.lower(rhs);
                self.binary(BinaryFn::Op(*op), a, b)
            }
            TypedKind::Call { func, args } => {
                let vals: Vec<Val> = args.iter().map(|a| self.lower(a)).collect();
                let arg = |i: usize| vals.get(i).copied().unwrap_or(Val::konst(sem::NODATA));
                match func {
                    Func::Where => self.select(arg(0), arg(1), arg(2)),
                    Func::Clamp => {
                        let lower = self.binary(BinaryFn::Max, arg(0), arg(1));
                        self.binary(BinaryFn::Min, lower, arg(2))
                    }
                    Func::Abs => self.unary(UnaryFn::Abs, arg(0)),
                    Func::Sqrt => self.unary(UnaryFn::Sqrt, arg(0)),
                    Func::Log => self.unary(UnaryFn::Log, arg(0)),
                    Func::Exp => self.unary(UnaryFn::Exp, arg(0)),
                    Func::Min | Func::Max => {
                        let op = if *func == Func::Min {
                            BinaryFn::Min
                        } else {
                            BinaryFn::Max
                        };
                        let first = arg(0);
                        vals[1..]
                            .iter()
                            .fold(first, |acc, v| self.binary(op, acc, *v))
                    }
                }
            }
        }
    }

    /// Schedules the live nodes in order and assigns registers by last use.
    fn into_program(self, root: Val, band_count: usize) -> CompiledExpr {
        let count = self.nodes.len();
        // Liveness, walking parents before children.
        let mut live = vec![false; count];
        if let Val::Node(r) = root {
            live[r] = true;
        }
        for i in (0..count).rev() {
            if live[i] {
                for v in self.nodes[i].operands().into_iter().flatten() {
                    if let Val::Node(j) = v {
                        live[j] = true;
                    }
                }
            }
        }
        // Last reader of each node (the root is read after the end).
        let mut last_use = vec![0usize; count];
        for i in (0..count).filter(|&i| live[i]) {
            for v in self.nodes[i].operands().into_iter().flatten() {
                if let Val::Node(j) = v {
                    last_use[j] = i;
                }
            }
        }
        if let Val::Node(r) = root {
            last_use[r] = usize::MAX;
        }

        let mut reg_of = vec![usize::MAX; count];
        let mut free: Vec<usize> = Vec::new();
        let mut reg_count = 0;
        let mut instrs = Vec::new();
        for i in (0..count).filter(|&i| live[i]) {
            let dst = free.pop().unwrap_or_else(|| {
                reg_count += 1;
                reg_count - 1
            });
            reg_of[i] = dst;
            let operand = |v: Val| match v {
                Val::Const(bits) => Operand::Const(f32::from_bits(bits)),
                Val::Node(j) => Operand::Reg(reg_of[j]),
            };
            instrs.push(match self.nodes[i] {
                Node::Load(band) => Instr::Load { dst, band },
                Node::Unary(op, a) => Instr::Unary {
                    op,
                    dst,
                    arg: operand(a),
                },
                Node::Binary(op, a, b) => Instr::Binary {
                    op,
                    dst,
                    lhs: operand(a),
                    rhs: operand(b),
                },
                Node::Select(c, a, b) => Instr::Select {
                    dst,
                    cond: operand(c),
                    a: operand(a),
                    b: operand(b),
                },
            });
            // Free operands read for the last time (after `dst` is taken, so it never
            // aliases an operand).
            let operands = self.nodes[i].operands();
            for (k, v) in operands.iter().enumerate() {
                if let Some(Val::Node(j)) = *v {
                    if last_use[j] == i && !operands[..k].contains(v) {
                        free.push(reg_of[j]);
                    }
                }
            }
        }
        let result = match root {
            Val::Const(bits) => Operand::Const(f32::from_bits(bits)),
            Val::Node(r) => Operand::Reg(reg_of[r]),
        };
        CompiledExpr {
            instrs,
            result,
            reg_count,
            band_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{bind, eval_reference, parse};
    use super::*;

    fn compiled(text: &str, bands: &[&str]) -> (TypedExpr, CompiledExpr) {
        let typed = bind(&parse(text).expect("parses"), bands).expect("binds");
        let program = typed.compile();
        (typed, program)
    }

    #[test]
    fn shares_bands_and_subexpressions() {
        let (_, p) = compiled("(nir - red) / (nir + red) + (nir - red)", &["nir", "red"]);
        let loads = p
            .instrs()
            .iter()
            .filter(|i| matches!(i, Instr::Load { .. }))
            .count();
        assert_eq!(loads, 2, "{p}");
        assert_eq!(p.instrs().len(), 6, "{p}");
        assert!(p.reg_count() <= 4, "{p}");
    }

    #[test]
    fn folds_constants() {
        let (_, p) = compiled("1 + 2 * 3 - sqrt(4)", &[]);
        assert!(p.instrs().is_empty());
        assert_eq!(p.result(), Operand::Const(5.0));
        let (_, p) = compiled("where(1 > 0, a, b * 2)", &["a", "b"]);
        assert_eq!(p.instrs(), &[Instr::Load { dst: 0, band: 0 }]);
        let (_, p) = compiled("a + log(0)", &["a"]);
        assert!(
            matches!(p.instrs().last(), Some(Instr::Binary { rhs: Operand::Const(c), .. }) if c.is_nan())
        );
    }

    #[test]
    fn registers_never_alias_operands() {
        let (_, p) = compiled("min(a * a, b, a + b, where(a > b, a, -b))", &["a", "b"]);
        for instr in p.instrs() {
            let (dst, ops) = match *instr {
                Instr::Load { dst, .. } => (dst, vec![]),
                Instr::Unary { dst, arg, .. } => (dst, vec![arg]),
                Instr::Binary { dst, lhs, rhs, .. } => (dst, vec![lhs, rhs]),
                Instr::Select { dst, cond, a, b } => (dst, vec![cond, a, b]),
            };
            assert!(!ops.contains(&Operand::Reg(dst)), "{p}");
        }
    }

    #[test]
    fn eval_matches_reference_across_chunks() {
        let bands = ["a", "b"];
        let (typed, p) = compiled(
            "where(a > 0.5 || b < 0, clamp(a / b, -2, 2), max(a, b, 0.25)^2 - exp(b * 90))",
            &bands,
        );
        let n = PIXELS_PER_TASK + CHUNK_PX * 3 + 17;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n)
            .map(|i| match i % 13 {
                0 => f32::NAN,
                1 => 0.0,
                2 => f32::INFINITY,
                _ => ((i * 53) % 97) as f32 / 40.0 - 1.0,
            })
            .collect();
        let mut out = vec![0.0; n];
        p.eval(&[&a, &b], &mut out).expect("evaluates");
        for i in 0..n {
            let want = eval_reference(&typed, &[a[i], b[i]]);
            assert!(
                out[i].to_bits() == want.to_bits() || (out[i].is_nan() && want.is_nan()),
                "pixel {i}: {} vs {want}",
                out[i]
            );
            assert!(!out[i].is_infinite());
        }
    }

    #[test]
    fn eval_checks_shapes() {
        let (_, p) = compiled("a + b", &["a", "b"]);
        let mut out = vec![0.0; 4];
        assert!(matches!(
            p.eval(&[&[0.0; 4]], &mut out),
            Err(KernelError::InvalidParam { .. })
        ));
        assert!(matches!(
            p.eval(&[&[0.0; 4], &[0.0; 3]], &mut out),
            Err(KernelError::ShapeMismatch { .. })
        ));
        let (_, c) = compiled("2 ^ 3", &[]);
        c.eval(&[], &mut out).expect("evaluates");
        assert_eq!(out, vec![8.0; 4]);
    }
}
