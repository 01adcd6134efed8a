//! Recipes: named pipelines of kernels over band roles (`red`, `nir`, `qa` …), plus inline
//! expressions. A recipe is data; [`crate::pipeline`] executes it on a tile.

use std::collections::BTreeMap;

use kernels::convolve::ConvolveKind;
use kernels::index::NormalizedDifference;
use kernels::mask::MaskRule;
use kernels::scale::Scaling;

use crate::error::{EngineError, Result};

/// How a band is resampled when it lies on another grid than the working grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// Exact codes (quality bands, classes).
    Nearest,
    /// Continuous values (reflectance), GDAL's cubic convolution.
    Cubic,
}

/// A band the recipe reads, by role.
#[derive(Debug, Clone, PartialEq)]
pub struct BandRole {
    pub role: String,
    pub resample: Resample,
}

/// One step of a recipe. Planes are named; inputs start out named by their roles.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `DN · scale + offset` on each plane, in place.
    Scale {
        planes: Vec<String>,
        scaling: Scaling,
    },
    /// Nodata wherever the quality plane is masked, on each plane, in place.
    Mask {
        planes: Vec<String>,
        qa: String,
        rule: MaskRule,
    },
    /// `(a − b) / (a + b)`.
    NormalizedDifference { a: String, b: String, out: String },
    /// Enhanced vegetation index on reflectance.
    Evi {
        nir: String,
        red: String,
        blue: String,
        out: String,
    },
    /// Soil-adjusted vegetation index.
    Savi {
        nir: String,
        red: String,
        l: f32,
        out: String,
    },
    /// A band-math expression over named planes.
    Expr { text: String, out: String },
    /// A 3×3 or 5×5 convolution (a stencil: consumes halo).
    Convolve {
        input: String,
        kind: ConvolveKind,
        out: String,
    },
    /// Horn hillshade in gdaldem's 1–255 scale (a stencil).
    Hillshade {
        dem: String,
        azimuth_deg: f64,
        altitude_deg: f64,
        z_factor: f64,
        out: String,
    },
    /// Horn slope in degrees (a stencil).
    Slope {
        dem: String,
        z_factor: f64,
        out: String,
    },
    /// Horn aspect in degrees clockwise from north; flat is nodata (a stencil).
    Aspect {
        dem: String,
        z_factor: f64,
        out: String,
    },
    /// Weighted Brovey pansharpening; `ms` are already on the pan (working) grid.
    Pansharpen {
        pan: String,
        ms: Vec<String>,
        weights: Vec<f32>,
        outs: Vec<String>,
    },
}

impl Step {
    /// Pixels of halo this step consumes from its input.
    pub fn halo_px(&self) -> usize {
        match self {
            Self::Convolve { kind, .. } => kind.halo_px(),
            Self::Hillshade { .. } | Self::Slope { .. } | Self::Aspect { .. } => 1,
            _ => 0,
        }
    }
}

/// An output band: a plane name, a description, and the range of its histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputBand {
    pub plane: String,
    pub description: String,
    pub histogram_range: Option<(f64, f64)>,
}

/// A named pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    /// Bands read from the inputs; the first defines the working grid.
    pub bands: Vec<BandRole>,
    pub steps: Vec<Step>,
    pub outputs: Vec<OutputBand>,
}

impl Recipe {
    /// The halo a tile must be read with: the stencils' halos added up along the chain.
    pub fn halo_px(&self) -> usize {
        self.steps.iter().map(Step::halo_px).sum()
    }

    /// The band roles, in order.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.bands.iter().map(|b| b.role.as_str())
    }
}

/// Parameters a user may pass to a recipe (`--param key=value`).
pub type Params = BTreeMap<String, String>;

fn param_f64(params: &Params, key: &str, default: f64) -> Result<f64> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| {
                EngineError::InvalidInput(format!("parameter {key}={v:?}: not a number"))
            }),
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

fn band(role: &str, resample: Resample) -> BandRole {
    BandRole {
        role: s(role),
        resample,
    }
}

/// The sensors that index recipes come for: how DNs become reflectance and how clouds show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sensor {
    LandsatC2L2,
    Sentinel2L2A,
}

impl Sensor {
    fn suffix(self) -> &'static str {
        match self {
            Self::LandsatC2L2 => "landsat-c2l2",
            Self::Sentinel2L2A => "sentinel2-l2a",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::LandsatC2L2 => {
                "Landsat Collection 2 Level-2 surface reflectance, QA_PIXEL-masked"
            }
            Self::Sentinel2L2A => "Sentinel-2 L2A, SCL-masked",
        }
    }

    fn qa_role(self) -> &'static str {
        match self {
            Self::LandsatC2L2 => "qa",
            Self::Sentinel2L2A => "scl",
        }
    }

    fn scaling(self, params: &Params) -> Result<Scaling> {
        match self {
            Self::LandsatC2L2 => Ok(Scaling::LANDSAT_C2_L2_SR),
            Self::Sentinel2L2A => {
                // Processing baseline 04.00 (2022-01-25) added BOA_ADD_OFFSET = -1000;
                // older products have none: pass boa_add_offset=0 for those.
                let add_dn = param_f64(params, "boa_add_offset", -1000.0)?;
                Ok(Scaling {
                    scale: 1.0e-4,
                    offset: (add_dn * 1.0e-4) as f32,
                })
            }
        }
    }

    fn mask_rule(self) -> MaskRule {
        match self {
            Self::LandsatC2L2 => MaskRule::landsat_default(),
            Self::Sentinel2L2A => MaskRule::scl_default(),
        }
    }
}

/// The spectral indices that exist as recipes for every sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexKind {
    Nd(NormalizedDifference),
    Evi,
    Savi,
}

impl IndexKind {
    const ALL: [Self; 7] = [
        Self::Nd(NormalizedDifference::Ndvi),
        Self::Nd(NormalizedDifference::Ndwi),
        Self::Nd(NormalizedDifference::Nbr),
        Self::Nd(NormalizedDifference::Ndbi),
        Self::Nd(NormalizedDifference::Mndwi),
        Self::Evi,
        Self::Savi,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Nd(p) => p.name(),
            Self::Evi => "evi",
            Self::Savi => "savi",
        }
    }

    fn roles(self) -> Vec<&'static str> {
        match self {
            Self::Nd(p) => {
                let (a, b) = p.roles();
                vec![a, b]
            }
            Self::Evi => vec!["nir", "red", "blue"],
            Self::Savi => vec!["nir", "red"],
        }
    }

    fn step(self, params: &Params) -> Result<Step> {
        let out = s(self.name());
        Ok(match self {
            Self::Nd(p) => {
                let (a, b) = p.roles();
                Step::NormalizedDifference {
                    a: s(a),
                    b: s(b),
                    out,
                }
            }
            Self::Evi => Step::Evi {
                nir: s("nir"),
                red: s("red"),
                blue: s("blue"),
                out,
            },
            Self::Savi => Step::Savi {
                nir: s("nir"),
                red: s("red"),
                l: param_f64(params, "l", 0.5)? as f32,
                out,
            },
        })
    }
}

fn index_recipe(index: IndexKind, sensor: Sensor, params: &Params) -> Result<Recipe> {
    let roles = index.roles();
    let planes: Vec<String> = roles.iter().map(|r| s(r)).collect();
    let mut bands: Vec<BandRole> = roles.iter().map(|r| band(r, Resample::Cubic)).collect();
    bands.push(band(sensor.qa_role(), Resample::Nearest));
    Ok(Recipe {
        name: format!("{}-{}", index.name(), sensor.suffix()),
        description: format!("{} from {}", index.name().to_uppercase(), sensor.title()),
        bands,
        steps: vec![
            Step::Scale {
                planes: planes.clone(),
                scaling: sensor.scaling(params)?,
            },
            Step::Mask {
                planes,
                qa: s(sensor.qa_role()),
                rule: sensor.mask_rule(),
            },
            index.step(params)?,
        ],
        outputs: vec![OutputBand {
            plane: s(index.name()),
            description: index.name().to_uppercase(),
            histogram_range: Some((-1.0, 1.0)),
        }],
    })
}

fn dem_recipe(name: &str, params: &Params) -> Result<Recipe> {
    let z_factor = param_f64(params, "z_factor", 1.0)?;
    let (description, step, range) = match name {
        "hillshade" => (
            "Horn hillshade of a DEM (gdaldem's 1–255 scale; azimuth, altitude, z_factor)",
            Step::Hillshade {
                dem: s("dem"),
                azimuth_deg: param_f64(params, "azimuth", 315.0)?,
                altitude_deg: param_f64(params, "altitude", 45.0)?,
                z_factor,
                out: s(name),
            },
            (0.0, 256.0),
        ),
        "slope" => (
            "Horn slope of a DEM, degrees",
            Step::Slope {
                dem: s("dem"),
                z_factor,
                out: s(name),
            },
            (0.0, 90.0),
        ),
        _ => (
            "Horn aspect of a DEM, degrees clockwise from north; flat areas are nodata",
            Step::Aspect {
                dem: s("dem"),
                z_factor,
                out: s(name),
            },
            (0.0, 360.0),
        ),
    };
    Ok(Recipe {
        name: s(name),
        description: s(description),
        bands: vec![band("dem", Resample::Cubic)],
        steps: vec![step],
        outputs: vec![OutputBand {
            plane: s(name),
            description: s(name),
            histogram_range: Some(range),
        }],
    })
}

fn convolve_recipe(name: &str, kind: ConvolveKind) -> Recipe {
    Recipe {
        name: s(name),
        description: format!("{kind:?} convolution of one band (halo-correct)"),
        bands: vec![band("band", Resample::Cubic)],
        steps: vec![Step::Convolve {
            input: s("band"),
            kind,
            out: s(name),
        }],
        outputs: vec![OutputBand {
            plane: s(name),
            description: s(name),
            histogram_range: None,
        }],
    }
}

fn ndvi_landsat_l1() -> Recipe {
    Recipe {
        name: s("ndvi-landsat-l1"),
        description: s(
            "NDVI from Landsat Level-1 DN (TOA reflectance from the MTL when given), QA-masked",
        ),
        bands: vec![
            band("nir", Resample::Cubic),
            band("red", Resample::Cubic),
            band("qa", Resample::Nearest),
        ],
        steps: vec![
            Step::Mask {
                planes: vec![s("nir"), s("red")],
                qa: s("qa"),
                // Replaced by the C2 QA_PIXEL rule when the QA band is a C2 one (see `resolve`).
                rule: MaskRule::LandsatBqaLegacy,
            },
            Step::NormalizedDifference {
                a: s("nir"),
                b: s("red"),
                out: s("ndvi"),
            },
        ],
        outputs: vec![OutputBand {
            plane: s("ndvi"),
            description: s("NDVI"),
            histogram_range: Some((-1.0, 1.0)),
        }],
    }
}

fn pansharpen_recipe() -> Recipe {
    let ms = vec![s("red"), s("green"), s("blue")];
    Recipe {
        name: s("pansharpen"),
        description: s("Weighted Brovey pansharpening of red, green, blue onto the pan grid"),
        bands: vec![
            band("pan", Resample::Cubic),
            band("red", Resample::Cubic),
            band("green", Resample::Cubic),
            band("blue", Resample::Cubic),
        ],
        steps: vec![Step::Pansharpen {
            pan: s("pan"),
            ms: ms.clone(),
            weights: vec![1.0 / 3.0; 3],
            outs: ms.iter().map(|b| format!("{b}_sharp")).collect(),
        }],
        outputs: ms
            .iter()
            .map(|b| OutputBand {
                plane: format!("{b}_sharp"),
                description: format!("pansharpened {b}"),
                histogram_range: None,
            })
            .collect(),
    }
}

/// A recipe from an inline expression over the given band roles.
pub fn expression_recipe(text: &str, roles: &[String]) -> Result<Recipe> {
    let names: Vec<&str> = roles.iter().map(String::as_str).collect();
    // Validate now, so a bad expression fails before anything is read or written.
    let parsed = kernels::expr::Expr::parse(text).map_err(kernels::KernelError::from)?;
    kernels::expr::bind(&parsed, &names).map_err(kernels::KernelError::from)?;
    Ok(Recipe {
        name: s("expr"),
        description: format!("expression {text}"),
        bands: roles.iter().map(|r| band(r, Resample::Cubic)).collect(),
        steps: vec![Step::Expr {
            text: s(text),
            out: s("expr"),
        }],
        outputs: vec![OutputBand {
            plane: s("expr"),
            description: s(text),
            histogram_range: None,
        }],
    })
}

/// Every named recipe, built with `params`.
pub fn catalog(params: &Params) -> Result<Vec<Recipe>> {
    let mut all = Vec::new();
    for sensor in [Sensor::LandsatC2L2, Sensor::Sentinel2L2A] {
        for index in IndexKind::ALL {
            all.push(index_recipe(index, sensor, params)?);
        }
    }
    all.push(ndvi_landsat_l1());
    for name in ["hillshade", "slope", "aspect"] {
        all.push(dem_recipe(name, params)?);
    }
    all.push(convolve_recipe("smooth", ConvolveKind::Gaussian5));
    all.push(convolve_recipe("edges", ConvolveKind::SobelMagnitude));
    all.push(pansharpen_recipe());
    Ok(all)
}

/// The named recipe, or an error listing the known ones.
pub fn by_name(name: &str, params: &Params) -> Result<Recipe> {
    let all = catalog(params)?;
    let known = all
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.iter()
        .find(|r| r.name == name)
        .cloned()
        .ok_or_else(|| EngineError::UnknownRecipe {
            name: s(name),
            known,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique_and_found() {
        let params = Params::new();
        let all = catalog(&params).expect("default params");
        let mut names: Vec<_> = all.iter().map(|r| r.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for must in [
            "ndvi-landsat-c2l2",
            "ndvi-landsat-l1",
            "ndvi-sentinel2-l2a",
            "ndwi-sentinel2-l2a",
            "evi-landsat-c2l2",
            "hillshade",
            "slope",
            "pansharpen",
        ] {
            assert!(by_name(must, &params).is_ok(), "{must}");
        }
        let err = by_name("nvdi", &params).expect_err("typo");
        assert!(err.to_string().contains("unknown recipe \"nvdi\""));
    }

    #[test]
    fn bad_param_is_an_error() {
        let mut params = Params::new();
        params.insert(s("l"), s("abc"));
        assert!(by_name("savi-landsat-c2l2", &params).is_err());
    }
}
