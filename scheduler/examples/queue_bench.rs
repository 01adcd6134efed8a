//! Queue benchmark, Constellation's side: claim + complete of no-op tile tasks by W concurrent
//! workers against a fresh database, printing one JSON line (tasks/s, claim latency p50/p99).
//!
//! ```text
//! queue_bench [--workers W] [--rows N] [--batch B] [--measure M] [--max-secs T]
//!             [--long-txn] [--jobs-of TILES] [--template NAME [--prepare-only]]
//! ```
//!
//! * `--rows N` tile tasks are queued (in jobs of `--jobs-of` tiles, 10 000 by default; each
//!   job also has its finalize task, which becomes claimable when its last tile completes).
//! * `--measure M` stops once M tasks completed (default: drain everything, finalize tasks
//!   included).
//! * `--max-secs T` also stops after T seconds (the tasks completed by then are counted).
//! * `--long-txn` keeps a transaction with an xid open on the run's database for the whole
//!   measurement (`BEGIN; SELECT txid_current();`), holding back the xmin horizon.
//! * `--template NAME` queues the rows once into database NAME (created when missing, kept
//!   for later runs) and copies it for this run (`CREATE DATABASE … TEMPLATE`), so a 1 M-row
//!   backlog is not re-queued for every configuration. Without it the run's database is
//!   created, migrated and filled here. `--prepare-only` makes the template and stops.
//!
//! The run's database (`qb_constellation_<uuid>`) is created on the server of `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`) and dropped at the end. Queueing is not
//! timed; after it the tables are `VACUUM ANALYZE`d (the same for every system measured).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scheduler::{JobSpec, Queue, TaskRef, TileSpec, Window, WorkerSpec, DEFAULT_ACCOUNT_ID};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one run measures.
#[derive(Debug, Clone)]
struct Config {
    workers: usize,
    rows: usize,
    batch: i64,
    measure: Option<u64>,
    max_secs: Option<f64>,
    long_txn: bool,
    tiles_per_job: usize,
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
        tiles_per_job: 10_000,
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
            "--jobs-of" => config.tiles_per_job = value()?.parse()?,
            "--template" => config.template = Some(value()?),
            "--long-txn" => config.long_txn = true,
            "--prepare-only" => config.prepare_only = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if config.workers == 0 || config.rows == 0 || config.batch < 1 || config.tiles_per_job == 0 {
        return Err("workers, rows, batch and jobs-of must be at least 1".into());
    }
    Ok(config)
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The connection string of database `name` on the admin URL's server.
fn url_of(admin: &str, name: &str) -> String {
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => admin.to_owned(),
    }
}

async fn admin_connection() -> Result<PgConnection, BoxError> {
    let options: PgConnectOptions = admin_url().parse()?;
    Ok(options.connect().await?)
}

async fn database_exists(name: &str) -> Result<bool, BoxError> {
    let mut conn = admin_connection().await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await?;
    conn.close().await?;
    Ok(found.is_some())
}

async fn create_database(name: &str, template: Option<&str>) -> Result<(), BoxError> {
    let mut conn = admin_connection().await?;
    let sql = match template {
        Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t} STRATEGY FILE_COPY"),
        None => format!("CREATE DATABASE {name}"),
    };
    sqlx::raw_sql(&sql).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

async fn drop_database(name: &str) -> Result<(), BoxError> {
    let mut conn = admin_connection().await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// A small square footprint near (0, 0) for tile `index`.
fn footprint_deg(index: i32) -> Vec<(f64, f64)> {
    let lon = f64::from(index % 1000) * 0.01;
    let lat = f64::from(index / 1000 % 1000) * 0.01;
    vec![
        (lon, lat),
        (lon + 0.01, lat),
        (lon + 0.01, lat + 0.01),
        (lon, lat + 0.01),
    ]
}

/// Migrate database `name` and queue `rows` tile tasks in jobs of `tiles_per_job`; returns the
/// number of jobs (each has one finalize task besides its tiles).
async fn fill(name: &str, rows: usize, tiles_per_job: usize) -> Result<usize, BoxError> {
    let q = Queue::connect_with(&url_of(&admin_url(), name), 2).await?;
    q.migrate().await?;
    let mut jobs = 0;
    let mut queued = 0;
    let mut submit_secs = 0.0;
    while queued < rows {
        let n = tiles_per_job.min(rows - queued);
        let tiles = (0..n)
            .map(|i| {
                let index = i32::try_from(i)?;
                Ok(TileSpec {
                    index,
                    window: Window {
                        x_px: (index % 100) * 256,
                        y_px: (index / 100) * 256,
                        width_px: 256,
                        height_px: 256,
                    },
                    footprint_deg: footprint_deg(index),
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        let started = Instant::now();
        q.submit(&JobSpec {
            account: DEFAULT_ACCOUNT_ID,
            recipe: "noop".to_owned(),
            params: json!({}),
            inputs: json!({}),
            priority: 0,
            tiles,
            max_attempts: 3,
            trace_context: None,
        })
        .await?;
        submit_secs += started.elapsed().as_secs_f64();
        jobs += 1;
        queued += n;
    }
    // Not part of any result file: a look at bulk submission (Queue::submit) on the way.
    eprintln!("queued {queued} tile tasks in {jobs} jobs: {submit_secs:.3} s in Queue::submit");
    sqlx::raw_sql("VACUUM ANALYZE").execute(q.pool()).await?;
    q.pool().close().await;
    Ok(jobs)
}

/// The queued tasks of database `name`: (tile tasks queued, finalize tasks blocked).
async fn backlog_of(name: &str) -> Result<(i64, i64), BoxError> {
    let options: PgConnectOptions = url_of(&admin_url(), name).parse()?;
    let mut conn = options.connect().await?;
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'blocked')
         FROM task",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(counts)
}

/// Nearest-rank percentile of sorted values.
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

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerStats {
    claim_ms: Vec<f64>,
    empty_claims: u64,
}

async fn work(
    q: Queue,
    worker: uuid::Uuid,
    batch: i64,
    target: u64,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Arc<tokio::sync::Barrier>,
) -> Result<WorkerStats, BoxError> {
    let lease = Duration::from_secs(300);
    let mut stats = WorkerStats::default();
    start.wait().await;
    // As the worker does: one claim to start, then each batch is completed and the next one
    // claimed together: in one call at batch 1 (Queue::complete_and_claim), as two calls at
    // once on two connections above it (Queue::complete and Queue::claim); a plain claim again
    // only after a round that brought nothing. The time of the round that brought a batch
    // counts as its claim latency, the completion it includes too.
    let mut claimed = Vec::new();
    let mut claim_ms = 0.0;
    while done.load(Ordering::Relaxed) < target && !stop.load(Ordering::Relaxed) {
        if claimed.is_empty() {
            let t = Instant::now();
            claimed = q.claim(worker, batch, lease).await?;
            claim_ms = t.elapsed().as_secs_f64() * 1e3;
            if claimed.is_empty() {
                // Tasks held by other workers, or finalize tasks not yet unblocked.
                stats.empty_claims += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        stats.claim_ms.push(claim_ms);
        let runs: Vec<(TaskRef, Value)> = claimed.iter().map(|c| (c.run, Value::Null)).collect();
        let t = Instant::now();
        let (accepted, next) = if batch > 1 {
            let (accepted, next) =
                tokio::join!(q.complete(worker, &runs), q.claim(worker, batch, lease));
            (accepted?, next?)
        } else {
            q.complete_and_claim(worker, &runs, batch, lease).await?
        };
        claim_ms = t.elapsed().as_secs_f64() * 1e3;
        if accepted.len() != runs.len() {
            return Err(format!(
                "{} of {} completions were refused",
                runs.len() - accepted.len(),
                runs.len()
            )
            .into());
        }
        done.fetch_add(accepted.len() as u64, Ordering::Relaxed);
        claimed = next;
    }
    Ok(stats)
}

async fn run(config: &Config, name: &str) -> Result<Value, BoxError> {
    let url = url_of(&admin_url(), name);
    let (queued, blocked) = backlog_of(name).await?;
    if usize::try_from(queued)? != config.rows {
        return Err(format!("{queued} tasks queued, {} expected", config.rows).into());
    }
    let all = u64::try_from(queued + blocked)?;
    let target = config.measure.map_or(all, |m| m.min(all));

    let q = Queue::connect_with(&url, u32::try_from(config.workers)? + 1).await?;
    let mut workers = Vec::with_capacity(config.workers);
    for i in 0..config.workers {
        workers.push(
            q.register_worker(&WorkerSpec {
                host: format!("bench-{i}"),
                backend: "cpu".to_owned(),
                gpus: json!([]),
            })
            .await?,
        );
    }
    // Open every pooled connection before the clock starts.
    drop(open_connections(&q, config.workers).await?);

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
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(config.workers + 1));
    let handles: Vec<_> = workers
        .iter()
        .map(|&w| {
            tokio::spawn(work(
                q.clone(),
                w,
                config.batch,
                target,
                done.clone(),
                stop.clone(),
                start.clone(),
            ))
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
    let mut claim_ms = Vec::new();
    let mut empty_claims = 0;
    for h in handles {
        let stats = h.await??;
        claim_ms.extend(stats.claim_ms);
        empty_claims += stats.empty_claims;
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(timer) = timer {
        timer.abort();
    }
    let tasks = done.load(Ordering::Relaxed);
    let measured = if tasks >= all {
        "drain"
    } else if stop.load(Ordering::Relaxed) {
        "time_cap"
    } else {
        "first_completions"
    };
    if let Some(mut conn) = long_txn {
        sqlx::query("ROLLBACK").execute(&mut conn).await?;
        conn.close().await?;
    }
    q.pool().close().await;

    claim_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "system": "constellation",
        "settings": format!(
            "{} per batch (Queue::claim when there is none); {} tokio tasks, one registered \
             worker id each, pool of {} connections",
            if config.batch > 1 {
                format!(
                    "Queue::complete and Queue::claim(worker, {}, 300 s lease) at once, on two \
                     connections,",
                    config.batch
                )
            } else {
                "Queue::complete_and_claim(worker, batch, 1, 300 s lease)".to_string()
            },
            config.workers,
            config.workers + 1
        ),
        "workers": config.workers,
        "queued_rows": config.rows,
        "long_txn": config.long_txn,
        "batch": config.batch,
        "measured": measured,
        "tasks": tasks,
        "secs": secs,
        "tasks_per_sec": tasks as f64 / secs,
        "claim_p50_ms": percentile(&claim_ms, 50.0),
        "claim_p99_ms": percentile(&claim_ms, 99.0),
        "claims": claim_ms.len(),
        "empty_claims": empty_claims,
        "load1": load1_at_start,
    }))
}

/// Touch `n` pooled connections at once so that none is opened during the measurement.
async fn open_connections(
    q: &Queue,
    n: usize,
) -> Result<Vec<sqlx::pool::PoolConnection<sqlx::Postgres>>, BoxError> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(q.pool().acquire().await?);
    }
    Ok(conns)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = parse_args()?;
    let name = format!("qb_constellation_{}", uuid::Uuid::new_v4().simple());
    match &config.template {
        Some(t) => {
            if !database_exists(t).await? {
                create_database(t, None).await?;
                if let Err(e) = fill(t, config.rows, config.tiles_per_job).await {
                    drop_database(t).await.ok();
                    return Err(e);
                }
            }
            if config.prepare_only {
                return Ok(());
            }
            create_database(&name, Some(t)).await?;
        }
        None => {
            create_database(&name, None).await?;
            if let Err(e) = fill(&name, config.rows, config.tiles_per_job).await {
                drop_database(&name).await.ok();
                return Err(e);
            }
        }
    }
    let result = run(&config, &name).await;
    drop_database(&name).await?;
    println!("{}", result?);
    Ok(())
}
