//! The CPU backend: the rayon reference kernels of `kernels`, unchanged.

use kernels::mask::MaskRule;
use kernels::scale::Scaling;

use super::ExprKernel;
use crate::error::Result;

pub(super) fn scale_in_place(data: &mut [f32], scaling: Scaling) -> Result<()> {
    Ok(kernels::scale::scale_in_place(data, scaling)?)
}

pub(super) fn apply_mask(data: &mut [f32], qa: &[f32], rule: &MaskRule) -> Result<()> {
    Ok(kernels::mask::apply_mask(data, qa, rule)?)
}

pub(super) fn normalized_difference(a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    Ok(kernels::index::normalized_difference(a, b, out)?)
}

pub(super) fn evi(nir: &[f32], red: &[f32], blue: &[f32], out: &mut [f32]) -> Result<()> {
    Ok(kernels::index::evi(nir, red, blue, out)?)
}

pub(super) fn savi(nir: &[f32], red: &[f32], l: f32, out: &mut [f32]) -> Result<()> {
    Ok(kernels::index::savi(nir, red, l, out)?)
}

pub(super) fn expr(expr: &ExprKernel, inputs: &[&[f32]], out: &mut [f32]) -> Result<()> {
    Ok(expr.compiled().eval(inputs, out)?)
}
