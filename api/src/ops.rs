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
use crate::AppState;

/// A series: method, route template, status.
type Series = (String, String, u16);

/// Request counts and total seconds by series.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    by_route: Mutex<BTreeMap<Series, (u64, f64)>>,
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
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
    // Every line logged while the request is handled carries its id, method and route.
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
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

/// The database answers (and with it the PostgreSQL event bus).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.queue.ping()).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ok".into(),
        })),
        Ok(Err(e)) => Err(Problem::unavailable(format!("database: {e}"))),
        Err(_) => Err(Problem::unavailable("database: no answer within 2 s")),
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response())
}
