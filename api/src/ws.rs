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

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use scheduler::{Bus, Event, EventBus};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::problem::{ApiResult, Problem, Query};
use crate::AppState;

/// How often the server pings an idle socket.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Events read from the store per replay query.
const REPLAY_BATCH: i64 = 1000;

/// The fan-out of stored events to live sockets.
#[derive(Debug)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
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
                        for e in events {
                            // No receivers is fine: nobody is watching.
                            let _ = tx.send(Arc::new(e));
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
    Ok(upgrade.on_upgrade(move |socket| serve(socket, state, rx, interest, p.since, bounds)))
}

async fn send(socket: &mut WebSocket, text: String) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn serve(
    mut socket: WebSocket,
    state: AppState,
    mut rx: broadcast::Receiver<Arc<Event>>,
    mut interest: Interest,
    since: Option<i64>,
    bounds: scheduler::Result<(i64, i64)>,
) {
    let bus = state.bus.clone();
    let (oldest, head) = match bounds {
        Ok(b) => b,
        Err(e) => {
            let _ = send(
                &mut socket,
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
                &mut socket,
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
                        let _ = send(
                            &mut socket,
                            json!({"type": "error", "detail": e.to_string()}).to_string(),
                        )
                        .await;
                        return;
                    }
                };
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                for e in events.iter().filter(|e| interest.matches(e)) {
                    if !send(&mut socket, event_message(e)).await {
                        return;
                    }
                }
                cursor = last;
            }
        }
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(msg)) = incoming else { return };
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => return,
                    _ => continue,
                };
                let reply = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Ping) => json!({"type": "pong"}),
                    Ok(ClientMessage::Subscribe { jobs, workers, all }) => {
                        interest.jobs = jobs.unwrap_or_default().into_iter().collect();
                        interest.workers = workers.unwrap_or(false);
                        interest.all = all.unwrap_or(false);
                        json!({"type": "subscribed", "jobs": interest.jobs, "workers": interest.workers, "all": interest.all})
                    }
                    Err(e) => json!({"type": "error", "detail": format!("unreadable message: {e}")}),
                };
                if !send(&mut socket, reply.to_string()).await {
                    return;
                }
            }
            event = rx.recv() => match event {
                Ok(e) => {
                    if e.seq <= cursor {
                        continue;
                    }
                    cursor = e.seq;
                    if interest.matches(&e) && !send(&mut socket, event_message(&e)).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let msg: Value = json!({"type": "lagged", "missed": missed});
                    if !send(&mut socket, msg.to_string()).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
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
