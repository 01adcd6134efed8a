//! The event WebSocket over a real socket and a real PostgreSQL: subscribe → events →
//! disconnect → `since` replay → `resync`, client messages, and a slow consumer that is told
//! it lagged instead of being dropped.

use std::time::Duration;

use api::{AppState, Config};
use futures_util::{SinkExt, StreamExt};
use scheduler::testdb::TestDb;
use scheduler::{EventBus, NewEvent, PgEventBus, Queue};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    addr: std::net::SocketAddr,
    queue: Queue,
    _db: TestDb,
}

impl Server {
    async fn start(tune: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        let queue = db.queue(4).await;
        let mut config = Config {
            data_dir: std::env::temp_dir().join("constellation-ws-test"),
            ..Config::default()
        };
        tune(&mut config);
        let state = AppState::new(queue.clone(), &config).await.unwrap();
        let app = api::router(state, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(api::serve(listener, app, std::future::pending()));
        Self {
            addr,
            queue,
            _db: db,
        }
    }

    async fn connect(&self, query: &str) -> Socket {
        let url = format!("ws://{}/v1/ws?{query}", self.addr);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    fn bus(&self) -> PgEventBus {
        PgEventBus::new(self.queue.pool().clone())
    }

    async fn publish(&self, job: Uuid, kinds: &[&str]) -> Vec<i64> {
        let events: Vec<NewEvent> = kinds
            .iter()
            .map(|k| NewEvent {
                job_id: Some(job),
                kind: (*k).to_owned(),
                payload: json!({"note": k}),
            })
            .collect();
        self.bus().publish(&events).await.unwrap()
    }
}

/// The next JSON message, skipping pings; None when nothing arrives within `wait`.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("socket error: {e}"),
            Ok(None) | Err(_) => return None,
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_follow_disconnect_replay_and_resync() {
    let server = Server::start(|_| {}).await;
    let (job, other) = (Uuid::new_v4(), Uuid::new_v4());

    let mut ws = server.connect(&format!("jobs={job}")).await;
    let seqs = server
        .publish(job, &["job_queued", "job_running", "progress"])
        .await;
    server.publish(other, &["progress"]).await;
    for (seq, kind) in seqs.iter().zip(["job_queued", "job_running", "progress"]) {
        let m = next(&mut ws, WAIT).await.expect("an event");
        assert_eq!(m["type"], "event");
        assert_eq!(m["seq"], *seq);
        assert_eq!(m["kind"], kind);
        assert_eq!(m["job_id"], job.to_string());
        assert_eq!(m["payload"]["note"], kind);
    }
    // The other job's event is not sent to this socket.
    assert_eq!(next(&mut ws, QUIET).await, None);

    // Client messages: ping, and a new subscription.
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next(&mut ws, WAIT).await.unwrap()["type"], "pong");
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next(&mut ws, WAIT).await.unwrap()["type"], "error");
    ws.close(None).await.unwrap();
    drop(ws);

    // Missed while disconnected: replayed after `since`, then the live stream follows.
    let last_seen = *seqs.last().unwrap();
    let missed = server.publish(job, &["progress", "log"]).await;
    server.publish(other, &["log"]).await;
    let mut ws = server
        .connect(&format!("jobs={job}&since={last_seen}"))
        .await;
    for seq in &missed {
        let m = next(&mut ws, WAIT).await.expect("a replayed event");
        assert_eq!(m["seq"], *seq);
    }
    assert_eq!(next(&mut ws, QUIET).await, None);
    let live = server.publish(job, &["job_succeeded"]).await;
    let m = next(&mut ws, WAIT).await.expect("a live event");
    assert_eq!(
        (m["seq"].as_i64(), m["kind"].as_str()),
        (Some(live[0]), Some("job_succeeded"))
    );

    // After retention removed what a client asks for, or for a sequence from another
    // stream, the answer is resync — then the live stream.
    sqlx::query("DELETE FROM event WHERE seq <= $1")
        .bind(missed[0])
        .execute(server.queue.pool())
        .await
        .unwrap();
    let mut ws = server.connect(&format!("jobs={job}&since=1")).await;
    let m = next(&mut ws, WAIT).await.unwrap();
    assert_eq!(m["type"], "resync", "{m}");
    let live = server.publish(job, &["progress"]).await;
    assert_eq!(next(&mut ws, WAIT).await.unwrap()["seq"], live[0]);
    let mut ws = server.connect(&format!("since={}", live[0] + 1000)).await;
    assert_eq!(next(&mut ws, WAIT).await.unwrap()["type"], "resync");

    // A bad query is a problem, not a socket.
    let url = format!("ws://{}/v1/ws?jobs=nope", server.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_told_it_lagged_and_keeps_the_stream() {
    let server = Server::start(|c| c.ws_buffer_events = 4).await;
    let job = Uuid::new_v4();
    let mut slow = server.connect("all=true").await;
    // 400 events of 64 KiB: far more than the socket buffers hold while the client sleeps.
    let blob = "x".repeat(64 << 10);
    let events: Vec<NewEvent> = (0..400)
        .map(|i| NewEvent {
            job_id: Some(job),
            kind: "log".into(),
            payload: json!({"i": i, "blob": blob}),
        })
        .collect();
    let seqs = server.bus().publish(&events).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut lagged, mut received, mut last_seq) = (0u64, 0usize, 0i64);
    while let Some(m) = next(&mut slow, Duration::from_secs(3)).await {
        match m["type"].as_str() {
            Some("lagged") => lagged += m["missed"].as_u64().unwrap(),
            Some("event") => {
                let seq = m["seq"].as_i64().unwrap();
                assert!(seq > last_seq, "events arrive in order");
                last_seq = seq;
                received += 1;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert!(lagged > 0, "the slow socket was never told it lagged");
    assert_eq!(
        received as u64 + lagged,
        400,
        "every event was either sent or counted as missed"
    );
    assert_eq!(
        last_seq,
        *seqs.last().unwrap(),
        "the stream went on after the lag"
    );
    // Still connected: it answers.
    slow.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next(&mut slow, WAIT).await.unwrap()["type"], "pong");
}
