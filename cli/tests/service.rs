//! The service commands end to end against the real PostgreSQL (`DATABASE_URL`): `migrate`,
//! `submit` and `worker` processes of the real binary, each test in a database of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use scheduler::{JobState, Queue, TaskState};
use uuid::Uuid;

mod common;
use common::{cog_of, free_listen, raster_bits, scene, stop, text, RECIPE};

const BIN: &str = env!("CARGO_BIN_EXE_constellation");

/// A fresh, migrated database (dropped with this value) and the binary pointed at it.
struct TestDb {
    db: scheduler::testdb::TestDb,
}

impl TestDb {
    async fn new() -> Self {
        Self {
            db: scheduler::testdb::TestDb::new().await,
        }
    }

    async fn queue(&self) -> Queue {
        self.db.queue(2).await
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("DATABASE_URL", self.db.url());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("the binary runs")
    }

    fn migrate(&self) {
        let out = self.run(&["migrate"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

fn submit(db: &TestDb, inputs: &[String], out: &Path, extra: &[&str]) -> Uuid {
    let mut args = vec!["submit", "--recipe", RECIPE, "-o"];
    let out = out.display().to_string();
    args.push(&out);
    args.push("-i");
    args.extend(inputs.iter().map(String::as_str));
    args.extend_from_slice(extra);
    args.push("--json");
    let o = db.run(&args);
    assert!(o.status.success(), "submit: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("submit prints JSON");
    v["job_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a job id")
}

fn worker(db: &TestDb, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["worker", "--once", "--backend", "cpu", "--lease-secs", "5"];
    args.extend_from_slice(extra);
    db.cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts")
}

fn wait_ok(child: std::process::Child) {
    let out = child.wait_with_output().expect("the worker ends");
    assert!(out.status.success(), "worker: {}", text(&out.stderr));
}

/// `run` of the recipe on the CPU with 128 px tiles into `out` (the reference a queued job's
/// COG is compared with); returns `out`.
fn run_cpu(db: &TestDb, inputs: &[String], out: &Path) -> PathBuf {
    let out_s = out.display().to_string();
    let mut args = vec![
        "run",
        "--recipe",
        RECIPE,
        "--backend",
        "cpu",
        "--tile-px",
        "128",
    ];
    args.extend(["-o", &out_s, "-i"]);
    args.extend(inputs.iter().map(String::as_str));
    let o = db.run(&args);
    assert!(o.status.success(), "run: {}", text(&o.stderr));
    out.to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_an_unreachable_database_is_one_line() {
    let db = TestDb::new().await;
    db.migrate();
    db.migrate();
    let out = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/none",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot connect to the database"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_assemble_the_same_cog_as_run() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 600, 11);
    let out_q = tmp.path().join("queued");
    let job = submit(&db, &inputs, &out_q, &["--tile-px", "128"]);
    let q = db.queue().await;
    assert_eq!(q.tasks(job).await.expect("tasks").len(), 25 + 1);

    let (a, b) = (
        worker(&db, &["--batch", "3"]),
        worker(&db, &["--batch", "3"]),
    );
    wait_ok(a);
    wait_ok(b);
    let status = q.job(job).await.expect("job").expect("exists");
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
    assert_eq!((status.tiles_succeeded, status.tiles_total), (25, 25));
    for t in q.tasks(job).await.expect("tasks") {
        assert_eq!(t.state, TaskState::Succeeded);
        assert_eq!(t.attempt, 1, "no task ran twice");
    }
    assert!(
        !out_q.join(".pieces").exists(),
        "pieces are cleaned up after assembly"
    );

    let out_r = run_cpu(&db, &inputs, &tmp.path().join("run"));
    assert_eq!(raster_bits(&cog_of(&out_q)), raster_bits(&cog_of(&out_r)));
    assert!(out_q.join(format!("scene_{RECIPE}.json")).is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_serves_its_metrics_while_it_runs() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 384, 3);
    let job = submit(&db, &inputs, &tmp.path().join("out"), &["--tile-px", "128"]);
    let listen = free_listen();
    let child = db
        .cmd(&[
            "worker",
            "--backend",
            "cpu",
            "--batch",
            "4",
            "--metrics-listen",
            &listen,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    let q = db.queue().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = q.job(job).await.expect("job").expect("exists").state;
        if state == JobState::Succeeded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, text) = common::http(&listen, "GET", "/metrics", "", "").expect("metrics");
    stop(child);
    assert_eq!(status, 200, "{text}");
    // 9 tiles of 128² px; NDVI reads three bands (red, nir, scl) and writes one.
    for line in [
        "constellation_worker_tiles_total{backend=\"cpu\"} 9\n",
        "constellation_worker_pixels_total{backend=\"cpu\"} 147456\n",
        "constellation_worker_claimed_tasks_total 10\n",
        "constellation_worker_task_seconds_count{kind=\"tile\",backend=\"cpu\",outcome=\"done\"} 9\n",
        "constellation_worker_task_seconds_count{kind=\"finalize\",backend=\"cpu\",outcome=\"done\"} 1\n",
        "# TYPE constellation_worker_claim_seconds histogram\n",
        "constellation_db_pool_max_connections 4\n",
    ] {
        assert!(text.contains(line), "no {line:?} in {text}");
    }
    let bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("constellation_worker_kernel_bytes_total{backend=\"cpu\"} "))
        .and_then(|v| v.parse().ok())
        .expect("kernel bytes");
    let pixels = 9.0 * 128.0 * 128.0;
    assert!(
        bytes >= pixels * 4.0 * 2.0 && bytes % (pixels * 4.0) == 0.0,
        "whole 4-byte planes, at least one in and one out: {bytes}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_area_of_interest_computes_only_its_tiles_and_leaves_the_rest_nodata() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 600, 12);
    let q = db.queue().await;
    // The scene's extent, from a job over all of it.
    let whole = submit(
        &db,
        &inputs,
        &tmp.path().join("whole"),
        &["--tile-px", "128"],
    );
    let view = q
        .job_view(scheduler::DEFAULT_ACCOUNT_ID, whole)
        .await
        .expect("view")
        .expect("exists");
    q.cancel(whole, "only its extent was needed")
        .await
        .expect("cancel");
    let [w, s, e, n] = view.bbox_deg.expect("an extent");
    // The north-west corner of the scene.
    let aoi = format!("{w},{},{},{n}", n - 0.3 * (n - s), w + 0.3 * (e - w));
    let out_q = tmp.path().join("aoi");
    let job = submit(&db, &inputs, &out_q, &["--tile-px", "128", "--aoi", &aoi]);
    let tiles: Vec<usize> = q
        .tasks(job)
        .await
        .expect("tasks")
        .iter()
        .filter_map(|t| t.tile_index.map(|i| i as usize))
        .collect();
    assert!(!tiles.is_empty() && tiles.len() < 25, "{tiles:?}");
    assert!(
        tiles.contains(&0),
        "the north-west tile is planned: {tiles:?}"
    );
    assert!(
        !tiles.contains(&24),
        "the south-east tile is not: {tiles:?}"
    );
    wait_ok(worker(&db, &[]));
    let status = q.job(job).await.expect("job").expect("exists");
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);

    let out_r = run_cpu(&db, &inputs, &tmp.path().join("run"));
    // Full resolution only: inside planned tiles the AOI job equals `run` bit for bit,
    // elsewhere it is nodata.
    let (got, want) = (
        &raster_bits(&cog_of(&out_q))[0],
        &raster_bits(&cog_of(&out_r))[0],
    );
    let nodata = (-9999.0f32).to_bits();
    let (mut inside, mut outside) = (0, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (x, y) = (i % 600, i / 600);
        if tiles.contains(&((y / 128) * 5 + x / 128)) {
            assert_eq!(g, w, "pixel ({x}, {y}) inside the area");
            inside += 1;
        } else {
            assert_eq!(*g, nodata, "pixel ({x}, {y}) outside the area");
            outside += 1;
        }
    }
    assert!(inside > 0 && outside > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_input_fails_after_max_attempts_while_another_job_succeeds() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad_inputs = scene(&tmp.path().join("bad"), 256, 3);
    let good_inputs = scene(&tmp.path().join("good"), 256, 4);
    let bad = submit(
        &db,
        &bad_inputs,
        &tmp.path().join("bad_out"),
        &["--tile-px", "128", "--max-attempts", "2"],
    );
    let good = submit(
        &db,
        &good_inputs,
        &tmp.path().join("good_out"),
        &["--tile-px", "128"],
    );
    // Corrupt the NIR band after submission: the header stays, the pixels are gone.
    let nir = tmp.path().join("bad").join("B08.tif");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&nir)
        .and_then(|f| f.set_len(600))
        .expect("truncate");

    let retry = ["--retry-base-secs", "0.05"];
    let (a, b) = (worker(&db, &retry), worker(&db, &retry));
    wait_ok(a);
    wait_ok(b);
    let q = db.queue().await;
    let s = q.job(bad).await.expect("job").expect("exists");
    assert_eq!(s.state, JobState::Failed);
    let error = s.error.expect("the error is kept");
    assert!(error.contains("failed:"), "{error}");
    let failed: Vec<_> = q
        .tasks(bad)
        .await
        .expect("tasks")
        .into_iter()
        .filter(|t| t.state == TaskState::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempt, 2, "failed after max attempts");
    assert!(failed[0].error.as_deref().is_some_and(|e| !e.is_empty()));
    assert!(!cog_of(&tmp.path().join("bad_out")).exists());

    let s = q.job(good).await.expect("job").expect("exists");
    assert_eq!(s.state, JobState::Succeeded, "{:?}", s.error);
    assert!(cog_of(&tmp.path().join("good_out")).is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_stops_a_running_job() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 512, 5);
    let out = tmp.path().join("out");
    // 1024 tiles of 16 px, one at a time: long enough to cancel midway.
    let job = submit(&db, &inputs, &out, &["--tile-px", "16"]);
    let q = db.queue().await;
    let w = worker(&db, &["--batch", "1", "--threads", "1"]);
    let started = Instant::now();
    loop {
        let s = q.job(job).await.expect("job").expect("exists");
        if s.tiles_succeeded > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(q.cancel(job, "test").await.expect("cancel"));
    wait_ok(w);
    let s = q.job(job).await.expect("job").expect("exists");
    assert_eq!(s.state, JobState::Cancelled);
    assert!(s.tiles_succeeded < s.tiles_total, "stopped before the end");
    assert!(!cog_of(&out).exists());
    assert_eq!(q.backlog().await.expect("backlog"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_submissions_exit_with_one_line_and_queue_nothing() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 64, 1);
    let out = tmp.path().join("out").display().to_string();
    let missing = tmp.path().join("nope.tif").display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "submit",
            "--recipe",
            "no-such-recipe",
            "-o",
            &out,
            "-i",
            &inputs[0],
        ],
        vec!["submit", "--recipe", RECIPE, "-o", &out, "-i", &missing],
        vec!["submit", "--recipe", RECIPE, "-o", &out, "-i", &inputs[0]],
        vec![
            "submit", "--recipe", RECIPE, "-o", &out, "--aoi", "1,2,3", "-i", &inputs[0],
        ],
        vec!["serve", "--event-retention-days", "0", "--data-dir", &out],
        vec!["serve", "--web-dir", &out, "--data-dir", &out],
    ];
    for args in cases {
        let o = db.run(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = text(&o.stderr);
        assert!(err.starts_with("error: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    assert!(!tmp.path().join("out").exists(), "nothing written");
    assert_eq!(db.queue().await.backlog().await.expect("backlog"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_an_idle_worker() {
    let db = TestDb::new().await;
    db.migrate();
    let child = db
        .cmd(&["worker", "--backend", "cpu"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    wait_ok(child);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_job_finishes_in_flight_tasks_and_another_worker_completes_the_job() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 256, 9);
    let out = tmp.path().join("out");
    let job = submit(&db, &inputs, &out, &["--tile-px", "16"]);
    let q = db.queue().await;
    let child = db
        .cmd(&[
            "worker",
            "--backend",
            "cpu",
            "--batch",
            "2",
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let started = Instant::now();
    while q
        .job(job)
        .await
        .expect("job")
        .expect("exists")
        .tiles_succeeded
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    wait_ok(child);
    let tasks = q.tasks(job).await.expect("tasks");
    assert!(
        tasks.iter().all(|t| t.state != TaskState::Running),
        "a drained worker holds nothing"
    );
    let s = q.job(job).await.expect("job").expect("exists");
    assert!(s.tiles_succeeded < s.tiles_total, "drained before the end");

    wait_ok(worker(&db, &["--batch", "16"]));
    let s = q.job(job).await.expect("job").expect("exists");
    assert_eq!(s.state, JobState::Succeeded, "{:?}", s.error);
    assert!(cog_of(&out).is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_name_the_job_and_task_of_every_task_line() {
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 256, 5);
    let job = submit(&db, &inputs, &tmp.path().join("out"), &["--tile-px", "128"]);
    let out = db.run(&[
        "--log-format",
        "json",
        "worker",
        "--once",
        "--backend",
        "cpu",
        "--batch",
        "2",
    ]);
    assert!(out.status.success(), "worker: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    let done: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "task done")
        .collect();
    // Four tiles and the finalize task, each once, each naming its job and task.
    assert_eq!(done.len(), 5, "{lines:?}");
    let mut tasks: Vec<i64> = done.iter().filter_map(|l| l["task_id"].as_i64()).collect();
    tasks.sort_unstable();
    tasks.dedup();
    assert_eq!(tasks.len(), 5);
    let q = db.queue().await;
    let stored: Vec<i64> = q
        .tasks(job)
        .await
        .expect("tasks")
        .iter()
        .map(|t| t.id)
        .collect();
    for l in &done {
        assert_eq!(l["job_id"].as_str(), Some(job.to_string().as_str()), "{l}");
        assert!(
            l["task_id"].as_i64().is_some_and(|id| stored.contains(&id)),
            "{l}"
        );
    }
    assert!(done.iter().any(|l| l["tile"] == "finalize"));
    assert!(lines
        .iter()
        .any(|l| l["message"] == "worker stopped" && l["tasks"] == 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_of_serve_carry_each_request_id() {
    use std::io::{Read as _, Write as _};
    let db = TestDb::new().await;
    db.migrate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let listen = free_listen();
    let data = tmp.path().display().to_string();
    let serve = db
        .cmd(&[
            "--log-format",
            "json",
            "serve",
            "--listen",
            &listen,
            "--data-dir",
            &data,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    // Ask for /healthz until the server answers; keep the x-request-id it sends back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let request_id = loop {
        assert!(Instant::now() < deadline, "serve never answered");
        let Ok(mut s) = std::net::TcpStream::connect(&listen) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).expect("request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        let id = reply
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .map(str::to_owned);
        break id.expect("a request id header");
    };
    let stderr = stop(serve);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("listening on"))));
    let handled = lines
        .iter()
        .find(|l| {
            l["message"] == "request handled" && l["span"]["request_id"] == request_id.as_str()
        })
        .unwrap_or_else(|| panic!("no line for request {request_id}: {stderr}"));
    assert_eq!(handled["status"], 200);
    assert_eq!(handled["path"], "/healthz");
    assert_eq!(handled["span"]["route"], "/healthz");
}
