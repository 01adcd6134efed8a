//! Queue benchmark peer driver for graphile_worker (Rust): queue N no-op jobs in bulk, claim and
//! complete them with W workers until drained (or M completed), print one JSON line with tasks/s
//! and fetch latency p50/p99.
//!
//! ```text
//! queue-bench-graphile [--workers W] [--rows N] [--batch B] [--measure M] [--max-secs T]
//!                      [--long-txn] [--template NAME [--prepare-only]]
//! ```
//!
//! `--batch B` > 1 runs the library's worker (concurrency W) with its local queue (batch fetch
//! of B jobs) and batched completions (5 ms), the settings its guide recommends for many small
//! jobs; fetch latency is the time of each claim statement (`batch_get_jobs`) as the worker
//! issues it, measured by a [`DatabaseDriver`] wrapped around the library's SQLx driver.
//! `--batch 1` runs W loops over the library's own `get_job` and `complete_job` (see
//! [`run_query_loops`] for why not its worker's direct mode). Fetches that found nothing are not
//! counted. The other options are those of Constellation's `queue_bench` example.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graphile_worker::sqlx::SqlxDatabase;
use graphile_worker::{
    BoxFuture, Database, DatabaseDriver, DbError, DbExecutor, DbParams, DbRow, DbTransaction,
    IntoTaskHandlerResult, JobSpec, LocalQueueConfig, NotificationStream, RawJobSpec, TaskHandler,
    WorkerContext, WorkerOptions, WorkerUtils,
};
use graphile_worker_queries::complete_job::complete_job;
use graphile_worker_queries::get_job::get_job;
use graphile_worker_queries::task_identifiers::get_tasks_details;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SCHEMA: &str = "graphile_worker";
const ENQUEUE_CHUNK: usize = 10_000;

/// What one run measures.
#[derive(Debug, Clone)]
struct Config {
    workers: usize,
    rows: usize,
    batch: usize,
    measure: Option<u64>,
    max_secs: Option<f64>,
    long_txn: bool,
    template: Option<String>,
    prepare_only: bool,
}

fn parse_args() -> Result<Config, BoxError> {
    let mut config = Config {
        workers: 1,
        rows: 10_000,
        batch: 1,
        measure: None,
        max_secs: None,
        long_txn: false,
        template: None,
        prepare_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--workers" => config.workers = value()?.parse()?,
            "--rows" => config.rows = value()?.parse()?,
            "--batch" => config.batch = value()?.parse()?,
            "--measure" => config.measure = Some(value()?.parse()?),
            "--max-secs" => config.max_secs = Some(value()?.parse()?),
            "--template" => config.template = Some(value()?),
            "--long-txn" => config.long_txn = true,
            "--prepare-only" => config.prepare_only = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if config.workers == 0 || config.rows == 0 || config.batch == 0 {
        return Err("workers, rows and batch must be at least 1".into());
    }
    Ok(config)
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn url_of(admin: &str, name: &str) -> String {
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => admin.to_owned(),
    }
}

async fn admin_sql(sql: String) -> Result<(), BoxError> {
    let options: PgConnectOptions = admin_url().parse()?;
    let mut conn = options.connect().await?;
    // Database names made here (a fixed prefix and a UUID) or given by the runner script.
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn database_exists(name: &str) -> Result<bool, BoxError> {
    let options: PgConnectOptions = admin_url().parse()?;
    let mut conn = options.connect().await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await?;
    conn.close().await?;
    Ok(found.is_some())
}

/// The no-op job.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct Noop {}

/// Counts completed handlers; wakes the main task once `target` ran.
#[derive(Debug, Clone)]
struct Progress {
    done: Arc<AtomicU64>,
    target: u64,
    reached: Arc<tokio::sync::Notify>,
}

impl TaskHandler for Noop {
    const IDENTIFIER: &'static str = "noop";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        if let Some(p) = ctx.get_ext::<Progress>() {
            if p.done.fetch_add(1, Ordering::Relaxed) + 1 == p.target {
                p.reached.notify_one();
            }
        }
        Ok::<(), String>(())
    }
}

/// The library's SQLx driver, timing each claim statement.
#[derive(Debug, Clone)]
struct TimedDatabase {
    inner: Database,
    fetch_ms: Arc<Mutex<Vec<f64>>>,
}

/// Whether `sql` is the library's claim (`get_job` or `batch_get_jobs`).
fn is_claim(sql: &str) -> bool {
    sql.contains("skip locked") && sql.contains("attempts = jobs.attempts + 1")
}

impl DbExecutor for TimedDatabase {
    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: DbParams,
    ) -> BoxFuture<'a, Result<u64, DbError>> {
        self.inner.execute(sql, params)
    }

    fn fetch_all<'a>(
        &'a self,
        sql: &'a str,
        params: DbParams,
    ) -> BoxFuture<'a, Result<Vec<DbRow>, DbError>> {
        if !is_claim(sql) {
            return self.inner.fetch_all(sql, params);
        }
        Box::pin(async move {
            let t = Instant::now();
            let rows = self.inner.fetch_all(sql, params).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if !rows.is_empty() {
                if let Ok(mut v) = self.fetch_ms.lock() {
                    v.push(ms);
                }
            }
            Ok(rows)
        })
    }
}

impl DatabaseDriver for TimedDatabase {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn begin<'a>(&'a self) -> BoxFuture<'a, Result<DbTransaction, DbError>> {
        Box::pin(self.inner.begin())
    }

    fn listen<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<NotificationStream>, DbError>> {
        Box::pin(self.inner.listen(channel))
    }
}

/// Create the schema in database `name` and queue `rows` no-op jobs, then `VACUUM ANALYZE`.
async fn fill(name: &str, rows: usize) -> Result<(), BoxError> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url_of(&admin_url(), name))
        .await?;
    let utils = WorkerUtils::new(Database::from(pool.clone()), SCHEMA);
    utils.migrate().await?;
    let mut queued = 0;
    while queued < rows {
        let n = ENQUEUE_CHUNK.min(rows - queued);
        let jobs: Vec<RawJobSpec> = (0..n)
            .map(|_| RawJobSpec {
                identifier: Noop::IDENTIFIER.to_owned(),
                payload: json!({}),
                spec: JobSpec::default(),
            })
            .collect();
        utils.add_raw_jobs(&jobs).await?;
        queued += n;
    }
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a measurement found.
#[derive(Debug)]
struct Measured {
    system: &'static str,
    settings: String,
    tasks: u64,
    secs: f64,
    fetch_ms: Vec<f64>,
    timed_out: bool,
}

/// The library's worker with concurrency W, local queue (batch fetch of `batch` jobs) and
/// batched completions; runs until `target` handlers ran, then shuts down gracefully.
async fn run_worker(config: &Config, pool: &PgPool, target: u64) -> Result<Measured, BoxError> {
    let fetch_ms = Arc::new(Mutex::new(Vec::new()));
    let database = Database::new(TimedDatabase {
        inner: Database::new(SqlxDatabase::new(pool.clone())),
        fetch_ms: fetch_ms.clone(),
    });
    let progress = Progress {
        done: Arc::new(AtomicU64::new(0)),
        target,
        reached: Arc::new(tokio::sync::Notify::new()),
    };
    let worker = Arc::new(
        WorkerOptions::default()
            .database(database)
            .schema(SCHEMA)
            .concurrency(config.workers)
            .listen_os_shutdown_signals(false)
            .add_extension(progress.clone())
            .define_job::<Noop>()
            .local_queue(LocalQueueConfig::default().with_size(config.batch))
            .complete_job_batch_delay(Duration::from_millis(5))
            .init()
            .await?,
    );
    let reached = progress.reached.notified();
    let t0 = Instant::now();
    let runner = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.run().await })
    };
    let timed_out = match config.max_secs {
        Some(secs) => tokio::select! {
            () = reached => false,
            () = tokio::time::sleep(Duration::from_secs_f64(secs)) => true,
        },
        None => {
            reached.await;
            false
        }
    };
    worker.request_shutdown();
    runner.await??;
    let secs = t0.elapsed().as_secs_f64();
    let fetch_ms = fetch_ms.lock().map_err(|_| "poisoned")?.clone();
    Ok(Measured {
        system: "graphile_worker (local queue)",
        settings: format!(
            "Worker: concurrency {}, local_queue size {} (batch fetch), complete_job_batch_delay \
             5 ms, poll_interval 1 s (default), pool of {} connections",
            config.workers,
            config.batch,
            config.workers + 4
        ),
        tasks: progress.done.load(Ordering::Relaxed),
        secs,
        fetch_ms,
        timed_out,
    })
}

/// W loops, each with its own worker id, calling the library's own claim and completion
/// statements (`get_job`, then `complete_job`) one job at a time. The library's worker in
/// its default (direct) mode issues the same two statements per job, but only when a poll
/// tick or a new-job notification signals its slots, so a backlog queued before it starts
/// drains at about W jobs per poll interval (1 s): no measure of the queue itself.
async fn run_query_loops(
    config: &Config,
    pool: &PgPool,
    target: u64,
) -> Result<Measured, BoxError> {
    let database = Database::new(SqlxDatabase::new(pool.clone()));
    let task_details =
        Arc::new(get_tasks_details(&database, SCHEMA, vec![Noop::IDENTIFIER.to_owned()]).await?);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(config.workers + 1));
    let handles: Vec<_> = (0..config.workers)
        .map(|i| {
            let database = database.clone();
            let task_details = task_details.clone();
            let done = done.clone();
            let stop = stop.clone();
            let start = start.clone();
            tokio::spawn(async move {
                let worker_id = format!("qb-worker-{i}");
                let mut fetch_ms = Vec::new();
                start.wait().await;
                while done.load(Ordering::Relaxed) < target && !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let job =
                        get_job(&database, &task_details, SCHEMA, &worker_id, &[], None).await?;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let Some(job) = job else {
                        // The rest is locked by the other loops.
                        break;
                    };
                    fetch_ms.push(ms);
                    complete_job(&database, &job, &worker_id, SCHEMA).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, BoxError>(fetch_ms)
            })
        })
        .collect();
    start.wait().await;
    let t0 = Instant::now();
    let timer = config.max_secs.map(|secs| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            stop.store(true, Ordering::Relaxed);
        })
    });
    let mut fetch_ms = Vec::new();
    for h in handles {
        fetch_ms.extend(h.await??);
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(timer) = timer {
        timer.abort();
    }
    Ok(Measured {
        system: "graphile_worker (get_job/complete_job loop)",
        settings: format!(
            "{} tokio tasks, one worker id each, calling graphile_worker_queries::get_job then \
             complete_job per job (the statements of the library's direct mode); pool of {} \
             connections",
            config.workers,
            config.workers + 4
        ),
        tasks: done.load(Ordering::Relaxed),
        secs,
        fetch_ms,
        timed_out: stop.load(Ordering::Relaxed),
    })
}

async fn run(config: &Config, name: &str) -> Result<Value, BoxError> {
    let url = url_of(&admin_url(), name);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(config.workers)? + 4)
        .connect(&url)
        .await?;
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM graphile_worker._private_jobs WHERE locked_at IS NULL",
    )
    .fetch_one(&pool)
    .await?;
    if usize::try_from(queued)? != config.rows {
        return Err(format!("{queued} jobs queued, {} expected", config.rows).into());
    }
    let target = config
        .measure
        .map_or(queued as u64, |m| m.min(queued as u64));

    let mut long_txn = None;
    if config.long_txn {
        let options: PgConnectOptions = url.parse()?;
        let mut conn = options.connect().await?;
        sqlx::query("BEGIN").execute(&mut conn).await?;
        let _xid: i64 = sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(&mut conn)
            .await?;
        long_txn = Some(conn);
    }

    let load1_at_start = load1();
    let measured = if config.batch > 1 {
        run_worker(config, &pool, target).await?
    } else {
        run_query_loops(config, &pool, target).await?
    };
    if let Some(mut conn) = long_txn {
        sqlx::query("ROLLBACK").execute(&mut conn).await?;
        conn.close().await?;
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM graphile_worker._private_jobs")
        .fetch_one(&pool)
        .await?;
    pool.close().await;

    let Measured {
        system,
        settings,
        tasks,
        secs,
        mut fetch_ms,
        timed_out,
    } = measured;
    let measured = if tasks >= queued as u64 {
        "drain"
    } else if timed_out {
        "time_cap"
    } else {
        "first_completions"
    };
    if measured == "drain" && left != 0 {
        return Err(format!("{left} jobs left after the drain").into());
    }
    fetch_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "system": system,
        "settings": settings,
        "workers": config.workers,
        "queued_rows": config.rows,
        "long_txn": config.long_txn,
        "batch": config.batch,
        "measured": measured,
        "tasks": tasks,
        "secs": secs,
        "tasks_per_sec": tasks as f64 / secs,
        "claim_p50_ms": percentile(&fetch_ms, 50.0),
        "claim_p99_ms": percentile(&fetch_ms, 99.0),
        "claims": fetch_ms.len(),
        "load1": load1_at_start,
    }))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = parse_args()?;
    let name = format!("qb_graphile_{}", uuid::Uuid::new_v4().simple());
    match &config.template {
        Some(t) => {
            if !database_exists(t).await? {
                admin_sql(format!("CREATE DATABASE {t}")).await?;
                if let Err(e) = fill(t, config.rows).await {
                    admin_sql(format!("DROP DATABASE IF EXISTS {t} WITH (FORCE)"))
                        .await
                        .ok();
                    return Err(e);
                }
            }
            if config.prepare_only {
                return Ok(());
            }
            admin_sql(format!(
                "CREATE DATABASE {name} TEMPLATE {t} STRATEGY FILE_COPY"
            ))
            .await?;
        }
        None => {
            admin_sql(format!("CREATE DATABASE {name}")).await?;
            if let Err(e) = fill(&name, config.rows).await {
                admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok();
                return Err(e);
            }
        }
    }
    let result = run(&config, &name).await;
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    println!("{}", result?);
    Ok(())
}
