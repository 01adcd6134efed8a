//! Fused element-wise chains: a run of element-wise steps (scale, mask, indices, expressions) as
//! one straight-line program over numbered planes, run by a backend in one call.
//!
//! A [`Chain`] is in single-assignment form: planes `0..inputs` are the call's inputs and op `k`
//! writes the new plane `inputs + k`, so no op ever overwrites a plane another op reads. A device
//! backend uploads the inputs once, runs every op on planes resident on the device and downloads
//! only the outputs (`cuda`, `wgpu`); the CPU runs the ops one by one on host planes, reusing a
//! plane's memory once nothing reads it any more. Every plane of a call has the same number of pixels, so a chain over many tiles
//! packed end to end equals the chain over each tile.

use std::borrow::Cow;
use std::sync::Arc;

use kernels::mask::MaskRule;
use kernels::scale::Scaling;

use super::{Backend, ExprKernel};
use crate::error::{EngineError, Result};

/// One op of a chain, reading earlier planes by number; it writes the next plane.
#[derive(Debug, Clone)]
pub enum ChainOp {
    /// `src · scale + offset`.
    Scale { src: usize, scaling: Scaling },
    /// `src` with nodata wherever `qa` is masked under `rule`.
    Mask {
        src: usize,
        qa: usize,
        rule: MaskRule,
    },
    /// `(a − b) / (a + b)`.
    NormalizedDifference { a: usize, b: usize },
    /// Enhanced vegetation index.
    Evi { nir: usize, red: usize, blue: usize },
    /// Soil-adjusted vegetation index.
    Savi { nir: usize, red: usize, l: f32 },
    /// An expression; `bands[i]` is the plane bound to the expression's band `i`.
    Expr {
        kernel: Arc<ExprKernel>,
        bands: Vec<usize>,
    },
}

impl ChainOp {
    /// The planes the op reads, in the order its kernel takes them.
    pub fn reads(&self) -> Vec<usize> {
        match self {
            Self::Scale { src, .. } => vec![*src],
            Self::Mask { src, qa, .. } => vec![*src, *qa],
            Self::NormalizedDifference { a, b } => vec![*a, *b],
            Self::Evi { nir, red, blue } => vec![*nir, *red, *blue],
            Self::Savi { nir, red, .. } => vec![*nir, *red],
            Self::Expr { bands, .. } => bands.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Scale { .. } => "scale",
            Self::Mask { .. } => "apply_mask",
            Self::NormalizedDifference { .. } => "normalized_difference",
            Self::Evi { .. } => "evi",
            Self::Savi { .. } => "savi",
            Self::Expr { .. } => "expression",
        }
    }
}

/// A checked straight-line program of element-wise ops (see the module docs).
#[derive(Debug, Clone)]
pub struct Chain {
    inputs: usize,
    ops: Vec<ChainOp>,
    outputs: Vec<usize>,
    /// Per plane: the index of the last op that reads it, if any.
    last_read: Vec<Option<usize>>,
}

impl Chain {
    /// A chain over `inputs` input planes; returns the planes numbered in `outputs`. Every op
    /// may read only planes that exist before it, and its parameters must be valid, so a chain
    /// that is built never fails halfway for a reason it could have known.
    pub fn new(inputs: usize, ops: Vec<ChainOp>, outputs: Vec<usize>) -> Result<Self> {
        let planes = inputs + ops.len();
        let invalid = |why: String| EngineError::InvalidInput(format!("element-wise chain: {why}"));
        let mut last_read = vec![None; planes];
        for (k, op) in ops.iter().enumerate() {
            for r in op.reads() {
                if r >= inputs + k {
                    return Err(invalid(format!(
                        "op {k} ({}) reads plane {r}, which does not exist before it",
                        op.name()
                    )));
                }
                last_read[r] = Some(k);
            }
            match op {
                ChainOp::Scale { scaling, .. } => {
                    scaling.validate()?;
                }
                ChainOp::Savi { l, .. } if !(l.is_finite() && *l >= 0.0) => {
                    return Err(kernels::KernelError::InvalidParam {
                        name: "l",
                        reason: format!("must be a finite number ≥ 0, got {l}"),
                    }
                    .into());
                }
                ChainOp::Expr { kernel, bands } if kernel.band_count() != bands.len() => {
                    return Err(invalid(format!(
                        "op {k}: the expression reads {} bands but {} were bound",
                        kernel.band_count(),
                        bands.len()
                    )));
                }
                _ => {}
            }
        }
        if let Some(o) = outputs.iter().find(|&&o| o >= planes) {
            return Err(invalid(format!("output plane {o} does not exist")));
        }
        Ok(Self {
            inputs,
            ops,
            outputs,
            last_read,
        })
    }

    /// Input planes a call passes.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The ops, in order; op `k` writes plane `inputs() + k`.
    pub fn ops(&self) -> &[ChainOp] {
        &self.ops
    }

    /// The planes a call returns, in order.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }

    /// Input and written planes together.
    pub fn planes(&self) -> usize {
        self.inputs + self.ops.len()
    }

    /// Whether plane `p` is read by no op after op `k` and is not an output.
    fn dead_after(&self, p: usize, k: usize) -> bool {
        self.last_read[p].is_none_or(|last| last <= k) && !self.outputs.contains(&p)
    }

    /// Checks a call's inputs: the right count, all of one length; returns that length.
    pub(crate) fn check_inputs(&self, inputs: &[&[f32]]) -> Result<usize> {
        if inputs.len() != self.inputs {
            return Err(EngineError::InvalidInput(format!(
                "element-wise chain: {} input planes given, {} expected",
                inputs.len(),
                self.inputs
            )));
        }
        let len = inputs.first().map_or(0, |p| p.len());
        for p in inputs {
            kernels::error::check_len("element-wise chain input", len, p.len())?;
        }
        Ok(len)
    }
}

/// Runs `chain` op by op through `backend`'s single-kernel calls, on host planes: the CPU
/// reference of a chain, and how backends without a resident chain run one.
pub(super) fn run_on_host(
    backend: &Backend,
    chain: &Chain,
    inputs: &[&[f32]],
) -> Result<Vec<Vec<f32>>> {
    let len = chain.check_inputs(inputs)?;
    let mut planes: Vec<Option<Cow<'_, [f32]>>> =
        inputs.iter().map(|&p| Some(Cow::Borrowed(p))).collect();
    planes.resize(chain.planes(), None);
    for (k, op) in chain.ops.iter().enumerate() {
        let reads = op.reads();
        // The plane an in-place kernel starts from: moved when nothing reads it later (and the
        // op reads it once), else copied.
        let start_from = |p: usize, planes: &mut [Option<Cow<'_, [f32]>>]| -> Result<Vec<f32>> {
            let once = reads.iter().filter(|&&r| r == p).count() == 1;
            if once && chain.dead_after(p, k) {
                planes[p].take().map(Cow::into_owned).ok_or_else(|| gone(p))
            } else {
                planes[p]
                    .as_deref()
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| gone(p))
            }
        };
        let out = match op {
            ChainOp::Scale { src, scaling } => {
                let mut d = start_from(*src, &mut planes)?;
                backend.scale_in_place(&mut d, *scaling)?;
                d
            }
            ChainOp::Mask { src, qa, rule } => {
                let mut d = start_from(*src, &mut planes)?;
                backend.apply_mask(&mut d, get(&planes, *qa)?, rule)?;
                d
            }
            ChainOp::NormalizedDifference { a, b } => {
                let mut o = vec![0.0f32; len];
                backend.normalized_difference(get(&planes, *a)?, get(&planes, *b)?, &mut o)?;
                o
            }
            ChainOp::Evi { nir, red, blue } => {
                let mut o = vec![0.0f32; len];
                let (n, r, b) = (
                    get(&planes, *nir)?,
                    get(&planes, *red)?,
                    get(&planes, *blue)?,
                );
                backend.evi(n, r, b, &mut o)?;
                o
            }
            ChainOp::Savi { nir, red, l } => {
                let mut o = vec![0.0f32; len];
                backend.savi(get(&planes, *nir)?, get(&planes, *red)?, *l, &mut o)?;
                o
            }
            ChainOp::Expr { kernel, bands } => {
                let mut o = vec![0.0f32; len];
                let slices = bands
                    .iter()
                    .map(|&b| get(&planes, b))
                    .collect::<Result<Vec<&[f32]>>>()?;
                backend.expr(kernel, &slices, &mut o)?;
                o
            }
        };
        planes[chain.inputs + k] = Some(Cow::Owned(out));
        for r in reads {
            if chain.dead_after(r, k) {
                planes[r] = None;
            }
        }
    }
    take_outputs(chain, planes)
}

/// Runs `chain` on the CPU into `outputs` (one plane per chain output, as long as the inputs):
/// the reference, and where a device backend sends a chain it has no kernel for.
pub(super) fn run_on_cpu_into(
    chain: &Chain,
    inputs: &[&[f32]],
    outputs: &mut [&mut [f32]],
) -> Result<()> {
    let planes = run_on_host(&Backend::Cpu, chain, inputs)?;
    for (out, plane) in outputs.iter_mut().zip(planes) {
        out.copy_from_slice(&plane);
    }
    Ok(())
}

fn gone(p: usize) -> EngineError {
    EngineError::Backend(format!("element-wise chain: plane {p} is gone"))
}

fn get<'p>(planes: &'p [Option<Cow<'_, [f32]>>], p: usize) -> Result<&'p [f32]> {
    planes[p].as_deref().ok_or_else(|| gone(p))
}

/// The output planes, moved out (copied when a plane is returned twice).
fn take_outputs(chain: &Chain, mut planes: Vec<Option<Cow<'_, [f32]>>>) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(chain.outputs.len());
    for (i, &p) in chain.outputs.iter().enumerate() {
        let again = chain.outputs[i + 1..].contains(&p);
        let plane = if again {
            planes[p].as_deref().map(<[f32]>::to_vec)
        } else {
            planes[p].take().map(Cow::into_owned)
        };
        out.push(plane.ok_or_else(|| gone(p))?);
    }
    Ok(out)
}
