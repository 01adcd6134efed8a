//! The HTTP surface through the router itself (`oneshot`, no socket) against a real
//! PostgreSQL: every endpoint, its success and its error cases. Each test has a database of
//! its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use api::{AppState, Config};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use scheduler::testdb::TestDb;
use scheduler::{GpuSample, Queue, TaskKind, WorkerSpec};
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

const RECIPE: &str = "ndvi-sentinel2-l2a";

struct Api {
    app: Router,
    queue: Queue,
    _db: TestDb,
    dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        let queue = db.queue(4).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        tune(&mut config);
        let state = AppState::new(queue.clone(), &config).await.unwrap();
        Self {
            app: api::router(state, &config),
            queue,
            _db: db,
            dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, uri, None).await;
        (s, v)
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::POST, uri, Some(body)).await;
        (s, v)
    }

    /// A synthetic 256² Sentinel-2 scene; returns its inputs as the API takes them.
    fn scene(&self, seed: u64) -> Value {
        let dir = self.dir.path().join(format!("scene-{seed}"));
        let scene = fixtures::generate(&fixtures::SceneSpec::sentinel2(256, seed), &dir).unwrap();
        let inputs: Vec<Value> = ["red", "nir", "scl"]
            .iter()
            .map(|r| json!({ "role": r, "path": scene.path(r).unwrap().display().to_string() }))
            .collect();
        Value::Array(inputs)
    }

    async fn create(&self, inputs: &Value, extra: Value) -> Value {
        let mut body = json!({ "recipe": RECIPE, "inputs": inputs, "tile_px": 64 });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (s, v) = self.post("/v1/jobs", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }
}

fn assert_problem(headers: &HeaderMap, body: &Value, status: StatusCode) {
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn health_readiness_docs_and_the_committed_openapi_document() {
    let api = Api::new().await;
    assert_eq!(
        api.get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        api.get("/readyz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (s, doc) = api.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/ws",
        "/v1/jobs/{id}/footprints",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the document"
        );
    }
    let (s, page) = api.get("/docs").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("/openapi.json"));
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed_path, api::openapi::document()).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == api::openapi::document(),
        "api/openapi.json is stale: run `constellation openapi > api/openapi.json` \
         (or this test with UPDATE_OPENAPI=1)"
    );
}

#[tokio::test]
async fn a_job_is_created_listed_inspected_cancelled_retried_and_deleted() {
    let api = Api::new().await;
    let inputs = api.scene(7);
    let job = api
        .create(
            &inputs,
            json!({"priority": 5, "params": {"boa_add_offset": "0"}}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["state"], "queued");
    assert_eq!(job["recipe"], RECIPE);
    assert_eq!(job["tiles_total"], 16);
    assert_eq!(job["priority"], 5);
    assert_eq!(job["params"]["boa_add_offset"], "0");
    let bbox: Vec<f64> = serde_json::from_value(job["bbox"].clone()).unwrap();
    assert!(bbox[0] < bbox[2] && bbox[1] < bbox[3], "{bbox:?}");

    let (s, got) = api.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!((s, &got["id"]), (StatusCode::OK, &job["id"]));

    let (s, tasks) = api.get(&format!("/v1/jobs/{id}/tasks")).await;
    assert_eq!(s, StatusCode::OK);
    let items = tasks["items"].as_array().unwrap();
    assert_eq!(items.len(), 17);
    assert_eq!(items.iter().filter(|t| t["kind"] == "finalize").count(), 1);
    assert!(items.iter().any(|t| t["state"] == "blocked"));

    let (s, fc) = api.get(&format!("/v1/jobs/{id}/footprints")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(fc["type"], "FeatureCollection");
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 16);
    assert_eq!(features[3]["properties"]["tile_index"], 3);
    assert_eq!(features[3]["properties"]["state"], "queued");
    assert_eq!(features[3]["geometry"]["type"], "Polygon");

    let (s, logs) = api.get(&format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(
        (s, logs["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    api.queue
        .log(
            Uuid::parse_str(&id).unwrap(),
            None,
            "warn",
            "tile 3 is mostly cloud",
        )
        .await
        .unwrap();
    let (_, logs) = api.get(&format!("/v1/jobs/{id}/logs?after=0")).await;
    assert_eq!(logs["items"][0]["message"], "tile 3 is mostly cloud");
    assert_eq!(logs["items"][0]["level"], "warn");

    // The STAC Item does not exist before the job succeeded.
    let (s, h, p) = api
        .call(Method::GET, &format!("/v1/jobs/{id}/stac"), None)
        .await;
    assert_problem(&h, &p, StatusCode::CONFLICT);
    assert_eq!(s, StatusCode::CONFLICT);

    // A queued job cannot be deleted or retried.
    let (s, h, p) = api
        .call(Method::DELETE, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_problem(&h, &p, StatusCode::CONFLICT);
    let (s, _) = api.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, cancelled) = api.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(
        (s, &cancelled["state"]),
        (StatusCode::OK, &json!("cancelled"))
    );
    let (s, p) = api.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    let footprints = format!("/v1/jobs/{id}/footprints");
    let (_, h, fc) = api.call(Method::GET, &footprints, None).await;
    assert!(fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["properties"]["state"] == "cancelled"));
    // A finished job's footprints carry an ETag (kept in memory): a client's copy is current.
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let (_, h2, again) = api.call(Method::GET, &footprints, None).await;
    assert_eq!((&h2[header::ETAG], &again), (&h[header::ETAG], &fc));
    let conditional = Request::get(&footprints)
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let (s, h, body) = api.send(conditional).await;
    assert_eq!((s, body), (StatusCode::NOT_MODIFIED, Value::Null));
    assert_eq!(h[header::ETAG].to_str().unwrap(), etag);

    let (s, retried) = api.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(
        (s, &retried["state"]),
        (StatusCode::OK, &json!("queued")),
        "{retried}"
    );
    // Retried, it is unfinished again: its footprints are read afresh, with no ETag.
    let (_, h, fc) = api.call(Method::GET, &footprints, None).await;
    assert!(fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["properties"]["state"] == "queued"));
    assert!(!h.contains_key(header::ETAG));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let conditional = Request::get(&footprints)
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(conditional).await.0, StatusCode::OK);
    let (_, tasks) = api.get(&format!("/v1/jobs/{id}/tasks")).await;
    let items = tasks["items"].as_array().unwrap();
    assert_eq!(items.iter().filter(|t| t["state"] == "queued").count(), 16);
    assert_eq!(items.iter().filter(|t| t["state"] == "blocked").count(), 1);

    api.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    // Pieces its tiles left (kept for a retry) go with the job; another job's stay.
    let view = api
        .queue
        .job_view(scheduler::DEFAULT_ACCOUNT_ID, Uuid::parse_str(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let out_dir = PathBuf::from(view.params["out_dir"].as_str().unwrap());
    let pieces = out_dir.join(".pieces");
    let other = pieces.join(Uuid::new_v4().to_string());
    for d in [pieces.join(&id), other.clone()] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("3.tif"), b"piece").unwrap();
    }
    let (s, _, body) = api
        .call(Method::DELETE, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!((s, body), (StatusCode::NO_CONTENT, Value::Null));
    assert!(
        !pieces.join(&id).exists(),
        "the deleted job's pieces are removed"
    );
    assert!(other.join("3.tif").is_file(), "another job's pieces stay");
    let (s, h, p) = api.call(Method::GET, &format!("/v1/jobs/{id}"), None).await;
    assert_problem(&h, &p, StatusCode::NOT_FOUND);
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_completed_job_shows_its_outputs_and_stac_item() {
    let api = Api::new().await;
    let inputs = api.scene(8);
    let job = api.create(&inputs, json!({"tile_px": 128})).await;
    let id = Uuid::parse_str(job["id"].as_str().unwrap()).unwrap();
    let stac_path = api.dir.path().join("item.json");
    std::fs::write(
        &stac_path,
        json!({"type": "Feature", "stac_version": "1.0.0"}).to_string(),
    )
    .unwrap();
    let worker = api
        .queue
        .register_worker(&WorkerSpec {
            host: "test".into(),
            backend: "cpu".into(),
            gpus: json!([]),
        })
        .await
        .unwrap();
    // Run the job's tasks by hand: the four tiles, then the unblocked finalize task.
    for _ in 0..2 {
        let claimed = api
            .queue
            .claim(worker, 10, Duration::from_secs(30))
            .await
            .unwrap();
        let done: Vec<_> = claimed
            .iter()
            .map(|t| {
                let output = match t.kind {
                    TaskKind::Tile => json!({"piece": "p.tif"}),
                    TaskKind::Finalize => json!({"cog": "/out/x.tif", "stac": stac_path}),
                };
                (t.run, output)
            })
            .collect();
        api.queue.complete(worker, &done).await.unwrap();
    }
    let (_, got) = api.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(got["state"], "succeeded", "{got}");
    assert_eq!(got["tiles_succeeded"], 4);
    assert_eq!(got["outputs"]["cog"], "/out/x.tif");
    let (s, item) = api.get(&format!("/v1/jobs/{id}/stac")).await;
    assert_eq!(
        (s, &item["stac_version"]),
        (StatusCode::OK, &json!("1.0.0"))
    );
    let (_, fc) = api.get(&format!("/v1/jobs/{id}/footprints")).await;
    assert!(fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["properties"]["state"] == "succeeded"));
    let (s, p) = api.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    // The four tiles count in the last minute's throughput.
    let (_, _, text) = api.call(Method::GET, "/metrics", None).await;
    let text = text.as_str().unwrap().to_owned();
    assert!(
        text.contains("constellation_tile_task_seconds_count 4"),
        "{text}"
    );
    assert!(
        text.contains(&format!("constellation_tiles_per_second {}", 4.0 / 60.0)),
        "{text}"
    );
    assert!(
        text.contains("constellation_tile_task_seconds{quantile=\"0.95\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn lists_filter_and_page_with_a_cursor_and_bulk_actions_apply() {
    let api = Api::new().await;
    let inputs = api.scene(9);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            api.create(&inputs, json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let expr_job = api
        .post(
            "/v1/jobs",
            json!({"expr": "(nir - red) / (nir + red)", "inputs": inputs, "tile_px": 128}),
        )
        .await;
    assert_eq!(expr_job.0, StatusCode::CREATED, "{}", expr_job.1);
    assert_eq!(expr_job.1["expr"], "(nir - red) / (nir + red)");

    // Pages of two, newest first, covering all four jobs once.
    let (s, page1) = api.get("/v1/jobs?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = api.get(&format!("/v1/jobs?limit=2&cursor={cursor}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());
    let mut seen: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen[0], expr_job.1["id"].as_str().unwrap());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);

    let count = |v: &Value| v["items"].as_array().unwrap().len();
    assert_eq!(
        count(&api.get(&format!("/v1/jobs?recipe={RECIPE}")).await.1),
        3
    );
    assert_eq!(count(&api.get("/v1/jobs?q=nir%20-%20red").await.1), 1);
    assert_eq!(
        count(&api.get(&format!("/v1/jobs?q={}", &ids[1][..8])).await.1),
        1
    );
    let bbox = api.get(&format!("/v1/jobs/{}", ids[0])).await.1["bbox"].clone();
    let (w, s, e, n) = (
        bbox[0].as_f64().unwrap(),
        bbox[1].as_f64().unwrap(),
        bbox[2].as_f64().unwrap(),
        bbox[3].as_f64().unwrap(),
    );
    let inside = format!("{},{},{},{}", w + 0.001, s + 0.001, e - 0.001, n - 0.001);
    assert_eq!(
        count(&api.get(&format!("/v1/jobs?bbox={inside}")).await.1),
        4
    );
    assert_eq!(count(&api.get("/v1/jobs?bbox=100,10,101,11").await.1), 0);
    let future = "2999-01-01T00:00:00Z";
    assert_eq!(
        count(&api.get(&format!("/v1/jobs?created_after={future}")).await.1),
        0
    );

    // Spatial search across jobs.
    let (s, fc) = api
        .get(&format!("/v1/footprints?bbox={inside}&limit=5"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(fc["features"].as_array().unwrap().len(), 5);

    // Bulk: cancel by ids, then retry by filter, then delete by filter.
    let (s, r) = api
        .post(
            "/v1/jobs/bulk",
            json!({"action": "cancel", "ids": [ids[0], ids[1]]}),
        )
        .await;
    assert_eq!(
        (s, r),
        (StatusCode::OK, json!({"affected": 2, "skipped": 0}))
    );
    assert_eq!(count(&api.get("/v1/jobs?state=cancelled").await.1), 2);
    let (_, r) = api
        .post(
            "/v1/jobs/bulk",
            json!({"action": "retry", "filter": {"state": "cancelled,queued"}}),
        )
        .await;
    assert_eq!(r, json!({"affected": 2, "skipped": 2}));
    let (_, r) = api
        .post(
            "/v1/jobs/bulk",
            json!({"action": "cancel", "filter": {"recipe": RECIPE}}),
        )
        .await;
    assert_eq!(r["affected"], 3);
    let (_, r) = api
        .post(
            "/v1/jobs/bulk",
            json!({"action": "delete", "filter": {"state": "cancelled"}}),
        )
        .await;
    assert_eq!(r["affected"], 3);
    assert_eq!(count(&api.get("/v1/jobs").await.1), 1);
    let (s, p) = api.post("/v1/jobs/bulk", json!({"action": "delete"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
}

#[tokio::test]
async fn bad_requests_are_problems_that_name_the_field_and_store_nothing() {
    let api = Api::with(|c| c.body_limit_bytes = 4096).await;
    let inputs = api.scene(10);
    let cases = [
        (
            json!({"recipe": RECIPE, "inputs": inputs, "tile_px": 8}),
            "tile_px",
        ),
        (
            json!({"recipe": RECIPE, "inputs": inputs, "tile_px": "big"}),
            "tile_px",
        ),
        (
            json!({"recipe": RECIPE, "inputs": inputs, "colour": "red"}),
            "colour",
        ),
        (
            json!({"recipe": RECIPE, "expr": "nir", "inputs": inputs}),
            "expr",
        ),
        (json!({"inputs": inputs}), "recipe"),
        (json!({"recipe": RECIPE, "inputs": []}), "inputs"),
        (
            json!({"recipe": RECIPE, "inputs": [{"path": "rel/B04.tif"}]}),
            "inputs.0.path",
        ),
        (
            json!({"recipe": "no-such-recipe", "inputs": inputs}),
            "inputs",
        ),
        (
            json!({"recipe": RECIPE, "inputs": [{"role": "red", "path": "/nonexistent/B04.tif"}]}),
            "inputs",
        ),
        (json!({"expr": "nir +", "inputs": inputs}), "inputs"),
        (
            json!({"recipe": RECIPE, "inputs": inputs, "max_attempts": 0}),
            "max_attempts",
        ),
        (
            json!({"recipe": RECIPE, "inputs": inputs, "compression": "lzw"}),
            "compression",
        ),
    ];
    for (body, field) in cases {
        let (s, h, p) = api.call(Method::POST, "/v1/jobs", Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {p}");
        assert_problem(&h, &p, s);
        assert_eq!(p["errors"][0]["field"], field, "{body} -> {p}");
    }
    // Malformed JSON, a wrong content type, an oversized body.
    let req = Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{nope"))
        .unwrap();
    let (s, h, p) = api.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_problem(&h, &p, s);
    let req = Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    let (s, h, p) = api.send(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_problem(&h, &p, s);
    let big = json!({"recipe": RECIPE, "inputs": inputs, "params": {"x": "y".repeat(8000)}});
    let (s, h, p) = api.call(Method::POST, "/v1/jobs", Some(big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert_problem(&h, &p, s);
    // Nothing was stored by any of them.
    let (_, page) = api.get("/v1/jobs").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);

    // Query, path and routing errors.
    for (uri, status) in [
        ("/v1/jobs?limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("/v1/jobs?state=done", StatusCode::UNPROCESSABLE_ENTITY),
        ("/v1/jobs?bbox=1,2,3", StatusCode::UNPROCESSABLE_ENTITY),
        ("/v1/jobs?cursor=garbage", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/v1/jobs?created_after=yesterday",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/jobs/not-a-uuid", StatusCode::NOT_FOUND),
        (
            &format!("/v1/jobs/{}", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            &format!("/v1/jobs/{}/tasks", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/footprints?bbox=0,0,1",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/footprints", StatusCode::UNPROCESSABLE_ENTITY),
        ("/v1/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let (s, h, p) = api.call(Method::GET, uri, None).await;
        assert_eq!(s, status, "{uri} -> {p}");
        assert_problem(&h, &p, status);
    }
    let (s, h, p) = api.call(Method::PUT, "/v1/jobs", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_problem(&h, &p, s);
}

#[tokio::test]
async fn recipes_workers_with_gpu_samples_metrics_and_request_ids() {
    let api = Api::new().await;
    let (s, recipes) = api.get("/v1/recipes").await;
    assert_eq!(s, StatusCode::OK);
    let ndvi = recipes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == RECIPE)
        .unwrap()
        .clone();
    assert_eq!(ndvi["roles"], json!(["nir", "red", "scl"]));

    let worker = api
        .queue
        .register_worker(&WorkerSpec {
            host: "gpu-node-1".into(),
            backend: "cuda".into(),
            gpus: json!([{"index": 0, "name": "simulated GPU", "memory_total_bytes": 80}]),
        })
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let sample = |i: i64, util: f32| GpuSample {
        gpu_index: 0,
        ts: now - chrono::Duration::seconds(10 - i),
        simulated: true,
        util_gpu_pct: Some(util),
        util_mem_pct: Some(10.0),
        mem_used_bytes: Some(1 << 30),
        mem_total_bytes: Some(80 << 30),
        temp_c: Some(55.0),
        power_w: Some(300.0),
    };
    api.queue
        .record_gpu_samples(worker, &[sample(0, 40.0), sample(1, 90.0)])
        .await
        .unwrap();
    let (s, workers) = api.get("/v1/workers").await;
    assert_eq!(s, StatusCode::OK);
    let w = &workers["items"][0];
    assert_eq!(w["host"], "gpu-node-1");
    assert_eq!(w["state"], "up");
    assert_eq!(w["samples"].as_array().unwrap().len(), 2);
    assert_eq!(w["samples"][1]["util_gpu_pct"], 90.0);
    assert_eq!(w["samples"][1]["simulated"], true);

    api.create(&api.scene(11), json!({})).await;
    let (s, h, text) = api.call(Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = text.as_str().unwrap().to_owned();
    assert!(
        text.contains("constellation_tasks{state=\"queued\"} 16"),
        "{text}"
    );
    assert!(
        text.contains("constellation_tasks{state=\"blocked\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("route=\"/v1/jobs\",status=\"201\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("constellation_tiles_per_second 0\n"),
        "{text}"
    );
    // Latency histograms by route, and the database pool.
    assert!(
        text.contains("# TYPE constellation_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains(
            "constellation_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/jobs\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "constellation_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/jobs\",le=\"+Inf\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("constellation_db_pool_connections{state=\"idle\"}"),
        "{text}"
    );
    assert!(
        text.contains("constellation_db_pool_max_connections "),
        "{text}"
    );
    // The worker by state, and its GPU's latest sample under DCGM's names and units.
    assert!(
        text.contains("constellation_workers{state=\"up\"} 1\n"),
        "{text}"
    );
    let labels =
        format!("{{worker=\"{worker}\",Hostname=\"gpu-node-1\",gpu=\"0\",simulated=\"true\"}}");
    for (name, value) in [
        ("DCGM_FI_DEV_GPU_UTIL", "90"),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", "10"),
        ("DCGM_FI_DEV_FB_USED", "1024"),
        ("DCGM_FI_DEV_FB_TOTAL", "81920"),
        ("DCGM_FI_DEV_GPU_TEMP", "55"),
        ("DCGM_FI_DEV_POWER_USAGE", "300"),
    ] {
        let line = format!("{name}{labels} {value}\n");
        assert!(text.contains(&line), "no {line:?} in {text}");
        assert_eq!(
            text.matches(&format!("{name}{{")).count(),
            1,
            "one GPU, one line"
        );
    }

    // Every response carries a request id; a given one is kept.
    let (_, h, _) = api.call(Method::GET, "/healthz", None).await;
    assert!(Uuid::parse_str(h["x-request-id"].to_str().unwrap()).is_ok());
    let req = Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, h, _) = api.send(req).await;
    assert_eq!(h["x-request-id"], "abc-123");
}

#[tokio::test]
async fn inputs_outside_the_allowed_roots_are_refused() {
    let allowed = PathBuf::from("/nonexistent-root");
    let api = Api::with(move |c| c.input_roots = vec![allowed]).await;
    let inputs = api.scene(12);
    let (s, p) = api
        .post("/v1/jobs", json!({"recipe": RECIPE, "inputs": inputs}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["field"], "inputs.0.path");
}

#[tokio::test]
async fn an_area_of_interest_limits_the_tiles_and_bad_ones_are_named() {
    let api = Api::new().await;
    let inputs = api.scene(13);
    let whole = api.create(&inputs, json!({})).await;
    let b: Vec<f64> = serde_json::from_value(whole["bbox"].clone()).unwrap();
    let (w, s, e, n) = (b[0], b[1], b[2], b[3]);
    // The south-west quarter, as an open ring (closed by the server).
    let (mx, my) = ((w + e) / 2.0, (s + n) / 2.0);
    let ring = json!([[
        [w, s],
        [mx - 0.0001, s],
        [mx - 0.0001, my - 0.0001],
        [w, my - 0.0001]
    ]]);
    let part = api
        .create(
            &inputs,
            json!({"aoi": {"type": "Polygon", "coordinates": ring}}),
        )
        .await;
    let tiles = part["tiles_total"].as_i64().unwrap();
    assert!(
        (4..16).contains(&tiles),
        "{tiles} tiles for a quarter of 16"
    );
    let (_, fc) = api
        .get(&format!(
            "/v1/jobs/{}/footprints",
            part["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(fc["features"].as_array().unwrap().len() as i64, tiles);

    let far = json!({"type": "Polygon", "coordinates": [[[100.0, 10.0], [101.0, 10.0], [101.0, 11.0], [100.0, 10.0]]]});
    let holes = json!({"type": "Polygon", "coordinates": [
        [[w, s], [e, s], [e, n], [w, s]], [[mx, my], [mx, my], [mx, my], [mx, my]]]});
    let flat = json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [w, s]]]});
    let point = json!({"type": "Point", "coordinates": [[[w, s]]]});
    for (aoi, field) in [
        (far, "aoi"),
        (holes, "aoi.coordinates"),
        (flat, "aoi.coordinates"),
        (point, "aoi.type"),
    ] {
        let body = json!({"recipe": RECIPE, "inputs": inputs, "tile_px": 64, "aoi": aoi});
        let (s, p) = api.post("/v1/jobs", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
}
