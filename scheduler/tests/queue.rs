//! The queue against a real PostgreSQL: exactly-once under concurrent claimers, fencing,
//! leases and the reaper, retries, cancellation, the finalize dependency, priorities, bulk
//! submission and events. Each test runs in a database of its own.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{job, TestDb};
use scheduler::{
    Backoff, EventBus, FailOutcome, JobState, NewEvent, PgEventBus, TaskKind, TaskRef, TaskState,
};
use serde_json::json;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

async fn count(q: &scheduler::Queue, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(q.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_complete_every_task_exactly_once() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let tiles = 2000;
    let job_id = q.submit(&job(tiles, 0, 3)).await.unwrap();

    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..8 {
        // Each claimer has a connection of its own. Half of them complete a batch and claim
        // the next in one call, as the worker does.
        let (wq, combined) = (db.queue(1).await, i % 2 == 1);
        handles.push(tokio::spawn(async move {
            let worker = Uuid::new_v4();
            let mut accepted = Vec::new();
            let mut next = Vec::new();
            loop {
                let batch = if next.is_empty() {
                    wq.claim(worker, 16, LEASE).await.unwrap()
                } else {
                    std::mem::take(&mut next)
                };
                if batch.is_empty() {
                    let state = wq.job(job_id).await.unwrap().unwrap().state;
                    if state == JobState::Succeeded {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let done: Vec<_> = batch
                    .iter()
                    .map(|t| (t.run, json!({"tile": t.tile.map(|(i, _)| i)})))
                    .collect();
                let ok = if combined {
                    let (ok, claimed) = wq
                        .complete_and_claim(worker, &done, 16, LEASE)
                        .await
                        .unwrap();
                    next = claimed;
                    ok
                } else {
                    wq.complete(worker, &done).await.unwrap()
                };
                assert_eq!(ok.len(), done.len(), "a fresh claim is completed in full");
                // Completing the same runs again is refused.
                assert!(wq.complete(worker, &done).await.unwrap().is_empty());
                accepted.extend(ok);
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "8 claimers (4 completing and claiming in one call), batches of 16: {} tasks claimed + completed in {secs:.2} s ({:.0} tasks/s)",
        all.len(),
        all.len() as f64 / secs
    );

    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        tiles as usize + 1,
        "every tile and the finalize, once"
    );
    assert_eq!(unique.len(), all.len(), "no completion accepted twice");
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.tiles_succeeded, tiles);
    assert_eq!(
        count(&q, "SELECT count(*) FROM task").await,
        0,
        "the hot table is empty"
    );
    assert_eq!(
        count(
            &q,
            "SELECT count(*) FROM task_history WHERE state = 'succeeded' AND attempt = 1"
        )
        .await,
        i64::from(tiles) + 1
    );
    // The finalize task ran last.
    let tasks = q.tasks(job_id).await.unwrap();
    let fin = tasks.iter().find(|t| t.kind == TaskKind::Finalize).unwrap();
    assert_eq!(all.iter().filter(|&&id| id == fin.id).count(), 1);
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_complete_and_the_task_reruns() {
    let db = TestDb::new().await;
    let q = db.queue(4).await;
    let job_id = q.submit(&job(1, 0, 3)).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

    let first = q.claim(a, 10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].run.attempt, 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reaped = q.reap().await.unwrap();
    assert_eq!(reaped.requeued, vec![first[0].run.id]);

    let second = q.claim(b, 10, LEASE).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].run,
        TaskRef {
            id: first[0].run.id,
            attempt: 2
        }
    );

    // A comes back: its completion is refused and its heartbeat says the run is lost.
    assert!(q
        .complete(a, &[(first[0].run, json!("stale"))])
        .await
        .unwrap()
        .is_empty());
    let hb = q.heartbeat(a, &[first[0].run], LEASE).await.unwrap();
    assert_eq!(hb.lost, vec![first[0].run.id]);
    assert!(hb.cancelled.is_empty());
    // Nor can A fail it, nor complete B's attempt under its own name.
    assert_eq!(
        q.fail(a, first[0].run, "x", true).await.unwrap(),
        FailOutcome::Rejected
    );
    assert!(q
        .complete(a, &[(second[0].run, json!("x"))])
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        q.complete(b, &[(second[0].run, json!("fresh"))])
            .await
            .unwrap()
            .len(),
        1
    );
    let fin = q.claim(b, 10, LEASE).await.unwrap();
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0].kind, TaskKind::Finalize);
    q.complete(b, &[(fin[0].run, json!({}))]).await.unwrap();
    assert_eq!(
        q.job(job_id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    let tile = &q.tasks(job_id).await.unwrap()[0];
    assert_eq!((tile.attempt, tile.worker_id), (2, Some(b)));
    assert_eq!(tile.output, Some(json!("fresh")));
}

#[tokio::test]
async fn the_reaper_spares_a_task_whose_lease_is_being_extended() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    q.submit(&job(1, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();
    let lease = Duration::from_millis(300);
    let run = q.claim(w, 1, lease).await.unwrap()[0].run;
    let started = Instant::now();
    while started.elapsed() < lease * 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hb = q.heartbeat(w, &[run], lease).await.unwrap();
        assert!(hb.lost.is_empty() && hb.cancelled.is_empty());
        assert_eq!(q.reap().await.unwrap(), Default::default());
    }
    assert_eq!(
        q.complete(w, &[(run, json!(1))]).await.unwrap(),
        vec![run.id]
    );
}

#[tokio::test]
async fn an_expired_last_attempt_fails_the_task_and_its_job() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let job_id = q.submit(&job(2, 0, 1)).await.unwrap();
    let w = Uuid::new_v4();
    let runs = q.claim(w, 1, Duration::from_millis(50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reaped = q.reap().await.unwrap();
    assert_eq!(reaped.failed, vec![runs[0].run.id]);
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert!(status.error.unwrap().contains("lease expired"));
    let states: Vec<_> = q
        .tasks(job_id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        states,
        vec![
            TaskState::Failed,
            TaskState::Cancelled,
            TaskState::Cancelled
        ]
    );
}

#[tokio::test]
async fn retries_back_off_then_fail_with_the_error_kept_while_other_jobs_finish() {
    let db = TestDb::new().await;
    let base_secs = 0.2;
    let q = db.queue(2).await.with_backoff(Backoff {
        base_secs,
        cap_secs: 10.0,
    });
    let bad = q.submit(&job(3, 10, 3)).await.unwrap();
    let good = q.submit(&job(4, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();

    let mut corrupt = q.claim(w, 1, LEASE).await.unwrap().remove(0);
    assert_eq!(corrupt.job_id, bad);
    for attempt in 1..=3 {
        assert_eq!(corrupt.run.attempt, attempt);
        let before = chrono::Utc::now();
        let outcome = q
            .fail(w, corrupt.run, "corrupt tile: bad deflate", true)
            .await
            .unwrap();
        if attempt < 3 {
            let FailOutcome::Retrying { run_at } = outcome else {
                panic!("attempt {attempt} should retry, got {outcome:?}")
            };
            let delay_secs = (run_at - before).num_milliseconds() as f64 / 1000.0;
            let nominal = base_secs * 2f64.powi(attempt - 1);
            assert!(
                delay_secs >= 0.5 * nominal - 0.05 && delay_secs <= nominal + 0.05,
                "attempt {attempt}: delay {delay_secs} s outside [0.5, 1] × {nominal} s"
            );
            // Not claimable before its time: the next claim gets another task.
            let other = q.claim(w, 1, LEASE).await.unwrap().remove(0);
            assert_ne!(other.run.id, corrupt.run.id);
            q.release(w, &[other.run]).await.unwrap();
            // Once the backoff has passed, the retry is claimable again (the other tasks of
            // its job come along in the batch and are released, uncounted).
            tokio::time::sleep(Duration::from_secs_f64(delay_secs + 0.05)).await;
            let mut next = q.claim(w, 10, LEASE).await.unwrap();
            let pos = next
                .iter()
                .position(|t| t.run.id == corrupt.run.id)
                .unwrap();
            let retried = next.remove(pos);
            q.release(w, &next.iter().map(|t| t.run).collect::<Vec<_>>())
                .await
                .unwrap();
            corrupt = retried;
        } else {
            assert_eq!(outcome, FailOutcome::Failed);
        }
    }
    let status = q.job(bad).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert!(status
        .error
        .as_deref()
        .unwrap()
        .contains("corrupt tile: bad deflate"));
    let failed = q.tasks(bad).await.unwrap();
    let t = failed.iter().find(|t| t.id == corrupt.run.id).unwrap();
    assert_eq!((t.state, t.attempt), (TaskState::Failed, 3));
    assert_eq!(t.error.as_deref(), Some("corrupt tile: bad deflate"));
    assert!(failed
        .iter()
        .filter(|t| t.id != corrupt.run.id)
        .all(|t| t.state == TaskState::Cancelled));

    // Released runs did not count; the other job drains and succeeds.
    loop {
        let batch = q.claim(w, 10, LEASE).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.iter().all(|t| t.job_id == good && t.run.attempt == 1));
        q.complete(
            w,
            &batch
                .iter()
                .map(|t| (t.run, json!(null)))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        q.job(good).await.unwrap().unwrap().state,
        JobState::Succeeded
    );

    // A non-retryable error fails at once.
    let once = q.submit(&job(1, 0, 5)).await.unwrap();
    let run = q.claim(w, 1, LEASE).await.unwrap()[0].run;
    assert_eq!(
        q.fail(w, run, "unreadable input", false).await.unwrap(),
        FailOutcome::Failed
    );
    assert_eq!(q.job(once).await.unwrap().unwrap().state, JobState::Failed);
}

#[tokio::test]
async fn cancellation_reaches_a_running_worker_through_its_heartbeat() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let job_id = q.submit(&job(3, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();
    let runs: Vec<_> = q
        .claim(w, 2, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|t| t.run)
        .collect();
    assert_eq!(
        q.job(job_id).await.unwrap().unwrap().state,
        JobState::Running
    );

    assert!(q.cancel(job_id, "cancelled by user").await.unwrap());
    assert!(
        !q.cancel(job_id, "again").await.unwrap(),
        "a finished job stays finished"
    );

    let hb = q.heartbeat(w, &runs, LEASE).await.unwrap();
    assert_eq!(hb.cancelled, runs.iter().map(|r| r.id).collect::<Vec<_>>());
    assert!(hb.lost.is_empty());
    let done: Vec<_> = runs.iter().map(|r| (*r, json!(1))).collect();
    assert!(q.complete(w, &done).await.unwrap().is_empty());
    assert!(q.claim(w, 10, LEASE).await.unwrap().is_empty());
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    assert_eq!(status.error.as_deref(), Some("cancelled by user"));
    assert!(q
        .tasks(job_id)
        .await
        .unwrap()
        .iter()
        .all(|t| t.state == TaskState::Cancelled));
}

#[tokio::test]
async fn finalize_becomes_claimable_only_after_every_tile_succeeded() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let job_id = q.submit(&job(5, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();
    let tiles = q.claim(w, 10, LEASE).await.unwrap();
    assert_eq!(tiles.len(), 5);
    assert!(tiles.iter().all(|t| t.kind == TaskKind::Tile));
    assert_eq!(tiles[2].tile.unwrap().1.x_px, 2 * 512);
    let done: Vec<_> = tiles.iter().map(|t| (t.run, json!(t.run.id))).collect();
    q.complete(w, &done[..4]).await.unwrap();
    assert!(
        q.claim(w, 10, LEASE).await.unwrap().is_empty(),
        "one tile still running"
    );
    q.complete(w, &done[4..]).await.unwrap();
    let fin = q.claim(w, 10, LEASE).await.unwrap();
    assert_eq!(fin.len(), 1);
    assert_eq!((fin[0].kind, fin[0].tile), (TaskKind::Finalize, None));
    assert_eq!(
        q.job(job_id).await.unwrap().unwrap().state,
        JobState::Running
    );
    q.complete(w, &[(fin[0].run, json!({"cog": "out.tif"}))])
        .await
        .unwrap();
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert!(status.finished_at.is_some());

    // The last two tiles completed at the same time by two workers unblock it exactly once.
    for _ in 0..20 {
        let job_id = q.submit(&job(2, 0, 3)).await.unwrap();
        let (qa, qb) = (db.queue(1).await, db.queue(1).await);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ra = qa.claim(a, 1, LEASE).await.unwrap()[0].run;
        let rb = qb.claim(b, 1, LEASE).await.unwrap()[0].run;
        let (da, db_) = ([(ra, json!(1))], [(rb, json!(2))]);
        let (x, y) = tokio::join!(qa.complete(a, &da), qb.complete(b, &db_));
        assert_eq!(x.unwrap().len() + y.unwrap().len(), 2);
        let fin = q.claim(a, 10, LEASE).await.unwrap();
        assert_eq!(fin.len(), 1, "exactly one finalize");
        q.complete(a, &[(fin[0].run, json!(null))]).await.unwrap();
        assert_eq!(
            q.job(job_id).await.unwrap().unwrap().state,
            JobState::Succeeded
        );
    }
}

#[tokio::test]
async fn complete_and_claim_completes_then_claims_in_one_transaction() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let job_id = q.submit(&job(3, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();
    let first = q.claim(w, 1, LEASE).await.unwrap();
    assert_eq!(first[0].tile.unwrap().0, 0);

    // The batch is completed, and the next tile claimed with the job's facts and its window.
    let (ok, next) = q
        .complete_and_claim(w, &[(first[0].run, json!("t0"))], 1, LEASE)
        .await
        .unwrap();
    assert_eq!(ok, vec![first[0].run.id]);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].tile.unwrap().0, 1);
    assert_eq!(next[0].tile.unwrap().1.x_px, 512);
    assert_eq!((next[0].job_id, next[0].recipe.as_str()), (job_id, "ndvi"));
    assert_eq!(next[0].run.attempt, 1);

    // A completion that is refused (fenced: completed already) still lets the claim happen.
    let (ok, last) = q
        .complete_and_claim(w, &[(first[0].run, json!("again"))], 5, LEASE)
        .await
        .unwrap();
    assert!(ok.is_empty(), "a completed run is not completed twice");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].tile.unwrap().0, 2);

    // Completing the last tiles unblocks the finalize task in the same transaction, so the
    // claim that follows gets it.
    let done = [(next[0].run, json!("t1")), (last[0].run, json!("t2"))];
    let (ok, fin) = q.complete_and_claim(w, &done, 5, LEASE).await.unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(fin.len(), 1);
    assert_eq!((fin[0].kind, fin[0].tile), (TaskKind::Finalize, None));
    assert_eq!(events_of(&q, job_id, "finalize_queued").await, 1);

    // n = 0 (a draining worker) only completes.
    let other = q.submit(&job(1, 0, 3)).await.unwrap();
    let (ok, none) = q
        .complete_and_claim(w, &[(fin[0].run, json!({"cog": "out.tif"}))], 0, LEASE)
        .await
        .unwrap();
    assert_eq!((ok, none.len()), (vec![fin[0].run.id], 0));
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.tiles_succeeded),
        (JobState::Succeeded, 3)
    );
    assert_eq!(
        from_history(&q, job_id).await,
        (0, Some(json!({"cog": "out.tif"})))
    );
    assert_eq!(count(&q, "SELECT count(*) FROM task_history").await, 4);
    assert_eq!(
        q.job(other).await.unwrap().unwrap().state,
        JobState::Queued,
        "nothing of the other job was claimed"
    );

    // An empty completion only claims.
    let (ok, claimed) = q.complete_and_claim(w, &[], 5, LEASE).await.unwrap();
    assert!(ok.is_empty());
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job_id, other);
}

#[tokio::test]
async fn progress_is_announced_after_the_commit_and_debounced() {
    let db = TestDb::new().await;
    let q = db.queue(4).await;
    let job_id = q.submit(&job(40, 0, 1)).await.unwrap();
    let w = Uuid::new_v4();
    let tiles = q.claim(w, 40, LEASE).await.unwrap();
    let bus = PgEventBus::new(q.pool().clone());
    let after = bus.read(0, None, 100).await.unwrap().last().unwrap().seq;
    let mut sub = bus.subscribe(after, None).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(q.pool())
        .await
        .unwrap();
    listener.listen(scheduler::EVENT_CHANNEL).await.unwrap();

    // A subscriber waiting far longer than any test is woken by a tile's progress: only an
    // announcement can end its wait.
    q.complete(w, &[(tiles[0].run, json!(null))]).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(20), sub.next(Duration::from_secs(600)))
        .await
        .expect("the progress event was announced")
        .unwrap();
    assert_eq!(woke.len(), 1);
    assert_eq!(
        (woke[0].kind.as_str(), woke[0].job_id),
        ("progress", Some(job_id))
    );
    // The listener heard that first announcement too; it is not one of those counted below.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {}

    // Completions in quick succession: each commits its event, and the announcements are
    // fewer than the completions (one at once, then at most one per 50 ms) while the last
    // one still comes after the last commit.
    let started = Instant::now();
    for t in &tiles[1..] {
        q.complete(w, &[(t.run, json!(null))]).await.unwrap();
    }
    let busy = started.elapsed();
    let (mut progress, mut others) = (0u32, 0u32);
    while progress < 39 {
        let events =
            tokio::time::timeout(Duration::from_secs(20), sub.next(Duration::from_secs(600)))
                .await
                .expect("every progress event is announced")
                .unwrap();
        for e in events {
            if e.kind == "progress" {
                progress += 1;
            } else {
                others += 1;
            }
        }
    }
    let mut notifications = 0u32;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {
        notifications += 1;
    }
    // One per 50 ms window the completions spanned, plus the leading and the trailing one;
    // events of other kinds (the last tile's) notify from their own transactions.
    let most = 2 + (busy.as_millis() / 50) as u32 + 1 + others;
    assert!(
        (1..=most).contains(&notifications) && notifications < 40,
        "{notifications} announcements for 40 completions in {busy:?}"
    );
}

#[tokio::test]
async fn a_job_without_tiles_is_just_its_finalize() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let job_id = q.submit(&job(0, 0, 1)).await.unwrap();
    let w = Uuid::new_v4();
    let fin = q.claim(w, 10, LEASE).await.unwrap();
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0].kind, TaskKind::Finalize);
    q.complete(w, &[(fin[0].run, json!(null))]).await.unwrap();
    assert_eq!(
        q.job(job_id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn higher_priorities_are_claimed_first() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let low = q.submit(&job(3, 0, 1)).await.unwrap();
    let high = q.submit(&job(3, 5, 1)).await.unwrap();
    let w = Uuid::new_v4();
    let first = q.claim(w, 3, LEASE).await.unwrap();
    assert!(first.iter().all(|t| t.job_id == high));
    let idx: Vec<_> = first.iter().map(|t| t.tile.unwrap().0).collect();
    assert_eq!(idx, vec![0, 1, 2], "tiles of one job in plan order");
    let second = q.claim(w, 3, LEASE).await.unwrap();
    assert!(second.iter().all(|t| t.job_id == low));
}

#[tokio::test]
async fn claims_continue_from_the_frontier_and_return_to_the_head() {
    let db = TestDb::new().await;
    // Far longer than the test, so no claim goes back to the head for its age; `at_head`
    // shares the frontiers and claims from the head every time, as a claim does once
    // FULL_CLAIM_EVERY has passed.
    let q = db
        .queue(2)
        .await
        .with_full_claim_every(Duration::from_secs(3600));
    let at_head = q.clone().with_full_claim_every(Duration::ZERO);
    let low = q.submit(&job(6, 0, 1)).await.unwrap();
    let (w, other) = (Uuid::new_v4(), Uuid::new_v4());
    let tiles = |claimed: Vec<scheduler::ClaimedTask>| -> Vec<(Uuid, i32)> {
        let mut tiles: Vec<_> = claimed
            .iter()
            .map(|t| (t.job_id, t.tile.unwrap().0))
            .collect();
        tiles.sort();
        tiles
    };
    assert_eq!(
        tiles(q.claim(w, 2, LEASE).await.unwrap()),
        [(low, 0), (low, 1)]
    );

    // A higher priority queued now lies behind the worker's frontier (low, tile 1): the
    // worker continues from its frontier...
    let high = q.submit(&job(3, 5, 1)).await.unwrap();
    assert_eq!(
        tiles(q.claim(w, 2, LEASE).await.unwrap()),
        [(low, 2), (low, 3)]
    );
    // ...where a worker without a frontier starts at the head: the highest priority first.
    assert_eq!(tiles(q.claim(other, 1, LEASE).await.unwrap()), [(high, 0)]);
    // A claim from the head takes the higher priority.
    assert_eq!(
        tiles(at_head.claim(w, 1, LEASE).await.unwrap()),
        [(high, 1)]
    );
    // The frontier (high, tile 1) has one row left; the rest of a larger claim comes from
    // the head, so a claim never comes back short while claimable rows are left.
    let mut expected = vec![(high, 2), (low, 4), (low, 5)];
    expected.sort();
    assert_eq!(tiles(q.claim(w, 4, LEASE).await.unwrap()), expected);
    assert!(q.claim(w, 1, LEASE).await.unwrap().is_empty());
    assert!(q.claim(other, 1, LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn completing_nothing_makes_no_round_trip() {
    let db = TestDb::new().await;
    let q = db.queue(1).await;
    q.pool().close().await;
    // With the pool closed, any statement would fail.
    assert!(q.complete(Uuid::new_v4(), &[]).await.unwrap().is_empty());
    assert!(q.claim(Uuid::new_v4(), 1, LEASE).await.is_err());
}

#[tokio::test]
async fn a_worker_goes_back_to_the_head_once_full_claim_every_has_passed() {
    let db = TestDb::new().await;
    let q = db
        .queue(2)
        .await
        .with_full_claim_every(Duration::from_millis(200));
    let low = q.submit(&job(4, 0, 1)).await.unwrap();
    let w = Uuid::new_v4();
    assert_eq!(q.claim(w, 1, LEASE).await.unwrap()[0].job_id, low);
    let high = q.submit(&job(1, 5, 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let claimed = q.claim(w, 1, LEASE).await.unwrap();
    assert_eq!(
        claimed[0].job_id, high,
        "the higher priority waited at most 200 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_spanning_many_jobs_complete_without_deadlock() {
    let db = TestDb::new().await;
    let q = db.queue(12).await;
    let mut jobs = Vec::new();
    for _ in 0..60 {
        jobs.push(q.submit(&job(4, 0, 1)).await.unwrap());
    }
    // Batches of 7 over jobs of 5 tasks: nearly every completion spans two or three jobs,
    // and eight claimers complete them at once.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let wq = q.clone();
        handles.push(tokio::spawn(async move {
            let worker = Uuid::new_v4();
            let mut done = 0usize;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let batch = wq
                    .claim(worker, 7, LEASE)
                    .await
                    .map_err(|e| e.to_string())?;
                if batch.is_empty() {
                    if wq.backlog().await.map_err(|e| e.to_string())? == 0 {
                        return Ok::<usize, String>(done);
                    }
                    if Instant::now() > deadline {
                        return Err("stuck: tasks left running by a failed claimer".to_owned());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let runs: Vec<_> = batch.iter().map(|t| (t.run, json!({}))).collect();
                // A deadlock that escaped `complete` ends this claimer with the error.
                let accepted = wq
                    .complete(worker, &runs)
                    .await
                    .map_err(|e| e.to_string())?;
                assert_eq!(accepted.len(), runs.len());
                done += accepted.len();
            }
        }));
    }
    let mut total = 0;
    let mut errors = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(n) => total += n,
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(total, 60 * 5, "every tile and finalize, once");
    for j in jobs {
        let status = q.job(j).await.unwrap().unwrap();
        assert_eq!(status.state, JobState::Succeeded);
        assert_eq!(status.tiles_succeeded, 4);
    }
}

#[tokio::test]
async fn a_claimed_task_carries_its_jobs_trace_context() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let context = json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
    let traced = q
        .submit(&scheduler::JobSpec {
            trace_context: Some(context.clone()),
            ..job(1, 5, 1)
        })
        .await
        .unwrap();
    q.submit(&job(1, 0, 1)).await.unwrap();
    let claimed = q.claim(Uuid::new_v4(), 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for t in &claimed {
        let want = (t.job_id == traced).then(|| context.clone());
        assert_eq!(t.trace_context, want);
    }
}

#[tokio::test]
async fn invalid_specs_are_refused_before_anything_is_written() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let mut spec = job(2, 0, 1);
    spec.tiles[1].index = 0;
    assert!(q.submit(&spec).await.is_err());
    let mut spec = job(2, 0, 1);
    spec.tiles[0].footprint_deg.truncate(2);
    assert!(q.submit(&spec).await.is_err());
    assert!(q.submit(&job(1, 0, 0)).await.is_err());
    assert_eq!(count(&q, "SELECT count(*) FROM job").await, 0);
}

#[tokio::test]
async fn bulk_submit_of_100k_tiles() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let spec = job(100_000, 0, 3);
    let started = Instant::now();
    let job_id = q.submit(&spec).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "submit of 100 000 tiles (footprints, tasks, finalize) in one transaction: {secs:.3} s"
    );
    assert_eq!(count(&q, "SELECT count(*) FROM task").await, 100_001);
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(status.tiles_total, 100_000);
    // The footprints are queryable spatially: jobs by extent, then their tiles.
    let hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job JOIN tile ON tile.job_id = job.id
         WHERE job.footprint_extent && ST_MakeEnvelope(-180, -85, -179.9, -84.9, 4326)
           AND tile.footprint && ST_MakeEnvelope(-180, -85, -179.9, -84.9, 4326)",
    )
    .fetch_one(q.pool())
    .await
    .unwrap();
    assert!(hits >= 1);
    // PostGIS reads each footprint back as given (tile 361: lon -179, lat -84), in SRID 4326,
    // with its window.
    let (wkt, srid, x_px): (String, i32, i32) = sqlx::query_as(
        "SELECT ST_AsText(footprint), ST_SRID(footprint), x_px FROM tile
         WHERE job_id = $1 AND tile_index = 361",
    )
    .bind(job_id)
    .fetch_one(q.pool())
    .await
    .unwrap();
    assert_eq!(
        wkt,
        "POLYGON((-179 -84,-178.5 -84,-178.5 -83.5,-179 -83.5,-179 -84))"
    );
    assert_eq!((srid, x_px), (4326, 361 * 512));
    // Task ids follow the plan, and the finalize task comes last.
    let out_of_order = count(
        &q,
        "SELECT count(*) FROM (
             SELECT kind, tile_index, lag(tile_index) OVER (ORDER BY id) AS previous,
                    row_number() OVER (ORDER BY id) AS n
             FROM task) t
         WHERE (kind = 'tile' AND n > 1 AND tile_index <> previous + 1)
            OR (kind = 'finalize' AND n <> 100001)",
    )
    .await;
    assert_eq!(out_of_order, 0);
    // Generous: the issue asks for well under a second; a shared CI box gets 30× slack.
    assert!(secs < 30.0, "bulk submit took {secs} s");
}

#[tokio::test]
async fn a_tile_without_a_footprint_is_stored_without_one() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let mut spec = job(3, 0, 1);
    spec.tiles[1].footprint_deg.clear();
    let job_id = q.submit(&spec).await.unwrap();
    let missing: Vec<i32> = sqlx::query_scalar(
        "SELECT tile_index FROM tile WHERE job_id = $1 AND footprint IS NULL ORDER BY 1",
    )
    .bind(job_id)
    .fetch_all(q.pool())
    .await
    .unwrap();
    assert_eq!(missing, vec![1]);
    assert_eq!(
        count(&q, "SELECT count(*) FROM task WHERE kind = 'tile'").await,
        3
    );
}

#[tokio::test]
async fn events_tell_the_story_of_a_job_and_wake_listeners() {
    let db = TestDb::new().await;
    let q = db.queue(4).await;
    let bus = PgEventBus::new(q.pool().clone());
    let mut sub = bus.subscribe(0, None).await.unwrap();
    let mut waker = q.waker().await.unwrap();

    let job_id = q.submit(&job(2, 0, 1)).await.unwrap();
    assert!(
        waker.wait(Duration::from_secs(5)).await.unwrap(),
        "submit wakes idle workers"
    );
    let w = Uuid::new_v4();
    let tiles = q.claim(w, 10, LEASE).await.unwrap();
    q.complete(
        w,
        &tiles
            .iter()
            .map(|t| (t.run, json!(null)))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert!(
        waker.wait(Duration::from_secs(5)).await.unwrap(),
        "finalize wakes idle workers"
    );
    let fin = q.claim(w, 10, LEASE).await.unwrap();
    q.complete(w, &[(fin[0].run, json!(null))]).await.unwrap();
    bus.publish(&[NewEvent {
        job_id: Some(job_id),
        kind: "log".into(),
        payload: json!("hi"),
    }])
    .await
    .unwrap();

    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kinds.len() < 6 && Instant::now() < deadline {
        for e in sub.next(Duration::from_secs(1)).await.unwrap() {
            assert_eq!(e.job_id, Some(job_id));
            kinds.push(e.kind);
        }
    }
    assert_eq!(
        kinds,
        [
            "job_queued",
            "job_running",
            "progress",
            "finalize_queued",
            "job_succeeded",
            "log"
        ]
    );
    let seqs: Vec<_> = bus
        .read(0, Some(job_id), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]));
}

/// Progress events of a job in stream order: (tiles_succeeded, tiles_total, tiles).
async fn progress_events(q: &scheduler::Queue, job_id: Uuid) -> Vec<(i64, i64, Vec<i64>)> {
    let bus = PgEventBus::new(q.pool().clone());
    bus.read(0, Some(job_id), 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "progress")
        .map(|e| {
            let tiles = e.payload["tiles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect();
            (
                e.payload["tiles_succeeded"].as_i64().unwrap(),
                e.payload["tiles_total"].as_i64().unwrap(),
                tiles,
            )
        })
        .collect()
}

/// Events of one kind of a job.
async fn events_of(q: &scheduler::Queue, job_id: Uuid, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM event WHERE job_id = $1 AND kind = $2")
        .bind(job_id)
        .bind(kind)
        .fetch_one(q.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_two_tiles_completed_together_unblock_the_finalize_once_without_reap() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let (qa, qb) = (db.queue(1).await, db.queue(1).await);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let jobs = 300;
    let mut rechecked = 0;
    for _ in 0..jobs {
        // Three tiles: the first completes alone, the last two at the same time.
        let job_id = q.submit(&job(3, 0, 3)).await.unwrap();
        let first = q.claim(a, 1, LEASE).await.unwrap()[0].run;
        assert_eq!(q.complete(a, &[(first, json!(0))]).await.unwrap().len(), 1);
        let ra = qa.claim(a, 1, LEASE).await.unwrap()[0].run;
        let rb = qb.claim(b, 1, LEASE).await.unwrap()[0].run;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let racer = |q: scheduler::Queue, w: Uuid, run: TaskRef| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                q.complete(w, &[(run, json!(run.id))]).await.unwrap()
            })
        };
        let (x, y) = (racer(qa.clone(), a, ra), racer(qb.clone(), b, rb));
        assert_eq!(x.await.unwrap().len() + y.await.unwrap().len(), 2);

        // Claimable at once, exactly once: no reap in between.
        let fin = q.claim(a, 10, LEASE).await.unwrap();
        assert_eq!(fin.len(), 1, "the finalize task, claimable");
        assert_eq!((fin[0].kind, fin[0].job_id), (TaskKind::Finalize, job_id));
        assert_eq!(events_of(&q, job_id, "finalize_queued").await, 1);
        q.complete(a, &[(fin[0].run, json!({"cog": "out.tif"}))])
            .await
            .unwrap();
        let status = q.job(job_id).await.unwrap().unwrap();
        assert_eq!(status.state, JobState::Succeeded);
        assert_eq!(status.tiles_succeeded, 3);
        assert_eq!(events_of(&q, job_id, "job_succeeded").await, 1);
        let progress = progress_events(&q, job_id).await;
        assert_eq!(progress.last().map(|p| p.0), Some(3), "{progress:?}");
        // The recheck after the commit appends the final count without tiles of its own.
        rechecked += progress.iter().filter(|p| p.2.is_empty()).count();
    }
    println!("{rechecked} of {jobs} finalize tasks were unblocked by the recheck");
    // The barrier puts both statements in flight together, so the path where neither
    // completion can see that it was last is taken (most of the time, in practice).
    assert!(rechecked > 0, "the race was never run");
    assert_eq!(
        count(&q, "SELECT count(*) FROM task").await,
        0,
        "nothing left"
    );
    assert_eq!(count(&q, "SELECT count(*) FROM job_progress").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_unblocks_a_finalize_whose_recheck_never_ran() {
    let db = TestDb::new().await;
    let q = db.queue(4).await;
    let job_id = q.submit(&job(2, 0, 3)).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let ra = q.claim(a, 1, LEASE).await.unwrap()[0].run;
    let rb = q.claim(b, 1, LEASE).await.unwrap()[0].run;
    type Rows = Vec<(Option<i64>, Option<Uuid>)>;
    let complete = |w: Uuid, run: TaskRef| {
        sqlx::query_as::<_, (Option<i64>, Option<Uuid>)>(scheduler::queue::COMPLETE_SQL)
            .bind(w)
            .bind(vec![run.id])
            .bind(vec![run.attempt])
            .bind(vec![json!(run.id)])
    };

    // A completes its tile and has not committed yet: B's tile is not being completed, so
    // A leaves the wake-up to B's completion.
    let mut tx = q.pool().begin().await.unwrap();
    let rows: Rows = complete(a, ra).fetch_all(&mut *tx).await.unwrap();
    assert_eq!(rows, vec![(Some(ra.id), None)]);
    // B completes the last tile meanwhile: it still sees A's row, locked by A's completion,
    // so it asks for the recheck after its commit.
    let pool = q.pool().clone();
    let b_done = tokio::spawn(async move { complete(b, rb).fetch_all(&pool).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let rows: Rows = b_done.await.unwrap();
    assert_eq!(rows, vec![(Some(rb.id), None), (None, Some(job_id))]);

    // B's worker died before its recheck: the job is stuck with a blocked finalize task.
    assert!(q.claim(a, 10, LEASE).await.unwrap().is_empty());
    assert_eq!(events_of(&q, job_id, "finalize_queued").await, 0);
    // Any worker's reap unblocks it, once.
    let report = q.reap().await.unwrap();
    assert_eq!(report.finalize_unblocked.len(), 1);
    assert!(report.requeued.is_empty() && report.failed.is_empty());
    assert_eq!(q.reap().await.unwrap(), Default::default());
    let fin = q.claim(a, 10, LEASE).await.unwrap();
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0].run.id, report.finalize_unblocked[0]);
    assert_eq!(fin[0].kind, TaskKind::Finalize);
    assert_eq!(events_of(&q, job_id, "finalize_queued").await, 1);
    let progress = progress_events(&q, job_id).await;
    assert_eq!(progress.last().map(|p| p.0), Some(2), "{progress:?}");
    q.complete(a, &[(fin[0].run, json!(null))]).await.unwrap();
    let status = q.job(job_id).await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.tiles_succeeded),
        (JobState::Succeeded, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_never_runs_ahead_of_the_tiles_and_ends_at_tiles_total() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;

    // One worker: every completion counts exactly, so progress rises by one each time.
    let tiles = 20;
    let job_id = q.submit(&job(tiles, 0, 3)).await.unwrap();
    let w = Uuid::new_v4();
    for i in 1..=tiles {
        let run = q.claim(w, 1, LEASE).await.unwrap()[0].run;
        q.complete(w, &[(run, json!(null))]).await.unwrap();
        assert_eq!(q.job(job_id).await.unwrap().unwrap().tiles_succeeded, i);
    }
    let values: Vec<i64> = progress_events(&q, job_id)
        .await
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(values, (1..=i64::from(tiles)).collect::<Vec<_>>());

    // Eight workers at once: a value may lag (the UI keeps the largest seen) but never says
    // more tiles than the events up to it reported, and the last one is the total.
    let tiles = 400;
    let job_id = q.submit(&job(tiles, 0, 3)).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let wq = db.queue(1).await;
        handles.push(tokio::spawn(async move {
            let w = Uuid::new_v4();
            loop {
                let batch = wq.claim(w, 1, LEASE).await.unwrap();
                let Some(t) = batch.first() else { break };
                if t.kind == TaskKind::Finalize {
                    wq.release(w, &[t.run]).await.unwrap();
                    break;
                }
                wq.complete(w, &[(t.run, json!(null))]).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let progress = progress_events(&q, job_id).await;
    let mut seen = HashSet::new();
    for (value, total, indices) in &progress {
        seen.extend(indices.iter().copied());
        assert_eq!(*total, i64::from(tiles));
        assert!(
            *value >= 1 && *value <= seen.len() as i64,
            "progress {value} ahead of the {} tiles reported so far",
            seen.len()
        );
    }
    assert_eq!(seen.len(), tiles as usize);
    assert_eq!(progress.last().map(|p| p.0), Some(i64::from(tiles)));
    assert_eq!(q.job(job_id).await.unwrap().unwrap().tiles_succeeded, tiles);
}

/// What job lists showed before the job row kept them: failed tiles and the finalize output
/// counted from history.
async fn from_history(q: &scheduler::Queue, job_id: Uuid) -> (i32, Option<serde_json::Value>) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM task_history h
                 WHERE h.job_id = j.id AND h.kind = 'tile' AND h.state = 'failed')::int,
                (SELECT h.output FROM task_history h
                 WHERE h.id = j.finalize_task_id AND h.state = 'succeeded')
         FROM job j WHERE j.id = $1",
    )
    .bind(job_id)
    .fetch_one(q.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn job_rows_keep_failed_tiles_and_output_as_history_has_them_through_retry() {
    let db = TestDb::new().await;
    let q = db.queue(2).await;
    let account = scheduler::DEFAULT_ACCOUNT_ID;
    let w = Uuid::new_v4();
    let job_id = q.submit(&job(4, 0, 1)).await.unwrap();
    let check = |want: (i32, i32, Option<serde_json::Value>)| {
        let q = q.clone();
        async move {
            let view = q.job_view(account, job_id).await.unwrap().unwrap();
            let listed = q
                .list_jobs(account, &Default::default(), None, 10)
                .await
                .unwrap();
            assert_eq!(listed, vec![view.clone()]);
            assert_eq!(
                (view.tiles_failed, view.output.clone()),
                from_history(&q, job_id).await
            );
            assert_eq!((view.tiles_succeeded, view.tiles_failed, view.output), want);
            view.state
        }
    };
    assert_eq!(check((0, 0, None)).await, JobState::Queued);

    // Two tiles succeed (progress shows before the job ends), one fails for good: the job
    // fails and its last tile is cancelled.
    let runs = q.claim(w, 3, LEASE).await.unwrap();
    q.complete(w, &[(runs[0].run, json!(0)), (runs[1].run, json!(1))])
        .await
        .unwrap();
    assert_eq!(check((2, 0, None)).await, JobState::Running);
    assert_eq!(
        q.fail(w, runs[2].run, "bad tile", false).await.unwrap(),
        FailOutcome::Failed
    );
    assert_eq!(check((2, 1, None)).await, JobState::Failed);
    assert_eq!(count(&q, "SELECT count(*) FROM job_progress").await, 0);

    // Retried: the failed tile runs again, nothing has failed any more.
    assert_eq!(
        q.retry(account, job_id).await.unwrap(),
        scheduler::Change::Done
    );
    assert_eq!(check((2, 0, None)).await, JobState::Queued);
    let runs = q.claim(w, 10, LEASE).await.unwrap();
    assert_eq!(runs.len(), 2, "the failed and the cancelled tile");
    let done: Vec<_> = runs.iter().map(|t| (t.run, json!(null))).collect();
    q.complete(w, &done).await.unwrap();
    assert_eq!(check((4, 0, None)).await, JobState::Running);
    let fin = q.claim(w, 10, LEASE).await.unwrap();
    assert_eq!(fin[0].kind, TaskKind::Finalize);
    let output = json!({"cog": "out.tif", "stac": "item.json"});
    q.complete(w, &[(fin[0].run, output.clone())])
        .await
        .unwrap();
    assert_eq!(check((4, 0, Some(output))).await, JobState::Succeeded);

    // A cancelled job keeps the progress it made.
    let other = q.submit(&job(3, 0, 1)).await.unwrap();
    let run = q.claim(w, 1, LEASE).await.unwrap()[0].run;
    q.complete(w, &[(run, json!(null))]).await.unwrap();
    assert!(q.cancel(other, "enough").await.unwrap());
    let view = q.job_view(account, other).await.unwrap().unwrap();
    assert_eq!(
        (
            view.state,
            view.tiles_succeeded,
            view.tiles_failed,
            view.output
        ),
        (JobState::Cancelled, 1, 0, None)
    );
    assert_eq!(count(&q, "SELECT count(*) FROM job_progress").await, 0);
    assert_eq!(
        q.delete_job(account, other).await.unwrap(),
        scheduler::Change::Done
    );
    assert!(q.job_view(account, other).await.unwrap().is_none());
}
