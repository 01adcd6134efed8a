//! The subcommands of the full build (the default `gdal` feature): raster runs, fixtures and the
//! demo (GDAL), and the queue, worker and HTTP API (PostgreSQL).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};

use crate::{demo, run, serve, service};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SceneKindArg {
    Sentinel2,
    Landsat,
    Dem,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FullCommand {
    /// Run a recipe or an expression over one scene and write a COG and a STAC Item.
    Run(run::RunArgs),
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

/// Routes GDAL's own reports through our errors instead of stderr; once, before any command.
pub(crate) fn init() {
    engine::io::init();
}

pub(crate) fn dispatch(command: FullCommand) -> Result<()> {
    match command {
        FullCommand::Run(args) => run::command(&args),
        FullCommand::Fixtures {
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
        FullCommand::Demo { out, size_px, real } => demo::run_demo(&out, size_px, real.as_deref()),
        FullCommand::Migrate(db) => service::migrate(&db),
        FullCommand::Submit(args) => service::submit(&args),
        FullCommand::Worker(args) => service::worker(&args),
        FullCommand::Serve(args) => serve::serve(&args),
        FullCommand::Up(args) => serve::up(&args),
        FullCommand::Openapi => serve::openapi(),
    }
}

fn scene_spec(kind: SceneKindArg, size_px: usize, seed: u64) -> fixtures::SceneSpec {
    match kind {
        SceneKindArg::Sentinel2 => fixtures::SceneSpec::sentinel2(size_px, seed),
        SceneKindArg::Landsat => fixtures::SceneSpec::landsat(size_px, size_px, seed),
        SceneKindArg::Dem => fixtures::SceneSpec::dem(size_px, size_px, seed),
    }
}
