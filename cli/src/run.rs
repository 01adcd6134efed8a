//! `constellation run`: one recipe or expression over one scene, or over every matching scene
//! in a folder, with a progress bar and a summary (or JSON).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use engine::backend::BackendKind;
use engine::io::cog::Compression;
use engine::io::scene::{InputSpec, Scene};
use engine::pipeline::Prepared;
use engine::recipe::{self, Params};
use engine::run::{RunOptions, RunSummary};
use indicatif::{ProgressBar, ProgressStyle};

use crate::one_line;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// A named recipe (see `constellation recipes`).
    #[arg(long, conflicts_with = "expr", required_unless_present = "expr")]
    pub(crate) recipe: Option<String>,
    /// An inline band-math expression over the input roles, e.g. "(nir-red)/(nir+red)".
    #[arg(long)]
    pub(crate) expr: Option<String>,
    /// Inputs as `[role=]path[#band]`: one multi-band file or per-band files; anything GDAL
    /// opens, /vsicurl/ included. Roles are inferred from Landsat/Sentinel-2 file names.
    #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
    pub(crate) inputs: Vec<String>,
    /// Output folder (created if missing).
    #[arg(long, short = 'o')]
    pub(crate) out: PathBuf,
    /// Compute backend: auto (CUDA, then a hardware wgpu adapter, then CPU), cpu, wgpu, cuda.
    #[arg(long, default_value = "auto")]
    pub(crate) backend: BackendKind,
    /// Tile size in pixels.
    #[arg(long, default_value_t = 512)]
    pub(crate) tile_px: usize,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Recipe parameters as key=value (e.g. boa_add_offset=0, azimuth=300, l=0.5).
    #[arg(long = "param", short = 'p')]
    pub(crate) params: Vec<String>,
    /// COG compression: deflate or zstd.
    #[arg(long, default_value = "deflate")]
    pub(crate) compression: String,
    /// Nodata value written to the output.
    #[arg(long, default_value_t = -9999.0, allow_negative_numbers = true)]
    pub(crate) nodata: f64,
    /// Print the summary as JSON on stdout (no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `constellation run`: a folder given as the only input runs every scene in it.
pub(crate) fn command(args: &RunArgs) -> Result<()> {
    if let [only] = args.inputs.as_slice() {
        let dir = Path::new(only);
        if dir.is_dir() {
            return run_folder(args, dir);
        }
    }
    let summary = run(args)?;
    report(&summary, args.json);
    Ok(())
}

pub(crate) fn parse_params(raw: &[String]) -> Result<Params> {
    raw.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid parameter {kv:?}: expected key=value"),
        })
        .collect()
}

/// Runs one recipe over one scene.
pub(crate) fn run(args: &RunArgs) -> Result<RunSummary> {
    let job = Job::new(args)?;
    let inputs = parse_inputs(&args.inputs)?;
    job.run_scene(&inputs)
}

/// Everything about a run that does not depend on the scene.
struct Job<'a> {
    args: &'a RunArgs,
    params: Params,
    opts: RunOptions,
}

impl<'a> Job<'a> {
    fn new(args: &'a RunArgs) -> Result<Self> {
        let (backend, fallback) = engine::backend::select(args.backend)?;
        if let Some(reason) = fallback {
            if !args.json {
                eprintln!("{reason}");
            }
        }
        if args.tile_px < 16 || args.tile_px > 16_384 {
            bail!(
                "--tile-px must be between 16 and 16384, got {}",
                args.tile_px
            );
        }
        let workers = match args.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => {
                // Kernels share rayon's global pool; size it once, before any work.
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global();
                n
            }
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        Ok(Self {
            args,
            params: parse_params(&args.params)?,
            opts: RunOptions {
                out_dir: args.out.clone(),
                tile_px: args.tile_px,
                workers,
                nodata: args.nodata,
                compression: Compression::parse(&args.compression)?,
                backend: std::sync::Arc::new(backend),
            },
        })
    }

    fn recipe(&self, inputs: &[InputSpec]) -> Result<recipe::Recipe> {
        Ok(match (&self.args.recipe, &self.args.expr) {
            (Some(name), _) => recipe::by_name(name, &self.params)?,
            (None, Some(text)) => {
                recipe::expression_recipe(text, &engine::job::expression_roles(inputs)?)?
            }
            (None, None) => bail!("give --recipe or --expr"),
        })
    }

    fn run_scene(&self, inputs: &[InputSpec]) -> Result<RunSummary> {
        let recipe = self.recipe(inputs)?;
        let scene = Scene::open(inputs, &recipe)?;
        let prepared = Prepared::new(scene.resolve(recipe, &self.params)?)?;
        let bar = if self.args.json {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} tiles {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(format!("{} {}", scene.id, prepared.recipe.name));
            bar
        };
        let summary = engine::run::run(&prepared, &scene, &self.opts, &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        Ok(summary)
    }
}

pub(crate) fn parse_inputs(raw: &[String]) -> Result<Vec<InputSpec>> {
    Ok(raw
        .iter()
        .map(|s| InputSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?)
}

/// `run` with a folder as input: every scene in it, one after another. Scenes that lack a
/// band the recipe needs are skipped with one line each; none at all is an error.
fn run_folder(args: &RunArgs, dir: &Path) -> Result<()> {
    let job = Job::new(args)?;
    let scenes = engine::io::scene::discover(dir)?;
    let (mut done, mut skipped) = (Vec::new(), 0usize);
    for (name, inputs) in &scenes {
        match job.run_scene(inputs) {
            Ok(summary) => {
                if !args.json {
                    report(&summary, false);
                }
                done.push(summary);
            }
            Err(e) if is_scene_mismatch(&e) => {
                skipped += 1;
                eprintln!("skipped {name}: {}", one_line(&e));
            }
            Err(e) => return Err(e.context(format!("scene {name}"))),
        }
    }
    if done.is_empty() {
        bail!(
            "no scene in {} has the bands this recipe needs ({} scene(s) looked at)",
            dir.display(),
            scenes.len()
        );
    }
    if args.json {
        let all: Vec<serde_json::Value> = done.iter().map(summary_json).collect();
        println!("{}", serde_json::Value::Array(all));
    } else {
        let (mpx, secs) = done
            .iter()
            .fold((0.0, 0.0), |(m, s), d| (m + d.megapixels, s + d.seconds));
        println!(
            "{} scene(s), {skipped} skipped: {mpx:.1} Mpx in {secs:.2} s, {:.1} Mpx/s",
            done.len(),
            if secs > 0.0 { mpx / secs } else { 0.0 }
        );
    }
    Ok(())
}

/// Errors that mean "this scene is not for this recipe", as opposed to a broken run.
fn is_scene_mismatch(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<engine::EngineError>(),
        Some(engine::EngineError::MissingBand { .. } | engine::EngineError::InvalidInput(_))
    )
}

/// A run's summary as JSON.
fn summary_json(s: &RunSummary) -> serde_json::Value {
    let bands: Vec<_> = s
        .bands
        .iter()
        .map(|b| {
            serde_json::json!({
                "name": b.name,
                "count": b.stats.count,
                "min": b.stats.min(),
                "max": b.stats.max(),
                "mean": b.stats.mean(),
                "std": b.stats.std(),
            })
        })
        .collect();
    serde_json::json!({
        "recipe": s.recipe,
        "cog": s.cog,
        "stac": s.stac,
        "tiles": s.tiles,
        "width_px": s.width_px,
        "height_px": s.height_px,
        "megapixels": s.megapixels,
        "seconds": s.seconds,
        "mpx_per_s": s.mpx_per_s(),
        "bands": bands,
    })
}

pub(crate) fn report(s: &RunSummary, json: bool) {
    if json {
        let v = summary_json(s);
        println!("{v}");
    } else {
        println!(
            "{}: {} tiles, {:.1} Mpx ({}×{}) in {:.2} s, {:.1} Mpx/s",
            s.recipe,
            s.tiles,
            s.megapixels,
            s.width_px,
            s.height_px,
            s.seconds,
            s.mpx_per_s()
        );
        for b in &s.bands {
            match (b.stats.min(), b.stats.max(), b.stats.mean()) {
                (Some(min), Some(max), Some(mean)) => println!(
                    "  {}: {} valid px, min {min:.4}, max {max:.4}, mean {mean:.4}",
                    b.name, b.stats.count
                ),
                _ => println!("  {}: no valid pixels", b.name),
            }
        }
        println!("  cog  {}", s.cog.display());
        println!("  stac {}", s.stac.display());
    }
}
