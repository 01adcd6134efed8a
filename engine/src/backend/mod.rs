//! The compute-backend seam: one set of element-wise kernels (scale, apply_mask, the indices and
//! compiled expressions) behind [`Backend`], implemented by the CPU reference and, with the
//! `wgpu` feature, by WGSL compute shaders and, with the `cuda` feature, by CUDA C kernels
//! compiled with NVRTC; [`select`] picks one for a run.
//!
//! Every backend must give the CPU's results within the tolerance stated per kernel in
//! `engine::conformance`, the one suite run against every backend (`engine/tests/conformance.rs`,
//! `constellation conformance`).

pub mod chain;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda_backend;
#[cfg(feature = "wgpu")]
pub mod wgpu_backend;

use std::fmt;
use std::str::FromStr;

use kernels::expr::{bind, CompiledExpr, Expr, TypedExpr};
use kernels::mask::MaskRule;
use kernels::scale::Scaling;

use crate::error::{EngineError, Result};

pub use chain::{Chain, ChainOp};
#[cfg(feature = "cuda")]
pub use cuda_backend::{CudaBackend, CudaOptions};
#[cfg(feature = "wgpu")]
pub use wgpu_backend::{WgpuBackend, WgpuOptions};

/// Which backend a run asks for (`--backend auto|cpu|wgpu|cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// CUDA if it starts, else a hardware wgpu adapter, else the CPU.
    #[default]
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [Self; 4] = [Self::Auto, Self::Cpu, Self::Wgpu, Self::Cuda];

    /// The name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "backend {s:?}: expected one of auto, cpu, wgpu, cuda"
                ))
            })
    }
}

/// A started compute backend. Cheap to share by reference across worker threads; a device
/// backend serialises its own device work.
#[derive(Debug)]
pub enum Backend {
    /// The rayon CPU kernels of `kernels`: the reference.
    Cpu,
    /// WGSL compute shaders through wgpu (Vulkan, Metal, DX12 or GL).
    #[cfg(feature = "wgpu")]
    Wgpu(Box<WgpuBackend>),
    /// CUDA C kernels compiled by NVRTC, through the CUDA driver.
    #[cfg(feature = "cuda")]
    Cuda(Box<CudaBackend>),
}

/// Starts the backend `kind` asks for. Returns it with, for `auto`, the one-line reason why a
/// preferred backend was passed over (to be logged once); an explicit backend that cannot start
/// is an error saying why.
pub fn select(kind: BackendKind) -> Result<(Backend, Option<String>)> {
    match kind {
        BackendKind::Cpu => Ok((Backend::Cpu, None)),
        BackendKind::Cuda => start_cuda().map(|b| (b, None)),
        BackendKind::Wgpu => start_wgpu(true).map(|b| (b, None)),
        BackendKind::Auto => {
            let mut passed_over = Vec::new();
            match start_cuda() {
                Ok(b) => return Ok((b, None)),
                Err(e) => passed_over.push(format!("cuda: {}", backend_reason(&e))),
            }
            match start_wgpu(false) {
                Ok(b) => return Ok((b, Some(format!("auto: {}", passed_over.join("; "))))),
                Err(e) => passed_over.push(format!("wgpu: {}", backend_reason(&e))),
            }
            // With no GPU backend built in, CPU is not a fallback: nothing to report.
            let reason = cfg!(any(feature = "wgpu", feature = "cuda"))
                .then(|| format!("auto: using cpu ({})", passed_over.join("; ")));
            Ok((Backend::Cpu, reason))
        }
    }
}

#[cfg(feature = "cuda")]
fn start_cuda() -> Result<Backend> {
    CudaBackend::new(&CudaOptions::default()).map(Backend::from)
}

#[cfg(not(feature = "cuda"))]
fn start_cuda() -> Result<Backend> {
    Err(EngineError::Backend(
        "the cuda backend is not built into this binary (build with --features cuda)".into(),
    ))
}

#[cfg(feature = "cuda")]
impl From<CudaBackend> for Backend {
    fn from(backend: CudaBackend) -> Self {
        Backend::Cuda(Box::new(backend))
    }
}

fn backend_reason(e: &EngineError) -> String {
    match e {
        EngineError::Backend(reason) => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(feature = "wgpu")]
fn start_wgpu(allow_software: bool) -> Result<Backend> {
    WgpuBackend::new(&WgpuOptions {
        allow_software,
        ..WgpuOptions::default()
    })
    .map(Backend::from)
}

#[cfg(not(feature = "wgpu"))]
fn start_wgpu(_allow_software: bool) -> Result<Backend> {
    Err(EngineError::Backend(
        "the wgpu backend is not built into this binary (build with --features wgpu)".into(),
    ))
}

#[cfg(feature = "wgpu")]
impl From<WgpuBackend> for Backend {
    fn from(backend: WgpuBackend) -> Self {
        Backend::Wgpu(Box::new(backend))
    }
}

/// A bound, type-checked expression made ready for every backend: the CPU program, and the
/// typed tree device backends generate code from, keyed by its canonical text.
#[derive(Debug, Clone)]
pub struct ExprKernel {
    typed: TypedExpr,
    compiled: CompiledExpr,
    key: String,
}

impl ExprKernel {
    /// Prepares a bound expression.
    pub fn new(typed: TypedExpr) -> Self {
        let compiled = typed.compile();
        let key = format!("{}#{}", typed, typed.band_count);
        Self {
            typed,
            compiled,
            key,
        }
    }

    /// Parses and binds `text` against `band_names`, then prepares it.
    pub fn parse(text: &str, band_names: &[&str]) -> Result<Self> {
        let parsed = Expr::parse(text).map_err(kernels::KernelError::from)?;
        let typed = bind(&parsed, band_names).map_err(kernels::KernelError::from)?;
        Ok(Self::new(typed))
    }

    /// How many bands the expression was bound against (the length `inputs` must have).
    pub fn band_count(&self) -> usize {
        self.typed.band_count
    }

    /// The typed tree.
    pub fn typed(&self) -> &TypedExpr {
        &self.typed
    }

    /// The CPU register program.
    pub fn compiled(&self) -> &CompiledExpr {
        &self.compiled
    }

    /// The canonical text (bands as `$n`) and band count: the key of compiled device code.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Backend {
    /// The backend's short name: `cpu`, `wgpu` or `cuda`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(_) => "wgpu",
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => "cuda",
        }
    }

    /// One line naming the backend and its device, for logs and summaries.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => format!("cpu ({} rayon threads)", rayon::current_num_threads()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => format!("wgpu ({})", w.adapter_summary()),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => format!("cuda ({})", c.device_summary()),
        }
    }

    /// `data = data · scale + offset` in place; nodata stays nodata.
    pub fn scale_in_place(&self, data: &mut [f32], scaling: Scaling) -> Result<()> {
        match self {
            Backend::Cpu => cpu::scale_in_place(data, scaling),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.scale_in_place(data, scaling),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.scale_in_place(data, scaling),
        }
    }

    /// Writes nodata into `data` wherever `qa` is masked under `rule`.
    pub fn apply_mask(&self, data: &mut [f32], qa: &[f32], rule: &MaskRule) -> Result<()> {
        kernels::error::check_len("apply_mask", qa.len(), data.len())?;
        match self {
            Backend::Cpu => cpu::apply_mask(data, qa, rule),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.apply_mask(data, qa, rule),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.apply_mask(data, qa, rule),
        }
    }

    /// `out = (a − b) / (a + b)`.
    pub fn normalized_difference(&self, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
        check_lens("normalized_difference", out.len(), &[a, b])?;
        match self {
            Backend::Cpu => cpu::normalized_difference(a, b, out),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.normalized_difference(a, b, out),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.normalized_difference(a, b, out),
        }
    }

    /// `out = 2.5 (nir − red) / (nir + 6 red − 7.5 blue + 1)`.
    pub fn evi(&self, nir: &[f32], red: &[f32], blue: &[f32], out: &mut [f32]) -> Result<()> {
        check_lens("evi", out.len(), &[nir, red, blue])?;
        match self {
            Backend::Cpu => cpu::evi(nir, red, blue, out),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.evi(nir, red, blue, out),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.evi(nir, red, blue, out),
        }
    }

    /// `out = (1 + l)(nir − red) / (nir + red + l)`.
    pub fn savi(&self, nir: &[f32], red: &[f32], l: f32, out: &mut [f32]) -> Result<()> {
        if !(l.is_finite() && l >= 0.0) {
            return Err(kernels::KernelError::InvalidParam {
                name: "l",
                reason: format!("must be a finite number ≥ 0, got {l}"),
            }
            .into());
        }
        check_lens("savi", out.len(), &[nir, red])?;
        match self {
            Backend::Cpu => cpu::savi(nir, red, l, out),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.savi(nir, red, l, out),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.savi(nir, red, l, out),
        }
    }

    /// Runs an element-wise [`Chain`] over `inputs` (one plane per chain input, all of one
    /// length) and returns its output planes. CUDA and wgpu keep every intermediate plane on
    /// the device (one upload, one download per chunk); the CPU runs the ops one by one.
    pub fn run_chain(&self, chain: &Chain, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        if !self.fuses_chains() {
            return chain::run_on_host(self, chain, inputs);
        }
        let len = chain.check_inputs(inputs)?;
        let mut outputs = vec![vec![0.0f32; len]; chain.outputs().len()];
        let mut refs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        self.run_chain_into(chain, inputs, &mut refs)?;
        Ok(outputs)
    }

    /// [`run_chain`](Self::run_chain) into caller-owned output planes, one per chain output,
    /// each as long as the inputs.
    pub fn run_chain_into(
        &self,
        chain: &Chain,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> Result<()> {
        let len = chain.check_inputs(inputs)?;
        if outputs.len() != chain.outputs().len() {
            return Err(EngineError::InvalidInput(format!(
                "element-wise chain: {} output planes given, {} expected",
                outputs.len(),
                chain.outputs().len()
            )));
        }
        for out in outputs.iter() {
            kernels::error::check_len("element-wise chain output", len, out.len())?;
        }
        match self {
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.run_chain_into(chain, inputs, outputs),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.run_chain_into(chain, inputs, outputs),
            Backend::Cpu => chain::run_on_cpu_into(chain, inputs, outputs),
        }
    }

    /// Whether [`run_chain`](Self::run_chain) keeps a chain's intermediate planes on the device
    /// (one upload and one download) rather than running it op by op.
    pub fn fuses_chains(&self) -> bool {
        match self {
            Backend::Cpu => false,
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => true,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(_) => true,
        }
    }

    /// Pixels worth packing into one call: tiles are batched up to this many pixels, so a
    /// device sees calls big enough to keep its transfers busy; `None` for the CPU, which
    /// gains nothing from packing tiles.
    pub fn batch_px(&self) -> Option<usize> {
        match self {
            Backend::Cpu => None,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(_) => Some(1 << 22),
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => Some(1 << 22),
        }
    }

    /// `out[i] = expr(inputs[0][i], inputs[1][i], …)`; `inputs` holds one slice per bound band.
    pub fn expr(&self, expr: &ExprKernel, inputs: &[&[f32]], out: &mut [f32]) -> Result<()> {
        match self {
            Backend::Cpu => cpu::expr(expr, inputs, out),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(w) => w.expr(expr, inputs, out),
            #[cfg(feature = "cuda")]
            Backend::Cuda(c) => c.expr(expr, inputs, out),
        }
    }
}

/// A kernel for a device backend's `resident_secs` (CUDA and wgpu): timed on planes already on
/// the device, with no transfers.
#[derive(Debug, Clone, Copy)]
pub enum ResidentKernel<'a> {
    /// A built-in kernel by its CUDA entry point: `scale`, `landsat_qa`, `scl`, `bqa_legacy`,
    /// `normalized_difference`, `evi` or `savi`.
    Builtin(&'static str),
    /// A compiled expression.
    Expr(&'a ExprKernel),
}

/// Measured transfer limits of a device, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceLimits {
    /// Device-to-device copy, bytes read plus written.
    pub d2d_bytes_per_s: f64,
    /// Host to device, as the backend uploads (page-locked staging on CUDA; wgpu's queue
    /// writes).
    pub h2d_bytes_per_s: f64,
    /// Device to host, as the backend reads back.
    pub d2h_bytes_per_s: f64,
}

/// Checks that every input plane is as long as the output, as the CPU kernels do; done at the
/// seam so that device backends receive only well-formed calls.
fn check_lens(kernel: &'static str, out_len: usize, inputs: &[&[f32]]) -> Result<()> {
    for input in inputs {
        kernels::error::check_len(kernel, out_len, input.len())?;
    }
    Ok(())
}

/// Checks the inputs of an expression call, as the CPU program does.
#[cfg_attr(
    not(any(feature = "wgpu", feature = "cuda")),
    allow(dead_code, reason = "only device backends call it")
)]
pub(crate) fn check_expr_inputs(
    expr: &ExprKernel,
    inputs: &[&[f32]],
    out_len: usize,
) -> Result<()> {
    if inputs.len() != expr.band_count() {
        return Err(kernels::KernelError::InvalidParam {
            name: "inputs",
            reason: format!(
                "the expression reads {} bands but {} were given",
                expr.band_count(),
                inputs.len()
            ),
        }
        .into());
    }
    for input in inputs {
        kernels::error::check_len("expression input band", out_len, input.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in BackendKind::ALL {
            assert_eq!(k.name().parse::<BackendKind>().ok(), Some(k));
        }
        assert!("gpu".parse::<BackendKind>().is_err());
    }

    #[test]
    fn cuda_starts_or_says_why() {
        match select(BackendKind::Cuda) {
            Ok((backend, _)) => assert_eq!(backend.name(), "cuda"),
            Err(e) => assert!(e.to_string().contains("cuda"), "{e}"),
        }
    }

    #[test]
    fn auto_always_starts_something() {
        let (backend, reason) = select(BackendKind::Auto).expect("auto never fails");
        // Falling back says why, naming the backend passed over first; with no GPU backend built
        // in, the CPU is no fallback and nothing is said.
        if matches!(backend, Backend::Cpu) {
            if cfg!(any(feature = "wgpu", feature = "cuda")) {
                assert!(reason.is_some_and(|r| r.contains("cuda")));
            } else {
                assert_eq!(reason, None);
            }
        }
    }
}
