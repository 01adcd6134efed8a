//! `/v1/ws`: the live event stream. One hub per server listens to the event bus and fans
//! events out to every socket; each socket replays what it missed from the stored stream
//! (`since=<seq>`), or is told to `resync` when that is no longer stored, and is told it
//! `lagged` (never silently dropped) when it falls behind the hub's buffer.
//!
//! Browsers cannot set an Authorization header on a WebSocket: when accounts arrive, the
//! handshake takes a short-lived ticket in the `ticket` query parameter, issued by an
//! authenticated REST call, so no long-lived credential ever appears in a URL.

// utoipa's expansion of `params(WsParams)` qualifies a path the lint calls unnecessary.
#![allow(unused_qualifications)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use scheduler::{Bus, Event, EventBus};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::problem::{ApiResult, Problem, Query};
use crate::AppState;

/// How often the server pings an idle socket.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Events read from the store per replay query.
const REPLAY_BATCH: i64 = 1000;
/// Events written to a socket per flush, at most, when several are waiting.
const DRAIN_MAX_EVENTS: usize = 256;
/// Client messages waiting for the writer (subscribe, ping), at most.
const CONTROL_QUEUE: usize = 16;
/// Clients send only small messages: a small read buffer (tungstenite's default is 128 KiB
/// per socket) and a cap on what one message may be.
const READ_BUFFER_BYTES: usize = 4 * 1024;
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// An event as the hub fans it out: the event, and its `event` message rendered once for
/// every socket that follows it (sockets only filter and send).
#[derive(Debug)]
struct HubEvent {
    event: Event,
    text: Utf8Bytes,
}

/// The fan-out of stored events to live sockets.
#[derive(Debug)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<HubEvent>>,
}

impl EventHub {
    /// Starts listening from the newest stored event; `buffer_events` is how far a socket
    /// may fall behind before it is told it lagged.
    pub async fn start(bus: Bus, buffer_events: usize) -> scheduler::Result<Arc<Self>> {
        let (tx, _) = broadcast::channel(buffer_events.max(1));
        let (_, head) = bus.bounds().await?;
        let mut sub = bus.subscribe(head, None).await?;
        let hub = Arc::new(Self { tx: tx.clone() });
        tokio::spawn(async move {
            loop {
                match sub.next(Duration::from_secs(1)).await {
                    Ok(events) => {
                        for event in events {
                            let text = event_message(&event).into();
                            // No receivers is fine: nobody is watching.
                            let _ = tx.send(Arc::new(HubEvent { event, text }));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(hub)
    }
}

/// What a socket asks for when it connects.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsParams {
    /// Replay events after this sequence number first.
    #[serde(default)]
    pub since: Option<i64>,
    /// Comma-separated job ids to follow.
    #[serde(default)]
    pub jobs: Option<String>,
    /// Follow worker and GPU events.
    #[serde(default)]
    pub workers: Option<bool>,
    /// Follow everything (the default when neither `jobs` nor `workers` is given).
    #[serde(default)]
    pub all: Option<bool>,
}

/// Which events a socket follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Interest {
    all: bool,
    workers: bool,
    jobs: HashSet<Uuid>,
}

impl Interest {
    fn matches(&self, e: &Event) -> bool {
        self.all
            || match e.job_id {
                Some(j) => self.jobs.contains(&j),
                None => self.workers,
            }
    }
}

fn parse_jobs(text: &str) -> Result<HashSet<Uuid>, Problem> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Uuid::parse_str(s.trim())
                .map_err(|_| Problem::invalid("jobs", format!("{s:?} is not a job id")))
        })
        .collect()
}

/// A client's message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Subscribe {
        #[serde(default)]
        jobs: Option<Vec<Uuid>>,
        #[serde(default)]
        workers: Option<bool>,
        #[serde(default)]
        all: Option<bool>,
    },
    Ping,
}

fn event_message(e: &Event) -> String {
    json!({
        "type": "event",
        "seq": e.seq,
        "job_id": e.job_id,
        "kind": e.kind,
        "payload": e.payload,
        "ts": e.created_at,
    })
    .to_string()
}

/// Open the event stream. Server messages: `event` {seq, job_id, kind, payload, ts},
/// `resync` {reason} (what was asked for is no longer stored: refetch, then follow),
/// `lagged` {missed} (this socket fell behind: refetch, then follow), `pong`, `error`
/// {detail}. Client messages: `subscribe` {jobs, workers, all}, `ping`.
#[utoipa::path(get, path = "/v1/ws", tag = "events", params(WsParams),
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn ws(
    State(state): State<AppState>,
    Query(p): Query<WsParams>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let jobs = p
        .jobs
        .as_deref()
        .map(parse_jobs)
        .transpose()?
        .unwrap_or_default();
    if p.since.is_some_and(|s| s < 0) {
        return Err(Problem::invalid("since", "must not be negative"));
    }
    let interest = Interest {
        all: p.all.unwrap_or(jobs.is_empty() && p.workers.is_none()),
        workers: p.workers.unwrap_or(false),
        jobs,
    };
    // Subscribe before replaying, so nothing falls between the replay and the live stream;
    // and read the stream's head before the upgrade is answered, so an event published once
    // the client is connected is always after it (never taken for one already seen).
    let rx = state.hub.tx.subscribe();
    let bounds = state.bus.bounds().await;
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, state, rx, interest, p.since, bounds)))
}

/// What the reading half of a socket hands to the writing half.
#[derive(Debug)]
enum Control {
    /// Follow these events from now on (and confirm it).
    Subscribe(Interest),
    /// Send this reply.
    Reply(String),
}

/// Reads the client's messages until it closes or goes away. Runs apart from the writer, so
/// delivering events never polls the read side (each poll of an idle socket used to cost a
/// read-buffer fill for every event).
async fn read_client(mut stream: SplitStream<WebSocket>, control: mpsc::Sender<Control>) {
    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return,
            _ => continue,
        };
        let reply = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Ping) => Control::Reply(json!({"type": "pong"}).to_string()),
            Ok(ClientMessage::Subscribe { jobs, workers, all }) => Control::Subscribe(Interest {
                all: all.unwrap_or(false),
                workers: workers.unwrap_or(false),
                jobs: jobs.unwrap_or_default().into_iter().collect(),
            }),
            Err(e) => Control::Reply(
                json!({"type": "error", "detail": format!("unreadable message: {e}")}).to_string(),
            ),
        };
        if control.send(reply).await.is_err() {
            return;
        }
    }
}

type Sink = SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, text: String) -> bool {
    sink.send(Message::Text(text.into())).await.is_ok()
}

/// Queues an event for `sink` when `interest` follows it and it is new; false when the
/// socket is gone. Nothing is written until the caller flushes (or the buffer fills).
async fn feed_event(sink: &mut Sink, interest: &Interest, cursor: &mut i64, e: &HubEvent) -> bool {
    if e.event.seq <= *cursor {
        return true;
    }
    *cursor = e.event.seq;
    !interest.matches(&e.event) || sink.feed(Message::Text(e.text.clone())).await.is_ok()
}

/// Queues a `lagged` notice; false when the socket is gone.
async fn feed_lagged(sink: &mut Sink, missed: u64) -> bool {
    let msg = json!({"type": "lagged", "missed": missed}).to_string();
    sink.feed(Message::Text(msg.into())).await.is_ok()
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    rx: broadcast::Receiver<Arc<HubEvent>>,
    interest: Interest,
    since: Option<i64>,
    bounds: scheduler::Result<(i64, i64)>,
) {
    let (mut sink, stream) = socket.split();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let reader = tokio::spawn(read_client(stream, control_tx));
    deliver(
        &mut sink, &state.bus, rx, control_rx, interest, since, bounds,
    )
    .await;
    reader.abort();
    let _ = sink.close().await;
}

/// Replays what the socket asked for, then follows the hub until the socket goes away.
async fn deliver(
    sink: &mut Sink,
    bus: &Bus,
    mut rx: broadcast::Receiver<Arc<HubEvent>>,
    mut control: mpsc::Receiver<Control>,
    mut interest: Interest,
    since: Option<i64>,
    bounds: scheduler::Result<(i64, i64)>,
) {
    let (oldest, head) = match bounds {
        Ok(b) => b,
        Err(e) => {
            let _ = send(
                sink,
                json!({"type": "error", "detail": e.to_string()}).to_string(),
            )
            .await;
            return;
        }
    };
    let mut cursor = head;
    if let Some(since) = since {
        if since > head || (oldest > 0 && since < oldest - 1) {
            let reason = if since > head {
                format!("sequence {since} is ahead of the stream ({head})")
            } else {
                format!("events after {since} are no longer kept (oldest is {oldest})")
            };
            if !send(
                sink,
                json!({"type": "resync", "reason": reason}).to_string(),
            )
            .await
            {
                return;
            }
        } else {
            cursor = since;
            loop {
                let events = match bus.read(cursor, None, REPLAY_BATCH).await {
                    Ok(e) => e,
                    Err(e) => {
                        let detail = e.to_string();
                        let _ = send(sink, json!({"type": "error", "detail": detail}).to_string())
                            .await;
                        return;
                    }
                };
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                for e in events.iter().filter(|e| interest.matches(e)) {
                    if sink
                        .feed(Message::Text(event_message(e).into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
                cursor = last;
            }
        }
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            ctl = control.recv() => {
                let reply = match ctl {
                    // The client closed, or its side of the socket failed.
                    None => return,
                    Some(Control::Reply(text)) => text,
                    Some(Control::Subscribe(next)) => {
                        interest = next;
                        json!({"type": "subscribed", "jobs": interest.jobs,
                               "workers": interest.workers, "all": interest.all})
                        .to_string()
                    }
                };
                if !send(sink, reply).await {
                    return;
                }
            }
            event = rx.recv() => {
                // Take what else is already waiting, and write it all with one flush.
                let mut next = event;
                for _ in 0..DRAIN_MAX_EVENTS {
                    let fed = match next {
                        Ok(e) => feed_event(sink, &interest, &mut cursor, &e).await,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            feed_lagged(sink, missed).await
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if !fed {
                        return;
                    }
                    next = match rx.try_recv() {
                        Ok(e) => Ok(e),
                        Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                            Err(broadcast::error::RecvError::Lagged(missed))
                        }
                        Err(_) => break,
                    };
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(job: Option<Uuid>) -> Event {
        Event {
            seq: 1,
            job_id: job,
            kind: "progress".into(),
            payload: json!({}),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn interest_follows_jobs_workers_or_all() {
        let j = Uuid::new_v4();
        let only_j = Interest {
            jobs: HashSet::from([j]),
            ..Default::default()
        };
        assert!(only_j.matches(&event(Some(j))));
        assert!(!only_j.matches(&event(Some(Uuid::new_v4()))));
        assert!(!only_j.matches(&event(None)));
        let workers = Interest {
            workers: true,
            ..Default::default()
        };
        assert!(workers.matches(&event(None)));
        let all = Interest {
            all: true,
            ..Default::default()
        };
        assert!(all.matches(&event(Some(j))) && all.matches(&event(None)));
    }

    #[test]
    fn job_lists_are_checked() {
        assert_eq!(parse_jobs("").unwrap().len(), 0);
        assert!(parse_jobs("nope").is_err());
    }
}
