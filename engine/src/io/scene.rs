//! Scenes: band files mapped to recipe roles, on one working grid.

use std::path::{Path, PathBuf};

use gdal::spatial_ref::SpatialRef;
use gdal::Dataset;

use crate::error::{EngineError, Result};
use crate::grid::Grid;
use crate::io::{grid_of, reason};
use kernels::mask::MaskRule;

use crate::mtl::Mtl;
use crate::recipe::{Params, Recipe, Resample, Step};

/// One input as the user gave it: `[role=]path[#band]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub role: Option<String>,
    pub path: String,
    /// 1-based band number within the file.
    pub band: Option<usize>,
}

impl InputSpec {
    /// Parses `[role=]path[#band]`.
    pub fn parse(text: &str) -> Result<Self> {
        let (role, rest) = match text.split_once('=') {
            Some((r, p)) if is_role_name(r) => (Some(r.to_ascii_lowercase()), p),
            _ => (None, text),
        };
        let (path, band) = match rest.rsplit_once('#') {
            Some((p, b)) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
                let n: usize = b
                    .parse()
                    .map_err(|_| EngineError::InvalidInput(format!("{text:?}: bad band number")))?;
                if n == 0 {
                    return Err(EngineError::InvalidInput(format!(
                        "{text:?}: band numbers start at 1"
                    )));
                }
                (p, Some(n))
            }
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(EngineError::InvalidInput(format!("{text:?}: empty path")));
        }
        Ok(Self {
            role,
            path: path.to_string(),
            band,
        })
    }
}

fn is_role_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && s.as_bytes()[0].is_ascii_alphabetic()
}

/// The role a band file's name implies, for Landsat (Collection 2 and pre-Collection) and
/// Sentinel-2 product naming.
pub fn infer_role(path: &str) -> Option<&'static str> {
    let name = Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(path)
        .to_ascii_uppercase();
    if name.ends_with("QA_PIXEL") || name.ends_with("BQA") {
        return Some("qa");
    }
    if name == "SCL" || name.ends_with("_SCL") || name.ends_with("SCL_20M") {
        return Some("scl");
    }
    if name.ends_with("_DEM") || name == "DEM" {
        return Some("dem");
    }
    let landsat = name.starts_with("LC0")
        || name.starts_with("LE0")
        || name.starts_with("LT0")
        || name.starts_with("L8_")
        || name.starts_with("L9_")
        || name.contains("_SR_B");
    // The band token: the last `B<digits>` (or `B8A`) after an underscore, or the whole name.
    let token = name.rsplit('_').next().unwrap_or(&name);
    let token = token.strip_prefix('B')?;
    if landsat {
        // Landsat 8/9 OLI numbering.
        match token {
            "2" => Some("blue"),
            "3" => Some("green"),
            "4" => Some("red"),
            "5" => Some("nir"),
            "6" => Some("swir1"),
            "7" => Some("swir2"),
            "8" => Some("pan"),
            _ => None,
        }
    } else {
        // Sentinel-2 MSI numbering.
        match token {
            "02" => Some("blue"),
            "03" => Some("green"),
            "04" => Some("red"),
            "08" => Some("nir"),
            "8A" => Some("nir08"),
            "11" => Some("swir1"),
            "12" => Some("swir2"),
            _ => None,
        }
    }
}

/// How a band's pixels map onto the working grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mapping {
    /// The band is on the working grid itself.
    Identity,
    /// Same CRS, north-up: `src = scale · dst + offset` per axis, in pixel units.
    Affine {
        scale_x: f64,
        offset_x: f64,
        scale_y: f64,
        offset_y: f64,
        resample: Resample,
    },
}

/// One band of a scene, bound to a role.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneBand {
    pub role: String,
    pub path: String,
    /// 1-based band number.
    pub band: usize,
    pub data_type: String,
    pub nodata: Option<f64>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub grid: Grid,
    pub mapping: Mapping,
}

/// A scene: the bands a recipe needs, mapped onto one working grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub grid: Grid,
    pub bands: Vec<SceneBand>,
    /// The first input's file stem, used to name outputs.
    pub id: String,
}

pub(crate) fn open_dataset(path: &str) -> Result<Dataset> {
    if !path.starts_with("/vsi") && !Path::new(path).exists() {
        return Err(EngineError::Open {
            path: path.to_string(),
            reason: "no such file".into(),
        });
    }
    Dataset::open(path).map_err(|e| EngineError::Open {
        path: path.to_string(),
        reason: reason(e),
    })
}

impl Scene {
    /// Opens every input, binds the recipe's roles and checks the grids can be aligned.
    pub fn open(inputs: &[InputSpec], recipe: &Recipe) -> Result<Self> {
        crate::io::init();
        if inputs.is_empty() {
            return Err(EngineError::InvalidInput("no inputs given".into()));
        }
        // Bind a role to every input: explicit, inferred from the name, or — for a single
        // multi-band file — band i to the recipe's i-th role.
        let mut bound: Vec<(String, InputSpec)> = Vec::new();
        for spec in inputs {
            let role = match (&spec.role, infer_role(&spec.path)) {
                (Some(r), _) => r.clone(),
                (None, Some(r)) => r.to_string(),
                (None, None) if inputs.len() == 1 => {
                    bound.extend(bind_bands_of_one_file(spec, recipe)?);
                    continue;
                }
                (None, None) => {
                    return Err(EngineError::InvalidInput(format!(
                        "cannot tell which band {} is; name it as role=path (roles of {}: {})",
                        spec.path,
                        recipe.name,
                        recipe.roles().collect::<Vec<_>>().join(", ")
                    )))
                }
            };
            bound.push((role, spec.clone()));
        }
        let given = bound
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut bands = Vec::new();
        for wanted in &recipe.bands {
            let Some((_, spec)) = bound.iter().find(|(r, _)| *r == wanted.role) else {
                return Err(EngineError::MissingBand {
                    recipe: recipe.name.clone(),
                    role: wanted.role.clone(),
                    given,
                });
            };
            bands.push(open_band(&wanted.role, spec)?);
        }
        let grid = bands[0].grid.clone();
        let working_srs = srs(&grid);
        for b in &mut bands[1..] {
            let resample = recipe
                .bands
                .iter()
                .find(|r| r.role == b.role)
                .map_or(Resample::Nearest, |r| r.resample);
            b.mapping = mapping(&grid, working_srs.as_ref(), b, resample)?;
        }
        let id = scene_id(&bands);
        Ok(Self { grid, bands, id })
    }
}

impl Scene {
    /// Adapts a recipe to this scene's products. For `ndvi-landsat-l1`: the QA rule follows
    /// the QA band (Collection 2 `QA_PIXEL` or pre-Collection `BQA`), and DNs become TOA
    /// reflectance through the MTL (`--param mtl=…`, else `<product>_MTL.txt` beside the red
    /// band, else the index is computed on DNs).
    pub fn resolve(&self, mut recipe: Recipe, params: &Params) -> Result<Recipe> {
        if recipe.name.ends_with("-landsat-c2l2") {
            self.check_landsat_level2(&recipe)?;
        }
        if recipe.name != LANDSAT_L1_RECIPE {
            return Ok(recipe);
        }
        let path_of = |role: &str| {
            self.bands
                .iter()
                .find(|b| b.role == role)
                .map(|b| b.path.as_str())
        };
        if let Some(qa) = path_of("qa") {
            if qa.to_ascii_uppercase().contains("QA_PIXEL") {
                for step in &mut recipe.steps {
                    if let Step::Mask { rule, .. } = step {
                        *rule = MaskRule::landsat_default();
                    }
                }
            }
        }
        let red = path_of("red").unwrap_or_default();
        let mtl_path = match params.get("mtl") {
            Some(p) => Some(PathBuf::from(p)),
            None => sibling_mtl(red),
        };
        let Some(mtl_path) = mtl_path else {
            recipe
                .description
                .push_str(" (no MTL found: computed on DN)");
            return Ok(recipe);
        };
        let text = std::fs::read_to_string(&mtl_path).map_err(|e| EngineError::Open {
            path: mtl_path.display().to_string(),
            reason: e.to_string().to_lowercase(),
        })?;
        let mtl = Mtl::parse(&text);
        let mut scale_steps = Vec::new();
        for role in ["nir", "red"] {
            let path = path_of(role).unwrap_or_default();
            let band = landsat_band_number(path).ok_or_else(|| {
                EngineError::InvalidInput(format!("cannot tell the Landsat band number of {path}"))
            })?;
            scale_steps.push(Step::Scale {
                planes: vec![role.to_string()],
                scaling: mtl.toa_reflectance(band)?,
            });
        }
        recipe.steps.splice(0..0, scale_steps);
        recipe.description = format!(
            "NDVI from Landsat Level-1 TOA reflectance (MTL {}), QA-masked",
            mtl_path.display()
        );
        Ok(recipe)
    }
}

impl Scene {
    /// Refuses band files whose Landsat names say they are not Collection 2 Level-2 surface
    /// reflectance (a Level-1 `…_B4.TIF`, a pre-Collection `BQA`), which the Level-2 scaling and
    /// QA bits would turn into nonsense. Files with other names are taken as given.
    fn check_landsat_level2(&self, recipe: &Recipe) -> Result<()> {
        for b in &self.bands {
            let name = Path::new(&b.path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_ascii_uppercase();
            let landsat_band = b.role != "qa" && infer_role(&b.path).is_some();
            let wrong = (landsat_band && !name.contains("_SR_B"))
                || (b.role == "qa" && name.contains("BQA"));
            if wrong {
                return Err(EngineError::InvalidInput(format!(
                    "{} is not a Collection 2 Level-2 {} band; recipe {} needs _SR_B* and \
                     QA_PIXEL files (ndvi-landsat-l1 takes Level-1 DN)",
                    b.path,
                    if b.role == "qa" {
                        "QA_PIXEL"
                    } else {
                        "surface reflectance"
                    },
                    recipe.name
                )));
            }
        }
        Ok(())
    }
}

const LANDSAT_L1_RECIPE: &str = "ndvi-landsat-l1";

/// The band number in a Landsat band file's name (`…_B4.TIF` → 4).
fn landsat_band_number(path: &str) -> Option<u32> {
    let stem = Path::new(path).file_stem()?.to_str()?;
    stem.rsplit_once("_B")?.1.parse().ok()
}

/// `<product>_MTL.txt` beside a `<product>_B<n>.TIF` band file, when it exists.
fn sibling_mtl(band_path: &str) -> Option<PathBuf> {
    let p = Path::new(band_path);
    let stem = p.file_stem()?.to_str()?;
    let (product, _) = stem.rsplit_once("_B")?;
    let product = product.strip_suffix("_SR").unwrap_or(product);
    let candidate = p.with_file_name(format!("{product}_MTL.txt"));
    candidate.is_file().then_some(candidate)
}

/// Raster file extensions considered when a folder is scanned for scenes.
const RASTER_EXTENSIONS: [&str; 6] = ["tif", "tiff", "jp2", "vrt", "img", "nc"];

/// The scenes in a folder, each as a list of inputs: band files grouped by product (the part
/// of the name before the band token, e.g. `LC08_L2SP_008059_20191201_20200825_02_T1`), and
/// every sub-folder of band files as one scene (Sentinel-2 style `…/B04.tif`). Files whose
/// role cannot be inferred are left out. Sorted by name, for a stable order.
pub fn discover(dir: &Path) -> Result<Vec<(String, Vec<InputSpec>)>> {
    let read_dir = |d: &Path| {
        std::fs::read_dir(d).map_err(|e| EngineError::Open {
            path: d.display().to_string(),
            reason: e.to_string().to_lowercase(),
        })
    };
    let is_raster = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| RASTER_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    };
    let band_files = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = read_dir(d)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_raster(p))
            .filter(|p| p.to_str().and_then(infer_role).is_some())
            .collect();
        v.sort();
        Ok(v)
    };
    let spec = |p: &Path| InputSpec {
        role: None,
        path: p.display().to_string(),
        band: None,
    };
    let mut groups: std::collections::BTreeMap<String, Vec<InputSpec>> = Default::default();
    for file in band_files(dir)? {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        // A DEM is a scene of its own; band files group by product.
        let is_dem = file.to_str().and_then(infer_role) == Some("dem");
        let mut product = if is_dem {
            stem.to_string()
        } else {
            product_of(stem)
        };
        if product.is_empty() {
            // Loose band files (B04.tif, SCL.tif): the folder is the scene.
            product = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string))
                .unwrap_or_else(|| "scene".into());
        }
        groups.entry(product).or_default().push(spec(&file));
    }
    let mut subdirs: Vec<PathBuf> = read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        let files = band_files(&sub)?;
        if !files.is_empty() {
            let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("scene");
            groups
                .entry(name.to_string())
                .or_default()
                .extend(files.iter().map(|f| spec(f)));
        }
    }
    Ok(groups.into_iter().collect())
}

/// The product part of a band file's stem: everything before its band token.
fn product_of(stem: &str) -> String {
    let upper = stem.to_ascii_uppercase();
    for token in ["_SR_B", "_ST_B", "_QA_PIXEL", "_BQA", "_B", "_SCL"] {
        if let Some(i) = upper.rfind(token) {
            if i > 0 {
                return stem[..i].to_string();
            }
        }
    }
    String::new()
}

/// A name for the scene: the common prefix of its band files' names (`LC08_…_T1`), else the
/// folder they sit in, else `scene`.
fn scene_id(bands: &[SceneBand]) -> String {
    let stems: Vec<&str> = bands
        .iter()
        .filter_map(|b| Path::new(&b.path).file_stem().and_then(|s| s.to_str()))
        .collect();
    let first = stems.first().copied().unwrap_or("");
    let mut len = first.len();
    for s in &stems[1..] {
        len = len.min(
            first
                .bytes()
                .zip(s.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let mut id = first[..len].trim_end_matches(['_', '-', '.']);
    // `l8_B4`, `l8_B5`, `l8_BQA` share `l8_B`: drop the dangling band-token start.
    for suffix in ["_SR_B", "_B", "_SR"] {
        if stems.len() > 1 {
            id = id.strip_suffix(suffix).unwrap_or(id);
        }
    }
    let mut id = id.to_string();
    let band_token_only = id
        .strip_prefix('B')
        .is_some_and(|r| r.bytes().all(|c| c.is_ascii_digit()));
    if stems.len() > 1 && (id.len() < 2 || band_token_only) {
        id = Path::new(&bands[0].path)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
    }
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "scene".into()
    } else {
        id
    }
}

/// Binds a recipe's roles to the bands of one file given without roles: a single-role recipe
/// takes a single-band file; otherwise each role needs a band whose description names it
/// (`red`, `nir` …) or whose colour interpretation is that colour. Position alone never binds,
/// so a band is never silently taken for another.
fn bind_bands_of_one_file(spec: &InputSpec, recipe: &Recipe) -> Result<Vec<(String, InputSpec)>> {
    let ds = open_dataset(&spec.path)?;
    let count = ds.raster_count();
    let roles: Vec<&str> = recipe.roles().collect();
    let bind = |role: &str, band: usize| {
        (
            role.to_string(),
            InputSpec {
                role: Some(role.to_string()),
                path: spec.path.clone(),
                band: Some(band),
            },
        )
    };
    if roles.len() == 1 && (count == 1 || spec.band.is_some()) {
        return Ok(vec![bind(roles[0], spec.band.unwrap_or(1))]);
    }
    let mut names = Vec::with_capacity(count);
    for i in 1..=count {
        let rb = ds.rasterband(i).map_err(|e| EngineError::Open {
            path: spec.path.clone(),
            reason: reason(e),
        })?;
        let description = gdal::Metadata::description(&rb)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let colour = match rb.color_interpretation() {
            gdal::raster::ColorInterpretation::RedBand => "red",
            gdal::raster::ColorInterpretation::GreenBand => "green",
            gdal::raster::ColorInterpretation::BlueBand => "blue",
            _ => "",
        };
        names.push((description, colour));
    }
    roles
        .iter()
        .map(|role| {
            names
                .iter()
                .position(|(d, c)| d == role || *c == *role)
                .map(|i| bind(role, i + 1))
                .ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "cannot tell which band of {} is {role}; name it as {role}={}#N",
                        spec.path, spec.path
                    ))
                })
        })
        .collect()
}

fn srs(grid: &Grid) -> Option<SpatialRef> {
    if grid.crs_wkt.is_empty() {
        None
    } else {
        SpatialRef::from_wkt(&grid.crs_wkt).ok()
    }
}

fn open_band(role: &str, spec: &InputSpec) -> Result<SceneBand> {
    let ds = open_dataset(&spec.path)?;
    let count = ds.raster_count();
    let band_no = spec.band.unwrap_or(1);
    if band_no > count {
        return Err(EngineError::NoSuchBand {
            path: spec.path.clone(),
            band: band_no,
            count,
        });
    }
    let rb = ds.rasterband(band_no).map_err(|e| EngineError::Open {
        path: spec.path.clone(),
        reason: reason(e),
    })?;
    let data_type = rb.band_type().name();
    let supported = [
        "Byte", "UInt16", "Int16", "UInt32", "Int32", "Float32", "Float64", "Int8",
    ];
    if !supported.contains(&data_type.as_str()) {
        return Err(EngineError::Open {
            path: spec.path.clone(),
            reason: format!("band {band_no} has unsupported data type {data_type}"),
        });
    }
    Ok(SceneBand {
        role: role.to_string(),
        path: spec.path.clone(),
        band: band_no,
        nodata: rb.no_data_value(),
        scale: rb.scale(),
        offset: rb.offset(),
        data_type,
        grid: grid_of(&ds),
        mapping: Mapping::Identity,
    })
}

fn mapping(
    working: &Grid,
    working_srs: Option<&SpatialRef>,
    band: &SceneBand,
    resample: Resample,
) -> Result<Mapping> {
    let g = &band.grid;
    let same_crs = match (working_srs, srs(g)) {
        (Some(a), Some(b)) => *a == b,
        (None, None) => true,
        _ => false,
    };
    if !same_crs {
        return Err(EngineError::Grid(format!(
            "{} is in another CRS (EPSG:{}) than the working grid (EPSG:{}); reproject it first",
            band.path,
            g.epsg.map_or("?".into(), |c| c.to_string()),
            working.epsg.map_or("?".into(), |c| c.to_string()),
        )));
    }
    if g.geotransform == working.geotransform
        && g.width_px == working.width_px
        && g.height_px == working.height_px
    {
        return Ok(Mapping::Identity);
    }
    if !(g.is_north_up() && working.is_north_up()) {
        return Err(EngineError::Grid(format!(
            "{} has a rotated geotransform and is not on the working grid",
            band.path
        )));
    }
    // Working pixel (col) → georeferenced x → band pixel.
    let (wg, bg) = (&working.geotransform, &g.geotransform);
    let scale_x = wg[1] / bg[1];
    let offset_x = (wg[0] - bg[0]) / bg[1];
    let scale_y = wg[5] / bg[5];
    let offset_y = (wg[3] - bg[3]) / bg[5];
    // The band must overlap the working grid.
    let x0 = offset_x;
    let x1 = offset_x + scale_x * working.width_px as f64;
    let y0 = offset_y;
    let y1 = offset_y + scale_y * working.height_px as f64;
    let overlaps = x1.max(x0) > 0.0
        && x0.min(x1) < g.width_px as f64
        && y1.max(y0) > 0.0
        && y0.min(y1) < g.height_px as f64;
    if !(overlaps && scale_x > 0.0 && scale_y > 0.0) {
        return Err(EngineError::Grid(format!(
            "{} does not overlap the working grid of {}",
            band.path, working.width_px
        )));
    }
    Ok(Mapping::Affine {
        scale_x,
        offset_x,
        scale_y,
        offset_y,
        resample,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_product_names() {
        let cases = [
            (
                "LC08_L2SP_008059_20191201_20200825_02_T1_SR_B4.TIF",
                Some("red"),
            ),
            (
                "LC08_L2SP_008059_20191201_20200825_02_T1_SR_B5.TIF",
                Some("nir"),
            ),
            (
                "LC08_L2SP_008059_20191201_20200825_02_T1_QA_PIXEL.TIF",
                Some("qa"),
            ),
            ("/data/l8_B4.tif", Some("red")),
            ("l8_B8.tif", Some("pan")),
            ("l8_BQA.tif", Some("qa")),
            ("B04.tif", Some("red")),
            ("B08.tif", Some("nir")),
            ("SCL.tif", Some("scl")),
            ("T29RKH_20200219T112221_B11_20m.jp2", None),
            ("Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif", Some("dem")),
            ("RGB.byte.tif", None),
        ];
        for (name, role) in cases {
            assert_eq!(infer_role(name), role, "{name}");
        }
    }

    #[test]
    fn input_specs() {
        let s = InputSpec::parse("red=/x/L7_ETMs.tif#3").expect("valid");
        assert_eq!(
            (s.role.as_deref(), s.path.as_str(), s.band),
            (Some("red"), "/x/L7_ETMs.tif", Some(3))
        );
        let s = InputSpec::parse("/vsicurl/https://example.com/a=b.tif").expect("valid");
        assert_eq!((s.role, s.band), (None, None));
        assert!(InputSpec::parse("red=x.tif#0").is_err());
        assert!(InputSpec::parse("red=").is_err());
    }
}
