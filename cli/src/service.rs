//! The service commands: `migrate`, `submit` (validate, plan, queue a job) and `worker`
//! (claim tile tasks from PostgreSQL, compute pieces with the engine, assemble the COG).

use std::collections::{HashMap, HashSet};
#[cfg(not(feature = "nats"))]
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engine::backend::{Backend, BackendKind};
use engine::grid::Window;
use engine::io::read::SceneReader;
use engine::job::JobRequest;
use engine::tiles::{self, TileRunner};
use scheduler::{Backoff, ClaimedTask, FailOutcome, Queue, TaskId, TaskKind, TaskRef, WorkerSpec};
use serde_json::{json, Value};
use uuid::Uuid;

/// How long connecting to the database may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest pause between a worker's tries while the database is unreachable.
const OUTAGE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Where the database is.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DbArgs {
    /// PostgreSQL connection string (default: the DATABASE_URL environment variable).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
}

/// Which event bus: PostgreSQL's own (the default) or NATS JetStream.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BusArgs {
    /// NATS server for the JetStream event bus, e.g. nats://127.0.0.1:4222 (default: the
    /// CONSTELLATION_NATS_URL environment variable; without either, PostgreSQL's own bus).
    #[arg(long)]
    pub(crate) nats: Option<String>,
    /// Subject prefix and stream name on NATS, so deployments can share a server.
    #[arg(long, default_value = "constellation")]
    pub(crate) nats_prefix: String,
}

impl BusArgs {
    fn nats_url(&self) -> Option<String> {
        self.nats
            .clone()
            .or_else(|| std::env::var("CONSTELLATION_NATS_URL").ok())
            .filter(|u| !u.trim().is_empty())
    }

    /// Connects to NATS when one is configured, keeping events for `retention`.
    #[cfg(feature = "nats")]
    pub(crate) async fn connect(
        &self,
        retention: Duration,
    ) -> Result<Option<scheduler::nats::NatsEventBus>> {
        let Some(url) = self.nats_url() else {
            return Ok(None);
        };
        let options = scheduler::nats::NatsOptions {
            prefix: self.nats_prefix.clone(),
            retention,
            ..scheduler::nats::NatsOptions::new(url)
        };
        let bus = scheduler::nats::NatsEventBus::connect(&options).await?;
        Ok(Some(bus))
    }

    /// Without NATS support built in, asking for NATS is an error.
    #[cfg(not(feature = "nats"))]
    pub(crate) async fn connect(&self, _retention: Duration) -> Result<Option<Infallible>> {
        match self.nats_url() {
            Some(_) => bail!("this build has no nats support (build with --features nats)"),
            None => Ok(None),
        }
    }
}

/// What wakes an idle worker: LISTEN on PostgreSQL, or a NATS subscription.
#[derive(Debug)]
enum Waker {
    Pg(scheduler::TaskWaker),
    #[cfg(feature = "nats")]
    Nats(scheduler::nats::NatsTaskWaker),
}

impl Waker {
    #[cfg(feature = "nats")]
    async fn start(
        queue: &Queue,
        nats: Option<&scheduler::nats::NatsEventBus>,
    ) -> scheduler::Result<Self> {
        match nats {
            Some(n) => Ok(Self::Nats(n.task_waker().await?)),
            None => Ok(Self::Pg(queue.waker().await?)),
        }
    }

    #[cfg(not(feature = "nats"))]
    async fn start(queue: &Queue, _nats: Option<&Infallible>) -> scheduler::Result<Self> {
        Ok(Self::Pg(queue.waker().await?))
    }

    async fn wait(&mut self, timeout: Duration) -> scheduler::Result<bool> {
        match self {
            Self::Pg(w) => w.wait(timeout).await,
            #[cfg(feature = "nats")]
            Self::Nats(w) => w.wait(timeout).await,
        }
    }
}

impl DbArgs {
    pub(crate) fn url(&self) -> Result<String> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => {
                std::env::var("DATABASE_URL").context("give --database-url or set DATABASE_URL")
            }
        }
    }

    pub(crate) async fn connect(&self, max_connections: u32) -> Result<Queue> {
        let url = self.url()?;
        match tokio::time::timeout(CONNECT_TIMEOUT, Queue::connect_with(&url, max_connections))
            .await
        {
            Ok(Ok(q)) => Ok(q),
            Ok(Err(e)) => bail!("cannot connect to the database: {e}"),
            Err(_) => bail!(
                "cannot connect to the database: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct SubmitArgs {
    /// A named recipe (see `constellation recipes`).
    #[arg(long, conflicts_with = "expr", required_unless_present = "expr")]
    recipe: Option<String>,
    /// An inline band-math expression over the input roles.
    #[arg(long)]
    expr: Option<String>,
    /// Inputs as `[role=]path[#band]` (as for `run`).
    #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
    inputs: Vec<String>,
    /// Output folder (created if missing); workers must see it at the same path.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Tile size in pixels.
    #[arg(long, default_value_t = 512)]
    tile_px: usize,
    /// Runs allowed per task before the job fails.
    #[arg(long, default_value_t = 3)]
    max_attempts: i32,
    /// Recipe parameters as key=value.
    #[arg(long = "param", short = 'p')]
    params: Vec<String>,
    /// COG compression: deflate or zstd.
    #[arg(long, default_value = "deflate")]
    compression: String,
    /// Nodata value written to the output.
    #[arg(long, default_value_t = -9999.0, allow_negative_numbers = true)]
    nodata: f64,
    /// Only compute the tiles meeting this box, `west,south,east,north` in degrees (the
    /// rest of the output is nodata).
    #[arg(long, allow_hyphen_values = true)]
    aoi: Option<String>,
    /// Print the job as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// Tasks claimed at once (default: 8 on the CPU, 64 on a GPU backend, whose calls pack
    /// a job's claimed tiles together).
    #[arg(long)]
    pub(crate) batch: Option<i64>,
    /// Lease per claimed task, extended by heartbeats every third of it.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) lease_secs: f64,
    /// Compute backend: auto, cpu, wgpu, cuda.
    #[arg(long, default_value = "auto")]
    pub(crate) backend: BackendKind,
    /// Threads computing the tiles of a batch (default: every core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Delay before the first retry of a failed task (doubling, with jitter, up to 600 s).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) retry_base_secs: f64,
    /// Drain the queue and exit once no task is queued or running.
    #[arg(long)]
    pub(crate) once: bool,
    /// Report N simulated GPUs (samples marked simulated) instead of NVML's, for demos.
    #[arg(long)]
    pub(crate) simulate_gpus: Option<u32>,
    /// Serve this worker's Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9184).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) bus: BusArgs,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `constellation migrate`.
pub(crate) fn migrate(db: &DbArgs) -> Result<()> {
    runtime()?.block_on(async {
        let q = db.connect(1).await?;
        q.migrate().await.context("cannot migrate the database")?;
        println!("database migrated");
        Ok(())
    })
}

/// An area of interest from `west,south,east,north`.
fn aoi_of_bbox(text: &str) -> Result<engine::aoi::Aoi> {
    let v: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--aoi {text:?}: expected west,south,east,north"))?;
    let [w, s, e, n] = v[..] else {
        bail!("--aoi {text:?}: expected four numbers west,south,east,north");
    };
    Ok(engine::aoi::Aoi::new(&[(w, s), (e, s), (e, n), (w, n)])?)
}

/// `constellation submit`: every check before the database is touched.
pub(crate) fn submit(args: &SubmitArgs) -> Result<()> {
    if args.max_attempts < 1 {
        bail!("--max-attempts must be at least 1");
    }
    let inputs = crate::run::parse_inputs(&args.inputs)?
        .into_iter()
        .map(engine::job::absolute)
        .collect();
    let out_dir = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve {}", args.out.display()))?;
    let request = JobRequest {
        recipe: args.recipe.clone(),
        expr: args.expr.clone(),
        params: crate::run::parse_params(&args.params)?,
        out_dir,
        tile_px: args.tile_px,
        nodata: args.nodata,
        compression: args.compression.to_ascii_lowercase(),
        inputs,
        aoi: args.aoi.as_deref().map(aoi_of_bbox).transpose()?,
    };
    let plan = request.plan()?;
    let spec = api::submit::job_spec(&request, &plan, args.priority, args.max_attempts, None)?;
    let scene = plan.scene;
    let job = runtime()?.block_on(async {
        let q = args.db.connect(2).await?;
        q.submit(&spec).await.context("cannot submit the job")
    })?;
    if args.json {
        println!(
            "{}",
            json!({ "job_id": job.to_string(), "recipe": spec.recipe, "scene": scene.id,
                    "tiles": spec.tiles.len() })
        );
    } else {
        println!("{job}");
    }
    Ok(())
}

/// What the worker shares with its heartbeat and signal tasks.
#[derive(Debug, Default)]
struct Shared {
    /// Runs in flight.
    in_flight: Mutex<HashMap<TaskId, TaskRef>>,
    /// Runs to stop: cancelled, or lost to the reaper.
    stopped: Mutex<HashSet<TaskId>>,
    /// A signal asked the worker to drain.
    draining: AtomicBool,
}

impl Shared {
    fn is_stopped(&self, id: TaskId) -> bool {
        self.stopped.lock().is_ok_and(|s| s.contains(&id))
    }
}

/// A job's runner and stored description, or why they could not be had.
type Opened = std::result::Result<(Arc<TileRunner>, Arc<JobRequest>), String>;

/// One task's outcome in a batch.
enum Outcome {
    Done(Value),
    Failed { error: String, retryable: bool },
    Stopped,
}

/// `constellation worker`.
pub(crate) fn worker(args: &WorkerArgs) -> Result<()> {
    if args.batch.is_some_and(|b| b < 1) {
        bail!("--batch must be at least 1");
    }
    if !(args.lease_secs.is_finite() && args.lease_secs >= 1.0) {
        bail!("--lease-secs must be at least 1");
    }
    if !(args.retry_base_secs.is_finite() && args.retry_base_secs >= 0.0) {
        bail!("--retry-base-secs must not be negative");
    }
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let (backend, fallback) = engine::backend::select(args.backend)?;
    if let Some(reason) = fallback {
        tracing::warn!("{reason}");
    }
    let backend = Arc::new(backend);
    runtime()?.block_on(work(args, backend, threads))
}

pub(crate) async fn work(args: &WorkerArgs, backend: Arc<Backend>, threads: usize) -> Result<()> {
    let queue = args.db.connect(4).await?.with_backoff(Backoff {
        base_secs: args.retry_base_secs,
        cap_secs: 600.0,
    });
    let nats = args
        .bus
        .connect(Duration::from_secs(7 * 86_400))
        .await
        .context("cannot start the event bus")?;
    let metrics = Arc::new(api::worker_metrics::WorkerMetrics::default());
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
        let app = api::worker_metrics::router(metrics.clone(), queue.clone());
        tokio::spawn(api::serve(listener, app, std::future::pending()));
        tracing::info!(address = %addr, "metrics at http://{addr}/metrics");
    }
    let lease = Duration::from_secs_f64(args.lease_secs);
    let claim_batch = args
        .batch
        .unwrap_or(if backend.batch_px().is_some() { 64 } else { 8 });
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let gpu_source = Arc::new(engine::gpu::GpuSource::discover(args.simulate_gpus));
    let inventory: Vec<Value> = gpu_source
        .inventory()
        .iter()
        .map(|g| {
            json!({ "index": g.index, "name": g.name, "uuid": g.uuid,
                    "memory_total_bytes": g.memory_total_bytes, "pci_bus_id": g.pci_bus_id,
                    "simulated": g.simulated })
        })
        .collect();
    let me = queue
        .register_worker(&WorkerSpec {
            host,
            backend: backend.name().into(),
            gpus: Value::Array(inventory),
        })
        .await
        .context("cannot register the worker")?;
    let shared = Arc::new(Shared::default());

    let beat = {
        let (queue, shared, gpu_source) = (queue.clone(), shared.clone(), gpu_source.clone());
        tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                let runs: Vec<TaskRef> = shared
                    .in_flight
                    .lock()
                    .map(|m| m.values().copied().collect())
                    .unwrap_or_default();
                match queue.heartbeat(me, &runs, lease).await {
                    Ok(reply) => {
                        if let Ok(mut s) = shared.stopped.lock() {
                            s.extend(reply.cancelled.into_iter().chain(reply.lost));
                        }
                    }
                    Err(e) => tracing::warn!(worker = %me, error = %e, "heartbeat failed"),
                }
                // Any worker reaps: only expired leases are touched.
                if let Err(e) = queue.reap().await {
                    tracing::warn!(worker = %me, error = %e, "reap failed");
                }
                let samples = gpu_samples(&gpu_source);
                if let Err(e) = queue.record_gpu_samples(me, &samples).await {
                    tracing::warn!(worker = %me, error = %e, "gpu samples not stored");
                }
            }
        })
    };
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            stop_signal().await;
            shared.draining.store(true, Ordering::SeqCst);
        });
    }

    let mut waker = Waker::start(&queue, nats.as_ref()).await.ok();
    let mut runners: HashMap<Uuid, Arc<TileRunner>> = HashMap::new();
    let started = Instant::now();
    let mut tiles_done = 0usize;
    // The batch the last completion claimed with it (Queue::complete_and_claim): already in
    // `in_flight`, so heartbeats extend its leases and an exit releases it.
    let mut next: Vec<ClaimedTask> = Vec::new();
    let result: Result<()> = async {
        loop {
            if shared.draining.load(Ordering::SeqCst) {
                break;
            }
            let claimed = if next.is_empty() {
                let claim_started = Instant::now();
                let claimed =
                    through_outage(me, "claim", &shared, || queue.claim(me, claim_batch, lease))
                        .await?;
                record_claim(&metrics, claim_started, &claimed);
                claimed
            } else {
                std::mem::take(&mut next)
            };
            if claimed.is_empty() {
                if args.once
                    && through_outage(me, "backlog", &shared, || queue.backlog()).await? == 0
                {
                    break;
                }
                let wait = Duration::from_millis(500);
                match waker.as_mut() {
                    Some(w) => {
                        if let Err(e) = w.wait(wait).await {
                            tracing::warn!(
                                worker = %me,
                                error = %e,
                                "task notifications lost; polling meanwhile"
                            );
                            waker = None;
                        }
                    }
                    None => {
                        tokio::time::sleep(wait).await;
                        // LISTEN again (on a new connection) once the database answers.
                        if let Ok(Ok(w)) =
                            tokio::time::timeout(wait, Waker::start(&queue, nats.as_ref())).await
                        {
                            tracing::info!(
                                worker = %me,
                                "listening for task notifications again"
                            );
                            waker = Some(w);
                        }
                    }
                }
                continue;
            }
            if let Ok(mut m) = shared.in_flight.lock() {
                m.extend(claimed.iter().map(|t| (t.run.id, t.run)));
            }
            let outcomes =
                run_batch(&claimed, &mut runners, &backend, &shared, &metrics, threads).await;
            let mut done = Vec::new();
            for (task, outcome) in claimed.iter().zip(outcomes) {
                match outcome {
                    Outcome::Done(output) => done.push((task.run, output)),
                    Outcome::Failed { error, retryable } => {
                        let outcome = through_outage(me, "fail", &shared, || {
                            queue.fail(me, task.run, &error, retryable)
                        })
                        .await?;
                        let (level, what) = match outcome {
                            FailOutcome::Retrying { .. } => ("warn", "will be retried"),
                            FailOutcome::Failed => ("error", "failed the job"),
                            FailOutcome::Rejected => continue,
                        };
                        let tile = tile_label(task);
                        tracing::warn!(
                            worker = %me,
                            job_id = %task.job_id,
                            task_id = task.run.id,
                            tile = %tile,
                            attempt = task.run.attempt,
                            trace_id = trace_id_of(task),
                            error = %error,
                            "task {what}"
                        );
                        let line = format!(
                            "{tile} (attempt {}/{}) {what}: {error}",
                            task.run.attempt, task.max_attempts
                        );
                        if let Err(e) = queue
                            .log(task.job_id, Some(task.run.id), level, &line)
                            .await
                        {
                            tracing::warn!(job_id = %task.job_id, error = %e, "log not stored");
                        }
                    }
                    Outcome::Stopped => {}
                }
            }
            // Fenced: a completion that landed before the connection was lost is refused
            // when tried again, never counted twice. One statement for the whole batch; its
            // span joins the trace of the batch's first traced job.
            let span = tracing::info_span!(
                "queue complete",
                worker = %me,
                tasks = done.len(),
                trace_id = tracing::field::Empty,
            );
            if let Some(traced) = claimed.iter().find(|t| trace_id_of(t).is_some()) {
                continue_trace(&span, traced);
            }
            // The next batch is claimed with the completion, unless the worker is draining.
            // One task at a time: in the same call (one round trip, one commit). Larger
            // batches: the completion and the claim run at once on two connections, so the
            // database works on both together (a finalize task the completion unblocks is
            // then claimed by a later claim, not this one). Should a reply be lost after the
            // commit, the retry's completions are refused (fenced) and the claim's tasks return
            // to the queue when their leases expire, as for a lost reply to a plain claim.
            let claim_next = if shared.draining.load(Ordering::SeqCst) {
                0
            } else {
                claim_batch
            };
            let call_started = Instant::now();
            let (accepted, claimed_next) = {
                use tracing::Instrument as _;
                if claim_next > 1 {
                    let complete =
                        through_outage(me, "complete", &shared, || queue.complete(me, &done))
                            .instrument(span);
                    let claim =
                        through_outage(me, "claim", &shared, || queue.claim(me, claim_next, lease));
                    let (accepted, claimed) = tokio::join!(complete, claim);
                    let claimed = claimed?;
                    if accepted.is_err() {
                        // Held already: an exit releases them.
                        if let Ok(mut m) = shared.in_flight.lock() {
                            m.extend(claimed.iter().map(|t| (t.run.id, t.run)));
                        }
                    }
                    (accepted?, claimed)
                } else {
                    through_outage(me, "complete", &shared, || {
                        queue.complete_and_claim(me, &done, claim_next, lease)
                    })
                    .instrument(span)
                    .await?
                }
            };
            if claim_next > 0 {
                record_claim(&metrics, call_started, &claimed_next);
            }
            tiles_done += accepted.len();
            count_tiles(&metrics, backend.name(), &claimed, &accepted, &runners);
            for task in claimed.iter().filter(|t| accepted.contains(&t.run.id)) {
                let tile = tile_label(task);
                tracing::info!(
                    worker = %me,
                    job_id = %task.job_id,
                    task_id = task.run.id,
                    tile = %tile,
                    attempt = task.run.attempt,
                    trace_id = trace_id_of(task),
                    "task done"
                );
            }
            for output in &done {
                let Some(task) = claimed.iter().find(|t| t.run == output.0) else {
                    continue;
                };
                if task.kind == TaskKind::Finalize && accepted.contains(&task.run.id) {
                    let line = format!(
                        "assembled {} from {} tile(s)",
                        output
                            .1
                            .get("cog")
                            .and_then(Value::as_str)
                            .unwrap_or("the outputs"),
                        output.1.get("tiles").and_then(Value::as_u64).unwrap_or(0)
                    );
                    let _ = queue
                        .log(task.job_id, Some(task.run.id), "info", &line)
                        .await;
                }
            }
            if let Ok(mut m) = shared.in_flight.lock() {
                for t in &claimed {
                    m.remove(&t.run.id);
                }
            }
            if let Ok(mut s) = shared.stopped.lock() {
                for t in &claimed {
                    s.remove(&t.run.id);
                }
            }
            // After the finished batch left `in_flight`: a task re-claimed under a new attempt
            // keeps its id.
            if let Ok(mut m) = shared.in_flight.lock() {
                m.extend(claimed_next.iter().map(|t| (t.run.id, t.run)));
            }
            next = claimed_next;
            if runners.len() > 8 {
                runners.clear();
            }
        }
        Ok(())
    }
    .await;
    beat.abort();
    // Whatever is still held (an error mid-batch) goes back to the queue at once.
    let left: Vec<TaskRef> = shared
        .in_flight
        .lock()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    if !left.is_empty() {
        let _ = queue.release(me, &left).await;
    }
    if let Err(e) = queue.worker_stopped(me).await {
        tracing::warn!(worker = %me, error = %e, "worker not marked down");
    }
    result?;
    tracing::info!(
        worker = %me,
        tasks = tiles_done,
        secs = started.elapsed().as_secs_f64(),
        "worker stopped"
    );
    Ok(())
}

/// Runs a queue call through a database outage: a lost connection, or a server that is down
/// or restarting, is reported once and the call tried again after a pause doubling up to
/// [`OUTAGE_RETRY_MAX`] until it goes through (the pool opens new connections), and the
/// recovery is reported too. Other errors, and any error once the worker is draining, are
/// returned.
async fn through_outage<T, F, Fut>(
    me: Uuid,
    call_name: &str,
    shared: &Shared,
    mut call: F,
) -> scheduler::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = scheduler::Result<T>>,
{
    let mut down: Option<Instant> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Ok(value) => {
                if let Some(since) = down {
                    tracing::info!(
                        worker = %me,
                        call = call_name,
                        secs = since.elapsed().as_secs_f64(),
                        "database reachable again"
                    );
                }
                return Ok(value);
            }
            Err(e) if e.is_connection_lost() && !shared.draining.load(Ordering::SeqCst) => {
                if down.is_none() {
                    tracing::warn!(
                        worker = %me,
                        call = call_name,
                        error = %e,
                        "database unreachable; retrying"
                    );
                    down = Some(Instant::now());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(OUTAGE_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `tile N`, or `finalize`, for logs.
/// Counts a statement that claimed (started at `started`) and the tasks it brought.
fn record_claim(
    metrics: &api::worker_metrics::WorkerMetrics,
    started: Instant,
    claimed: &[ClaimedTask],
) {
    metrics.claim_seconds.observe(
        &[if claimed.is_empty() { "empty" } else { "tasks" }],
        started.elapsed().as_secs_f64(),
    );
    metrics.claimed_tasks.add(&[], claimed.len() as f64);
}

fn tile_label(task: &ClaimedTask) -> String {
    task.tile
        .map_or("finalize".to_string(), |(i, _)| format!("tile {i}"))
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// One sample per GPU, as the queue stores them.
fn gpu_samples(source: &engine::gpu::GpuSource) -> Vec<scheduler::GpuSample> {
    source
        .sample()
        .into_iter()
        .map(|s| scheduler::GpuSample {
            gpu_index: i32::try_from(s.index).unwrap_or(i32::MAX),
            ts: chrono::DateTime::from_timestamp_millis(i64::try_from(s.unix_ms).unwrap_or(0))
                .unwrap_or_else(chrono::Utc::now),
            simulated: s.simulated,
            util_gpu_pct: s.gpu_util_pct.map(|v| v as f32),
            util_mem_pct: s.mem_copy_util_pct.map(|v| v as f32),
            mem_used_bytes: s.memory_used_bytes.and_then(|b| i64::try_from(b).ok()),
            mem_total_bytes: s.memory_total_bytes.and_then(|b| i64::try_from(b).ok()),
            temp_c: s.temperature_c.map(|v| v as f32),
            power_w: s.power_w.map(|v| v as f32),
        })
        .collect()
}

/// Opens (or finds cached) the runner of each job in the batch, then computes the batch on
/// blocking threads; returns one outcome per task, in order.
async fn run_batch(
    claimed: &[ClaimedTask],
    runners: &mut HashMap<Uuid, Arc<TileRunner>>,
    backend: &Arc<Backend>,
    shared: &Arc<Shared>,
    metrics: &Arc<api::worker_metrics::WorkerMetrics>,
    threads: usize,
) -> Vec<Outcome> {
    let mut jobs: HashMap<Uuid, Opened> = HashMap::new();
    for task in claimed {
        if jobs.contains_key(&task.job_id) {
            continue;
        }
        let stored = match JobRequest::from_json(&task.params, &task.inputs) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                jobs.insert(task.job_id, Err(format!("bad job: {e}")));
                continue;
            }
        };
        let entry = match runners.get(&task.job_id) {
            Some(r) => Ok((r.clone(), stored)),
            None => {
                let (s, b) = (stored.clone(), backend.clone());
                let opened = tokio::task::spawn_blocking(move || {
                    s.open()
                        .map(|(scene, prepared)| TileRunner::new(prepared, scene, b))
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("worker thread failed: {e}")));
                opened.map(|r| {
                    let r = Arc::new(r);
                    runners.insert(task.job_id, r.clone());
                    (r, stored)
                })
            }
        };
        jobs.insert(task.job_id, entry);
    }

    let work: Vec<Work> = claimed
        .iter()
        .map(|t| (t.clone(), jobs[&t.job_id].clone()))
        .collect();
    let (shared, backend, metrics) = (shared.clone(), backend.clone(), metrics.clone());
    let n = work.len();
    tokio::task::spawn_blocking(move || compute_all(&work, &shared, &backend, &metrics, threads))
        .await
        .unwrap_or_else(|e| {
            (0..n)
                .map(|_| Outcome::Failed {
                    error: format!("worker thread failed: {e}"),
                    retryable: true,
                })
                .collect()
        })
}

type Work = (ClaimedTask, Opened);

/// Computes the batch on up to `threads` threads, each with its own scene readers.
fn compute_all(
    work: &[Work],
    shared: &Shared,
    backend: &Arc<Backend>,
    metrics: &api::worker_metrics::WorkerMetrics,
    threads: usize,
) -> Vec<Outcome> {
    let groups = group_tiles(work);
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Outcome>>> = work.iter().map(|_| Mutex::new(None)).collect();
    let set = |i: usize, outcome: Outcome, since: Instant| {
        let kind = match work[i].0.kind {
            TaskKind::Tile => "tile",
            TaskKind::Finalize => "finalize",
        };
        let result = match &outcome {
            Outcome::Done(_) => "done",
            Outcome::Failed { .. } => "failed",
            Outcome::Stopped => "stopped",
        };
        metrics.task_seconds.observe(
            &[kind, backend.name(), result],
            since.elapsed().as_secs_f64(),
        );
        if let Ok(mut slot) = slots[i].lock() {
            *slot = Some(outcome);
        }
    };
    let failed = |e: &anyhow::Error| Outcome::Failed {
        error: crate::one_line(e),
        retryable: true,
    };
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, groups.len().max(1)) {
            s.spawn(|| {
                let mut readers: HashMap<Uuid, SceneReader<'_>> = HashMap::new();
                loop {
                    let g = next.fetch_add(1, Ordering::Relaxed);
                    let Some(group) = groups.get(g) else {
                        return;
                    };
                    let (task, job) = &work[group[0]];
                    let span = task_span(task, group.len());
                    let _entered = span.enter();
                    let since = Instant::now();
                    match job {
                        Err(e) => {
                            for &i in group {
                                set(
                                    i,
                                    Outcome::Failed {
                                        error: e.clone(),
                                        retryable: true,
                                    },
                                    since,
                                );
                            }
                        }
                        Ok(_) if shared.is_stopped(task.run.id) => {
                            for &i in group {
                                set(i, Outcome::Stopped, since);
                            }
                        }
                        Ok((runner, stored)) if group.len() > 1 => {
                            let tasks: Vec<&ClaimedTask> =
                                group.iter().map(|&i| &work[i].0).collect();
                            let outcomes = run_tile_group(&tasks, runner, stored, &mut readers);
                            for (&i, outcome) in group.iter().zip(outcomes) {
                                set(i, outcome.map_or_else(|e| failed(&e), Outcome::Done), since);
                            }
                        }
                        Ok((runner, stored)) => {
                            let outcome = run_task(task, runner, stored, backend, &mut readers);
                            set(
                                group[0],
                                outcome.map_or_else(|e| failed(&e), Outcome::Done),
                                since,
                            );
                        }
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner().ok().flatten().unwrap_or(Outcome::Failed {
                error: "the task was not run".into(),
                retryable: true,
            })
        })
        .collect()
}

/// Counts the accepted tile tasks of a batch: tiles, pixels and kernel bytes (input and output
/// bands as 4-byte planes) for this worker's backend.
fn count_tiles(
    metrics: &api::worker_metrics::WorkerMetrics,
    backend: &str,
    claimed: &[ClaimedTask],
    accepted: &[TaskId],
    runners: &HashMap<Uuid, Arc<TileRunner>>,
) {
    for task in claimed.iter().filter(|t| accepted.contains(&t.run.id)) {
        let (Some((_, w)), Some(runner)) = (task.tile, runners.get(&task.job_id)) else {
            continue;
        };
        let px = f64::from(w.width_px.max(0)) * f64::from(w.height_px.max(0));
        let recipe = &runner.prepared().recipe;
        let planes = (recipe.bands.len() + recipe.outputs.len()) as f64;
        metrics.tiles.add(&[backend], 1.0);
        metrics.pixels.add(&[backend], px);
        metrics.kernel_bytes.add(&[backend], px * planes * 4.0);
    }
}

/// The trace id in a job's stored W3C context (`traceparent: 00-<trace id>-<span id>-<flags>`).
fn trace_id_of(task: &ClaimedTask) -> Option<&str> {
    let parent = task.trace_context.as_ref()?.get("traceparent")?.as_str()?;
    let id = parent.split('-').nth(1)?;
    let valid = id.len() == 32
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && id.bytes().any(|b| b != b'0');
    valid.then_some(id)
}

/// Makes `span` (not yet entered) continue the trace `task`'s job was submitted in, recording
/// the trace id on it; without trace export only the id is recorded.
fn continue_trace(span: &tracing::Span, task: &ClaimedTask) {
    let Some(stored) = trace_id_of(task) else {
        return;
    };
    #[cfg(feature = "otel")]
    crate::telemetry::continue_job(span, task.trace_context.as_ref());
    span.record("trace_id", stored);
}

/// The span a group of tasks computes in: `tiles` or `finalize`, with the job, how many tasks
/// and the trace the job's submitting request started.
fn task_span(task: &ClaimedTask, tasks: usize) -> tracing::Span {
    let span = match task.kind {
        TaskKind::Tile => tracing::info_span!(
            "tiles",
            job_id = %task.job_id,
            tasks,
            trace_id = tracing::field::Empty,
        ),
        TaskKind::Finalize => tracing::info_span!(
            "finalize",
            job_id = %task.job_id,
            task_id = task.run.id,
            trace_id = tracing::field::Empty,
        ),
    };
    continue_trace(&span, task);
    span
}

/// The batch as groups of task indices computed together: consecutive tile tasks of one job
/// packed up to what the job's backend takes in one call, every other task alone.
fn group_tiles(work: &[Work]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut open: Option<(Uuid, usize)> = None;
    for (i, (task, job)) in work.iter().enumerate() {
        let fits = match (task.kind, task.tile, job) {
            (TaskKind::Tile, Some((_, w)), Ok((runner, _))) => {
                let tile_px = usize::try_from(w.width_px.max(w.height_px)).unwrap_or(1);
                Some(runner.batch_tiles(tile_px))
            }
            _ => None,
        };
        match (fits, open, groups.last_mut()) {
            (Some(cap), Some((job_id, open_cap)), Some(last))
                if job_id == task.job_id && last.len() < open_cap.min(cap) =>
            {
                last.push(i);
            }
            (Some(cap), ..) => {
                groups.push(vec![i]);
                open = Some((task.job_id, cap));
            }
            (None, ..) => {
                groups.push(vec![i]);
                open = None;
            }
        }
    }
    groups
}

/// Runs tile tasks of one job together: their tiles packed into one backend call, each written
/// as its piece; each task's own outcome, in order.
fn run_tile_group<'r>(
    tasks: &[&ClaimedTask],
    runner: &'r TileRunner,
    stored: &JobRequest,
    readers: &mut HashMap<Uuid, SceneReader<'r>>,
) -> Vec<Result<Value>> {
    let Some(first) = tasks.first() else {
        return Vec::new();
    };
    let dir = tiles::pieces_dir(&stored.out_dir, &first.job_id.to_string());
    let reader = match readers.entry(first.job_id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => match runner.reader() {
            Ok(r) => e.insert(r),
            Err(err) => {
                let why = crate::one_line(&anyhow::Error::from(err));
                return tasks
                    .iter()
                    .map(|_| Err(anyhow::anyhow!("{why}")))
                    .collect();
            }
        },
    };
    let pieces: Vec<Result<(Window, PathBuf)>> = tasks
        .iter()
        .map(|task| {
            let Some((index, w)) = task.tile else {
                bail!("tile task {} has no tile", task.run.id);
            };
            let window = Window::new(
                i64::from(w.x_px),
                i64::from(w.y_px),
                usize::try_from(w.width_px)?,
                usize::try_from(w.height_px)?,
            );
            Ok((window, tiles::piece_path(&dir, usize::try_from(index)?)))
        })
        .collect();
    let valid: Vec<(Window, PathBuf)> = pieces
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let mut written = runner.compute_pieces(reader, &valid).into_iter();
    pieces
        .into_iter()
        .map(|piece| {
            let (_, path) = piece?;
            match written.next() {
                Some(Ok(())) => Ok(json!({ "piece": path })),
                Some(Err(e)) => Err(e.into()),
                None => bail!("the piece {} was not computed", path.display()),
            }
        })
        .collect()
}

/// Runs one task: a tile into its piece, or the finalize task into the COG and STAC Item.
fn run_task<'r>(
    task: &ClaimedTask,
    runner: &'r TileRunner,
    stored: &JobRequest,
    backend: &Arc<Backend>,
    readers: &mut HashMap<Uuid, SceneReader<'r>>,
) -> Result<Value> {
    let dir = tiles::pieces_dir(&stored.out_dir, &task.job_id.to_string());
    match (task.kind, task.tile) {
        (TaskKind::Tile, Some((index, w))) => {
            let reader = match readers.entry(task.job_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(runner.reader()?),
            };
            let window = Window::new(
                i64::from(w.x_px),
                i64::from(w.y_px),
                usize::try_from(w.width_px)?,
                usize::try_from(w.height_px)?,
            );
            let path = tiles::piece_path(&dir, usize::try_from(index)?);
            runner.compute_piece(reader, window, &path)?;
            Ok(json!({ "piece": path }))
        }
        (TaskKind::Finalize, _) => {
            let opts = stored.run_options(backend.clone())?;
            let summary = tiles::assemble_within(runner, &opts, &dir, stored.aoi.as_ref())?;
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(parent) = dir.parent() {
                // Only removed when no other job's pieces are left in it.
                let _ = std::fs::remove_dir(parent);
            }
            Ok(json!({ "cog": summary.cog, "stac": summary.stac, "tiles": summary.tiles }))
        }
        (TaskKind::Tile, None) => bail!("tile task {} has no tile", task.run.id),
    }
}
