//! Submission: a create request checked field by field, turned into the engine's job request,
//! planned (every input opened, tiles and footprints computed) and shaped for the queue.

use std::path::{Path, PathBuf};

use engine::io::scene::InputSpec;
use engine::job::{JobRequest, Plan};
use scheduler::{JobSpec, TileSpec, Window, DEFAULT_ACCOUNT_ID};
use serde_json::Value;

use crate::dto::CreateJob;
use crate::problem::Problem;

/// Most runs a task may be given.
pub const MAX_ATTEMPTS_LIMIT: i32 = 100;

/// The queue's shape of a planned job.
pub fn job_spec(
    request: &JobRequest,
    plan: &Plan,
    priority: i32,
    max_attempts: i32,
    trace_context: Option<Value>,
) -> Result<JobSpec, engine::EngineError> {
    let too_large =
        || engine::EngineError::InvalidInput("the scene is too large to queue".to_string());
    let int = |v: i64| i32::try_from(v).map_err(|_| too_large());
    let tiles = plan
        .tiles
        .iter()
        .map(|t| {
            let w = t.window;
            Ok(TileSpec {
                index: int(t.index as i64)?,
                window: Window {
                    x_px: int(w.x_px)?,
                    y_px: int(w.y_px)?,
                    width_px: int(w.width_px as i64)?,
                    height_px: int(w.height_px as i64)?,
                },
                footprint_deg: t.footprint_deg.clone(),
            })
        })
        .collect::<Result<Vec<_>, engine::EngineError>>()?;
    Ok(JobSpec {
        account: DEFAULT_ACCOUNT_ID,
        recipe: plan.prepared.recipe.name.clone(),
        params: request.params_json(),
        inputs: request.inputs_json(),
        priority,
        tiles,
        max_attempts,
        trace_context,
    })
}

/// Where inputs may be read from and outputs go.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Each job's outputs go in `<data_dir>/outputs/<folder id>`.
    pub data_dir: PathBuf,
    /// Inputs must lie under one of these (empty: anywhere the server can read).
    pub input_roots: Vec<PathBuf>,
}

/// Checks a create request's fields (the scalar checks, before any file is opened) and turns
/// it into the engine's request with its output folder.
pub fn request_of(body: &CreateJob, paths: &Paths) -> Result<JobRequest, Problem> {
    match (&body.recipe, &body.expr) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid("expr", "give recipe or expr, not both"))
        }
        (None, None) => return Err(Problem::invalid("recipe", "give recipe or expr")),
        (Some(r), None) if r.trim().is_empty() => {
            return Err(Problem::invalid("recipe", "must not be empty"))
        }
        (None, Some(e)) if e.trim().is_empty() => {
            return Err(Problem::invalid("expr", "must not be empty"))
        }
        _ => {}
    }
    if body.inputs.is_empty() {
        return Err(Problem::invalid("inputs", "give at least one input"));
    }
    if !engine::job::TILE_PX_RANGE.contains(&body.tile_px) {
        return Err(Problem::invalid(
            "tile_px",
            format!(
                "must be between {} and {}",
                engine::job::TILE_PX_RANGE.start(),
                engine::job::TILE_PX_RANGE.end()
            ),
        ));
    }
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&body.max_attempts) {
        return Err(Problem::invalid(
            "max_attempts",
            format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    if !body.nodata.is_finite() {
        return Err(Problem::invalid("nodata", "must be finite"));
    }
    let compression = body.compression.to_ascii_lowercase();
    if engine::io::cog::Compression::parse(&compression).is_err() {
        return Err(Problem::invalid("compression", "expected deflate or zstd"));
    }
    let mut inputs = Vec::with_capacity(body.inputs.len());
    for (i, input) in body.inputs.iter().enumerate() {
        let field = format!("inputs.{i}.path");
        if input.path.trim().is_empty() {
            return Err(Problem::invalid(&field, "must not be empty"));
        }
        if input.band == Some(0) {
            return Err(Problem::invalid(
                &format!("inputs.{i}.band"),
                "bands are numbered from 1",
            ));
        }
        let path = Path::new(&input.path);
        if !input.path.starts_with("/vsi") {
            if !path.is_absolute() {
                return Err(Problem::invalid(&field, "must be an absolute path"));
            }
            if !allowed(path, &paths.input_roots) {
                return Err(Problem::invalid(
                    &field,
                    "is outside the folders this server reads inputs from",
                ));
            }
        }
        inputs.push(InputSpec {
            role: input.role.clone().filter(|r| !r.is_empty()),
            path: input.path.clone(),
            band: input.band,
        });
    }
    let aoi = match &body.aoi {
        None => None,
        Some(p) => {
            if p.kind != "Polygon" {
                return Err(Problem::invalid("aoi.type", "must be Polygon"));
            }
            let [ring] = &p.coordinates[..] else {
                return Err(Problem::invalid(
                    "aoi.coordinates",
                    "give exactly one ring (holes are not supported)",
                ));
            };
            let ring: Vec<(f64, f64)> = ring
                .iter()
                .map(|p| match p[..] {
                    [x, y] => Ok((x, y)),
                    _ => Err(Problem::invalid(
                        "aoi.coordinates",
                        "each position is [longitude, latitude]",
                    )),
                })
                .collect::<Result<_, _>>()?;
            Some(
                engine::aoi::Aoi::new(&ring)
                    .map_err(|e| Problem::invalid("aoi.coordinates", e.to_string()))?,
            )
        }
    };
    let out_dir = paths
        .data_dir
        .join("outputs")
        .join(uuid::Uuid::new_v4().to_string());
    Ok(JobRequest {
        recipe: body.recipe.clone(),
        expr: body.expr.clone(),
        params: body.params.clone(),
        out_dir,
        tile_px: body.tile_px,
        nodata: body.nodata,
        compression,
        inputs,
        aoi,
    })
}

/// Whether `path` (made canonical, so `..` and links cannot leave a root) lies under a root.
fn allowed(path: &Path, roots: &[PathBuf]) -> bool {
    if roots.is_empty() {
        return true;
    }
    let Ok(real) = path.canonicalize() else {
        // A missing file is reported by the planner with its own message; a path that
        // names a root lexically, without `..`, is let through to it.
        let climbs = path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        return !climbs && roots.iter().any(|r| path.starts_with(r));
    };
    roots.iter().any(|r| {
        r.canonicalize()
            .map(|r| real.starts_with(r))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::InputDto;

    fn body() -> CreateJob {
        serde_json::from_value(serde_json::json!({
            "recipe": "ndvi-sentinel2-l2a",
            "inputs": [{"role": "red", "path": "/data/b04.tif"}],
        }))
        .unwrap()
    }

    fn paths(roots: Vec<PathBuf>) -> Paths {
        Paths {
            data_dir: PathBuf::from("/srv/constellation"),
            input_roots: roots,
        }
    }

    #[test]
    fn defaults_fill_in_and_outputs_go_under_the_data_dir() {
        let r = request_of(&body(), &paths(vec![])).unwrap();
        assert_eq!(r.tile_px, 512);
        assert_eq!(r.compression, "deflate");
        assert!(r.out_dir.starts_with("/srv/constellation/outputs"));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Change = Box<dyn Fn(&mut CreateJob)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|b| b.expr = Some("nir".into())), "expr"),
            (Box::new(|b| b.recipe = None), "recipe"),
            (Box::new(|b| b.inputs.clear()), "inputs"),
            (Box::new(|b| b.tile_px = 8), "tile_px"),
            (Box::new(|b| b.max_attempts = 0), "max_attempts"),
            (Box::new(|b| b.nodata = f64::NAN), "nodata"),
            (Box::new(|b| b.compression = "lzw".into()), "compression"),
            (
                Box::new(|b| {
                    b.inputs = vec![InputDto {
                        role: None,
                        path: "relative.tif".into(),
                        band: None,
                    }]
                }),
                "inputs.0.path",
            ),
            (Box::new(|b| b.inputs[0].band = Some(0)), "inputs.0.band"),
        ];
        for (change, field) in cases {
            let mut b = body();
            change(&mut b);
            let p = request_of(&b, &paths(vec![])).unwrap_err();
            assert_eq!(p.status, 422, "{field}");
            assert_eq!(p.errors[0].field, field);
        }
    }

    #[test]
    fn inputs_outside_the_roots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("a.tif");
        std::fs::write(&inside, b"x").unwrap();
        let mut b = body();
        b.inputs[0].path = inside.display().to_string();
        assert!(request_of(&b, &paths(vec![dir.path().to_path_buf()])).is_ok());
        b.inputs[0].path = format!("{}/../etc/passwd", dir.path().display());
        let p = request_of(&b, &paths(vec![dir.path().to_path_buf()])).unwrap_err();
        assert_eq!(p.errors[0].field, "inputs.0.path");
    }
}
