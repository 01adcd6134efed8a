//! The service on NATS JetStream end to end: `serve --nats` relays the queue's outbox into a
//! stream of its own, a `worker --nats` runs a job submitted with `submit`, and a WebSocket
//! client sees the job's events live, numbered by the stream, and replays them from the
//! stream with `since=`.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use scheduler::nats::{NatsEventBus, NatsOptions};
use scheduler::EventBus;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

mod common;
use common::{free_listen, http, scene, stop, text, wait_healthy, RECIPE};

const BIN: &str = env!("CARGO_BIN_EXE_constellation");

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Event messages from `ws` until `stop` matches one (at most 60 s).
async fn events_until(
    ws: &mut Socket,
    stop: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no end event; got {out:?}"))
            .expect("the socket stays open")
            .expect("a message");
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).expect("json");
        assert_ne!(v["type"], "lagged", "{v}");
        assert_ne!(v["type"], "resync", "{v}");
        if v["type"] == "event" {
            let done = stop(&v);
            out.push(v);
            if done {
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_with_its_events_on_nats() {
    let db = scheduler::testdb::TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 384, 11);
    let prefix = format!("test-{}", Uuid::new_v4().simple());
    let listen = free_listen();
    let data = tmp.path().join("data").display().to_string();
    let url = nats_url();
    let cmd = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("DATABASE_URL", db.url())
            .env("CONSTELLATION_NATS_URL", &url);
        c
    };
    let spawn = |args: &[&str]| {
        cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts")
    };
    let serve = spawn(&[
        "serve",
        "--listen",
        &listen,
        "--data-dir",
        &data,
        "--nats-prefix",
        &prefix,
    ]);
    wait_healthy(&listen);
    let (status, body) = http(&listen, "GET", "/readyz", "", "").expect("readyz");
    assert_eq!(status, 200, "{body}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/v1/ws?all=true"))
        .await
        .expect("ws connects");
    let out = tmp.path().join("out").display().to_string();
    let mut args = vec!["submit", "--recipe", RECIPE, "-o", &out, "-i"];
    args.extend(inputs.iter().map(String::as_str));
    args.push("--json");
    let submitted = cmd(&args).output().expect("submit runs");
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let v: serde_json::Value = serde_json::from_slice(&submitted.stdout).expect("json");
    let job = v["job_id"].as_str().expect("a job id").to_owned();
    let worker = spawn(&[
        "worker",
        "--once",
        "--backend",
        "cpu",
        "--nats-prefix",
        &prefix,
    ]);

    let live = events_until(&mut ws, |e| {
        e["job_id"] == job.as_str() && e["kind"] == "job_succeeded"
    })
    .await;
    let worker = worker.wait_with_output().expect("the worker ends");
    assert!(worker.status.success(), "{}", text(&worker.stderr));
    let seqs: Vec<i64> = live
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the stream numbers events without gaps: {seqs:?}"
    );
    let kinds: Vec<&str> = live
        .iter()
        .filter(|e| e["job_id"] == job.as_str())
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.first(), Some(&"job_queued"), "{kinds:?}");
    assert!(kinds.contains(&"progress"), "{kinds:?}");

    // The same events, with the same numbers, are in the stream itself.
    let nats = NatsEventBus::connect(&NatsOptions {
        prefix: prefix.clone(),
        ..NatsOptions::new(url.clone())
    })
    .await
    .expect("nats");
    let stored = nats.read(0, None, 10_000).await.expect("read");
    for e in &live {
        let seq = e["seq"].as_i64().expect("seq");
        let s = stored.iter().find(|s| s.seq == seq).expect("in the stream");
        assert_eq!(e["kind"], s.kind.as_str());
    }

    // A client that saw the first event replays the rest from the stream.
    let (mut again, _) = tokio_tungstenite::connect_async(format!(
        "ws://{listen}/v1/ws?jobs={job}&since={}",
        seqs[0]
    ))
    .await
    .expect("ws connects");
    let replayed = events_until(&mut again, |e| e["kind"] == "job_succeeded").await;
    let want: Vec<i64> = live
        .iter()
        .skip(1)
        .filter(|e| e["job_id"] == job.as_str())
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        replayed
            .iter()
            .map(|e| e["seq"].as_i64().expect("seq"))
            .collect::<Vec<_>>(),
        want
    );

    let stderr = stop(serve);
    assert!(stderr.contains("nats jetstream"), "{stderr}");
    nats.delete_stream().await.expect("delete");
}

#[test]
fn an_unreachable_nats_is_one_line_and_nonzero() {
    let out = Command::new(BIN)
        .args([
            "worker",
            "--once",
            "--backend",
            "cpu",
            "--nats",
            "nats://127.0.0.1:9",
        ])
        .env("DATABASE_URL", scheduler::testdb::admin_url())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cannot connect to nats"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
