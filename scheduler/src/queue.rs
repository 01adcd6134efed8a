//! The queue: submit, claim, heartbeat, complete, fail, reap, cancel — each one statement or
//! one short transaction against PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::copy::copy_in;
use crate::error::{Result, SchedulerError};
use crate::events::EVENT_CHANNEL;
use crate::model::{
    footprint_ewkb, ClaimedTask, FailOutcome, HeartbeatReply, JobSpec, JobState, JobStatus,
    ReapReport, TaskId, TaskInfo, TaskKind, TaskRef, TaskState, Window, WorkerSpec,
};

/// Claim and complete are one function, `complete_and_claim`
/// (migrations/0009_one_claim_complete_function.sql): one round trip each, on plans cached for
/// the connection's life. A claim alone is a call that completes nothing; a completion alone
/// claims nothing.
const COMPLETE_AND_CLAIM_SQL: &str =
    "SELECT * FROM complete_and_claim($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/// A completion alone (`complete_and_claim` claiming nothing); public for tests that hold
/// a completion's transaction open.
pub const COMPLETE_SQL: &str = "SELECT completed, recheck_job \
                                FROM complete_and_claim($1, $2, $3, $4, 0, 0, NULL, NULL, NULL)";
const FAIL_RETRY_SQL: &str = include_str!("../sql/fail_retry.sql");
const FAIL_TERMINAL_SQL: &str = include_str!("../sql/fail_terminal.sql");
const FINALIZE_SWEEP_SQL: &str = concat!(
    include_str!("../sql/finalize_sweep.sql"),
    include_str!("../sql/finalize_events.sql")
);
const FINALIZE_UNBLOCK_SQL: &str = concat!(
    include_str!("../sql/finalize_unblock.sql"),
    include_str!("../sql/finalize_events.sql")
);
const END_JOB_TASKS_SQL: &str = include_str!("../sql/end_job_tasks.sql");
const END_JOB_SQL: &str = include_str!("../sql/end_job.sql");
const HEARTBEAT_SQL: &str = include_str!("../sql/heartbeat.sql");
const REAP_SQL: &str = include_str!("../sql/reap.sql");
const SUBMIT_SQL: &str = include_str!("../sql/submit.sql");
/// A job's tiles and tile tasks, after `SUBMIT_SQL` in its transaction (`crate::copy`).
const COPY_TILES_SQL: &str = "COPY tile (job_id, tile_index, x_px, y_px, width_px, height_px, \
                              footprint) FROM STDIN (FORMAT binary)";
const COPY_TASKS_SQL: &str = "COPY task (job_id, kind, tile_index, state, priority, \
                              max_attempts) FROM STDIN (FORMAT binary)";
const SUBMIT_FINALIZE_SQL: &str = include_str!("../sql/submit_finalize.sql");
const TASKS_OF_JOB_SQL: &str = include_str!("../sql/tasks_of_job.sql");

/// The channel a task becoming claimable is announced on.
pub const TASK_CHANNEL: &str = "constellation_task";

/// SQLSTATE of a detected deadlock: the transaction was rolled back and may be retried.
const DEADLOCK_DETECTED: &str = "40P01";

/// How failed runs are spaced out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub base_secs: f64,
    /// Largest delay, before jitter.
    pub cap_secs: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_secs: 5.0,
            cap_secs: 600.0,
        }
    }
}

/// The most often a [`Queue`] announces progress events on [`EVENT_CHANNEL`].
const PROGRESS_ANNOUNCE_EVERY: Duration = Duration::from_millis(50);

/// By default, the longest a worker claims from its frontier before it claims from the claim
/// order's head again: how late a task queued behind the frontier (a higher priority, or an
/// earlier `run_at`) may be claimed while the frontier still has rows
/// ([`Queue::with_full_claim_every`]).
pub const FULL_CLAIM_EVERY: Duration = Duration::from_secs(1);

/// Where a worker's last claim ended in claim order (priority descending, then `run_at`,
/// then id): its next claim enters the claim index there.
#[derive(Debug, Clone, Copy)]
struct Frontier {
    priority: i32,
    run_at: DateTime<Utc>,
    id: TaskId,
    /// When the worker last claimed from the head.
    full_claim_at: Instant,
}

/// A handle on the queue (a connection pool; cheap to clone).
#[derive(Debug, Clone)]
pub struct Queue {
    pool: PgPool,
    backoff: Backoff,
    /// Shared by the clones: when progress was last announced, and whether an announcement
    /// is already scheduled.
    announced: Arc<Mutex<(Option<Instant>, bool)>>,
    /// Shared by the clones: each worker's frontier, while its claims bring rows.
    frontiers: Arc<Mutex<HashMap<Uuid, Frontier>>>,
    /// How often a worker claims from the head at least.
    full_claim_every: Duration,
}

impl Queue {
    /// Connect with a pool of up to 10 connections.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, 10).await
    }

    /// Connect with a pool of up to `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.application_name("constellation-scheduler");
        // One direct connection first: an unreachable server fails at once with its reason,
        // where the pool would keep retrying until its acquire timeout.
        sqlx::Connection::close(sqlx::ConnectOptions::connect(&options).await?).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wrap an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            backoff: Backoff::default(),
            announced: Arc::default(),
            frontiers: Arc::default(),
            full_claim_every: FULL_CLAIM_EVERY,
        }
    }

    /// The same queue with another retry backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The same queue (sharing its workers' frontiers) with another longest time between a
    /// worker's claims from the head; zero makes every claim start there.
    pub fn with_full_claim_every(mut self, every: Duration) -> Self {
        self.full_claim_every = every;
        self
    }

    /// The pool, for the event bus and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool's open connections, how many of those are idle, and its connection limit.
    pub fn pool_stats(&self) -> (u32, usize, u32) {
        (
            self.pool.size(),
            self.pool.num_idle(),
            self.pool.options().get_max_connections(),
        )
    }

    /// Apply the migrations in `scheduler/migrations` (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Queue a job: the job row, its tiles, one task per tile and a finalize task, in one
    /// transaction, in bulk. Returns the job id.
    pub async fn submit(&self, spec: &JobSpec) -> Result<Uuid> {
        if spec.max_attempts < 1 {
            return Err(SchedulerError::InvalidSpec(
                "max_attempts must be at least 1".into(),
            ));
        }
        if spec.recipe.is_empty() {
            return Err(SchedulerError::InvalidSpec(
                "recipe must not be empty".into(),
            ));
        }
        let n = spec.tiles.len();
        let tiles_total = i32::try_from(n)
            .map_err(|_| SchedulerError::InvalidSpec(format!("{n} tiles are too many")))?;
        let mut footprint = Vec::with_capacity(n);
        let mut extent: Option<[f64; 4]> = None;
        for t in &spec.tiles {
            if t.window.width_px <= 0 || t.window.height_px <= 0 {
                return Err(SchedulerError::InvalidSpec(format!(
                    "tile {}: the window must have a positive size",
                    t.index
                )));
            }
            footprint.push(footprint_ewkb(t.index, &t.footprint_deg)?);
            for &(lon, lat) in &t.footprint_deg {
                let e = extent.get_or_insert([lon, lat, lon, lat]);
                *e = [e[0].min(lon), e[1].min(lat), e[2].max(lon), e[3].max(lat)];
            }
        }
        let mut sorted: Vec<i32> = spec.tiles.iter().map(|t| t.index).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|p| p[0] == p[1]) {
            return Err(SchedulerError::InvalidSpec(
                "tile indices must be unique".into(),
            ));
        }

        let job_id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        sqlx::query(SUBMIT_SQL)
            .bind(job_id)
            .bind(spec.account)
            .bind(&spec.recipe)
            .bind(&spec.params)
            .bind(&spec.inputs)
            .bind(spec.priority)
            .bind(spec.max_attempts)
            .bind(tiles_total)
            .bind(&spec.trace_context)
            .bind(extent.map(|e| e[0]))
            .bind(extent.map(|e| e[1]))
            .bind(extent.map(|e| e[2]))
            .bind(extent.map(|e| e[3]))
            .execute(&mut *tx)
            .await?;
        // The tiles, then their tasks, in plan order: binary COPY, sent in chunks while the
        // rest is encoded (see "Submission" in scheduler/README.md for the measurement).
        copy_in(
            &mut tx,
            COPY_TILES_SQL,
            spec.tiles.iter().zip(&footprint),
            |rows, (t, ewkb)| {
                rows.row(7)
                    .uuid(&job_id)
                    .int4(t.index)
                    .int4(t.window.x_px)
                    .int4(t.window.y_px)
                    .int4(t.window.width_px)
                    .int4(t.window.height_px);
                match ewkb {
                    Some(ewkb) => rows.raw(ewkb),
                    None => rows.null(),
                };
            },
        )
        .await?;
        copy_in(&mut tx, COPY_TASKS_SQL, &spec.tiles, |rows, t| {
            rows.row(6)
                .uuid(&job_id)
                .text("tile")
                .int4(t.index)
                .text("queued")
                .int4(spec.priority)
                .int4(spec.max_attempts);
        })
        .await?;
        sqlx::query(SUBMIT_FINALIZE_SQL)
            .bind(job_id)
            .bind(spec.priority)
            .bind(spec.max_attempts)
            .bind(tiles_total)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(TASK_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(job_id)
    }

    /// Claim up to `n` claimable tasks for `worker`, highest priority first, each with a
    /// lease of `lease`. Never waits on rows another claimer holds.
    ///
    /// A worker's claims continue where its last one ended in claim order (its frontier), and
    /// start from the head again at least every [`FULL_CLAIM_EVERY`] (by default) and
    /// whenever the frontier has fewer than `n` rows left: a task queued behind the frontier
    /// meanwhile (a higher priority, an earlier `run_at`) waits at most that long, and a claim
    /// never comes back short while claimable tasks are left.
    pub async fn claim(&self, worker: Uuid, n: i64, lease: Duration) -> Result<Vec<ClaimedTask>> {
        // A call that completes nothing runs the claim alone.
        Ok(self.complete_and_claim(worker, &[], n, lease).await?.1)
    }

    /// The frontier `worker`'s next claim starts from, if it should not start from the head.
    fn frontier_of(&self, worker: Uuid) -> Option<Frontier> {
        let frontiers = self.frontiers.lock().ok()?;
        let frontier = frontiers.get(&worker)?;
        (frontier.full_claim_at.elapsed() < self.full_claim_every).then_some(*frontier)
    }

    /// Records where `worker`'s claim of up to `n` rows (`rows`, from `hint` or from the head)
    /// ended; a claim that brought nothing forgets the frontier.
    fn advance_frontier(
        &self,
        worker: Uuid,
        hint: Option<Frontier>,
        n: i64,
        rows: &[PgRow],
    ) -> Result<()> {
        if n <= 0 {
            return Ok(());
        }
        let mut last: Option<(i32, DateTime<Utc>, TaskId)> = None;
        for r in rows {
            let key = (
                r.try_get("priority")?,
                r.try_get("run_at")?,
                r.try_get("id")?,
            );
            // Claim order: priority descending, then run_at, then id.
            let order = |k: &(i32, DateTime<Utc>, TaskId)| (std::cmp::Reverse(k.0), k.1, k.2);
            if last.as_ref().is_none_or(|l| order(&key) > order(l)) {
                last = Some(key);
            }
        }
        let Ok(mut frontiers) = self.frontiers.lock() else {
            return Ok(());
        };
        match last {
            Some((priority, run_at, id)) => {
                let full_claim_at = match hint {
                    Some(h) => h.full_claim_at,
                    None => Instant::now(),
                };
                frontiers.insert(
                    worker,
                    Frontier {
                        priority,
                        run_at,
                        id,
                        full_claim_at,
                    },
                );
            }
            None => {
                frontiers.remove(&worker);
            }
        }
        Ok(())
    }

    /// Complete runs of `worker` with their outputs, in one statement. Returns the task ids
    /// whose completion was accepted; a run the worker no longer owns is refused.
    ///
    /// When concurrent completions may have finished a job's last tiles together, a short
    /// recheck after the commit unblocks the job's finalize task (`complete_tasks` in
    /// `migrations/0004_claim_complete_functions.sql` explains why that is never missed);
    /// should the recheck fail, the sweep in [`Queue::reap`] does it, so the completion still
    /// counts and its error is not returned.
    pub async fn complete(&self, worker: Uuid, done: &[(TaskRef, Value)]) -> Result<Vec<TaskId>> {
        if done.is_empty() {
            // Nothing to complete (a batch whose every run failed): no round trip.
            return Ok(Vec::new());
        }
        let (ids, attempts, outputs) = completion_arrays(done);
        // One statement: a detected deadlock rolled all of it back, so running it again
        // cannot count anything twice (the locks are ordered; this is the safety net).
        let rows: Vec<(Option<TaskId>, Option<Uuid>)> = retry_deadlock(|| async {
            sqlx::query_as(COMPLETE_SQL)
                .bind(worker)
                .bind(&ids)
                .bind(&attempts)
                .bind(&outputs)
                .fetch_all(&self.pool)
                .await
        })
        .await?;
        let mut accepted = Vec::with_capacity(rows.len());
        for (task, recheck) in rows {
            self.accept(&mut accepted, task, recheck).await;
        }
        if !accepted.is_empty() {
            self.announce_progress();
        }
        Ok(accepted)
    }

    /// Completes `done` like [`Queue::complete`], then claims up to `n` tasks like
    /// [`Queue::claim`], in one statement and one transaction: a worker's loop pays one round
    /// trip and one commit per batch instead of two (`complete_and_claim` in
    /// `migrations/0006_complete_and_claim.sql`). A finalize task that the completion made
    /// claimable can come back in the same call. Returns the accepted task ids and the
    /// claimed tasks; `n = 0` only completes.
    pub async fn complete_and_claim(
        &self,
        worker: Uuid,
        done: &[(TaskRef, Value)],
        n: i64,
        lease: Duration,
    ) -> Result<(Vec<TaskId>, Vec<ClaimedTask>)> {
        let (ids, attempts, outputs) = completion_arrays(done);
        let hint = if n > 0 {
            self.frontier_of(worker)
        } else {
            None
        };
        // One statement: a detected deadlock rolled back the completion and the claim alike.
        let rows = retry_deadlock(|| async {
            sqlx::query(COMPLETE_AND_CLAIM_SQL)
                .bind(worker)
                .bind(&ids)
                .bind(&attempts)
                .bind(&outputs)
                .bind(n)
                .bind(lease.as_secs_f64())
                .bind(hint.map(|f| f.priority))
                .bind(hint.map(|f| f.run_at))
                .bind(hint.map(|f| f.id))
                .fetch_all(&self.pool)
                .await
        })
        .await?;
        let (mut accepted, mut claimed, mut claimed_rows) =
            (Vec::with_capacity(done.len()), Vec::new(), Vec::new());
        for r in rows {
            let task: Option<TaskId> = r.try_get("completed")?;
            let recheck: Option<Uuid> = r.try_get("recheck_job")?;
            if task.is_some() || recheck.is_some() {
                self.accept(&mut accepted, task, recheck).await;
            } else {
                claimed.push(claimed_task(&r)?);
                claimed_rows.push(r);
            }
        }
        self.advance_frontier(worker, hint, n, &claimed_rows)?;
        if !accepted.is_empty() {
            self.announce_progress();
        }
        Ok((accepted, claimed))
    }

    /// Tells event subscribers that progress events were committed: completions append them
    /// without a NOTIFY of their own (`migrations/0007_progress_events_notify_debounced.sql`
    /// says why). Announces at once when the last announcement is older than
    /// [`PROGRESS_ANNOUNCE_EVERY`], else once when that time is up, covering every commit
    /// before it; in the background either way. A lost announcement costs a subscriber its
    /// polling interval.
    fn announce_progress(&self) {
        let now = Instant::now();
        let delay = {
            let Ok(mut state) = self.announced.lock() else {
                return;
            };
            let (last, scheduled) = &mut *state;
            if *scheduled {
                return;
            }
            match *last {
                Some(at) if now < at + PROGRESS_ANNOUNCE_EVERY => {
                    *scheduled = true;
                    Some(at + PROGRESS_ANNOUNCE_EVERY - now)
                }
                _ => {
                    *last = Some(now);
                    None
                }
            }
        };
        let (pool, announced) = (self.pool.clone(), Arc::clone(&self.announced));
        tokio::spawn(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
                if let Ok(mut state) = announced.lock() {
                    *state = (Some(Instant::now()), false);
                }
            }
            let _ = sqlx::query("SELECT pg_notify($1, '')")
                .bind(EVENT_CHANNEL)
                .execute(&pool)
                .await;
        });
    }

    /// One row of a completion's result: an accepted task, or a job whose finalize task is
    /// rechecked now that the completion committed (should the recheck fail, the sweep in
    /// [`Queue::reap`] does it, so its error is not returned).
    async fn accept(
        &self,
        accepted: &mut Vec<TaskId>,
        task: Option<TaskId>,
        recheck: Option<Uuid>,
    ) {
        accepted.extend(task);
        if let Some(job) = recheck {
            let _ = self.unblock_finalize(job).await;
        }
    }

    /// Make `job`'s finalize task claimable if it is blocked and no tile task of the job is
    /// left, waiting for completions of its tiles still in flight (`sql/finalize_unblock.sql`).
    /// Returns whether this call unblocked it. Idempotent.
    async fn unblock_finalize(&self, job: Uuid) -> Result<bool> {
        let unblocked: Option<TaskId> = sqlx::query_scalar(FINALIZE_UNBLOCK_SQL)
            .bind(job)
            .fetch_optional(&self.pool)
            .await?;
        Ok(unblocked.is_some())
    }

    /// A run of `worker` failed with `error`. Retryable failures with attempts left go back
    /// to the queue after a backoff; otherwise the task fails and its job with it (the rest
    /// of the job is cancelled).
    pub async fn fail(
        &self,
        worker: Uuid,
        run: TaskRef,
        error: &str,
        retryable: bool,
    ) -> Result<FailOutcome> {
        if retryable {
            let retry: Option<DateTime<Utc>> = sqlx::query_scalar(FAIL_RETRY_SQL)
                .bind(worker)
                .bind(run.id)
                .bind(run.attempt)
                .bind(error)
                .bind(self.backoff.base_secs)
                .bind(self.backoff.cap_secs)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(run_at) = retry {
                return Ok(FailOutcome::Retrying { run_at });
            }
        }
        let failed = self
            .with_deadlock_retry(|mut tx| async move {
                let gone: Option<(Uuid, bool)> = sqlx::query_as(FAIL_TERMINAL_SQL)
                    .bind(run.id)
                    .bind(error)
                    .bind(worker)
                    .bind(run.attempt)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some((job, tile)) = gone {
                    let reason = format!("task {} failed: {error}", run.id);
                    end_job(&mut tx, job, JobState::Failed, &reason, i32::from(tile)).await?;
                }
                Ok((tx, gone.is_some()))
            })
            .await?;
        Ok(if failed {
            FailOutcome::Failed
        } else {
            FailOutcome::Rejected
        })
    }

    /// Give runs back without counting them (a draining worker): queued again at once.
    /// Returns the ids released.
    pub async fn release(&self, worker: Uuid, runs: &[TaskRef]) -> Result<Vec<TaskId>> {
        let ids: Vec<TaskId> = runs.iter().map(|r| r.id).collect();
        let attempts: Vec<i32> = runs.iter().map(|r| r.attempt).collect();
        let released = sqlx::query_scalar(
            "-- Back to the queue, the attempt uncounted.
             UPDATE task t
             SET state = 'queued', attempt = t.attempt - 1, worker_id = NULL,
                 lease_expires_at = NULL, claimed_at = NULL, run_at = now()
             FROM unnest($2::bigint[], $3::int[]) AS i(id, attempt)
             WHERE t.id = i.id AND t.attempt = i.attempt AND t.worker_id = $1
               AND t.state = 'running'
             RETURNING t.id",
        )
        .bind(worker)
        .bind(&ids)
        .bind(&attempts)
        .fetch_all(&self.pool)
        .await?;
        Ok(released)
    }

    /// Extend the leases of `worker`'s in-flight runs by `lease` and stamp the worker.
    /// The reply names runs to stop: cancelled ones, and ones the worker lost.
    pub async fn heartbeat(
        &self,
        worker: Uuid,
        in_flight: &[TaskRef],
        lease: Duration,
    ) -> Result<HeartbeatReply> {
        let ids: Vec<TaskId> = in_flight.iter().map(|r| r.id).collect();
        let attempts: Vec<i32> = in_flight.iter().map(|r| r.attempt).collect();
        let rows = sqlx::query(HEARTBEAT_SQL)
            .bind(worker)
            .bind(&ids)
            .bind(&attempts)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        let mut reply = HeartbeatReply::default();
        for r in rows {
            let id: TaskId = r.try_get("id")?;
            if r.try_get::<bool, _>("cancelled")? {
                reply.cancelled.push(id);
            } else {
                reply.lost.push(id);
            }
        }
        Ok(reply)
    }

    /// Return runs whose lease expired to the queue; fail those that were on their last
    /// attempt (and their jobs). Never touches a run whose lease is still valid. Also the
    /// finalize dependency's safety net: finalize tasks still blocked although every tile of
    /// their job succeeded (a completion's recheck that never ran) become claimable.
    pub async fn reap(&self) -> Result<ReapReport> {
        let finalize_unblocked: Vec<TaskId> = sqlx::query_scalar(FINALIZE_SWEEP_SQL)
            .fetch_all(&self.pool)
            .await?;
        let requeued: Vec<TaskId> = sqlx::query_scalar(REAP_SQL).fetch_all(&self.pool).await?;
        let exhausted: Vec<(TaskId, i32)> = sqlx::query_as(
            "-- Expired runs that were the last attempt (running rows through task_claimed_idx).
             SELECT id, attempt FROM task
             WHERE claimed_at IS NOT NULL AND state = 'running' AND lease_expires_at < now()
               AND attempt >= max_attempts
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut failed = Vec::new();
        for (id, attempt) in exhausted {
            let error = format!("lease expired on the last attempt ({attempt})");
            let ok = self
                .with_deadlock_retry(|mut tx| {
                    let error = error.clone();
                    async move {
                        // Re-check expiry under the row lock: a late heartbeat wins.
                        let still: Option<TaskId> = sqlx::query_scalar(
                            "SELECT id FROM task
                             WHERE id = $1 AND state = 'running' AND lease_expires_at < now()
                             FOR UPDATE SKIP LOCKED",
                        )
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if still.is_none() {
                            return Ok((tx, false));
                        }
                        let gone: Option<(Uuid, bool)> = sqlx::query_as(FAIL_TERMINAL_SQL)
                            .bind(id)
                            .bind(&error)
                            .bind(None::<Uuid>)
                            .bind(attempt)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if let Some((job, tile)) = gone {
                            let reason = format!("task {id} failed: {error}");
                            end_job(&mut tx, job, JobState::Failed, &reason, i32::from(tile))
                                .await?;
                        }
                        Ok((tx, gone.is_some()))
                    }
                })
                .await?;
            if ok {
                failed.push(id);
            }
        }
        Ok(ReapReport {
            requeued,
            failed,
            finalize_unblocked,
        })
    }

    /// Cancel a job: every unfinished task moves to history as cancelled (running workers
    /// learn it at their next heartbeat; their completions are refused). Returns whether the
    /// job was still unfinished.
    pub async fn cancel(&self, job: Uuid, reason: &str) -> Result<bool> {
        self.with_deadlock_retry(|mut tx| async move {
            let ended = end_job(&mut tx, job, JobState::Cancelled, reason, 0).await?;
            Ok((tx, ended))
        })
        .await
    }

    /// A job's state and progress.
    pub async fn job(&self, job: Uuid) -> Result<Option<JobStatus>> {
        let row = sqlx::query(
            "-- The job row; an unfinished job's progress adds its shards not yet folded.
             SELECT id, account_id, state, tiles_total, error, created_at, started_at,
                    finished_at,
                    tiles_succeeded + coalesce((
                        SELECT sum(g.tiles) FROM job_progress g
                        WHERE g.job_id = job.id AND job.state IN ('queued', 'running')),
                        0)::int AS tiles_succeeded
             FROM job WHERE id = $1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(JobStatus {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            state: JobState::parse(r.try_get("state")?)?,
            tiles_total: r.try_get("tiles_total")?,
            tiles_succeeded: r.try_get("tiles_succeeded")?,
            error: r.try_get("error")?,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
        }))
    }

    /// Every task of a job, hot and finished, in id order.
    pub async fn tasks(&self, job: Uuid) -> Result<Vec<TaskInfo>> {
        let rows = sqlx::query(TASKS_OF_JOB_SQL)
            .bind(job)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TaskInfo {
                    id: r.try_get("id")?,
                    kind: TaskKind::parse(r.try_get("kind")?)?,
                    tile_index: r.try_get("tile_index")?,
                    state: TaskState::parse(r.try_get("state")?)?,
                    attempt: r.try_get("attempt")?,
                    max_attempts: r.try_get("max_attempts")?,
                    worker_id: r.try_get("worker_id")?,
                    error: r.try_get("error")?,
                    output: r.try_get("output")?,
                })
            })
            .collect()
    }

    /// Tasks still to run: queued (whenever their `run_at` falls) or running, across jobs.
    /// A draining worker stops once this is zero and it claims nothing.
    pub async fn backlog(&self) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "-- Queued (now or after a backoff) or running; blocked ones follow their tiles.
             SELECT count(*) FROM task WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Register a worker; returns its id.
    pub async fn register_worker(&self, spec: &WorkerSpec) -> Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO worker (id, host, backend, gpus) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(&spec.host)
            .bind(&spec.backend)
            .bind(&spec.gpus)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO event (kind, payload) VALUES ('worker_up', $1)")
            .bind(
                serde_json::json!({ "worker_id": id.to_string(), "host": spec.host, "backend": spec.backend }),
            )
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// A listener that wakes when tasks become claimable (see [`TaskWaker`]).
    pub async fn waker(&self) -> Result<TaskWaker> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(TASK_CHANNEL).await?;
        Ok(TaskWaker { listener })
    }

    /// Run `op` in a transaction, committing what it returns; a detected deadlock rolls
    /// back and runs it again (up to 5 times).
    async fn with_deadlock_retry<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Transaction<'static, Postgres>) -> Fut,
        Fut: std::future::Future<Output = Result<(Transaction<'static, Postgres>, T)>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let tx = self.pool.begin().await?;
            match op(tx).await {
                Ok((tx, value)) => {
                    tx.commit().await?;
                    return Ok(value);
                }
                Err(SchedulerError::Db(sqlx::Error::Database(e)))
                    if tries < 5 && e.code().as_deref() == Some(DEADLOCK_DETECTED) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The parallel arrays a completion statement takes: task ids, attempts, outputs.
fn completion_arrays(done: &[(TaskRef, Value)]) -> (Vec<TaskId>, Vec<i32>, Vec<Value>) {
    let ids = done.iter().map(|(r, _)| r.id).collect();
    let attempts = done.iter().map(|(r, _)| r.attempt).collect();
    let outputs = done.iter().map(|(_, o)| o.clone()).collect();
    (ids, attempts, outputs)
}

/// A claimed task from a claim's row of `complete_and_claim`.
fn claimed_task(r: &PgRow) -> Result<ClaimedTask> {
    let kind = TaskKind::parse(r.try_get("kind")?)?;
    let tile = match r.try_get::<Option<i32>, _>("tile_index")? {
        Some(index) => Some((
            index,
            Window {
                x_px: r.try_get::<Option<i32>, _>("x_px")?.unwrap_or(0),
                y_px: r.try_get::<Option<i32>, _>("y_px")?.unwrap_or(0),
                width_px: r.try_get::<Option<i32>, _>("width_px")?.unwrap_or(0),
                height_px: r.try_get::<Option<i32>, _>("height_px")?.unwrap_or(0),
            },
        )),
        None => None,
    };
    Ok(ClaimedTask {
        run: TaskRef {
            id: r.try_get("id")?,
            attempt: r.try_get("attempt")?,
        },
        max_attempts: r.try_get("max_attempts")?,
        job_id: r.try_get("job_id")?,
        kind,
        tile,
        recipe: r.try_get("recipe")?,
        params: r.try_get("params")?,
        inputs: r.try_get("inputs")?,
        trace_context: r.try_get("trace_context")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
    })
}

/// Runs one statement until it is not a deadlock victim (PostgreSQL rolled the victim back
/// whole, so running it again does nothing twice), at most five times.
async fn retry_deadlock<T, F, Fut>(statement: F) -> std::result::Result<T, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match statement().await {
            Err(sqlx::Error::Database(e))
                if tries < 5 && e.code().as_deref() == Some(DEADLOCK_DETECTED) => {}
            other => return other,
        }
    }
}

/// End an unfinished job with `state` and `reason`: lock its hot tasks in id order, move
/// them to history as cancelled, then set the job's final state (counting `tiles_failed`
/// more failed tiles) and fold its progress onto the job row. Returns whether it ended.
async fn end_job(
    tx: &mut Transaction<'static, Postgres>,
    job: Uuid,
    state: JobState,
    reason: &str,
    tiles_failed: i32,
) -> Result<bool> {
    let state = match state {
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Succeeded => "succeeded",
        JobState::Queued | JobState::Running => {
            return Err(SchedulerError::InvalidSpec(
                "a job can only end finished".into(),
            ))
        }
    };
    sqlx::query("SELECT id FROM task WHERE job_id = $1 ORDER BY id FOR UPDATE")
        .bind(job)
        .execute(&mut **tx)
        .await?;
    sqlx::query(END_JOB_TASKS_SQL)
        .bind(job)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
    let ended: i64 = sqlx::query_scalar(END_JOB_SQL)
        .bind(job)
        .bind(state)
        .bind(reason)
        .bind(tiles_failed)
        .fetch_one(&mut **tx)
        .await?;
    Ok(ended > 0)
}

/// Wakes an idle worker when tasks become claimable: LISTEN on [`TASK_CHANNEL`], with the
/// timeout as the polling fallback (a notification can be lost behind a pooler or on a
/// reconnect; a worker then still polls).
#[derive(Debug)]
pub struct TaskWaker {
    listener: PgListener,
}

impl TaskWaker {
    /// Wait until a notification arrives or `timeout` passes; true when notified.
    pub async fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.listener.try_recv()).await {
            Ok(Ok(Some(_))) => Ok(true),
            // The connection dropped: sqlx reconnects on the next call; poll meanwhile.
            Ok(Ok(None)) => Ok(false),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Ok(false),
        }
    }
}
