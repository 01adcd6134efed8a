//! Cloud masks from Landsat Collection 2 `QA_PIXEL` bits and Sentinel-2 `SCL` classes, and
//! `apply_mask`, which writes nodata where a mask says so.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::PIXELS_PER_TASK;
use crate::simd::with_avx2;

/// Landsat Collection 2 `QA_PIXEL` bit numbers.
pub mod landsat_bits {
    pub const FILL: u32 = 0;
    pub const DILATED_CLOUD: u32 = 1;
    pub const CIRRUS: u32 = 2;
    pub const CLOUD: u32 = 3;
    pub const CLOUD_SHADOW: u32 = 4;
    pub const SNOW: u32 = 5;
    pub const CLEAR: u32 = 6;
    pub const WATER: u32 = 7;
}

/// Sentinel-2 scene classification (`SCL`) classes.
pub mod scl_classes {
    pub const NO_DATA: u8 = 0;
    pub const SATURATED: u8 = 1;
    pub const DARK_AREA: u8 = 2;
    pub const CLOUD_SHADOW: u8 = 3;
    pub const VEGETATION: u8 = 4;
    pub const NOT_VEGETATED: u8 = 5;
    pub const WATER: u8 = 6;
    pub const UNCLASSIFIED: u8 = 7;
    pub const CLOUD_MEDIUM: u8 = 8;
    pub const CLOUD_HIGH: u8 = 9;
    pub const THIN_CIRRUS: u8 = 10;
    pub const SNOW: u8 = 11;
}

/// Which quality codes count as masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskRule {
    /// Landsat C2 `QA_PIXEL`: masked when any of these bits is set.
    LandsatQa { bits: u16 },
    /// Sentinel-2 `SCL`: masked when class `c` has bit `c % 64` set in word `c / 64`.
    Scl { classes: [u64; 4] },
    /// Landsat 8 pre-Collection `BQA`: masked on designated fill (bit 0), cloud (bit 4), or
    /// high confidence of cloud (bits 14–15 = 3) or cirrus (bits 12–13 = 3).
    LandsatBqaLegacy,
}

impl MaskRule {
    /// Landsat C2: fill, dilated cloud, cirrus, cloud and cloud shadow.
    pub fn landsat_default() -> Self {
        use landsat_bits::*;
        Self::landsat_bits(&[FILL, DILATED_CLOUD, CIRRUS, CLOUD, CLOUD_SHADOW])
    }

    /// Landsat C2: masked when any of `bits` (0..16) is set.
    pub fn landsat_bits(bits: &[u32]) -> Self {
        let bits = bits
            .iter()
            .filter(|&&b| b < 16)
            .fold(0u16, |acc, &b| acc | (1 << b));
        Self::LandsatQa { bits }
    }

    /// Sentinel-2: nodata, saturated, cloud shadow, cloud (medium, high) and thin cirrus.
    pub fn scl_default() -> Self {
        use scl_classes::*;
        Self::scl_classes(&[
            NO_DATA,
            SATURATED,
            CLOUD_SHADOW,
            CLOUD_MEDIUM,
            CLOUD_HIGH,
            THIN_CIRRUS,
        ])
    }

    /// Sentinel-2: masked when the class is one of `classes`.
    pub fn scl_classes(classes: &[u8]) -> Self {
        let mut set = [0u64; 4];
        for &c in classes {
            set[usize::from(c / 64)] |= 1 << (c % 64);
        }
        Self::Scl { classes: set }
    }

    /// Whether a quality value (as read into `f32`) is masked; nodata quality is masked.
    #[inline(always)]
    pub fn is_masked(&self, qa: f32) -> bool {
        if qa.is_nan() || qa < 0.0 {
            return true;
        }
        let code = qa_code(qa);
        match self {
            Self::LandsatQa { bits } => code & u32::from(*bits) != 0,
            Self::Scl { classes } => {
                code > 255 || classes[(code / 64) as usize] & (1 << (code % 64)) != 0
            }
            Self::LandsatBqaLegacy => bqa_legacy_masked(code),
        }
    }
}

/// The pre-Collection `BQA` rule on a code: designated fill (bit 0), cloud (bit 4), or high
/// confidence of cloud (bits 14–15 = 3) or cirrus (bits 12–13 = 3). Branch-free, so the
/// mask loop vectorizes.
#[inline(always)]
fn bqa_legacy_masked(code: u32) -> bool {
    (code & 1 != 0) | (code & (1 << 4) != 0) | ((code >> 14) & 3 == 3) | ((code >> 12) & 3 == 3)
}

/// `qa as u32` (truncating; NaN and negatives give 0, values of 2³² and more `u32::MAX`) in
/// operations that vectorize: the saturating cast itself is scalarized by LLVM, eight
/// conversions with their range fix-ups for every eight pixels. Below 2²³ the integer part
/// is read out of the mantissa of `floor(q) + 2²³`; from 2²³ on every value is an integer,
/// its mantissa shifted by the exponent.
#[inline(always)]
fn qa_code(qa: f32) -> u32 {
    const TWO_23: f32 = 8_388_608.0;
    const MANTISSA: u32 = 0x7f_ffff;
    let t = qa.max(0.0);
    let small = (t.floor() + TWO_23).to_bits() & MANTISSA;
    let bits = t.to_bits();
    let large = ((bits & MANTISSA) | (MANTISSA + 1)).wrapping_shl((bits >> 23).wrapping_sub(150));
    if t < TWO_23 {
        small
    } else if t < 4_294_967_296.0 {
        large
    } else {
        u32::MAX
    }
}

/// Writes the mask itself: 1 where masked, 0 where clear.
pub fn cloud_mask(qa: &[f32], rule: &MaskRule, out: &mut [f32]) -> Result<(), KernelError> {
    check_len("cloud_mask", qa.len(), out.len())?;
    out.par_chunks_mut(PIXELS_PER_TASK)
        .zip(qa.par_chunks(PIXELS_PER_TASK))
        .for_each(|(o, q)| {
            for (o, &q) in o.iter_mut().zip(q) {
                *o = if rule.is_masked(q) { 1.0 } else { 0.0 };
            }
        });
    Ok(())
}

/// Sets `data` to nodata wherever `qa` is masked under `rule`.
pub fn apply_mask(data: &mut [f32], qa: &[f32], rule: &MaskRule) -> Result<(), KernelError> {
    check_len("apply_mask", qa.len(), data.len())?;
    // Each rule as branch-free arithmetic on the code where it has such a form, which
    // vectorizes; the same results as `is_masked` (NaN and negative codes are masked).
    match *rule {
        MaskRule::LandsatQa { bits } => {
            let bits = u32::from(bits);
            mask_where(data, qa, move |q| {
                q.is_nan() | (q < 0.0) | (qa_code(q) & bits != 0)
            });
        }
        // Sentinel-2 classes all below 32 (every SCL class is): the set fits one u32, and
        // the test becomes a variable shift. Codes above 255 are masked; 32..=255 are in no
        // such set.
        MaskRule::Scl { classes }
            if classes[1..].iter().all(|&w| w == 0) && classes[0] >> 32 == 0 =>
        {
            let set = classes[0] as u32;
            mask_where(data, qa, move |q| {
                let code = qa_code(q);
                let listed = (code < 32) & ((set >> (code & 31)) & 1 != 0);
                q.is_nan() | (q < 0.0) | (code > 255) | listed
            });
        }
        MaskRule::LandsatBqaLegacy => mask_where(data, qa, |q| {
            q.is_nan() | (q < 0.0) | bqa_legacy_masked(qa_code(q))
        }),
        MaskRule::Scl { .. } => mask_where(data, qa, move |q| rule.is_masked(q)),
    }
    Ok(())
}

/// Sets `data` to nodata where `masked(qa)`, in parallel chunks, in the AVX2 build where the
/// CPU has it. `masked` is moved into each chunk's loop, so what it captured is held in a
/// register (see `index::map2`).
fn mask_where(data: &mut [f32], qa: &[f32], masked: impl Fn(f32) -> bool + Sync + Copy) {
    data.par_chunks_mut(PIXELS_PER_TASK)
        .zip(qa.par_chunks(PIXELS_PER_TASK))
        .for_each(|(d, q)| {
            with_avx2(move || {
                for (d, &q) in d.iter_mut().zip(q) {
                    *d = if masked(q) { f32::NAN } else { *d };
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landsat_codes_from_real_scenes() {
        let rule = MaskRule::landsat_default();
        // 21824 clear land, 21952 clear water, 22280 high-confidence cloud, 1 fill,
        // 23888 cloud shadow, 55052 cirrus + cloud, 21762 dilated cloud.
        assert!(!rule.is_masked(21824.0));
        assert!(!rule.is_masked(21952.0));
        assert!(rule.is_masked(22280.0));
        assert!(rule.is_masked(1.0));
        assert!(rule.is_masked(23888.0));
        assert!(rule.is_masked(55052.0));
        assert!(rule.is_masked(21762.0));
        assert!(rule.is_masked(f32::NAN));
    }

    #[test]
    fn legacy_bqa_codes_from_the_pensacola_scene() {
        let rule = MaskRule::LandsatBqaLegacy;
        assert!(!rule.is_masked(20480.0)); // clear
        assert!(!rule.is_masked(20512.0)); // clear
        assert!(rule.is_masked(61440.0)); // high-confidence cloud and cirrus
        assert!(rule.is_masked(1.0)); // designated fill
    }

    #[test]
    fn scl_classes() {
        let rule = MaskRule::scl_default();
        for c in [0u8, 1, 3, 8, 9, 10] {
            assert!(rule.is_masked(f32::from(c)), "class {c}");
        }
        for c in [2u8, 4, 5, 6, 7, 11] {
            assert!(!rule.is_masked(f32::from(c)), "class {c}");
        }
    }

    #[test]
    fn apply_mask_agrees_with_is_masked_for_every_rule() {
        // Codes of every class and beyond, fractions, negatives, NaN and huge values.
        let mut qa: Vec<f32> = (0..70_000).map(|c| c as f32).collect();
        qa.extend([
            -0.0,
            -1.0,
            -300.0,
            0.5,
            1.5,
            31.9,
            32.0,
            255.5,
            256.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -3e9,
            8_388_607.5,
            8_388_608.0,
            16_777_218.0,
            2_147_483_520.0,
            2_147_483_648.0,
            4_294_967_040.0,
            4_294_967_296.0,
            1e30,
        ]);
        let rules = [
            MaskRule::scl_default(),
            MaskRule::scl_classes(&[3, 31]),
            MaskRule::scl_classes(&[3, 40, 200]),
            MaskRule::landsat_default(),
            MaskRule::LandsatQa { bits: 0 },
            MaskRule::LandsatBqaLegacy,
        ];
        for rule in &rules {
            let mut data = vec![1.0f32; qa.len()];
            apply_mask(&mut data, &qa, rule).expect("same lengths");
            for (&q, &d) in qa.iter().zip(&data) {
                assert_eq!(d.is_nan(), rule.is_masked(q), "{rule:?} at {q}");
            }
        }
    }

    #[test]
    fn qa_code_is_the_saturating_cast() {
        // Every 251st bit pattern of both signs (NaN included), and the edges.
        let edges = [
            0.0,
            -0.0,
            0.5,
            8_388_607.5,
            8_388_608.0,
            4_294_967_040.0,
            4_294_967_296.0,
        ];
        let sampled = (0..=u32::MAX / 251).map(|i| f32::from_bits(i * 251));
        for q in sampled
            .chain(edges)
            .chain([f32::INFINITY, f32::NEG_INFINITY, f32::NAN])
        {
            assert_eq!(qa_code(q), q as u32, "{q:e} ({:#x})", q.to_bits());
        }
    }

    #[test]
    fn apply_mask_writes_nodata() {
        let mut data = [0.5, 0.6, 0.7];
        apply_mask(
            &mut data,
            &[21824.0, 22280.0, 1.0],
            &MaskRule::landsat_default(),
        )
        .expect("same lengths");
        assert_eq!(data[0], 0.5);
        assert!(data[1].is_nan() && data[2].is_nan());
    }
}
