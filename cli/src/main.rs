//! The `constellation` command: batch runs on one node, the recipe list, synthetic fixtures
//! and a demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use engine::backend::BackendKind;
use engine::io::cog::Compression;
use engine::io::scene::{InputSpec, Scene};
use engine::pipeline::Prepared;
use engine::recipe::{self, Params};
use engine::run::{RunOptions, RunSummary};
use indicatif::{ProgressBar, ProgressStyle};

mod bench;
mod demo;
mod gpus;
mod serve;
mod service;

#[derive(Debug, Parser)]
#[command(
    name = "constellation",
    version,
    about = "GPU-first satellite tile processing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SceneKindArg {
    Sentinel2,
    Landsat,
    Dem,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A named recipe (see `constellation recipes`).
    #[arg(long, conflicts_with = "expr", required_unless_present = "expr")]
    recipe: Option<String>,
    /// An inline band-math expression over the input roles, e.g. "(nir-red)/(nir+red)".
    #[arg(long)]
    expr: Option<String>,
    /// Inputs as `[role=]path[#band]`: one multi-band file or per-band files; anything GDAL
    /// opens, /vsicurl/ included. Roles are inferred from Landsat/Sentinel-2 file names.
    #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
    inputs: Vec<String>,
    /// Output folder (created if missing).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Compute backend: auto (CUDA, then a hardware wgpu adapter, then CPU), cpu, wgpu, cuda.
    #[arg(long, default_value = "auto")]
    backend: BackendKind,
    /// Tile size in pixels.
    #[arg(long, default_value_t = 512)]
    tile_px: usize,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Recipe parameters as key=value (e.g. boa_add_offset=0, azimuth=300, l=0.5).
    #[arg(long = "param", short = 'p')]
    params: Vec<String>,
    /// COG compression: deflate or zstd.
    #[arg(long, default_value = "deflate")]
    compression: String,
    /// Nodata value written to the output.
    #[arg(long, default_value_t = -9999.0, allow_negative_numbers = true)]
    nodata: f64,
    /// Print the summary as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a recipe or an expression over one scene and write a COG and a STAC Item.
    Run(RunArgs),
    /// List the recipes.
    Recipes {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a deterministic synthetic scene (GeoTIFF band files).
    Fixtures {
        #[arg(long, value_enum, default_value_t = SceneKindArg::Sentinel2)]
        kind: SceneKindArg,
        /// Width (and height) in pixels; 10980 gives a full Sentinel-2 tile.
        #[arg(long, default_value_t = 1024)]
        size_px: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Measure kernels against the memory-bandwidth limit and end-to-end runs against numpy,
    /// gdal_calc.py and the I/O floor; results go to benches/results.
    Bench(bench::BenchArgs),
    /// The GPU inventory and live samples (NVML), or simulated GPUs.
    Gpus(gpus::GpusArgs),
    /// Generate synthetic scenes and run the main recipes over them (and over the real
    /// fixtures, when given).
    Demo {
        /// Output folder.
        #[arg(long, short = 'o', default_value = "out/demo")]
        out: PathBuf,
        /// Size of the synthetic scenes in pixels.
        #[arg(long, default_value_t = 2048)]
        size_px: usize,
        /// The folder of real rasters (Landsat, Sentinel-2, DEM), if present.
        #[arg(long)]
        real: Option<PathBuf>,
    },
    /// Apply the scheduler's database migrations (idempotent).
    Migrate(service::DbArgs),
    /// Validate a recipe and its inputs like `run`, plan the tiles and queue a job; prints
    /// the job id.
    Submit(service::SubmitArgs),
    /// Claim queued tile tasks, compute them with the engine and assemble finished jobs.
    Worker(service::WorkerArgs),
    /// The HTTP API (REST, WebSocket events, OpenAPI at /openapi.json) and the web UI.
    Serve(serve::ServeArgs),
    /// Everything in one process: API, web UI and a worker, on a private PostgreSQL started
    /// in the data folder unless DATABASE_URL or --database-url names one.
    Up(serve::UpArgs),
    /// Print the OpenAPI 3.1 document.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // GDAL reports through our errors, not on stderr.
    engine::io::init();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The chain of causes on one line, skipping a cause whose text its parent already shows.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg.replace('\n', " ")
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            if let [only] = args.inputs.as_slice() {
                let dir = std::path::Path::new(only);
                if dir.is_dir() {
                    return run_folder(&args, dir);
                }
            }
            let summary = run(&args)?;
            report(&summary, args.json);
            Ok(())
        }
        Command::Recipes { json } => recipes(json),
        Command::Fixtures {
            kind,
            size_px,
            seed,
            out,
        } => {
            let spec = scene_spec(kind, size_px, seed);
            let scene = fixtures::generate(&spec, &out)
                .with_context(|| format!("cannot write fixtures to {}", out.display()))?;
            for (role, path) in &scene.bands {
                println!("{role}\t{}", path.display());
            }
            Ok(())
        }
        Command::Gpus(args) => gpus::run(&args),
        Command::Bench(args) => {
            let md = bench::run(&args)?;
            println!("{}", std::fs::read_to_string(&md)?);
            println!("results in {}", md.display());
            Ok(())
        }
        Command::Demo { out, size_px, real } => demo::run_demo(&out, size_px, real.as_deref()),
        Command::Migrate(db) => service::migrate(&db),
        Command::Submit(args) => service::submit(&args),
        Command::Worker(args) => service::worker(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Up(args) => serve::up(&args),
        Command::Openapi => serve::openapi(),
    }
}

fn scene_spec(kind: SceneKindArg, size_px: usize, seed: u64) -> fixtures::SceneSpec {
    match kind {
        SceneKindArg::Sentinel2 => fixtures::SceneSpec::sentinel2(size_px, seed),
        SceneKindArg::Landsat => fixtures::SceneSpec::landsat(size_px, size_px, seed),
        SceneKindArg::Dem => fixtures::SceneSpec::dem(size_px, size_px, seed),
    }
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

fn parse_inputs(raw: &[String]) -> Result<Vec<InputSpec>> {
    Ok(raw
        .iter()
        .map(|s| InputSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?)
}

/// `run` with a folder as input: every scene in it, one after another. Scenes that lack a
/// band the recipe needs are skipped with one line each; none at all is an error.
fn run_folder(args: &RunArgs, dir: &std::path::Path) -> Result<()> {
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

/// Roles for an expression: explicit `role=` names, inferred names, or `b1`, `b2` … for the
/// bands of a single multi-band file.
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

fn recipes(json: bool) -> Result<()> {
    let all = recipe::catalog(&Params::new())?;
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "description": r.description,
                    "roles": r.roles().collect::<Vec<_>>(),
                    "outputs": r.outputs.iter().map(|o| &o.plane).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let width = all.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &all {
            println!(
                "{:width$}  roles: {:28}  {}",
                r.name,
                r.roles().collect::<Vec<_>>().join(","),
                r.description
            );
        }
        println!(
            "{:width$}  roles: {:28}  an inline expression: --expr \"(nir-red)/(nir+red)\"",
            "expr", "any"
        );
    }
    Ok(())
}
