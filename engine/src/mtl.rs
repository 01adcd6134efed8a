//! Landsat `MTL.txt` metadata: the Level-1 TOA reflectance rescaling and the sun elevation.

use std::collections::HashMap;

use kernels::scale::Scaling;

use crate::error::{EngineError, Result};

/// Parsed `GROUP = … / KEY = VALUE / END_GROUP` metadata, keys qualified by their innermost
/// group (`RADIOMETRIC_RESCALING.REFLECTANCE_MULT_BAND_4`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mtl {
    values: HashMap<String, String>,
}

impl Mtl {
    /// Parses MTL text.
    pub fn parse(text: &str) -> Self {
        let mut values = HashMap::new();
        let mut groups: Vec<String> = Vec::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            match k {
                "GROUP" => groups.push(v.to_string()),
                "END_GROUP" => {
                    groups.pop();
                }
                _ => {
                    let group = groups.last().map_or("", String::as_str);
                    values
                        .entry(format!("{group}.{k}"))
                        .or_insert_with(|| v.to_string());
                }
            }
        }
        Self { values }
    }

    fn number(&self, groups: &[&str], key: &str) -> Option<f64> {
        groups
            .iter()
            .find_map(|g| self.values.get(&format!("{g}.{key}")))
            .and_then(|v| v.parse().ok())
    }

    /// The sun elevation in degrees.
    pub fn sun_elevation_deg(&self) -> Option<f64> {
        self.number(&["IMAGE_ATTRIBUTES", "PRODUCT_METADATA"], "SUN_ELEVATION")
    }

    /// Level-1 top-of-atmosphere reflectance for `band`, corrected for the sun elevation:
    /// `ρ = (M·DN + A) / sin(θ_SE)`.
    pub fn toa_reflectance(&self, band: u32) -> Result<Scaling> {
        let groups = ["LEVEL1_RADIOMETRIC_RESCALING", "RADIOMETRIC_RESCALING"];
        let missing = |what: &str| EngineError::InvalidInput(format!("mtl has no {what}"));
        let mult = self
            .number(&groups, &format!("REFLECTANCE_MULT_BAND_{band}"))
            .ok_or_else(|| missing(&format!("REFLECTANCE_MULT_BAND_{band}")))?;
        let add = self
            .number(&groups, &format!("REFLECTANCE_ADD_BAND_{band}"))
            .ok_or_else(|| missing(&format!("REFLECTANCE_ADD_BAND_{band}")))?;
        let sun = self
            .sun_elevation_deg()
            .ok_or_else(|| missing("SUN_ELEVATION"))?
            .to_radians()
            .sin();
        if sun <= 0.0 {
            return Err(EngineError::InvalidInput(
                "mtl sun elevation is not above the horizon".into(),
            ));
        }
        Scaling {
            scale: (mult / sun) as f32,
            offset: (add / sun) as f32,
        }
        .validate()
        .map_err(EngineError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C2: &str = r#"GROUP = LANDSAT_METADATA_FILE
  GROUP = IMAGE_ATTRIBUTES
    SUN_ELEVATION = 30.0
  END_GROUP = IMAGE_ATTRIBUTES
  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
    REFLECTANCE_MULT_BAND_4 = 2.75e-05
    REFLECTANCE_ADD_BAND_4 = -0.2
  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
  GROUP = LEVEL1_RADIOMETRIC_RESCALING
    REFLECTANCE_MULT_BAND_4 = 2.0000E-05
    REFLECTANCE_ADD_BAND_4 = -0.100000
  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING
END_GROUP = LANDSAT_METADATA_FILE
END
"#;

    #[test]
    fn level1_rescaling_not_level2() {
        let s = Mtl::parse(C2).toa_reflectance(4).expect("present");
        // sin 30° = 0.5.
        assert!((s.scale - 4.0e-5).abs() < 1e-12);
        assert!((s.offset + 0.2).abs() < 1e-7);
    }

    #[test]
    fn missing_band_is_an_error() {
        let err = Mtl::parse(C2).toa_reflectance(7).expect_err("absent");
        assert!(err.to_string().contains("REFLECTANCE_MULT_BAND_7"));
    }
}
