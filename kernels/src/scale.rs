//! Radiometric scaling: `DN · scale + offset`, as product metadata defines it.

use rayon::prelude::*;

use crate::error::KernelError;
use crate::plane::PIXELS_PER_TASK;

/// A linear radiometric scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub scale: f32,
    pub offset: f32,
}

impl Scaling {
    /// Landsat Collection 2 Level-2 surface reflectance.
    pub const LANDSAT_C2_L2_SR: Self = Self {
        scale: 2.75e-5,
        offset: -0.2,
    };
    /// Sentinel-2 L2A, processing baseline 04.00 and later: `(DN − 1000) / 10000`.
    pub const SENTINEL2_L2A: Self = Self {
        scale: 1.0e-4,
        offset: -0.1,
    };
    /// The identity.
    pub const IDENTITY: Self = Self {
        scale: 1.0,
        offset: 0.0,
    };

    /// Checks both numbers are finite.
    pub fn validate(self) -> Result<Self, KernelError> {
        if self.scale.is_finite() && self.offset.is_finite() {
            Ok(self)
        } else {
            Err(KernelError::InvalidParam {
                name: "scale",
                reason: format!(
                    "scale {} and offset {} must be finite",
                    self.scale, self.offset
                ),
            })
        }
    }
}

/// Scales `data` in place; nodata stays nodata.
pub fn scale_in_place(data: &mut [f32], scaling: Scaling) -> Result<(), KernelError> {
    let Scaling { scale, offset } = scaling.validate()?;
    data.par_chunks_mut(PIXELS_PER_TASK).for_each(|chunk| {
        for v in chunk {
            *v = crate::index::finite_or_nodata(*v * scale + offset);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel2_offset_matches_baseline_04() {
        let mut v = [11000.0, f32::NAN];
        scale_in_place(&mut v, Scaling::SENTINEL2_L2A).expect("finite scaling");
        assert!((v[0] - 1.0).abs() < 1e-6);
        assert!(v[1].is_nan());
    }
}
