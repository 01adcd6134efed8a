//! The queue behind a faulty network: a TCP proxy between the worker's pool and the real
//! PostgreSQL swallows the server's replies and then cuts the connections, so a call can
//! commit on the server while its caller sees only a lost connection.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{job, TestDb};
use scheduler::{JobState, Queue, TaskKind, TaskState};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A TCP proxy in front of the database server. While `swallow` is set it forwards what the
/// client sends but drops what the server answers; [`Proxy::cut`] closes every connection
/// open at that moment, both ways.
struct Proxy {
    port: u16,
    swallow: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallow = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (swallowing, open) = (Arc::clone(&swallow), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let swallowing = Arc::clone(&swallowing);
                let relay = tokio::spawn(async move {
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let up = tokio::io::copy(&mut client_rx, &mut server_tx);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = server_rx.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if !swallowing.load(Ordering::SeqCst) {
                                client_tx.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
                open.lock().unwrap().push(relay);
            }
        });
        Self {
            port,
            swallow,
            connections,
        }
    }

    fn swallow(&self, on: bool) {
        self.swallow.store(on, Ordering::SeqCst);
    }

    /// Closes every connection open now (its relay task, and with it both sockets).
    fn cut(&self) {
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

async fn count(q: &Queue, sql: &str, job_id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(job_id)
        .fetch_one(q.pool())
        .await
        .unwrap()
}

/// Polls `probe` until it holds, for at most 20 s.
async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_lost_after_the_commit_loses_no_tile_and_counts_none_twice() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let server: PgConnectOptions = scheduler::testdb::admin_url().parse().unwrap();
    let upstream = tokio::net::lookup_host((server.get_host(), server.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    // No ping before each use: a ping waits for its reply, so the call under test would
    // never be sent while the replies are swallowed.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(db.options.clone().host("127.0.0.1").port(proxy.port))
        .await
        .unwrap();
    let worker_q = Queue::from_pool(pool);

    let job_id = q.submit(&job(4, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();
    let lease = Duration::from_secs(2);
    let first = worker_q.claim(w, 2, lease).await.unwrap();
    assert_eq!(first.len(), 2);
    let done: Vec<_> = first
        .iter()
        .map(|t| (t.run, json!({ "piece": t.run.id })))
        .collect();

    // The connection has the statement prepared already (sqlx prepares before it executes,
    // and waits for that reply).
    let warm = worker_q.complete_and_claim(w, &[], 0, lease).await.unwrap();
    assert!(warm.0.is_empty() && warm.1.is_empty());
    // sqlx pings a connection as it goes back to the pool, and that ping waits for its
    // reply too.
    until("the connection is back in the pool", async || {
        worker_q.pool().num_idle() == 1
    })
    .await;

    // The worker completes its batch and claims the next in one call; the server runs and
    // commits it, but its reply never arrives, and then the connection drops.
    proxy.swallow(true);
    let call = tokio::spawn({
        let (worker_q, done) = (worker_q.clone(), done.clone());
        async move { worker_q.complete_and_claim(w, &done, 2, lease).await }
    });
    until("the lost call committed", async || {
        count(
            &q,
            "SELECT count(*) FROM task_history WHERE job_id = $1 AND kind = 'tile'",
            job_id,
        )
        .await
            == 2
            && count(
                &q,
                "SELECT count(*) FROM task WHERE job_id = $1 AND state = 'running'",
                job_id,
            )
            .await
                == 2
    })
    .await;
    proxy.cut();
    let lost = call.await.unwrap().expect_err("the reply was lost");
    assert!(lost.is_connection_lost(), "{lost}");
    proxy.swallow(false);

    // The worker tries the call again, as it does after a lost connection: the completions
    // are fenced (already done), so none is counted twice and nothing else is claimed.
    let mut retried = None;
    for _ in 0..5 {
        match worker_q.complete_and_claim(w, &done, 0, lease).await {
            Ok(r) => {
                retried = Some(r);
                break;
            }
            Err(e) if e.is_connection_lost() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("retry failed: {e}"),
        }
    }
    let (accepted, claimed) = retried.expect("the retry reached the server");
    assert!(accepted.is_empty() && claimed.is_empty());

    // The batch claimed by the lost call is held by nobody the worker knows of: its
    // heartbeat (with nothing in flight) does not extend it, so the reaper returns it once the
    // lease is over, and another worker finishes the job.
    let orphans = q.tasks(job_id).await.unwrap();
    let orphans: Vec<_> = orphans
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .collect();
    assert_eq!(orphans.len(), 2);
    assert!(orphans.iter().all(|t| t.worker_id == Some(w)));
    let hb = worker_q.heartbeat(w, &[], lease).await.unwrap();
    assert!(hb.lost.is_empty() && hb.cancelled.is_empty());
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let mut reaped = q.reap().await.unwrap().requeued;
    reaped.sort_unstable();
    let mut orphan_ids: Vec<_> = orphans.iter().map(|t| t.id).collect();
    orphan_ids.sort_unstable();
    assert_eq!(reaped, orphan_ids);

    let w2 = Uuid::new_v4();
    let second = q.claim(w2, 10, lease).await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|t| t.run.attempt == 2));
    let done2: Vec<_> = second.iter().map(|t| (t.run, json!(null))).collect();
    let (accepted, finalize) = q.complete_and_claim(w2, &done2, 10, lease).await.unwrap();
    assert_eq!(accepted.len(), 2);
    assert_eq!(finalize.len(), 1);
    assert_eq!(finalize[0].kind, TaskKind::Finalize);
    q.complete(w2, &[(finalize[0].run, json!({ "cog": "out.tif" }))])
        .await
        .unwrap();

    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.tiles_succeeded, 4);
    assert_eq!(
        count(
            &q,
            "SELECT count(DISTINCT tile_index) FROM task_history \
             WHERE job_id = $1 AND kind = 'tile' AND state = 'succeeded'",
            job_id,
        )
        .await,
        4
    );
    assert_eq!(
        count(
            &q,
            "SELECT count(*) FROM task_history WHERE job_id = $1 AND kind = 'tile'",
            job_id,
        )
        .await,
        4,
        "each tile succeeded exactly once"
    );
}
