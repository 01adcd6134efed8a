//! Workers against failures, end to end with the real binary and the real PostgreSQL: a worker
//! killed with SIGKILL mid-batch (its runs are reaped after the lease and re-run elsewhere) and
//! PostgreSQL restarted mid-run (the worker reconnects and finishes). Each job must end with
//! every tile completed exactly once and a COG equal to `run`'s bit for bit.
#![cfg(feature = "gdal")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scheduler::cluster::{PrivateCluster, StopMode};
use scheduler::{EventBus, JobState, PgEventBus, Queue, TaskInfo, TaskKind, TaskState};
use uuid::Uuid;

mod common;
use common::{cog_of, raster_bits, scene, text, RECIPE};

const BIN: &str = env!("CARGO_BIN_EXE_constellation");
/// The longest any single wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(45);
/// The application name the binary's connections carry (`Queue::connect_with`).
const WORKER_APP: &str = "constellation-scheduler";

/// The binary with `DATABASE_URL` pointed at `url`.
fn cmd(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("DATABASE_URL", url);
    c
}

fn run_ok(url: &str, args: &[&str]) -> Vec<u8> {
    let o = cmd(url, args).output().expect("the binary runs");
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    o.stdout
}

fn submit(url: &str, inputs: &[String], out: &Path, tile_px: usize) -> Uuid {
    let (out, tile_px) = (out.display().to_string(), tile_px.to_string());
    let mut args = vec![
        "submit",
        "--recipe",
        RECIPE,
        "--tile-px",
        &tile_px,
        "--json",
        "-o",
        &out,
        "-i",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let v: serde_json::Value =
        serde_json::from_slice(&run_ok(url, &args)).expect("submit prints JSON");
    v["job_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a job id")
}

/// `run` of the recipe on the CPU into `out` (the reference); returns its COG.
fn run_reference(inputs: &[String], out: &Path, tile_px: usize) -> PathBuf {
    let (out_s, tile_px) = (out.display().to_string(), tile_px.to_string());
    let mut args = vec![
        "run",
        "--recipe",
        RECIPE,
        "--backend",
        "cpu",
        "--tile-px",
        &tile_px,
        "-o",
        &out_s,
        "-i",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let o = Command::new(BIN).args(&args).output().expect("run runs");
    assert!(o.status.success(), "run: {}", text(&o.stderr));
    cog_of(out)
}

/// A worker process of the real binary whose stderr is collected as it comes; killed (and
/// waited for) when dropped, so a failed assertion leaves no process behind.
struct Worker {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(url: &str, args: &[&str]) -> Self {
        let mut all = vec!["worker", "--backend", "cpu"];
        all.extend_from_slice(args);
        let mut child = cmd(url, &all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            })
        };
        Self {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `KILL` …).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the log has `n` lines containing `needle`, while the process runs.
    fn wait_for_log(&mut self, needle: &str, n: usize) {
        let started = Instant::now();
        while self.log().lines().filter(|l| l.contains(needle)).count() < n {
            assert!(
                self.alive(),
                "the worker ended before logging {needle:?}:\n{}",
                self.log()
            );
            assert!(
                started.elapsed() < LIMIT,
                "no {needle:?} in the worker's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end; returns its status and whole log.
    fn finish(mut self) -> (ExitStatus, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the worker can be waited on") {
                break status;
            }
            assert!(
                started.elapsed() < LIMIT,
                "the worker is still running after {LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.log())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 10 ms until it returns a value, failing after [`LIMIT`].
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < LIMIT,
            "timed out after {LIMIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connections of the binary to database `db`: all of them, or only those running a statement.
async fn worker_backends(pool: &sqlx::PgPool, db: &str, active_only: bool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = $2 AND (NOT $3 OR state = 'active')",
    )
    .bind(db)
    .bind(WORKER_APP)
    .bind(active_only)
    .fetch_one(pool)
    .await
    .expect("pg_stat_activity")
}

fn running_of(tasks: &[TaskInfo], worker: Uuid) -> Vec<TaskInfo> {
    tasks
        .iter()
        .filter(|t| t.state == TaskState::Running && t.worker_id == Some(worker))
        .cloned()
        .collect()
}

/// Asserts that the job succeeded with every task succeeded exactly once: one finished row per
/// task, the job's counter at exactly its tile count, and every tile in exactly one progress
/// event (a completion counted twice would show in both). Returns the tasks.
async fn assert_completed_once(q: &Queue, job: Uuid) -> Vec<TaskInfo> {
    let status = q.job(job).await.expect("job").expect("exists");
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
    assert_eq!(status.tiles_succeeded, status.tiles_total);
    let tasks = q.tasks(job).await.expect("tasks");
    let tiles = usize::try_from(status.tiles_total).expect("a tile count");
    assert_eq!(tasks.len(), tiles + 1, "one row per task");
    let mut ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), tasks.len(), "no task is listed twice");
    for t in &tasks {
        assert_eq!(t.state, TaskState::Succeeded, "task {}", t.id);
    }
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Finalize)
            .count(),
        1
    );
    let events = PgEventBus::new(q.pool().clone())
        .read(0, Some(job), 100_000)
        .await
        .expect("events");
    let mut counted: BTreeMap<i64, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "progress") {
        for tile in e.payload["tiles"]
            .as_array()
            .expect("progress names its tiles")
        {
            *counted
                .entry(tile.as_i64().expect("a tile index"))
                .or_default() += 1;
        }
    }
    let twice: Vec<_> = counted.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "tiles counted more than once: {twice:?}");
    assert_eq!(counted.len(), tiles, "every tile's completion was counted");
    let succeeded = events.iter().filter(|e| e.kind == "job_succeeded").count();
    assert_eq!(succeeded, 1, "the job succeeded once");
    tasks
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_batch_has_its_tasks_rerun_after_the_lease() {
    let started = Instant::now();
    let db = scheduler::testdb::TestDb::new().await;
    let url = db.url();
    let q = db.queue(2).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 600, 21);
    let out = tmp.path().join("queued");
    // 100 tiles of 64 px; the first worker takes 4 at a time on one thread.
    let job = submit(&url, &inputs, &out, 64);
    let a = Worker::start(
        &url,
        &["--batch", "4", "--threads", "1", "--lease-secs", "3"],
    );

    // Freeze the worker while the database shows it holding a batch after it has completed
    // some: once none of its statements is running, what it holds is settled. Kill it then;
    // if it happened to be between batches, let it go on and try again.
    let (victim, done_before) = loop {
        let tasks = until("the worker to hold a batch mid-job", || async {
            let s = q.job(job).await.expect("job").expect("exists");
            assert_ne!(
                s.state,
                JobState::Succeeded,
                "the job ran out before the kill"
            );
            let tasks = q.tasks(job).await.expect("tasks");
            let holds = tasks.iter().any(|t| t.state == TaskState::Running);
            (s.tiles_succeeded > 0 && holds).then_some(tasks)
        })
        .await;
        let victim = tasks
            .iter()
            .find_map(|t| (t.state == TaskState::Running).then_some(t.worker_id))
            .flatten()
            .expect("a running task has its worker");
        a.signal("STOP");
        until("the stopped worker's statements to end", || async {
            (worker_backends(q.pool(), &db.name, true).await == 0).then_some(())
        })
        .await;
        let tasks = q.tasks(job).await.expect("tasks");
        if running_of(&tasks, victim).is_empty() {
            a.signal("CONT");
            continue;
        }
        let done = q
            .job(job)
            .await
            .expect("job")
            .expect("exists")
            .tiles_succeeded;
        break (victim, done);
    };
    a.signal("KILL");
    let (status, log) = a.finish();
    assert!(!status.success(), "SIGKILL ends the worker:\n{log}");
    // Its connections are gone, so nothing it sent can still land.
    until("the killed worker's connections to close", || async {
        (worker_backends(q.pool(), &db.name, false).await == 0).then_some(())
    })
    .await;
    let tasks = q.tasks(job).await.expect("tasks");
    let held = running_of(&tasks, victim);
    assert!(
        (1..=4).contains(&held.len()),
        "the killed worker held a batch: {held:?}"
    );
    assert!(held
        .iter()
        .all(|t| t.attempt == 1 && t.kind == TaskKind::Tile));
    let s = q.job(job).await.expect("job").expect("exists");
    assert_eq!(
        s.tiles_succeeded, done_before,
        "nothing landed after the kill"
    );
    assert!(s.tiles_succeeded < s.tiles_total);

    // A second worker reaps the expired leases (its heartbeats run the reaper) and finishes.
    let b = Worker::start(&url, &["--once", "--batch", "16", "--lease-secs", "6"]);
    let (status, log) = b.finish();
    assert!(status.success(), "the second worker: {log}");

    let tasks = assert_completed_once(&q, job).await;
    let held_ids: Vec<i64> = held.iter().map(|t| t.id).collect();
    let rescuer = tasks
        .iter()
        .find(|t| held_ids.contains(&t.id))
        .and_then(|t| t.worker_id)
        .expect("a re-run task has its worker");
    assert_ne!(rescuer, victim);
    let mut by_victim = 0;
    for t in &tasks {
        if held_ids.contains(&t.id) {
            assert_eq!(
                t.attempt, 2,
                "task {} was re-run once after its lease",
                t.id
            );
            assert_eq!(t.worker_id, Some(rescuer), "task {}", t.id);
        } else {
            assert_eq!(t.attempt, 1, "task {} ran once", t.id);
            by_victim += usize::from(t.worker_id == Some(victim));
        }
    }
    assert_eq!(
        i32::try_from(by_victim).expect("a count"),
        done_before,
        "what the killed worker completed stands"
    );
    assert!(!out.join(".pieces").exists(), "pieces are cleaned up");
    let reference = run_reference(&inputs, &tmp.path().join("run"), 64);
    assert_eq!(raster_bits(&cog_of(&out)), raster_bits(&reference));
    eprintln!("killed mid-batch: {:.1} s", started.elapsed().as_secs_f64());
}

/// A PostgreSQL cluster of the test's own in a temporary folder, listening only on a Unix
/// socket there, so it can be stopped and started without touching the shared server.
/// Stopped at once (and its folder removed) when dropped.
struct PrivatePg {
    cluster: PrivateCluster,
    /// Removed when dropped, after the cluster stopped.
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = Self {
            cluster: PrivateCluster::init(dir.path()).expect("a private cluster"),
            _dir: dir,
        };
        pg.start_again();
        pg
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    fn start_again(&self) {
        if let Err(e) = self.cluster.start(&["fsync=off"]) {
            let log = std::fs::read_to_string(self.cluster.log_path()).unwrap_or_default();
            panic!("{e}\n{log}");
        }
    }

    /// Stops the server at once: clients are cut off mid-statement, as in a crash.
    fn stop_immediate(&self) {
        self.cluster
            .stop(StopMode::Immediate)
            .expect("the cluster stops");
    }

    fn url(&self) -> String {
        self.cluster.url()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.cluster.stop(StopMode::Immediate);
    }
}

/// Connections of the binary to the private cluster that LISTEN for claimable tasks.
async fn task_listeners(q: &Queue) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(WORKER_APP)
    .fetch_one(q.pool())
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_survives_a_postgres_restart_mid_run() {
    let started = Instant::now();
    let pg = PrivatePg::start();
    let url = pg.url();
    run_ok(&url, &["migrate"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 600, 22);
    let out = tmp.path().join("queued");
    let job = submit(&url, &inputs, &out, 64);
    let q = Queue::connect_with(&url, 2).await.expect("connect");

    let mut w = Worker::start(
        &url,
        &["--batch", "2", "--threads", "1", "--lease-secs", "5"],
    );
    until("the first tiles", || async {
        let s = q.job(job).await.expect("job").expect("exists");
        (s.tiles_succeeded > 0).then_some(())
    })
    .await;
    assert_eq!(task_listeners(&q).await, Some(1), "the worker listens");
    pg.stop_immediate();
    let down_at = Instant::now();
    w.wait_for_log("database unreachable", 1);
    // Keep it down a little longer, so the worker has to try more than once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again();
    let outage = down_at.elapsed().as_secs_f64();

    // The test's own pool reconnects too; errors while it does are not the worker's.
    until("the job to succeed", || async {
        let s = q.job(job).await.ok().flatten()?;
        assert_ne!(s.state, JobState::Failed, "{:?}", s.error);
        (s.state == JobState::Succeeded).then_some(())
    })
    .await;
    assert!(w.alive(), "the worker outlived the restart:\n{}", w.log());
    assert!(w.log().contains("database reachable again"), "{}", w.log());
    assert_completed_once(&q, job).await;
    assert!(!out.join(".pieces").exists(), "pieces are cleaned up");
    let reference = run_reference(&inputs, &tmp.path().join("run"), 64);
    assert_eq!(raster_bits(&cog_of(&out)), raster_bits(&reference));

    // Idle, it LISTENs again and takes new work; then again after an outage while idle.
    for (round, tile_px) in [(1, 256), (2, 300)] {
        if round == 2 {
            pg.stop_immediate();
            w.wait_for_log("database unreachable", 2);
            tokio::time::sleep(Duration::from_secs(1)).await;
            pg.start_again();
        }
        until("the worker to LISTEN again", || async {
            (task_listeners(&q).await == Some(1)).then_some(())
        })
        .await;
        let next = submit(
            &url,
            &inputs,
            &tmp.path().join(format!("next{round}")),
            tile_px,
        );
        until("the next job to succeed", || async {
            let s = q.job(next).await.ok().flatten()?;
            (s.state == JobState::Succeeded).then_some(())
        })
        .await;
        assert_completed_once(&q, next).await;
    }
    assert!(w.alive(), "the worker outlived both restarts:\n{}", w.log());

    w.signal("TERM");
    let (status, log) = w.finish();
    assert!(
        status.success(),
        "the worker drains and exits cleanly: {log}"
    );
    eprintln!(
        "restart mid-run ({outage:.1} s down): {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
