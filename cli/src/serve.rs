//! `constellation serve` (the HTTP API), `constellation up` (API + worker + web UI in one
//! process, on a private PostgreSQL it starts itself when no database is given) and
//! `constellation openapi` (print the OpenAPI document).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use engine::backend::BackendKind;
use scheduler::cluster::{PrivateCluster, StopMode};
use scheduler::Queue;

use crate::service::{self, BusArgs, DbArgs, WorkerArgs};

/// How long open connections (WebSockets) may keep a stopping server alive.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where jobs submitted over HTTP write their outputs (`<dir>/outputs/…`).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Only read inputs under this folder (repeatable; default: anywhere readable).
    #[arg(long = "input-root")]
    input_roots: Vec<PathBuf>,
    /// The built web UI to serve at `/` (default: web/dist when it exists).
    #[arg(long)]
    web_dir: Option<PathBuf>,
    /// Events older than this many days are deleted (hourly); a client asking to replay
    /// them is told to resync.
    #[arg(long, default_value_t = 7.0)]
    event_retention_days: f64,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    bus: BusArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Compute backend of the in-process worker: auto, cpu, wgpu, cuda.
    #[arg(long, default_value = "auto")]
    backend: BackendKind,
    /// Threads of the in-process worker (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Submit demo jobs over synthetic scenes once the server is up.
    #[arg(long)]
    demo: bool,
    /// The in-process worker reports N simulated GPUs (samples marked simulated).
    #[arg(long)]
    simulate_gpus: Option<u32>,
}

impl ServeArgs {
    fn config(&self) -> Result<api::Config> {
        if !(self.event_retention_days.is_finite() && self.event_retention_days > 0.0) {
            bail!("--event-retention-days must be a positive number of days");
        }
        let web_dir = match &self.web_dir {
            Some(d) if !d.join("index.html").is_file() => {
                bail!("{} has no index.html (build the web UI first)", d.display())
            }
            Some(d) => Some(d.clone()),
            None => Some(PathBuf::from("web/dist")).filter(|d| d.join("index.html").is_file()),
        };
        let data_dir = std::path::absolute(&self.data_dir)
            .with_context(|| format!("cannot resolve {}", self.data_dir.display()))?;
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        Ok(api::Config {
            data_dir,
            input_roots: self.input_roots.clone(),
            web_dir,
            #[cfg(feature = "otel")]
            propagation: crate::telemetry::wanted().then(crate::telemetry::W3c::shared),
            ..api::Config::default()
        })
    }
}

/// Serves the API over `queue` until a signal; open sockets get a short grace.
async fn run_server(queue: Queue, config: &api::Config, args: &ServeArgs) -> Result<()> {
    let listen = args.listen;
    let keep = Duration::from_secs_f64(args.event_retention_days * 86_400.0);
    let bus = scheduler::PgEventBus::new(queue.pool().clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = bus.prune(keep).await {
                tracing::warn!(error = %e, "event retention failed");
            }
        }
    });
    let nats = args
        .bus
        .connect(keep)
        .await
        .context("cannot start the event bus")?;
    let state = match nats {
        #[cfg(feature = "nats")]
        Some(nats) => {
            tracing::info!(
                stream = nats.stream_name(),
                "events go through nats jetstream"
            );
            let relay = scheduler::nats::Relay::new(queue.pool().clone(), nats.clone());
            tokio::spawn(async move {
                loop {
                    let Err(e) = relay.run().await;
                    tracing::warn!(error = %e, "event relay to nats failed; restarting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            api::AppState::with_bus(queue, scheduler::Bus::Nats(nats), config).await
        }
        #[cfg(not(feature = "nats"))]
        Some(never) => match never {},
        None => api::AppState::new(queue, config).await,
    }
    .context("cannot start the event stream")?;
    let app = api::router(state, config);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, "listening on http://{addr} (API docs at http://{addr}/docs)");
    if config.web_dir.is_none() {
        tracing::warn!("no web UI found (build it with scripts/web.sh); serving the API only");
    }
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        service::stop_signal().await;
        let _ = stopped_tx.send(true);
    };
    let serving = api::serve(listener, app, shutdown);
    let mut stopped = stopped_rx.clone();
    let grace = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = serving => r.context("the server failed")?,
        () = grace => tracing::info!("closing connections still open after {} s", SHUTDOWN_GRACE.as_secs()),
    }
    Ok(())
}

/// `constellation serve`.
pub(crate) fn serve(args: &ServeArgs) -> Result<()> {
    let config = args.config()?;
    service::runtime()?.block_on(async {
        let queue = args.db.connect(16).await?;
        queue
            .migrate()
            .await
            .context("cannot migrate the database")?;
        run_server(queue, &config, args).await
    })
}

/// `constellation openapi`.
pub(crate) fn openapi() -> Result<()> {
    print!("{}", api::openapi::document());
    Ok(())
}

/// `constellation up`.
pub(crate) fn up(args: &UpArgs) -> Result<()> {
    let config = args.serve.config()?;
    let mut private = None;
    let url = match args.serve.db.url() {
        Ok(url) => url,
        Err(_) => {
            let pg = PrivatePostgres::start(&config.data_dir.join("postgres"))?;
            let url = pg.url();
            tracing::info!("started a private PostgreSQL in {}", pg.dir.display());
            private = Some(pg);
            url
        }
    };
    let (backend, fallback) = engine::backend::select(args.backend)?;
    if let Some(reason) = fallback {
        tracing::warn!("{reason}");
    }
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let worker_args = WorkerArgs {
        batch: None,
        lease_secs: 30.0,
        backend: args.backend,
        threads: Some(threads),
        retry_base_secs: 5.0,
        once: false,
        simulate_gpus: args.simulate_gpus,
        metrics_listen: None,
        db: DbArgs {
            database_url: Some(url.clone()),
        },
        bus: args.serve.bus.clone(),
    };
    let result = service::runtime()?.block_on(async {
        let db = DbArgs {
            database_url: Some(url),
        };
        let queue = db.connect(16).await?;
        queue
            .migrate()
            .await
            .context("cannot migrate the database")?;
        let worker = tokio::spawn({
            let backend = Arc::new(backend);
            async move { service::work(&worker_args, backend, threads).await }
        });
        if args.demo {
            let data_dir = config.data_dir.clone();
            let queue = queue.clone();
            tokio::task::spawn_blocking(move || submit_demo(&queue, &data_dir));
        }
        let served = run_server(queue, &config, &args.serve).await;
        // The worker drains on the same signal.
        match tokio::time::timeout(Duration::from_secs(60), worker).await {
            Ok(Ok(Err(e))) => tracing::error!("worker: {}", crate::one_line(&e)),
            Ok(Err(e)) => tracing::error!("worker: {e}"),
            Err(_) => {
                tracing::warn!("worker: still busy after 60 s; its tasks return to the queue")
            }
            Ok(Ok(Ok(()))) => {}
        }
        served
    });
    drop(private);
    result
}

/// Writes two synthetic scenes and queues NDVI and EVI jobs over them.
fn submit_demo(queue: &Queue, data_dir: &Path) {
    let run = || -> Result<()> {
        let scenes = data_dir.join("demo-scenes");
        let scene = fixtures::generate(&fixtures::SceneSpec::sentinel2(2048, 7), &scenes)?;
        let inputs: Vec<engine::io::scene::InputSpec> = scene
            .roles()
            .filter_map(|role| {
                Some(engine::io::scene::InputSpec {
                    role: Some(role.to_owned()),
                    path: scene.path(role)?.display().to_string(),
                    band: None,
                })
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for (recipe, tile_px) in [("ndvi-sentinel2-l2a", 256), ("evi-sentinel2-l2a", 512)] {
            let request = engine::job::JobRequest {
                recipe: Some(recipe.into()),
                expr: None,
                params: Default::default(),
                out_dir: data_dir.join("outputs").join(format!("demo-{recipe}")),
                tile_px,
                nodata: -9999.0,
                compression: "deflate".into(),
                inputs: inputs.clone(),
                aoi: None,
            };
            let plan = request.plan()?;
            let spec = api::submit::job_spec(&request, &plan, 0, 3, None)?;
            let id = rt.block_on(queue.submit(&spec))?;
            tracing::info!(job_id = %id, "demo: queued {recipe} as job {id}");
        }
        Ok(())
    };
    if let Err(e) = run() {
        tracing::error!("demo: {}", crate::one_line(&e));
    }
}

/// The private PostgreSQL of `constellation up`: started in its folder, stopped (fast) when
/// dropped.
#[derive(Debug)]
struct PrivatePostgres {
    dir: PathBuf,
    cluster: PrivateCluster,
}

impl PrivatePostgres {
    fn start(dir: &Path) -> Result<Self> {
        let cluster = PrivateCluster::init(dir)?;
        cluster.start(&[])?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cluster,
        })
    }

    fn url(&self) -> String {
        self.cluster.url()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.cluster.stop(StopMode::Fast);
    }
}
