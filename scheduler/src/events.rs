//! Events: one [`EventBus`] seam. [`PgEventBus`] keeps them in the `event` table (the queue
//! appends there in the same transaction as each change, so it is also the outbox) and
//! wakes subscribers with a debounced NOTIFY.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::Result;

/// The channel new events are announced on (empty payload, once per transaction).
pub const EVENT_CHANNEL: &str = "constellation_event";

/// An event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The job it concerns, if any.
    pub job_id: Option<Uuid>,
    /// What happened (`job_queued`, `progress`, `job_succeeded`, `log`, `worker_up` …).
    pub kind: String,
    /// Details.
    pub payload: Value,
}

/// A published event with its place in the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the stream; increasing.
    pub seq: i64,
    /// The job it concerns, if any.
    pub job_id: Option<Uuid>,
    /// What happened.
    pub kind: String,
    /// Details.
    pub payload: Value,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Where events go and where they are read back from, in order, from a sequence number.
pub trait EventBus {
    /// Publish events; returns their sequence numbers.
    fn publish(&self, events: &[NewEvent]) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Events after `after_seq` (optionally of one job), oldest first, at most `limit`.
    fn read(
        &self,
        after_seq: i64,
        job: Option<Uuid>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;
}

/// The PostgreSQL event bus (the embedded default).
#[derive(Debug, Clone)]
pub struct PgEventBus {
    pool: PgPool,
    /// How long a hole in the sequence is waited for before it is taken as a rolled-back
    /// insert and skipped.
    gap_grace: Duration,
}

impl PgEventBus {
    /// A bus over the queue's database.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            gap_grace: Duration::from_secs(2),
        }
    }

    /// The oldest and newest stored sequence numbers (0 and 0 when there are none).
    pub async fn bounds(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "-- The stream's retained range.
             SELECT coalesce(min(seq), 0) AS oldest, coalesce(max(seq), 0) AS head FROM event",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("oldest")?, row.try_get("head")?))
    }

    /// Delete events older than `keep` (retention); returns how many went.
    pub async fn prune(&self, keep: Duration) -> Result<u64> {
        let done = sqlx::query(
            "-- Event retention: older events go; clients asking for them get a resync.
             DELETE FROM event WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(keep.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Listen for new events: each [`EventSubscription::next`] returns what arrived after the
    /// last event it returned.
    pub async fn subscribe(&self, after_seq: i64, job: Option<Uuid>) -> Result<EventSubscription> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENT_CHANNEL).await?;
        Ok(EventSubscription {
            bus: self.clone(),
            listener,
            after_seq,
            job,
        })
    }
}

impl EventBus for PgEventBus {
    async fn publish(&self, events: &[NewEvent]) -> Result<Vec<i64>> {
        let jobs: Vec<Option<Uuid>> = events.iter().map(|e| e.job_id).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
        let seqs = sqlx::query_scalar(
            "-- Append events in the given order; the statement trigger sends one NOTIFY.
             INSERT INTO event (job_id, kind, payload)
             SELECT job_id, kind, payload
             FROM unnest($1::uuid[], $2::text[], $3::jsonb[])
                  WITH ORDINALITY AS e(job_id, kind, payload, ord)
             ORDER BY ord
             RETURNING seq",
        )
        .bind(&jobs)
        .bind(&kinds)
        .bind(&payloads)
        .fetch_all(&self.pool)
        .await?;
        Ok(seqs)
    }

    async fn read(&self, after_seq: i64, job: Option<Uuid>, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "-- Events after a sequence number, optionally of one job, with each one's age.
             SELECT seq, job_id, kind, payload, created_at,
                    extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_secs
             FROM event
             WHERE seq > $1 AND ($2::uuid IS NULL OR job_id = $2)
             ORDER BY seq
             LIMIT $3",
        )
        .bind(after_seq)
        .bind(job)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = after_seq + 1;
        for r in rows {
            let seq: i64 = r.try_get("seq")?;
            let age_secs: f64 = r.try_get("age_secs")?;
            // Sequence numbers are taken at insert and become visible at commit, so a hole
            // may be a transaction still committing: stop before it until the event after
            // it is older than the grace period (then the hole was a rollback). Only an
            // unfiltered read can see holes.
            if job.is_none() && seq != expected && age_secs < self.gap_grace.as_secs_f64() {
                break;
            }
            expected = seq + 1;
            out.push(Event {
                seq,
                job_id: r.try_get("job_id")?,
                kind: r.try_get("kind")?,
                payload: r.try_get("payload")?,
                created_at: r.try_get("created_at")?,
            });
        }
        Ok(out)
    }
}

/// A live subscription to the PostgreSQL bus.
#[derive(Debug)]
pub struct EventSubscription {
    bus: PgEventBus,
    listener: PgListener,
    after_seq: i64,
    job: Option<Uuid>,
}

impl EventSubscription {
    /// The next events: returns at once when some are stored, else waits for a notification
    /// up to `timeout` (the polling fallback) and reads again. Empty when nothing arrived.
    pub async fn next(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        let mut events = self.bus.read(self.after_seq, self.job, 1000).await?;
        if events.is_empty() {
            // A lost notification only costs the timeout.
            let _ = tokio::time::timeout(timeout, self.listener.try_recv()).await;
            events = self.bus.read(self.after_seq, self.job, 1000).await?;
        }
        if let Some(last) = events.last() {
            self.after_seq = last.seq;
        }
        Ok(events)
    }
}

/// The event bus a process was configured with: PostgreSQL (the default) or NATS JetStream.
#[derive(Debug, Clone)]
pub enum Bus {
    /// The `event` table, with NOTIFY.
    Pg(PgEventBus),
    /// A JetStream stream fed by a [`crate::nats::Relay`].
    #[cfg(feature = "nats")]
    Nats(crate::nats::NatsEventBus),
}

impl Bus {
    /// Which bus this is, for logs and readiness (`postgresql` or `nats`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pg(_) => "postgresql",
            #[cfg(feature = "nats")]
            Self::Nats(_) => "nats",
        }
    }

    /// The oldest and newest retained sequence numbers.
    pub async fn bounds(&self) -> Result<(i64, i64)> {
        match self {
            Self::Pg(b) => b.bounds().await,
            #[cfg(feature = "nats")]
            Self::Nats(b) => b.bounds().await,
        }
    }

    /// Follow the stream after `after_seq`, optionally one job's events.
    pub async fn subscribe(&self, after_seq: i64, job: Option<Uuid>) -> Result<Subscription> {
        Ok(match self {
            Self::Pg(b) => Subscription::Pg(b.subscribe(after_seq, job).await?),
            #[cfg(feature = "nats")]
            Self::Nats(b) => Subscription::Nats(b.subscribe(after_seq, job).await?),
        })
    }

    /// Whether the bus answers (readiness).
    pub async fn check(&self) -> Result<()> {
        match self {
            Self::Pg(b) => b.bounds().await.map(|_| ()),
            #[cfg(feature = "nats")]
            Self::Nats(b) => b.check().await,
        }
    }
}

impl EventBus for Bus {
    async fn publish(&self, events: &[NewEvent]) -> Result<Vec<i64>> {
        match self {
            Self::Pg(b) => b.publish(events).await,
            #[cfg(feature = "nats")]
            Self::Nats(b) => b.publish(events).await,
        }
    }

    async fn read(&self, after_seq: i64, job: Option<Uuid>, limit: i64) -> Result<Vec<Event>> {
        match self {
            Self::Pg(b) => b.read(after_seq, job, limit).await,
            #[cfg(feature = "nats")]
            Self::Nats(b) => b.read(after_seq, job, limit).await,
        }
    }
}

/// A live subscription to either bus.
#[derive(Debug)]
pub enum Subscription {
    /// On PostgreSQL.
    Pg(EventSubscription),
    /// On NATS.
    #[cfg(feature = "nats")]
    Nats(crate::nats::NatsSubscription),
}

impl Subscription {
    /// The next events, waiting up to `timeout`; empty when nothing arrived.
    pub async fn next(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        match self {
            Self::Pg(s) => s.next(timeout).await,
            #[cfg(feature = "nats")]
            Self::Nats(s) => s.next(timeout).await,
        }
    }
}
