//! Property test of the task state machine: random sequences of claims, completions,
//! failures, heartbeats, reaps and cancels (from several workers, some holding stale runs)
//! against a model of who owns which run, checking the queue's invariants after every step.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{job, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use scheduler::{Backoff, FailOutcome, Queue, TaskId, TaskRef};
use serde_json::json;
use uuid::Uuid;

const WORKERS: usize = 3;
const LONG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Op {
    /// Claim up to n; an expired lease (zero) when `expired`.
    Claim {
        w: usize,
        n: i64,
        expired: bool,
    },
    /// Complete the worker's runs picked by `pick` (a stale run when it holds none).
    Complete {
        w: usize,
        pick: usize,
    },
    Fail {
        w: usize,
        pick: usize,
        retryable: bool,
    },
    Heartbeat {
        w: usize,
    },
    Reap,
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    let w = 0..WORKERS;
    prop_oneof![
        4 => (w.clone(), 1..4i64, any::<bool>()).prop_map(|(w, n, expired)| Op::Claim { w, n, expired }),
        4 => (w.clone(), any::<usize>()).prop_map(|(w, pick)| Op::Complete { w, pick }),
        2 => (w.clone(), any::<usize>(), any::<bool>())
            .prop_map(|(w, pick, retryable)| Op::Fail { w, pick, retryable }),
        2 => w.prop_map(|w| Op::Heartbeat { w }),
        2 => Just(Op::Reap),
        1 => Just(Op::Cancel),
    ]
}

/// The model: which worker owns which run, and whether its lease has expired.
#[derive(Debug, Default)]
struct Model {
    owned: HashMap<TaskId, (usize, i32, bool)>,
    /// Every run a worker was ever handed (to replay stale ones).
    seen: Vec<Vec<TaskRef>>,
}

impl Model {
    fn runs_of(&self, w: usize) -> Vec<TaskRef> {
        let mut v: Vec<_> = self
            .owned
            .iter()
            .filter(|(_, o)| o.0 == w)
            .map(|(&id, o)| TaskRef { id, attempt: o.1 })
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }

    fn pick(&self, w: usize, pick: usize) -> Option<TaskRef> {
        let own = self.runs_of(w);
        if !own.is_empty() {
            return Some(own[pick % own.len()]);
        }
        let seen = &self.seen[w];
        (!seen.is_empty()).then(|| seen[pick % seen.len()])
    }

    fn owns(&self, w: usize, r: TaskRef) -> bool {
        self.owned
            .get(&r.id)
            .is_some_and(|o| o.0 == w && o.1 == r.attempt)
    }
}

type History = Vec<(
    TaskId,
    String,
    i32,
    Option<String>,
    Option<serde_json::Value>,
)>;

async fn history(q: &Queue) -> History {
    sqlx::query_as("SELECT id, state, attempt, error, output FROM task_history ORDER BY id")
        .fetch_all(q.pool())
        .await
        .unwrap()
}

async fn check_invariants(q: &Queue, before: &History) -> History {
    let bad: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM task
                 WHERE (state = 'running') <> (worker_id IS NOT NULL
                                               AND lease_expires_at IS NOT NULL)
                    OR attempt > max_attempts OR attempt < 0)
              + (SELECT count(*) FROM task_history WHERE attempt > max_attempts)
              + (SELECT count(*) FROM task JOIN task_history USING (id))
              -- a finished job has no hot task left
              + (SELECT count(*) FROM task JOIN job ON job.id = task.job_id
                 WHERE job.state IN ('succeeded', 'failed', 'cancelled'))
              -- a succeeded job: every task succeeded, the counter says so
              + (SELECT count(*) FROM job
                 WHERE state = 'succeeded' AND (tiles_succeeded <> tiles_total OR EXISTS (
                     SELECT 1 FROM task_history h
                     WHERE h.job_id = job.id AND h.state <> 'succeeded')))
              -- the counter (job row plus progress shards) matches the history
              + (SELECT count(*) FROM job
                 WHERE tiles_succeeded + coalesce((SELECT sum(g.tiles) FROM job_progress g
                                                   WHERE g.job_id = job.id), 0) <> (
                     SELECT count(*) FROM task_history h
                     WHERE h.job_id = job.id AND h.kind = 'tile' AND h.state = 'succeeded'))
              -- a finished job's progress is folded onto its row
              + (SELECT count(*) FROM job_progress g JOIN job ON job.id = g.job_id
                 WHERE job.state IN ('succeeded', 'failed', 'cancelled'))
              -- failed tiles and the output on the job row match the history
              + (SELECT count(*) FROM job WHERE tiles_failed <> (
                     SELECT count(*) FROM task_history h
                     WHERE h.job_id = job.id AND h.kind = 'tile' AND h.state = 'failed'))
              + (SELECT count(*) FROM job WHERE output IS DISTINCT FROM (
                     SELECT h.output FROM task_history h
                     WHERE h.id = job.finalize_task_id AND h.state = 'succeeded'))
              -- a finalize task is claimable only when every tile succeeded
              + (SELECT count(*) FROM task f
                 WHERE f.kind = 'finalize' AND f.state <> 'blocked' AND EXISTS (
                     SELECT 1 FROM task t WHERE t.job_id = f.job_id AND t.kind = 'tile'))
              -- and then it is claimable at once (no reap needed)
              + (SELECT count(*) FROM task f
                 WHERE f.kind = 'finalize' AND f.state = 'blocked' AND NOT EXISTS (
                     SELECT 1 FROM task t WHERE t.job_id = f.job_id AND t.kind = 'tile'))",
    )
    .fetch_one(q.pool())
    .await
    .unwrap();
    assert_eq!(bad, 0, "an invariant broke");
    let after = history(q).await;
    // Finished tasks never change (and never disappear).
    let now: HashMap<_, _> = after.iter().map(|h| (h.0, h)).collect();
    for h in before {
        assert_eq!(now.get(&h.0), Some(&h), "finished task {} changed", h.0);
    }
    after
}

async fn run_case(q: &Queue, ops: &[Op]) {
    let workers: Vec<Uuid> = (0..WORKERS).map(|_| Uuid::new_v4()).collect();
    let job_id = q.submit(&job(3, 0, 2)).await.unwrap();
    let mut m = Model {
        seen: vec![Vec::new(); WORKERS],
        ..Default::default()
    };
    let mut hist = history(q).await;
    for op in ops {
        match *op {
            Op::Claim { w, n, expired } => {
                let lease = if expired { Duration::ZERO } else { LONG };
                for t in q.claim(workers[w], n, lease).await.unwrap() {
                    assert!(
                        !m.owned.contains_key(&t.run.id),
                        "claimed a run someone owns"
                    );
                    assert!(t.run.attempt <= t.max_attempts);
                    m.owned.insert(t.run.id, (w, t.run.attempt, expired));
                    m.seen[w].push(t.run);
                }
            }
            Op::Complete { w, pick } => {
                if let Some(r) = m.pick(w, pick) {
                    let expect = m.owns(w, r);
                    let ok = q
                        .complete(workers[w], &[(r, json!(r.attempt))])
                        .await
                        .unwrap();
                    assert_eq!(ok.len() == 1, expect, "complete of {r:?} by {w}");
                    m.owned
                        .remove(&r.id)
                        .filter(|_| !expect)
                        .map(|o| m.owned.insert(r.id, o));
                }
            }
            Op::Fail { w, pick, retryable } => {
                if let Some(r) = m.pick(w, pick) {
                    let owned = m.owns(w, r);
                    let out = q.fail(workers[w], r, "boom", retryable).await.unwrap();
                    match out {
                        FailOutcome::Rejected => assert!(!owned),
                        FailOutcome::Retrying { .. } => {
                            assert!(owned && retryable && r.attempt < 2);
                            m.owned.remove(&r.id);
                        }
                        FailOutcome::Failed => {
                            assert!(owned && (!retryable || r.attempt >= 2));
                            m.owned.clear(); // the job ended: every run of it is gone
                        }
                    }
                }
            }
            Op::Heartbeat { w } => {
                let mine = m.runs_of(w);
                let mut runs = mine.clone();
                runs.extend(m.seen[w].iter().filter(|r| !m.owns(w, **r)).take(2));
                let reply = q.heartbeat(workers[w], &runs, LONG).await.unwrap();
                let mut stopped: Vec<TaskId> =
                    reply.lost.iter().chain(&reply.cancelled).copied().collect();
                stopped.sort_unstable();
                let mut stale: Vec<TaskId> = runs
                    .iter()
                    .filter(|r| !m.owns(w, **r))
                    .map(|r| r.id)
                    .collect();
                stale.sort_unstable();
                assert_eq!(
                    stopped, stale,
                    "exactly the runs the worker lost are reported"
                );
                for r in mine {
                    if let Some(o) = m.owned.get_mut(&r.id) {
                        o.2 = false;
                    }
                }
            }
            Op::Reap => {
                let report = q.reap().await.unwrap();
                let mut expired: Vec<TaskId> = m
                    .owned
                    .iter()
                    .filter(|(_, o)| o.2)
                    .map(|(&id, _)| id)
                    .collect();
                expired.sort_unstable();
                let mut got: Vec<TaskId> = report
                    .requeued
                    .iter()
                    .chain(&report.failed)
                    .copied()
                    .collect();
                got.sort_unstable();
                // Exactly the expired runs, unless one failed for good: then its job ended
                // and the job's other expired runs were cancelled rather than reaped.
                if report.failed.is_empty() {
                    assert_eq!(got, expired, "the reaper takes exactly the expired runs");
                } else {
                    assert!(
                        got.iter().all(|id| expired.contains(id)),
                        "reaped a live run"
                    );
                }
                if report.failed.is_empty() {
                    for id in expired {
                        m.owned.remove(&id);
                    }
                } else {
                    m.owned.clear();
                }
            }
            Op::Cancel => {
                q.cancel(job_id, "test").await.unwrap();
                m.owned.clear();
            }
        }
        hist = check_invariants(q, &hist).await;
    }
    // Leave nothing claimable behind for the next case.
    q.cancel(job_id, "case over").await.unwrap();
}

#[test]
fn random_operation_sequences_keep_the_invariants() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, q) = rt.block_on(async {
        let db = TestDb::new().await;
        let q = db.queue(2).await.with_backoff(Backoff {
            base_secs: 0.0,
            cap_secs: 0.0,
        });
        (db, q)
    });
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..30), |ops| {
            rt.block_on(run_case(&q, &ops));
            Ok(())
        })
        .unwrap();
    drop(q);
    drop(db);
}
