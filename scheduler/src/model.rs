//! The queue's data: job specs going in, claimed tasks coming out, states and outcomes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Result, SchedulerError};

/// A task's id (a bigint identity, ordered by submission).
pub type TaskId = i64;

/// The account every job belongs to until accounts exist.
pub const DEFAULT_ACCOUNT_ID: Uuid = Uuid::nil();

/// A window of the scene grid, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Column of the top-left pixel.
    pub x_px: i32,
    /// Row of the top-left pixel.
    pub y_px: i32,
    /// Width.
    pub width_px: i32,
    /// Height.
    pub height_px: i32,
}

/// One planned tile of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct TileSpec {
    /// The tile's index in the job's plan (unique per job).
    pub index: i32,
    /// Its window on the scene grid.
    pub window: Window,
    /// Its footprint ring in EPSG:4326 as (lon, lat) in degrees; closed here if it is open;
    /// empty when unknown.
    pub footprint_deg: Vec<(f64, f64)>,
}

/// A job as the caller planned it: the recipe is validated and the inputs opened before this.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// The owning account ([`DEFAULT_ACCOUNT_ID`] for now).
    pub account: Uuid,
    /// The recipe's name.
    pub recipe: String,
    /// Recipe parameters (opaque to the queue).
    pub params: Value,
    /// Inputs (opaque to the queue).
    pub inputs: Value,
    /// Higher runs first; copied onto every task.
    pub priority: i32,
    /// The planned tiles; one task each, plus one finalize task.
    pub tiles: Vec<TileSpec>,
    /// Runs allowed per task (≥ 1).
    pub max_attempts: i32,
    /// W3C trace context of the submitting request, if any.
    pub trace_context: Option<Value>,
}

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// Process one tile.
    Tile,
    /// Assemble the job's outputs once every tile succeeded.
    Finalize,
}

impl TaskKind {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "tile" => Ok(Self::Tile),
            "finalize" => Ok(Self::Finalize),
            _ => Err(SchedulerError::Unknown {
                what: "task kind",
                value: s.to_owned(),
            }),
        }
    }
}

/// A task's state. `Blocked` is a finalize task waiting for its tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for other tasks (finalize only).
    Blocked,
    /// Claimable once `run_at` has passed.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Done, output kept (in history).
    Succeeded,
    /// Out of attempts, error kept (in history).
    Failed,
    /// Its job was cancelled or failed (in history).
    Cancelled,
}

impl TaskState {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "blocked" => Ok(Self::Blocked),
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(SchedulerError::Unknown {
                what: "task state",
                value: s.to_owned(),
            }),
        }
    }

    /// Whether the task can no longer change.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A job's state, derived from its tasks by the statements that change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// No task claimed yet.
    Queued,
    /// Some task claimed.
    Running,
    /// The finalize task succeeded.
    Succeeded,
    /// A task ran out of attempts; the rest were cancelled.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(SchedulerError::Unknown {
                what: "job state",
                value: s.to_owned(),
            }),
        }
    }
}

/// One run of a task: the fence token a worker presents to heartbeat, complete or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// The task.
    pub id: TaskId,
    /// The attempt this claim started (1 for the first run).
    pub attempt: i32,
}

/// A task as a worker claimed it, with what it needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The run (task id + attempt).
    pub run: TaskRef,
    /// Runs allowed.
    pub max_attempts: i32,
    /// The job.
    pub job_id: Uuid,
    /// Tile or finalize.
    pub kind: TaskKind,
    /// The tile's index and window (tile tasks).
    pub tile: Option<(i32, Window)>,
    /// The job's recipe name.
    pub recipe: String,
    /// The job's parameters.
    pub params: Value,
    /// The job's inputs.
    pub inputs: Value,
    /// W3C trace context of the request that submitted the job (`{"traceparent": …}`), which
    /// the worker's spans continue.
    pub trace_context: Option<Value>,
    /// When the lease runs out unless a heartbeat extends it.
    pub lease_expires_at: DateTime<Utc>,
}

/// What [`crate::Queue::fail`] did with a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again, claimable from this time.
    Retrying {
        /// When the retry becomes claimable.
        run_at: DateTime<Utc>,
    },
    /// Out of attempts (or not retryable): the task failed and its job with it.
    Failed,
    /// The run is not this worker's any more (fenced out); nothing changed.
    Rejected,
}

/// What a heartbeat learned about the worker's in-flight runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Runs whose task was cancelled (job cancelled or failed): stop them.
    pub cancelled: Vec<TaskId>,
    /// Runs the worker no longer owns for another reason (lease lost): stop them too.
    pub lost: Vec<TaskId>,
}

/// What [`crate::Queue::reap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Tasks returned to the queue.
    pub requeued: Vec<TaskId>,
    /// Tasks failed because their last attempt's lease expired.
    pub failed: Vec<TaskId>,
    /// Finalize tasks made claimable by the sweep: every tile of their job had succeeded,
    /// but the completion's recheck that unblocks them never ran.
    pub finalize_unblocked: Vec<TaskId>,
}

/// A job's current state and progress.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// The job.
    pub id: Uuid,
    /// The owning account.
    pub account_id: Uuid,
    /// Its state.
    pub state: JobState,
    /// Tile tasks planned.
    pub tiles_total: i32,
    /// Tile tasks succeeded (of an unfinished job: possibly a moment behind, never ahead).
    pub tiles_succeeded: i32,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Submitted.
    pub created_at: DateTime<Utc>,
    /// First claimed.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One task as stored (hot or history), for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// The task.
    pub id: TaskId,
    /// Tile or finalize.
    pub kind: TaskKind,
    /// The tile index (tile tasks).
    pub tile_index: Option<i32>,
    /// Its state.
    pub state: TaskState,
    /// Runs started so far.
    pub attempt: i32,
    /// Runs allowed.
    pub max_attempts: i32,
    /// The owner of the current or last run.
    pub worker_id: Option<Uuid>,
    /// The last error.
    pub error: Option<String>,
    /// The output of a succeeded task.
    pub output: Option<Value>,
}

/// A worker as it registers.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    /// Host name.
    pub host: String,
    /// The compute backend it runs (`cuda`, `wgpu`, `cpu`).
    pub backend: String,
    /// Its GPU inventory (opaque to the queue).
    pub gpus: Value,
}

/// The EWKB type flag saying an SRID follows the type.
const EWKB_HAS_SRID: u32 = 0x2000_0000;
/// The most points a footprint ring may have (a tile's footprint needs a handful; this keeps
/// an encoded footprint far below the 2 GiB a COPY field may hold).
pub(crate) const MAX_RING_POINTS: u32 = 1_000_000;

/// Encode a footprint ring as an EWKB Polygon with SRID 4326 (little-endian; what PostGIS
/// reads as a `geometry` in binary COPY), closing it if needed; an empty ring has none (the
/// footprint is stored as NULL).
pub(crate) fn footprint_ewkb(index: i32, ring_deg: &[(f64, f64)]) -> Result<Option<Vec<u8>>> {
    if ring_deg.is_empty() {
        return Ok(None);
    }
    let mut ring = ring_deg.to_vec();
    if ring.first() != ring.last() {
        ring.push(ring[0]);
    }
    if ring.len() < 4 {
        return Err(SchedulerError::InvalidSpec(format!(
            "tile {index}: a footprint ring needs at least 3 distinct points"
        )));
    }
    if ring.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(SchedulerError::InvalidSpec(format!(
            "tile {index}: footprint coordinates must be finite"
        )));
    }
    let n = u32::try_from(ring.len())
        .ok()
        .filter(|&n| n <= MAX_RING_POINTS)
        .ok_or_else(|| {
            SchedulerError::InvalidSpec(format!(
                "tile {index}: a footprint ring has at most {MAX_RING_POINTS} points"
            ))
        })?;
    let mut wkb = Vec::with_capacity(17 + ring.len() * 16);
    wkb.push(1u8); // little-endian
    wkb.extend_from_slice(&(3u32 | EWKB_HAS_SRID).to_le_bytes()); // Polygon, with an SRID
    wkb.extend_from_slice(&4326u32.to_le_bytes());
    wkb.extend_from_slice(&1u32.to_le_bytes()); // one ring
    wkb.extend_from_slice(&n.to_le_bytes());
    for (x, y) in ring {
        wkb.extend_from_slice(&x.to_le_bytes());
        wkb.extend_from_slice(&y.to_le_bytes());
    }
    Ok(Some(wkb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkb_closes_the_ring() {
        let wkb = footprint_ewkb(0, &[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
            .unwrap()
            .unwrap();
        assert_eq!(wkb.len(), 17 + 4 * 16);
        assert_eq!(&wkb[5..9], &4326u32.to_le_bytes());
        assert_eq!(&wkb[13..17], &4u32.to_le_bytes());
    }

    #[test]
    fn wkb_rejects_degenerate_rings() {
        assert!(footprint_ewkb(3, &[(0.0, 0.0), (1.0, 0.0)]).is_err());
        assert!(footprint_ewkb(3, &[(0.0, 0.0), (f64::NAN, 0.0), (1.0, 1.0)]).is_err());
        assert!(footprint_ewkb(3, &[]).unwrap().is_none());
        let long: Vec<(f64, f64)> = (0..=MAX_RING_POINTS).map(|i| (f64::from(i), 0.0)).collect();
        assert!(footprint_ewkb(3, &long).is_err());
    }
}
