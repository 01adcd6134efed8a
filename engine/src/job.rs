//! A queued job's request: what `submit` and the HTTP API store and a worker reads back —
//! recipe or expression, inputs, parameters and output options — with the checks `run` makes
//! and the tile plan with each tile's footprint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::aoi::Aoi;
use crate::backend::Backend;
use crate::error::{EngineError, Result};
use crate::grid::Window;
use crate::io::cog::Compression;
use crate::io::footprint::Footprinter;
use crate::io::scene::{InputSpec, Scene};
use crate::pipeline::Prepared;
use crate::recipe::{self, Params};
use crate::run::RunOptions;
use crate::tiling::TilePlan;

/// Tile sizes a job may ask for, in pixels.
pub const TILE_PX_RANGE: std::ops::RangeInclusive<usize> = 16..=16_384;

/// Points per footprint edge: enough for a curved outline in EPSG:4326 at tile scale. The
/// planner and the assembler test a tile against an area of interest with the same outline.
pub const FOOTPRINT_POINTS_PER_EDGE: usize = 5;

/// Everything a worker needs to run one tile of a job, as stored with the job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// A named recipe, or
    pub recipe: Option<String>,
    /// an inline expression over the inputs' roles.
    pub expr: Option<String>,
    /// Recipe parameters.
    pub params: Params,
    /// Output folder (workers must see it at the same path).
    pub out_dir: PathBuf,
    /// Tile size.
    pub tile_px: usize,
    /// Nodata value written to the output.
    pub nodata: f64,
    /// `deflate` or `zstd`.
    pub compression: String,
    /// The inputs, paths absolute where they name local files.
    pub inputs: Vec<InputSpec>,
    /// Only tiles meeting this area are computed; the rest of the output is nodata.
    pub aoi: Option<Aoi>,
}

/// One planned tile: its index, window and footprint ring in EPSG:4326 `(lon, lat)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTile {
    pub index: usize,
    pub window: Window,
    pub footprint_deg: Vec<(f64, f64)>,
}

/// A validated job: the opened scene, the prepared recipe and its tiles.
#[derive(Debug)]
pub struct Plan {
    pub scene: Scene,
    pub prepared: Prepared,
    pub tiles: Vec<PlannedTile>,
}

impl JobRequest {
    /// The request's scalar checks, made before any file is opened.
    pub fn check(&self) -> Result<()> {
        match (&self.recipe, &self.expr) {
            (Some(_), Some(_)) => {
                return Err(EngineError::InvalidInput(
                    "give a recipe or an expression, not both".into(),
                ))
            }
            (None, None) => {
                return Err(EngineError::InvalidInput(
                    "give a recipe or an expression".into(),
                ))
            }
            _ => {}
        }
        if !TILE_PX_RANGE.contains(&self.tile_px) {
            return Err(EngineError::InvalidInput(format!(
                "tile size must be between {} and {} px, got {}",
                TILE_PX_RANGE.start(),
                TILE_PX_RANGE.end(),
                self.tile_px
            )));
        }
        if !self.nodata.is_finite() {
            return Err(EngineError::InvalidInput("nodata must be finite".into()));
        }
        if self.inputs.is_empty() {
            return Err(EngineError::InvalidInput("give at least one input".into()));
        }
        Compression::parse(&self.compression)?;
        Ok(())
    }

    /// The recipe, the opened scene and the prepared recipe: the checks `run` makes.
    pub fn open(&self) -> Result<(Scene, Prepared)> {
        let recipe = match (&self.recipe, &self.expr) {
            (Some(name), _) => recipe::by_name(name, &self.params)?,
            (None, Some(text)) => {
                recipe::expression_recipe(text, &expression_roles(&self.inputs)?)?
            }
            (None, None) => {
                return Err(EngineError::InvalidInput(
                    "give a recipe or an expression".into(),
                ))
            }
        };
        let scene = Scene::open(&self.inputs, &recipe)?;
        let prepared = Prepared::new(scene.resolve(recipe, &self.params)?)?;
        Ok((scene, prepared))
    }

    /// Checks the request, opens every input, checks the output folder is writable and
    /// plans the tiles with their footprints.
    pub fn plan(&self) -> Result<Plan> {
        self.check()?;
        let (scene, prepared) = self.open()?;
        crate::run::check_out_dir(&self.out_dir)?;
        let footprinter = Footprinter::new(&scene.grid)?;
        let plan = TilePlan::new(scene.grid.width_px, scene.grid.height_px, self.tile_px);
        let mut tiles = Vec::with_capacity(plan.len());
        for t in plan.tiles() {
            let footprint_deg = footprinter.outline(t.window, FOOTPRINT_POINTS_PER_EDGE)?;
            if self.aoi.as_ref().is_none_or(|a| a.meets(&footprint_deg)) {
                tiles.push(PlannedTile {
                    index: t.index,
                    window: t.window,
                    footprint_deg,
                });
            }
        }
        if tiles.is_empty() {
            return Err(EngineError::InvalidInput(
                "the area of interest does not overlap the scene".into(),
            ));
        }
        Ok(Plan {
            scene,
            prepared,
            tiles,
        })
    }

    /// Options for assembling the outputs.
    pub fn run_options(&self, backend: Arc<Backend>) -> Result<RunOptions> {
        Ok(RunOptions {
            out_dir: self.out_dir.clone(),
            tile_px: self.tile_px,
            workers: 1,
            nodata: self.nodata,
            compression: Compression::parse(&self.compression)?,
            backend,
        })
    }

    /// The stored form of everything but the inputs.
    pub fn params_json(&self) -> Value {
        json!({
            "recipe": self.recipe,
            "expr": self.expr,
            "params": self.params,
            "out_dir": self.out_dir,
            "tile_px": self.tile_px,
            "nodata": self.nodata,
            "compression": self.compression,
            "aoi": self.aoi.as_ref().map(|a| {
                a.ring_deg().iter().map(|&(x, y)| [x, y]).collect::<Vec<_>>()
            }),
        })
    }

    /// The stored form of the inputs.
    pub fn inputs_json(&self) -> Value {
        self.inputs
            .iter()
            .map(|i| json!({ "role": i.role, "path": i.path, "band": i.band }))
            .collect()
    }

    /// Reads a request back from its stored form.
    pub fn from_json(params: &Value, inputs: &Value) -> Result<Self> {
        let bad = |what: &str| EngineError::InvalidInput(format!("stored job: {what}"));
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let params_map: Params = match params.get("params").and_then(Value::as_object) {
            Some(m) => m
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().ok_or_else(|| bad("parameter not a string"))?;
                    Ok((k.clone(), v.to_owned()))
                })
                .collect::<Result<_>>()?,
            None => Params::new(),
        };
        let inputs = inputs
            .as_array()
            .ok_or_else(|| bad("inputs are not a list"))?
            .iter()
            .map(|i| {
                Ok(InputSpec {
                    role: str_of(i, "role"),
                    path: str_of(i, "path").ok_or_else(|| bad("input without a path"))?,
                    band: i
                        .get("band")
                        .and_then(Value::as_u64)
                        .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            recipe: str_of(params, "recipe"),
            expr: str_of(params, "expr"),
            params: params_map,
            out_dir: PathBuf::from(str_of(params, "out_dir").ok_or_else(|| bad("no out_dir"))?),
            tile_px: params
                .get("tile_px")
                .and_then(Value::as_u64)
                .and_then(|t| usize::try_from(t).ok())
                .ok_or_else(|| bad("no tile_px"))?,
            nodata: params
                .get("nodata")
                .and_then(Value::as_f64)
                .unwrap_or(-9999.0),
            compression: str_of(params, "compression").unwrap_or_else(|| "deflate".into()),
            inputs,
            aoi: match params.get("aoi").and_then(Value::as_array) {
                Some(ring) => Some(Aoi::new(
                    &ring
                        .iter()
                        .map(|p| {
                            let c = |i: usize| p.get(i).and_then(Value::as_f64);
                            c(0).zip(c(1))
                                .ok_or_else(|| bad("aoi vertex not [lon, lat]"))
                        })
                        .collect::<Result<Vec<_>>>()?,
                )?),
                None => None,
            },
        })
    }
}

/// An input path made absolute when it names a local file, so workers elsewhere in the
/// file system (same mounts) find it.
pub fn absolute(mut spec: InputSpec) -> InputSpec {
    let path = Path::new(&spec.path);
    if path.is_relative() && path.exists() {
        if let Ok(abs) = std::path::absolute(path) {
            spec.path = abs.display().to_string();
        }
    }
    spec
}

/// The roles an expression may name: each input's role (given or inferred from its file
/// name), or `b1…bN` for a single multi-band file given without a role.
pub fn expression_roles(inputs: &[InputSpec]) -> Result<Vec<String>> {
    if inputs.len() == 1 && inputs[0].role.is_none() && inputs[0].band.is_none() {
        if let Some(role) = crate::io::scene::infer_role(&inputs[0].path) {
            return Ok(vec![role.to_string()]);
        }
        let ds = crate::io::scene::open_dataset(&inputs[0].path)?;
        return Ok((1..=ds.raster_count()).map(|i| format!("b{i}")).collect());
    }
    inputs
        .iter()
        .map(|s| {
            s.role
                .clone()
                .or_else(|| crate::io::scene::infer_role(&s.path).map(str::to_string))
                .ok_or_else(|| {
                    EngineError::InvalidInput(format!("name the band of {} as role=path", s.path))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JobRequest {
        JobRequest {
            recipe: Some("ndvi-sentinel2-l2a".into()),
            expr: None,
            params: Params::from([("boa_add_offset".to_string(), "0".to_string())]),
            out_dir: PathBuf::from("/tmp/out"),
            tile_px: 256,
            nodata: -1.0,
            compression: "zstd".into(),
            inputs: vec![InputSpec {
                role: Some("red".into()),
                path: "/data/b04.tif".into(),
                band: Some(1),
            }],
            aoi: Some(Aoi::new(&[(10.0, 40.0), (11.0, 40.0), (11.0, 41.0)]).unwrap()),
        }
    }

    #[test]
    fn the_stored_form_reads_back_unchanged() {
        let r = request();
        let back = JobRequest::from_json(&r.params_json(), &r.inputs_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn scalar_checks_name_the_field() {
        let mut r = request();
        r.tile_px = 8;
        assert!(r.check().unwrap_err().to_string().contains("tile size"));
        let mut r = request();
        r.expr = Some("nir".into());
        assert!(r.check().unwrap_err().to_string().contains("not both"));
        let mut r = request();
        r.compression = "lzw".into();
        assert!(r.check().unwrap_err().to_string().contains("compression"));
        let mut r = request();
        r.inputs.clear();
        assert!(r
            .check()
            .unwrap_err()
            .to_string()
            .contains("at least one input"));
        assert!(request().check().is_ok());
    }
}
