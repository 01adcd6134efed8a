//! Constellation's PostgreSQL queue: jobs split into tile tasks plus a finalize task,
//! claimed in batches with `FOR UPDATE SKIP LOCKED`, run under leases extended by
//! heartbeats, completed under a (task, attempt, worker) fence, retried with backoff,
//! reaped when a worker dies, cancelled through the heartbeat. See the crate's README.md.

pub mod cluster;
mod copy;
pub mod error;
pub mod events;
pub mod model;
#[cfg(feature = "nats")]
pub mod nats;
pub mod queue;
#[cfg(feature = "testdb")]
pub mod testdb;
pub mod views;

pub use error::{Result, SchedulerError};
pub use events::{
    Bus, Event, EventBus, EventSubscription, NewEvent, PgEventBus, Subscription, EVENT_CHANNEL,
};
pub use model::{
    ClaimedTask, FailOutcome, HeartbeatReply, JobSpec, JobState, JobStatus, ReapReport, TaskId,
    TaskInfo, TaskKind, TaskRef, TaskState, TileSpec, Window, WorkerSpec, DEFAULT_ACCOUNT_ID,
};
pub use queue::{Backoff, Queue, TaskWaker, TASK_CHANNEL};
pub use views::{
    BboxDeg, Change, GpuSample, JobCursor, JobFilter, JobView, LogLine, TileFootprint, WorkerView,
};
