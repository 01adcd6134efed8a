//! Spectral indices: normalized difference and its presets, EVI and SAVI.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::PIXELS_PER_TASK;
use crate::simd::with_avx2;

/// Turns any non-finite value into nodata (`NaN`), so no `±Inf` leaks as data.
#[inline(always)]
pub(crate) fn finite_or_nodata(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        f32::NAN
    }
}

/// Applies `f` pixel by pixel over two equally long inputs, in parallel chunks.
///
/// `f` is `Copy` and moved into each chunk's loop: a parameter it captured (SAVI's `L`) is
/// then a register, where read through a reference to `f` it was loaded again for every
/// pixel (the store to `out` might have changed it), which kept the loop scalar.
pub(crate) fn map2(
    what: &'static str,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync + Copy,
) -> Result<(), KernelError> {
    check_len(what, a.len(), b.len())?;
    check_len(what, a.len(), out.len())?;
    out.par_chunks_mut(PIXELS_PER_TASK)
        .zip(a.par_chunks(PIXELS_PER_TASK))
        .zip(b.par_chunks(PIXELS_PER_TASK))
        .for_each(|((o, a), b)| {
            with_avx2(move || {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = f(a, b);
                }
            });
        });
    Ok(())
}

/// Applies `f` pixel by pixel over three equally long inputs, in parallel chunks; `f` is
/// moved into each chunk's loop as in [`map2`].
pub(crate) fn map3(
    what: &'static str,
    a: &[f32],
    b: &[f32],
    c: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32, f32) -> f32 + Sync + Copy,
) -> Result<(), KernelError> {
    check_len(what, a.len(), b.len())?;
    check_len(what, a.len(), c.len())?;
    check_len(what, a.len(), out.len())?;
    out.par_chunks_mut(PIXELS_PER_TASK)
        .zip(a.par_chunks(PIXELS_PER_TASK))
        .zip(b.par_chunks(PIXELS_PER_TASK))
        .zip(c.par_chunks(PIXELS_PER_TASK))
        .for_each(|(((o, a), b), c)| {
            with_avx2(move || {
                for (((o, &a), &b), &c) in o.iter_mut().zip(a).zip(b).zip(c) {
                    *o = f(a, b, c);
                }
            });
        });
    Ok(())
}

/// `(a − b) / (a + b)`; nodata in either input, or `a + b == 0`, gives nodata.
pub fn normalized_difference(a: &[f32], b: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    map2("normalized_difference", a, b, out, |a, b| {
        finite_or_nodata((a - b) / (a + b))
    })
}

/// The named normalized-difference indices and the band roles they take, in `(a, b)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalizedDifference {
    /// Vegetation: (nir − red) / (nir + red).
    Ndvi,
    /// Water (McFeeters): (green − nir) / (green + nir).
    Ndwi,
    /// Burn ratio: (nir − swir2) / (nir + swir2).
    Nbr,
    /// Built-up: (swir1 − nir) / (swir1 + nir).
    Ndbi,
    /// Modified water: (green − swir1) / (green + swir1).
    Mndwi,
}

impl NormalizedDifference {
    /// Every preset.
    pub const ALL: [Self; 5] = [Self::Ndvi, Self::Ndwi, Self::Nbr, Self::Ndbi, Self::Mndwi];

    /// The preset's name, as recipes spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ndvi => "ndvi",
            Self::Ndwi => "ndwi",
            Self::Nbr => "nbr",
            Self::Ndbi => "ndbi",
            Self::Mndwi => "mndwi",
        }
    }

    /// The band roles `(a, b)` of `(a − b) / (a + b)`.
    pub fn roles(self) -> (&'static str, &'static str) {
        match self {
            Self::Ndvi => ("nir", "red"),
            Self::Ndwi => ("green", "nir"),
            Self::Nbr => ("nir", "swir2"),
            Self::Ndbi => ("swir1", "nir"),
            Self::Mndwi => ("green", "swir1"),
        }
    }

    /// Looks a preset up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Enhanced vegetation index: `2.5 (nir − red) / (nir + 6 red − 7.5 blue + 1)` on reflectance.
pub fn evi(nir: &[f32], red: &[f32], blue: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    map3("evi", nir, red, blue, out, |nir, red, blue| {
        finite_or_nodata(2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0))
    })
}

/// Soil-adjusted vegetation index: `(1 + L)(nir − red) / (nir + red + L)`; the usual `L` is 0.5.
pub fn savi(nir: &[f32], red: &[f32], l: f32, out: &mut [f32]) -> Result<(), KernelError> {
    if !(l.is_finite() && l >= 0.0) {
        return Err(KernelError::InvalidParam {
            name: "l",
            reason: format!("must be a finite number ≥ 0, got {l}"),
        });
    }
    map2("savi", nir, red, out, move |nir, red| {
        finite_or_nodata((1.0 + l) * (nir - red) / (nir + red + l))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sum_is_nodata_not_infinity() {
        let mut out = [0.0; 4];
        normalized_difference(&[0.0, 1.0, f32::NAN, 3.0], &[0.0, -1.0, 1.0, 1.0], &mut out)
            .expect("same lengths");
        assert!(out[0].is_nan());
        assert!(out[1].is_nan());
        assert!(out[2].is_nan());
        assert_eq!(out[3], 0.5);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let mut out = [0.0; 2];
        assert!(normalized_difference(&[1.0, 2.0], &[1.0], &mut out).is_err());
    }

    #[test]
    fn presets_round_trip_by_name() {
        for p in NormalizedDifference::ALL {
            assert_eq!(NormalizedDifference::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn savi_rejects_negative_l() {
        let mut out = [0.0; 1];
        assert!(savi(&[1.0], &[1.0], -1.0, &mut out).is_err());
    }
}
