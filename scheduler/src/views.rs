//! What the API reads and the few job-level changes it asks for beyond the worker's
//! protocol: job lists with filters and keyset pagination, footprints with per-tile state,
//! logs, workers with their latest GPU samples, and retry and delete of finished jobs.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{Result, SchedulerError};
use crate::model::{JobState, TaskState};
use crate::queue::{Queue, TASK_CHANNEL};

const LIST_JOBS_SQL: &str = include_str!("../sql/list_jobs.sql");
const JOB_FOOTPRINTS_SQL: &str = include_str!("../sql/job_footprints.sql");
const SEARCH_FOOTPRINTS_SQL: &str = include_str!("../sql/search_footprints.sql");
const RETRY_JOB_SQL: &str = include_str!("../sql/retry_job.sql");
const WORKERS_SQL: &str = include_str!("../sql/workers.sql");

/// A bounding box in EPSG:4326 degrees: west, south, east, north.
pub type BboxDeg = [f64; 4];

/// Which jobs a list (or a bulk action) covers. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in one of these states.
    pub states: Vec<JobState>,
    /// Only this recipe.
    pub recipe: Option<String>,
    /// Text found in the id, recipe, parameters or inputs (case-insensitive).
    pub text: Option<String>,
    /// Submitted at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Submitted before.
    pub created_before: Option<DateTime<Utc>>,
    /// Only jobs whose footprint extent intersects this box.
    pub bbox_deg: Option<BboxDeg>,
}

/// Where a page of jobs starts: after this (created_at, id) in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// A job with everything a client shows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub id: Uuid,
    pub account_id: Uuid,
    pub recipe: String,
    pub params: Value,
    pub inputs: Value,
    pub state: JobState,
    pub priority: i32,
    pub tiles_total: i32,
    pub tiles_succeeded: i32,
    pub tiles_failed: i32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The extent of the tiles' footprints.
    pub bbox_deg: Option<BboxDeg>,
    /// The finalize task's output (paths of the COG and STAC Item) once it succeeded.
    pub output: Option<Value>,
}

/// One tile's footprint and state.
#[derive(Debug, Clone, PartialEq)]
pub struct TileFootprint {
    pub job_id: Uuid,
    pub tile_index: i32,
    /// The GeoJSON geometry as PostGIS writes it (`None` when the footprint is unknown);
    /// kept as text, so a response can carry it without parsing and printing it again.
    pub geometry: Option<String>,
    pub state: TaskState,
}

/// One log line of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub id: i64,
    pub task_id: Option<i64>,
    pub ts: DateTime<Utc>,
    pub level: String,
    pub message: String,
}

/// A worker with its latest GPU samples.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    pub id: Uuid,
    pub host: String,
    pub backend: String,
    pub gpus: Value,
    /// `up`, `draining`, or `down` (also when its heartbeat is over a minute old).
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// The last ten minutes of samples, oldest first, as stored.
    pub samples: Vec<GpuSample>,
}

/// One stored GPU sample.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub gpu_index: i32,
    pub ts: DateTime<Utc>,
    pub simulated: bool,
    pub util_gpu_pct: Option<f32>,
    pub util_mem_pct: Option<f32>,
    pub mem_used_bytes: Option<i64>,
    pub mem_total_bytes: Option<i64>,
    pub temp_c: Option<f32>,
    pub power_w: Option<f32>,
}

/// What a retry or delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Done.
    Done,
    /// No such job.
    NotFound,
    /// The job is not in a state that allows it (its current state).
    Conflict(JobState),
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// `%` and `_` in user text are literal in ILIKE patterns.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn job_view(r: &PgRow) -> Result<JobView> {
    let xmin: Option<f64> = r.try_get("xmin")?;
    let bbox_deg = match (
        xmin,
        r.try_get("ymin")?,
        r.try_get("xmax")?,
        r.try_get("ymax")?,
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    Ok(JobView {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        recipe: r.try_get("recipe")?,
        params: r.try_get("params")?,
        inputs: r.try_get("inputs")?,
        state: JobState::parse(r.try_get("state")?)?,
        priority: r.try_get("priority")?,
        tiles_total: r.try_get("tiles_total")?,
        tiles_succeeded: r.try_get("tiles_succeeded")?,
        tiles_failed: r.try_get("tiles_failed")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        bbox_deg,
        output: r.try_get("output")?,
    })
}

fn footprint(r: &PgRow) -> Result<TileFootprint> {
    Ok(TileFootprint {
        job_id: r.try_get("job_id")?,
        tile_index: r.try_get("tile_index")?,
        geometry: r.try_get("geometry")?,
        state: TaskState::parse(r.try_get("state")?)?,
    })
}

impl Queue {
    /// Jobs of `account` matching `filter`, newest first, at most `limit`, after `cursor`.
    pub async fn list_jobs(
        &self,
        account: Uuid,
        filter: &JobFilter,
        cursor: Option<JobCursor>,
        limit: i64,
    ) -> Result<Vec<JobView>> {
        let states: Option<Vec<&str>> = (!filter.states.is_empty())
            .then(|| filter.states.iter().map(|s| state_name(*s)).collect());
        let rows = sqlx::query(LIST_JOBS_SQL)
            .bind(account)
            .bind(states)
            .bind(&filter.recipe)
            .bind(filter.text.as_deref().map(like_pattern))
            .bind(filter.created_after)
            .bind(filter.created_before)
            .bind(filter.bbox_deg.map(|b| b.to_vec()))
            .bind(cursor.map(|c| c.created_at))
            .bind(cursor.map(|c| c.id))
            .bind(limit)
            .bind(None::<Uuid>)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(job_view).collect()
    }

    /// One job of `account`.
    pub async fn job_view(&self, account: Uuid, job: Uuid) -> Result<Option<JobView>> {
        let row = sqlx::query(LIST_JOBS_SQL)
            .bind(account)
            .bind(None::<Vec<&str>>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<DateTime<Utc>>)
            .bind(None::<DateTime<Utc>>)
            .bind(None::<Vec<f64>>)
            .bind(None::<DateTime<Utc>>)
            .bind(None::<Uuid>)
            .bind(1_i64)
            .bind(Some(job))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_view).transpose()
    }

    /// Every tile of a job with its footprint and the state of its task, by tile index.
    pub async fn job_footprints(&self, job: Uuid) -> Result<Vec<TileFootprint>> {
        let rows = sqlx::query(JOB_FOOTPRINTS_SQL)
            .bind(job)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(footprint).collect()
    }

    /// Tiles of `account`'s jobs whose footprint intersects `bbox`, at most `limit`.
    pub async fn search_footprints(
        &self,
        account: Uuid,
        bbox: BboxDeg,
        limit: i64,
    ) -> Result<Vec<TileFootprint>> {
        let rows = sqlx::query(SEARCH_FOOTPRINTS_SQL)
            .bind(account)
            .bind(bbox.to_vec())
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(footprint).collect()
    }

    /// A job's log lines after `after_id`, oldest first, at most `limit`.
    pub async fn logs(&self, job: Uuid, after_id: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "-- A job's log after a line id.
             SELECT id, task_id, ts, level, message FROM log
             WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(job)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    id: r.try_get("id")?,
                    task_id: r.try_get("task_id")?,
                    ts: r.try_get("ts")?,
                    level: r.try_get("level")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    /// Append a log line to a job and announce it as a `log` event, in one transaction.
    pub async fn log(
        &self,
        job: Uuid,
        task: Option<i64>,
        level: &str,
        message: &str,
    ) -> Result<i64> {
        if !matches!(level, "info" | "warn" | "error") {
            return Err(SchedulerError::InvalidSpec(format!(
                "log level {level:?}: expected info, warn or error"
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "-- A log line and its event.
             WITH line AS (
                 INSERT INTO log (job_id, task_id, level, message) VALUES ($1, $2, $3, $4)
                 RETURNING id, job_id, task_id, level, message
             ), announced AS (
                 INSERT INTO event (job_id, kind, payload)
                 SELECT job_id, 'log', jsonb_build_object('id', id, 'task_id', task_id,
                                                          'level', level, 'message', message)
                 FROM line
             )
             SELECT id FROM line",
        )
        .bind(job)
        .bind(task)
        .bind(level)
        .bind(message)
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// Every worker seen in the last day, newest first, with its recent GPU samples.
    pub async fn workers(&self) -> Result<Vec<WorkerView>> {
        let rows = sqlx::query(WORKERS_SQL).fetch_all(self.pool()).await?;
        let mut out: Vec<WorkerView> = Vec::new();
        for r in &rows {
            let id: Uuid = r.try_get("id")?;
            if out.last().is_none_or(|w| w.id != id) {
                out.push(WorkerView {
                    id,
                    host: r.try_get("host")?,
                    backend: r.try_get("backend")?,
                    gpus: r.try_get("gpus")?,
                    state: r.try_get("state")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                    samples: Vec::new(),
                });
            }
            let gpu_index: Option<i32> = r.try_get("gpu_index")?;
            if let (Some(gpu_index), Some(w)) = (gpu_index, out.last_mut()) {
                w.samples.push(GpuSample {
                    gpu_index,
                    ts: r.try_get("ts")?,
                    simulated: r.try_get("simulated")?,
                    util_gpu_pct: r.try_get("util_gpu_pct")?,
                    util_mem_pct: r.try_get("util_mem_pct")?,
                    mem_used_bytes: r.try_get("mem_used_bytes")?,
                    mem_total_bytes: r.try_get("mem_total_bytes")?,
                    temp_c: r.try_get("temp_c")?,
                    power_w: r.try_get("power_w")?,
                });
            }
        }
        Ok(out)
    }

    /// Store GPU samples of a worker and announce them as one `gpu_sample` event.
    pub async fn record_gpu_samples(&self, worker: Uuid, samples: &[GpuSample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let col = |f: fn(&GpuSample) -> Option<f32>| samples.iter().map(f).collect::<Vec<_>>();
        let index: Vec<i32> = samples.iter().map(|s| s.gpu_index).collect();
        let ts: Vec<DateTime<Utc>> = samples.iter().map(|s| s.ts).collect();
        let simulated: Vec<bool> = samples.iter().map(|s| s.simulated).collect();
        let used: Vec<Option<i64>> = samples.iter().map(|s| s.mem_used_bytes).collect();
        let total: Vec<Option<i64>> = samples.iter().map(|s| s.mem_total_bytes).collect();
        sqlx::query(
            "-- Samples of one worker, and one event that carries them.
             WITH stored AS (
                 INSERT INTO gpu_sample (worker_id, gpu_index, ts, simulated, util_gpu_pct,
                                         util_mem_pct, mem_used_bytes, mem_total_bytes,
                                         temp_c, power_w)
                 SELECT $1, * FROM unnest($2::int[], $3::timestamptz[], $4::bool[],
                                          $5::real[], $6::real[], $7::bigint[], $8::bigint[],
                                          $9::real[], $10::real[])
                 ON CONFLICT DO NOTHING
                 RETURNING *
             )
             INSERT INTO event (kind, payload)
             SELECT 'gpu_sample', jsonb_build_object('worker_id', $1::uuid,
                                                     'samples', jsonb_agg(to_jsonb(stored)))
             FROM stored HAVING count(*) > 0",
        )
        .bind(worker)
        .bind(&index)
        .bind(&ts)
        .bind(&simulated)
        .bind(col(|s| s.util_gpu_pct))
        .bind(col(|s| s.util_mem_pct))
        .bind(&used)
        .bind(&total)
        .bind(col(|s| s.temp_c))
        .bind(col(|s| s.power_w))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Run a failed or cancelled job again: its failed and cancelled tasks return to the
    /// queue (each keeps its attempt count, so old runs stay fenced out, and gets its full
    /// number of attempts again); succeeded tiles are kept.
    pub async fn retry(&self, account: Uuid, job: Uuid) -> Result<Change> {
        let mut tx = self.pool().begin().await?;
        let Some(state) = lock_job(&mut tx, account, job).await? else {
            return Ok(Change::NotFound);
        };
        if !matches!(state, JobState::Failed | JobState::Cancelled) {
            return Ok(Change::Conflict(state));
        }
        sqlx::query(RETRY_JOB_SQL)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(TASK_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Change::Done)
    }

    /// Delete a finished job and everything stored about it but its events (the stream
    /// keeps its history; a `job_deleted` event is appended).
    pub async fn delete_job(&self, account: Uuid, job: Uuid) -> Result<Change> {
        let mut tx = self.pool().begin().await?;
        let Some(state) = lock_job(&mut tx, account, job).await? else {
            return Ok(Change::NotFound);
        };
        if matches!(state, JobState::Queued | JobState::Running) {
            return Ok(Change::Conflict(state));
        }
        for sql in [
            "DELETE FROM task_history WHERE job_id = $1",
            "DELETE FROM job_progress WHERE job_id = $1",
            "DELETE FROM tile WHERE job_id = $1",
            "DELETE FROM log WHERE job_id = $1",
            "DELETE FROM job WHERE id = $1",
            "INSERT INTO event (job_id, kind) VALUES ($1, 'job_deleted')",
        ] {
            sqlx::query(sql).bind(job).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Change::Done)
    }

    /// Mark a worker down (it stopped) and announce it; GPU samples older than a day go.
    pub async fn worker_stopped(&self, worker: Uuid) -> Result<()> {
        sqlx::query(
            "-- A worker leaves: its row stays for the record, its old samples go.
             WITH down AS (
                 UPDATE worker SET state = 'down' WHERE id = $1 RETURNING id
             ), pruned AS (
                 DELETE FROM gpu_sample WHERE ts < now() - interval '1 day'
             )
             INSERT INTO event (kind, payload)
             SELECT 'worker_down', jsonb_build_object('worker_id', id) FROM down",
        )
        .bind(worker)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    /// Tile tasks that succeeded in the last `window_secs`: how many, and their run times'
    /// median and 95th percentile in seconds (claim to finish).
    pub async fn recent_tiles(&self, window_secs: f64) -> Result<(i64, Option<f64>, Option<f64>)> {
        let row = sqlx::query(
            "-- Recent tile throughput and durations, through the finished_at BRIN index.
             SELECT count(*) AS n,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY secs) AS p95
             FROM (SELECT extract(epoch FROM finished_at - claimed_at)::float8 AS secs
                   FROM task_history
                   WHERE finished_at > now() - make_interval(secs => $1)
                     AND kind = 'tile' AND state = 'succeeded') recent",
        )
        .bind(window_secs)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("n")?, row.try_get("p50")?, row.try_get("p95")?))
    }

    /// Task counts by state (hot and finished), for metrics.
    pub async fn task_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "-- Task counts by state, hot and finished.
             SELECT state, count(*) AS n FROM task GROUP BY state
             UNION ALL
             SELECT state, count(*) FROM task_history GROUP BY state",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }
}

/// Lock a job of `account` for a state change; its state, or None when there is no such job.
async fn lock_job(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    account: Uuid,
    job: Uuid,
) -> Result<Option<JobState>> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM job WHERE id = $1 AND account_id = $2 FOR UPDATE")
            .bind(job)
            .bind(account)
            .fetch_optional(&mut **tx)
            .await?;
    state.map(|s| JobState::parse(&s)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_user_text_literally() {
        assert_eq!(like_pattern("ndvi"), "%ndvi%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
