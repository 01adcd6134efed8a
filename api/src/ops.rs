//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the database
//! answers), `/metrics` (Prometheus text: HTTP requests, the queue's depth by state, tiles
//! per second and tile task run times over the last minute).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::dto::Health;
use crate::problem::{ApiResult, Json, Problem};
use crate::prom::escape;
use crate::AppState;

/// A series: method, route template, status.
type Series = (String, String, u16);

/// Request counts and total seconds by series, and latency histograms by method and route.
#[derive(Debug)]
pub struct HttpMetrics {
    by_route: Mutex<BTreeMap<Series, (u64, f64)>>,
    duration: crate::prom::Histograms,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            by_route: Mutex::default(),
            duration: crate::prom::Histograms::new(
                "constellation_http_request_duration_seconds",
                "Time to answer a request, by method and route template (WebSockets: until the upgrade).",
                &["method", "route"],
                crate::prom::SECONDS_BUCKETS,
            ),
        }
    }
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
        self.duration.observe(&[method, route], secs);
        if let Ok(mut m) = self.by_route.lock() {
            let e = m
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default();
            e.0 += 1;
            e.1 += secs;
        }
    }
}

/// Middleware: counts every request under its route template (never the raw path, so ids
/// do not explode the series).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Every line logged while the request is handled carries its id, method and route, and
    // its trace id when traces are exported.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        trace_id = tracing::field::Empty,
    );
    if let Some(p) = &state.propagation {
        if let Some(trace_id) = p.continue_request(req.headers(), &span) {
            span.record("trace_id", trace_id.as_str());
        }
    }
    let response = next.run(req).instrument(span.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.http.record(&method, &route, status, secs);
    span.in_scope(|| {
        tracing::info!(
            status,
            path = %path,
            latency_ms = (secs * 1e6).round() / 1e3,
            "request handled"
        );
    });
    response
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The database answers, and so does the event bus when it is not PostgreSQL's.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    let wait = std::time::Duration::from_secs(2);
    match tokio::time::timeout(wait, state.queue.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Problem::unavailable(format!("database: {e}"))),
        Err(_) => return Err(Problem::unavailable("database: no answer within 2 s")),
    }
    if !matches!(state.bus, scheduler::Bus::Pg(_)) {
        let bus = state.bus.name();
        match tokio::time::timeout(wait, state.bus.check()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Problem::unavailable(format!("{bus}: {e}"))),
            Err(_) => return Err(Problem::unavailable(format!("{bus}: no answer within 2 s"))),
        }
    }
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Workers by state, and each live worker's latest GPU sample under DCGM's exporter names and
/// units (utilisation %, framebuffer MiB, °C, W), labelled by worker, host and GPU index.
fn write_worker_series(out: &mut String, workers: &[scheduler::WorkerView]) {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for w in workers {
        *by_state.entry(w.state.as_str()).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP constellation_workers Workers seen in the last day, by state."
    );
    let _ = writeln!(out, "# TYPE constellation_workers gauge");
    for (worker_state, n) in &by_state {
        let _ = writeln!(
            out,
            "constellation_workers{{state=\"{}\"}} {n}",
            escape(worker_state)
        );
    }
    type Field = fn(&scheduler::GpuSample) -> Option<f64>;
    let series: [(&str, &str, Field); 6] = [
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", |s| {
            s.util_gpu_pct.map(f64::from)
        }),
        (
            "DCGM_FI_DEV_MEM_COPY_UTIL",
            "Memory utilization (in %).",
            |s| s.util_mem_pct.map(f64::from),
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            |s| s.mem_used_bytes.map(|b| b as f64 / 1_048_576.0),
        ),
        (
            "DCGM_FI_DEV_FB_TOTAL",
            "Framebuffer memory in total (in MiB).",
            |s| s.mem_total_bytes.map(|b| b as f64 / 1_048_576.0),
        ),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", |s| {
            s.temp_c.map(f64::from)
        }),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", |s| {
            s.power_w.map(f64::from)
        }),
    ];
    // The latest sample of each GPU of each worker that is not down.
    let mut latest: Vec<(&scheduler::WorkerView, &scheduler::GpuSample)> = Vec::new();
    for w in workers.iter().filter(|w| w.state != "down") {
        let mut gpus: Vec<i32> = w.samples.iter().map(|s| s.gpu_index).collect();
        gpus.sort_unstable();
        gpus.dedup();
        for gpu in gpus {
            if let Some(s) = w
                .samples
                .iter()
                .filter(|s| s.gpu_index == gpu)
                .max_by_key(|s| s.ts)
            {
                latest.push((w, s));
            }
        }
    }
    for (name, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (w, s) in &latest {
            if let Some(v) = field(s) {
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{}\",Hostname=\"{}\",gpu=\"{}\",simulated=\"{}\"}} {v}",
                    w.id,
                    escape(&w.host),
                    s.gpu_index,
                    s.simulated
                );
            }
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP constellation_http_requests_total HTTP requests by method, route and status."
    );
    let _ = writeln!(out, "# TYPE constellation_http_requests_total counter");
    let snapshot = state
        .http
        .by_route
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    for ((method, route, status), (n, _)) in &snapshot {
        let _ = writeln!(
            out,
            "constellation_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
            escape(route)
        );
    }
    let _ = writeln!(
        out,
        "# HELP constellation_http_request_seconds_total Time spent answering, by route."
    );
    let _ = writeln!(
        out,
        "# TYPE constellation_http_request_seconds_total counter"
    );
    for ((method, route, status), (_, secs)) in &snapshot {
        let _ = writeln!(
            out,
            "constellation_http_request_seconds_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {secs}",
            escape(route)
        );
    }
    state.http.duration.render(&mut out);
    crate::prom::render_pool(&mut out, &state.queue);
    let counts = state.queue.task_counts().await?;
    let _ = writeln!(out, "# HELP constellation_tasks Tasks by state.");
    let _ = writeln!(out, "# TYPE constellation_tasks gauge");
    for (task_state, n) in counts {
        let _ = writeln!(
            out,
            "constellation_tasks{{state=\"{}\"}} {n}",
            escape(&task_state)
        );
    }
    let window_secs = 60.0;
    let (tiles, p50, p95) = state.queue.recent_tiles(window_secs).await?;
    let _ = writeln!(
        out,
        "# HELP constellation_tiles_per_second Tile tasks succeeded per second over the last minute."
    );
    let _ = writeln!(out, "# TYPE constellation_tiles_per_second gauge");
    let _ = writeln!(
        out,
        "constellation_tiles_per_second {}",
        tiles as f64 / window_secs
    );
    let _ = writeln!(
        out,
        "# HELP constellation_tile_task_seconds Run time (claim to finish) of tile tasks succeeded in the last minute."
    );
    let _ = writeln!(out, "# TYPE constellation_tile_task_seconds summary");
    for (q, v) in [("0.5", p50), ("0.95", p95)] {
        if let Some(v) = v {
            let _ = writeln!(
                out,
                "constellation_tile_task_seconds{{quantile=\"{q}\"}} {v}"
            );
        }
    }
    let _ = writeln!(out, "constellation_tile_task_seconds_count {tiles}");
    write_worker_series(&mut out, &state.queue.workers().await?);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response())
}
