//! The NATS JetStream event bus: events live in one JetStream stream (`<prefix>.events.job.<id>`
//! and `<prefix>.events.other`), numbered by the stream's own gapless sequence; a [`Relay`]
//! publishes the queue's PostgreSQL outbox (the `event` table) into it exactly once and in
//! order, and forwards task wake-ups to `<prefix>.tasks`, so that API replicas and workers
//! behind a transaction-pooling proxy need no LISTEN connection of their own.

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context, stream};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Result, SchedulerError};
use crate::events::{Event, EventBus, NewEvent, PgEventBus};
use crate::queue::TASK_CHANNEL;

/// The header that names a relayed event's outbox sequence (`pg-<seq>`), also JetStream's
/// deduplication id.
const MSG_ID: &str = "Nats-Msg-Id";
/// How long a read waits for a message the server says is pending.
const PENDING_WAIT: Duration = Duration::from_secs(5);

/// Where the NATS bus lives and how long it keeps events.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Subject prefix (letters, digits, `_` and `-`); the stream is `<PREFIX>_EVENTS`.
    pub prefix: String,
    /// Events older than this leave the stream; a client asking for them gets a resync.
    pub retention: Duration,
}

impl NatsOptions {
    /// The defaults: prefix `constellation`, 7 days of events.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "constellation".into(),
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

fn bus_error(context: &str, e: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::Bus(format!("{context}: {e}"))
}

/// The NATS JetStream event bus (cheap to clone: one connection, shared).
#[derive(Debug, Clone)]
pub struct NatsEventBus {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    stream_name: String,
    prefix: String,
}

impl NatsEventBus {
    /// Connects and creates the stream when it does not exist yet.
    pub async fn connect(options: &NatsOptions) -> Result<Self> {
        let prefix = options.prefix.as_str();
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SchedulerError::Bus(format!(
                "nats prefix {prefix:?} must be letters, digits, '_' or '-'"
            )));
        }
        if options.retention.is_zero() {
            return Err(SchedulerError::Bus(
                "nats event retention must be positive".into(),
            ));
        }
        let client = async_nats::ConnectOptions::new()
            .name("constellation")
            .connection_timeout(Duration::from_secs(5))
            .connect(options.url.as_str())
            .await
            .map_err(|e| bus_error(&format!("cannot connect to nats at {}", options.url), e))?;
        let js = jetstream::new(client.clone());
        let stream_name = format!("{}_EVENTS", prefix.to_ascii_uppercase().replace('-', "_"));
        js.get_or_create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.events.>")],
            max_age: options.retention,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| bus_error(&format!("cannot open the stream {stream_name}"), e))?;
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                client,
                js,
                stream_name,
                prefix: prefix.to_owned(),
            }),
        })
    }

    /// The JetStream stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream_name
    }

    fn subject(&self, job: Option<Uuid>) -> String {
        match job {
            Some(j) => format!("{}.events.job.{j}", self.inner.prefix),
            None => format!("{}.events.other", self.inner.prefix),
        }
    }

    fn tasks_subject(&self) -> String {
        format!("{}.tasks", self.inner.prefix)
    }

    async fn stream(&self) -> Result<stream::Stream> {
        self.inner
            .js
            .get_stream(&self.inner.stream_name)
            .await
            .map_err(|e| {
                bus_error(
                    &format!("cannot open the stream {}", self.inner.stream_name),
                    e,
                )
            })
    }

    async fn state(&self) -> Result<(stream::Stream, stream::State)> {
        let mut s = self.stream().await?;
        let state = s
            .info()
            .await
            .map_err(|e| bus_error("cannot read the stream's state", e))?
            .state
            .clone();
        Ok((s, state))
    }

    /// The oldest and newest sequence numbers (`(0, 0)` for a new stream; once every event has
    /// expired, the oldest is one past the newest, so any older `since` asks for a resync).
    pub async fn bounds(&self) -> Result<(i64, i64)> {
        let (_, state) = self.state().await?;
        Ok((
            seq_i64(state.first_sequence)?,
            seq_i64(state.last_sequence)?,
        ))
    }

    /// Whether the server answers (for readiness).
    pub async fn check(&self) -> Result<()> {
        self.state().await.map(|_| ())
    }

    /// Removes the stream and every event in it.
    pub async fn delete_stream(&self) -> Result<()> {
        self.inner
            .js
            .delete_stream(&self.inner.stream_name)
            .await
            .map_err(|e| bus_error("cannot delete the stream", e))?;
        Ok(())
    }

    /// An ordered consumer of `s` (this bus's stream) from `after_seq + 1`, optionally of one
    /// job, and how many of its messages are already stored.
    async fn consumer(
        &self,
        s: &stream::Stream,
        after_seq: i64,
        job: Option<Uuid>,
    ) -> Result<(consumer::Consumer<consumer::pull::OrderedConfig>, u64)> {
        let start = u64::try_from(after_seq.max(0)).unwrap_or(0) + 1;
        let consumer = s
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: job.map(|j| self.subject(Some(j))).unwrap_or_default(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| bus_error("cannot create a consumer", e))?;
        let pending = consumer.cached_info().num_pending;
        Ok((consumer, pending))
    }

    /// Follow the stream after `after_seq` (optionally one job's events).
    pub async fn subscribe(&self, after_seq: i64, job: Option<Uuid>) -> Result<NatsSubscription> {
        let s = self.stream().await?;
        let (consumer, _) = self.consumer(&s, after_seq, job).await?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| bus_error("cannot follow the stream", e))?;
        Ok(NatsSubscription {
            messages: Box::new(messages),
        })
    }

    /// Wakes idle workers (a plain NATS message on `<prefix>.tasks`; losing one only costs a
    /// worker its polling interval).
    pub async fn wake_workers(&self) -> Result<()> {
        self.inner
            .client
            .publish(self.tasks_subject(), Default::default())
            .await
            .map_err(|e| bus_error("cannot publish a wake-up", e))
    }

    /// A waker for idle workers, fed by [`NatsEventBus::wake_workers`].
    pub async fn task_waker(&self) -> Result<NatsTaskWaker> {
        let sub = self
            .inner
            .client
            .subscribe(self.tasks_subject())
            .await
            .map_err(|e| bus_error("cannot subscribe to wake-ups", e))?;
        // The subscription is live once the server has seen it.
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| bus_error("cannot subscribe to wake-ups", e))?;
        Ok(NatsTaskWaker { sub })
    }

    /// The outbox sequence of the newest relayed event, read from its message id; `None` when
    /// the stream holds nothing relayed.
    async fn last_relayed(&self) -> Result<Option<i64>> {
        let (s, state) = self.state().await?;
        if state.messages == 0 {
            return Ok(None);
        }
        let last = s
            .get_raw_message(state.last_sequence)
            .await
            .map_err(|e| bus_error("cannot read the stream's last event", e))?;
        Ok(relayed_from(&last.headers))
    }

    /// Publishes one outbox event, stored only when the stream's last relayed event is
    /// `previous` (JetStream's expected-last-message-id check) and not already stored
    /// (its message id). Returns false when another relay got there first.
    async fn publish_relayed(&self, event: &Event, previous: Option<i64>) -> Result<bool> {
        let body = encode(event.job_id, &event.kind, &event.payload, event.created_at);
        let mut message = jetstream::message::PublishMessage::build()
            .payload(body.into())
            .message_id(format!("pg-{}", event.seq));
        if let Some(p) = previous {
            message = message.expected_last_message_id(format!("pg-{p}"));
        }
        let ack = self
            .inner
            .js
            .send_publish(self.subject(event.job_id), message)
            .await
            .map_err(|e| bus_error("cannot relay an event", e))?
            .await;
        match ack {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == context::PublishErrorKind::WrongLastMessageId => Ok(false),
            Err(e) => Err(bus_error("cannot relay an event", e)),
        }
    }
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| SchedulerError::Bus(format!("sequence {seq} is out of range")))
}

fn encode(job_id: Option<Uuid>, kind: &str, payload: &Value, created_at: DateTime<Utc>) -> Vec<u8> {
    json!({ "job_id": job_id.map(|j| j.to_string()), "kind": kind, "payload": payload, "created_at": created_at.to_rfc3339() })
        .to_string()
        .into_bytes()
}

fn decode(message: &jetstream::Message) -> Result<Event> {
    let info = message
        .info()
        .map_err(|e| bus_error("a message without its stream position", e))?;
    let seq = seq_i64(info.stream_sequence)?;
    let v: Value = serde_json::from_slice(&message.payload)
        .map_err(|e| bus_error(&format!("event {seq} is not json"), e))?;
    let field = |name: &str| {
        v.get(name)
            .cloned()
            .ok_or_else(|| SchedulerError::Bus(format!("event {seq} has no {name}")))
    };
    let job_id = match field("job_id")? {
        Value::Null => None,
        Value::String(s) => {
            Some(Uuid::parse_str(&s).map_err(|e| bus_error(&format!("event {seq}: job_id"), e))?)
        }
        other => return Err(SchedulerError::Bus(format!("event {seq}: job_id {other}"))),
    };
    let kind = match field("kind")? {
        Value::String(s) => s,
        other => return Err(SchedulerError::Bus(format!("event {seq}: kind {other}"))),
    };
    let created_at = field("created_at")?
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| SchedulerError::Bus(format!("event {seq}: created_at")))?;
    Ok(Event {
        seq,
        job_id,
        kind,
        payload: field("payload")?,
        created_at,
    })
}

fn pending_after(message: &jetstream::Message) -> u64 {
    message.info().map(|i| i.pending).unwrap_or(0)
}

impl EventBus for NatsEventBus {
    async fn publish(&self, events: &[NewEvent]) -> Result<Vec<i64>> {
        // Sent back to back on one connection, stored in that order; acks read after.
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let body = encode(e.job_id, &e.kind, &e.payload, Utc::now());
            let ack = self
                .inner
                .js
                .send_publish(
                    self.subject(e.job_id),
                    jetstream::message::PublishMessage::build().payload(body.into()),
                )
                .await
                .map_err(|e| bus_error("cannot publish an event", e))?;
            acks.push(ack);
        }
        let mut seqs = Vec::with_capacity(acks.len());
        for ack in acks {
            let ack = ack
                .await
                .map_err(|e| bus_error("an event was not stored", e))?;
            seqs.push(seq_i64(ack.sequence)?);
        }
        Ok(seqs)
    }

    async fn read(&self, after_seq: i64, job: Option<Uuid>, limit: i64) -> Result<Vec<Event>> {
        let (s, state) = self.state().await?;
        if limit <= 0 || state.messages == 0 || seq_i64(state.last_sequence)? <= after_seq {
            return Ok(Vec::new());
        }
        // The stream just read for its state, not opened a second time.
        let (consumer, pending) = self.consumer(&s, after_seq, job).await?;
        if pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| bus_error("cannot read the stream", e))?;
        let mut out = Vec::new();
        while out.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            let message = match tokio::time::timeout(PENDING_WAIT, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(bus_error("cannot read the stream", e)),
                Ok(None) | Err(_) => break,
            };
            out.push(decode(&message)?);
            if pending_after(&message) == 0 {
                break;
            }
        }
        Ok(out)
    }
}

/// A live subscription to the NATS bus.
pub struct NatsSubscription {
    messages: Box<consumer::pull::Ordered>,
}

impl std::fmt::Debug for NatsSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSubscription").finish_non_exhaustive()
    }
}

impl NatsSubscription {
    /// The next events: waits up to `timeout` for one, then takes every one already stored
    /// behind it (at most 1000). Empty when nothing arrived.
    pub async fn next(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut wait = timeout;
        while out.len() < 1000 {
            let message = match tokio::time::timeout(wait, self.messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(bus_error("the event stream failed", e)),
                Ok(None) => return Err(SchedulerError::Bus("the event stream ended".into())),
                Err(_) => break,
            };
            out.push(decode(&message)?);
            if pending_after(&message) == 0 {
                break;
            }
            wait = PENDING_WAIT;
        }
        Ok(out)
    }
}

/// Wakes an idle worker on a NATS message; the timeout is the polling fallback.
#[derive(Debug)]
pub struct NatsTaskWaker {
    sub: async_nats::Subscriber,
}

impl NatsTaskWaker {
    /// Waits until a wake-up arrives or `timeout` passes; true when woken. Wake-ups that
    /// queued meanwhile are taken together.
    pub async fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.sub.next()).await {
            Ok(Some(_)) => {
                while let Some(Some(_)) = self.sub.next().now_or_never() {}
                Ok(true)
            }
            Ok(None) => Err(SchedulerError::Bus("wake-ups ended".into())),
            Err(_) => Ok(false),
        }
    }
}

/// Publishes the PostgreSQL outbox into the NATS stream, in outbox order, each event exactly
/// once, and forwards task wake-ups. Several relays may run (one per API replica): each
/// publish names the outbox sequence it follows, so a relay that fell behind another skips
/// ahead instead of storing anything twice or out of order.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    nats: NatsEventBus,
}

impl Relay {
    /// A relay from the queue's database to `nats`.
    pub fn new(pool: PgPool, nats: NatsEventBus) -> Self {
        Self { pool, nats }
    }

    /// Runs until an error (the caller restarts it); never returns otherwise.
    pub async fn run(&self) -> Result<Infallible> {
        let outbox = PgEventBus::new(self.pool.clone());
        let mut tasks = PgListener::connect_with(&self.pool).await?;
        tasks.listen(TASK_CHANNEL).await?;
        'resume: loop {
            let mut last = self.nats.last_relayed().await?;
            let mut events = outbox.subscribe(last.unwrap_or(0), None).await?;
            loop {
                tokio::select! {
                    batch = events.next(Duration::from_secs(1)) => {
                        for e in batch? {
                            if !self.nats.publish_relayed(&e, last).await? {
                                continue 'resume;
                            }
                            last = Some(e.seq);
                        }
                    }
                    n = tasks.try_recv() => {
                        if n?.is_some() {
                            self.nats.wake_workers().await?;
                        }
                    }
                }
            }
        }
    }
}

fn relayed_from(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(MSG_ID)
        .and_then(|v| v.as_str().strip_prefix("pg-"))
        .and_then(|s| s.parse().ok())
}
