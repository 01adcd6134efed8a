//! The event bus seam against the real servers: one conformance run over PostgreSQL's bus and
//! NATS JetStream's (the machine's NATS, `NATS_URL`, default `nats://127.0.0.1:4222`); the
//! relay from the PostgreSQL outbox into JetStream (in order, exactly once, with two relays
//! racing); and worker wake-ups over NATS.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use scheduler::nats::{NatsEventBus, NatsOptions, Relay};
use scheduler::{Bus, Event, EventBus, NewEvent, PgEventBus};
use serde_json::json;
use uuid::Uuid;

use common::TestDb;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A bus on its own stream (a fresh prefix), removed when the test is done.
async fn nats_bus() -> NatsEventBus {
    let options = NatsOptions {
        prefix: format!("test-{}", Uuid::new_v4().simple()),
        ..NatsOptions::new(nats_url())
    };
    NatsEventBus::connect(&options)
        .await
        .expect("nats with jetstream must run for these tests")
}

fn event(job: Option<Uuid>, kind: &str, n: i64) -> NewEvent {
    NewEvent {
        job_id: job,
        kind: kind.into(),
        payload: json!({ "n": n, "text": "ünïcode ✓" }),
    }
}

fn same(stored: &Event, sent: &NewEvent) -> bool {
    stored.job_id == sent.job_id && stored.kind == sent.kind && stored.payload == sent.payload
}

/// Reads until `want` events after `after` arrived (the PostgreSQL bus may hold a fresh gap
/// back for a moment), at most 10 s.
async fn read_all(bus: &Bus, after: i64, job: Option<Uuid>, want: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = bus.read(after, job, 1000).await.expect("read");
        if got.len() >= want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every bus must do: numbered in publish order, read back in order from any point,
/// filtered by job, limited, bounded, and followed live.
async fn conformance(bus: Bus) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (_, head0) = bus.bounds().await.expect("bounds");
    let sent = vec![
        event(Some(a), "job_queued", 1),
        event(Some(b), "job_queued", 2),
        event(None, "worker_up", 3),
        event(Some(a), "progress", 4),
    ];
    let seqs = bus.publish(&sent).await.expect("publish");
    assert_eq!(seqs.len(), 4, "{}", bus.name());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs[0] > head0);

    let all = read_all(&bus, head0, None, 4).await;
    assert_eq!(all.len(), 4, "{}: {all:?}", bus.name());
    for ((got, want), seq) in all.iter().zip(&sent).zip(&seqs) {
        assert!(same(got, want), "{}: {got:?} vs {want:?}", bus.name());
        assert_eq!(got.seq, *seq);
    }
    let after_first = bus.read(seqs[0], None, 1000).await.expect("read");
    assert_eq!(
        after_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs[1..]
    );
    let of_a = bus.read(head0, Some(a), 1000).await.expect("read");
    assert_eq!(
        of_a.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [seqs[0], seqs[3]],
        "{}",
        bus.name()
    );
    assert!(bus
        .read(head0, Some(Uuid::new_v4()), 1000)
        .await
        .expect("read")
        .is_empty());
    let two = bus.read(head0, None, 2).await.expect("read");
    assert_eq!(two.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[..2]);
    assert!(bus
        .read(seqs[3], None, 1000)
        .await
        .expect("read")
        .is_empty());
    let (oldest, head) = bus.bounds().await.expect("bounds");
    assert_eq!(head, seqs[3], "{}", bus.name());
    assert!(oldest >= 1 && oldest <= seqs[0], "{}: {oldest}", bus.name());

    // Live: a subscriber from the head sees what comes next, and nothing before it.
    let mut sub = bus.subscribe(head, None).await.expect("subscribe");
    let mut sub_b = bus.subscribe(head, Some(b)).await.expect("subscribe");
    assert!(sub
        .next(Duration::from_millis(300))
        .await
        .expect("next")
        .is_empty());
    let more = vec![
        event(Some(b), "job_succeeded", 5),
        event(None, "worker_down", 6),
    ];
    let more_seqs = bus.publish(&more).await.expect("publish");
    let mut live = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live.len() < 2 && tokio::time::Instant::now() < deadline {
        live.extend(sub.next(Duration::from_secs(2)).await.expect("next"));
    }
    assert_eq!(
        live.iter().map(|e| e.seq).collect::<Vec<_>>(),
        more_seqs,
        "{}",
        bus.name()
    );
    assert!(same(&live[0], &more[0]) && same(&live[1], &more[1]));
    let only_b = sub_b.next(Duration::from_secs(5)).await.expect("next");
    assert_eq!(
        only_b.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [more_seqs[0]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_bus_conforms() {
    let db = TestDb::new().await;
    let queue = db.queue(4).await;
    conformance(Bus::Pg(PgEventBus::new(queue.pool().clone()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_conforms() {
    let nats = nats_bus().await;
    conformance(Bus::Nats(nats.clone())).await;
    nats.delete_stream().await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nats_settings_are_clear_errors() {
    let bad_prefix = NatsOptions {
        prefix: "a.b".into(),
        ..NatsOptions::new(nats_url())
    };
    let e = NatsEventBus::connect(&bad_prefix).await.unwrap_err();
    assert!(e.to_string().contains("prefix"), "{e}");
    // Nothing listens on port 9 (discard).
    let e = NatsEventBus::connect(&NatsOptions::new("nats://127.0.0.1:9"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot connect to nats"), "{e}");
}

/// Stored events of the NATS stream, oldest first.
async fn stream_events(nats: &NatsEventBus, want: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = nats.read(0, None, 100_000).await.expect("read");
        if got.len() >= want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_publish_the_outbox_in_order_exactly_once() {
    let db = TestDb::new().await;
    let queue = db.queue(8).await;
    let outbox = PgEventBus::new(queue.pool().clone());
    let nats = nats_bus().await;

    // Some history before any relay runs: a submitted job (its job_queued event, written by
    // the queue in the submit transaction) and published events.
    let job = queue.submit(&common::job(3, 0, 1)).await.expect("submit");
    let early: Vec<NewEvent> = (0..40).map(|n| event(Some(job), "progress", n)).collect();
    outbox.publish(&early).await.expect("publish");

    // Two relays race over the same outbox and stream.
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = Relay::new(queue.pool().clone(), nats.clone());
            tokio::spawn(async move { relay.run().await })
        })
        .collect();
    // More while they run, in several transactions.
    for chunk in 0..5 {
        let late: Vec<NewEvent> = (0..20)
            .map(|n| event(None, "worker_up", 100 + chunk * 20 + n))
            .collect();
        outbox.publish(&late).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let stored = outbox.read(0, None, 100_000).await.expect("outbox");
    assert_eq!(stored.len(), 1 + 40 + 100);
    let relayed = stream_events(&nats, stored.len()).await;
    assert_eq!(relayed.len(), stored.len(), "every outbox event, once");
    for (r, s) in relayed.iter().zip(&stored) {
        assert_eq!(
            (&r.kind, &r.job_id, &r.payload),
            (&s.kind, &s.job_id, &s.payload)
        );
        assert_eq!(r.created_at, s.created_at);
    }
    assert_eq!(relayed[0].kind, "job_queued");
    assert_eq!(
        relayed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "the stream's own numbering has no gaps"
    );
    for r in &relays {
        r.abort();
    }

    // A relay started later resumes after the last relayed event: nothing is sent twice.
    let relay = Relay::new(queue.pool().clone(), nats.clone());
    let again = tokio::spawn(async move { relay.run().await });
    outbox
        .publish(&[event(Some(job), "job_succeeded", 999)])
        .await
        .expect("publish");
    let relayed = stream_events(&nats, stored.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, head) = nats.bounds().await.expect("bounds");
    assert_eq!(relayed.len(), stored.len() + 1);
    assert_eq!(head, stored.len() as i64 + 1);
    assert_eq!(
        relayed.last().map(|e| e.kind.as_str()),
        Some("job_succeeded")
    );
    let kinds: HashSet<&str> = relayed.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains("worker_up") && kinds.contains("progress"));
    again.abort();
    nats.delete_stream().await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_notifications_wake_workers_over_nats() {
    let db = TestDb::new().await;
    let queue = db.queue(4).await;
    let nats = nats_bus().await;
    let mut waker = nats.task_waker().await.expect("waker");
    let relay = Relay::new(queue.pool().clone(), nats.clone());
    let relaying = tokio::spawn(async move { relay.run().await });
    // Nothing happens: the wait times out (the polling fallback).
    assert!(!waker.wait(Duration::from_millis(300)).await.expect("wait"));
    // The relay LISTENs from its start; give it a moment to be listening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.submit(&common::job(2, 0, 1)).await.expect("submit");
    assert!(
        waker.wait(Duration::from_secs(5)).await.expect("wait"),
        "a submit wakes an idle worker through nats"
    );
    relaying.abort();
    nats.delete_stream().await.expect("delete");
}
