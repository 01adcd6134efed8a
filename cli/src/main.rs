//! The `constellation` command: batch runs on one node, the queue and its workers, the HTTP
//! API, the recipe list, synthetic fixtures, a demo, benchmarks and the backend conformance
//! suite. Without the default `gdal` feature the binary keeps only what needs neither GDAL nor
//! PostgreSQL (`conformance`, `gpus`, `recipes`, `bench` of the kernels), for GPU machines.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use engine::recipe::{self, Params};

mod bench;
mod conformance;
#[cfg(feature = "gdal")]
mod demo;
#[cfg(feature = "gdal")]
mod full;
mod gpus;
#[cfg(feature = "gdal")]
mod run;
#[cfg(feature = "gdal")]
mod serve;
#[cfg(feature = "gdal")]
mod service;
#[cfg(feature = "otel")]
mod telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "constellation",
    version,
    about = "GPU-first satellite tile processing"
)]
struct Cli {
    /// Log lines on stderr as text (`pretty`) or as one JSON object a line (`json`), with the
    /// request, job and task ids as fields; `CONSTELLATION_LOG` filters them (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// What keeps trace export alive until `main` returns (then buffered spans are sent).
#[cfg(feature = "otel")]
type Telemetry = Option<telemetry::Telemetry>;
#[cfg(not(feature = "otel"))]
type Telemetry = NoTelemetry;

/// Without the `otel` feature nothing is exported.
#[cfg(not(feature = "otel"))]
#[derive(Debug)]
struct NoTelemetry;

/// Installs the process's log subscriber: stderr, filtered by `CONSTELLATION_LOG` (an
/// `EnvFilter` directive, default `info` with the database driver's statements at `warn`);
/// with the `otel` feature and an `OTEL_EXPORTER_OTLP_*ENDPOINT`, spans are also exported.
fn init_logs(format: LogFormat) -> Telemetry {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    let filter = EnvFilter::try_from_env("CONSTELLATION_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![match format {
        LogFormat::Pretty => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }];
    #[cfg(feature = "otel")]
    let telemetry = if telemetry::wanted() {
        match telemetry::start::<Registry>() {
            Ok((guard, layer)) => {
                layers.push(layer.boxed());
                Some(guard)
            }
            Err(e) => {
                eprintln!("warning: {}; traces are not exported", one_line(&e));
                None
            }
        }
    } else {
        None
    };
    // A second subscriber (tests calling main twice) is not an error worth stopping for.
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    #[cfg(feature = "otel")]
    return telemetry;
    #[cfg(not(feature = "otel"))]
    NoTelemetry
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "gdal")]
    #[command(flatten)]
    Full(full::FullCommand),
    /// List the recipes.
    Recipes {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure kernels against the memory-bandwidth limit and end-to-end runs against numpy,
    /// gdal_calc.py and the I/O floor; results go to benches/results.
    #[cfg_attr(
        not(feature = "gdal"),
        command(
            about = "Measure kernels against the memory-bandwidth limit (kernels only: \
                         this build has no GDAL); results go to benches/results"
        )
    )]
    Bench(bench::BenchArgs),
    /// The GPU inventory and live samples (NVML), or simulated GPUs.
    Gpus(gpus::GpusArgs),
    /// Run the backend conformance suite: every element-wise kernel on each backend, against
    /// the CPU reference.
    #[command(after_help = conformance::EXIT_CODES)]
    Conformance(conformance::ConformanceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = init_logs(cli.log_format);
    #[cfg(feature = "gdal")]
    full::init();
    match dispatch(cli) {
        Ok(code) => code,
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

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "gdal")]
        Command::Full(command) => full::dispatch(command)?,
        Command::Recipes { json } => recipes(json)?,
        Command::Gpus(args) => gpus::run(&args)?,
        Command::Bench(args) => {
            let md = bench::run(&args)?;
            println!("{}", std::fs::read_to_string(&md)?);
            println!("results in {}", md.display());
        }
        Command::Conformance(args) => return conformance::run(&args),
    }
    Ok(ExitCode::SUCCESS)
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
