//! Constellation's HTTP API (axum): jobs, tasks, logs, footprints, STAC, recipes, workers,
//! the live event WebSocket, OpenAPI, health and metrics — and the web UI's static files.

pub mod cache;
pub mod catalog;
pub mod dto;
pub mod jobs;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod prom;
pub mod submit;
pub mod tiles;
pub mod worker_metrics;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use scheduler::{Bus, PgEventBus, Queue};
use tower::ServiceExt as _;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::TimeoutLayer;

use crate::ops::HttpMetrics;
use crate::problem::Problem;
use crate::submit::Paths;
use crate::ws::EventHub;

/// The header map [`Propagation`] reads a request's trace context from.
pub use axum::http::HeaderMap;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Outputs of jobs submitted over HTTP go under `<data_dir>/outputs`.
    pub data_dir: PathBuf,
    /// Inputs must lie under these folders (empty: anywhere the server can read).
    pub input_roots: Vec<PathBuf>,
    /// The built web UI, served at `/` when present.
    pub web_dir: Option<PathBuf>,
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Longest time a request may take (WebSockets are exempt once upgraded).
    pub request_timeout: Duration,
    /// How far a WebSocket may fall behind the live stream before it is told it lagged.
    pub ws_buffer_events: usize,
    /// Memory for rendered output tiles.
    pub tile_cache_bytes: usize,
    /// Memory for finished jobs' footprints (rendered GeoJSON).
    pub footprint_cache_bytes: usize,
    /// Trace propagation, when the process exports traces.
    pub propagation: Option<Arc<dyn Propagation>>,
}

/// Distributed tracing across processes (W3C trace context), installed by the binary when it
/// exports traces. Without it, requests and jobs carry no trace.
pub trait Propagation: Send + Sync + std::fmt::Debug {
    /// Makes `span` (created, not yet entered) continue the trace the request's headers name
    /// (`traceparent`, `tracestate`), or start a new one; returns its trace id (32 hex digits).
    fn continue_request(&self, headers: &HeaderMap, span: &tracing::Span) -> Option<String>;

    /// The trace context of `span` as the W3C headers a job stores (`{"traceparent": …}`), so
    /// the workers that run its tasks continue the trace.
    fn job_context(&self, span: &tracing::Span) -> Option<serde_json::Value>;
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            input_roots: Vec::new(),
            web_dir: None,
            body_limit_bytes: 1 << 20,
            request_timeout: Duration::from_secs(60),
            ws_buffer_events: 4096,
            tile_cache_bytes: 64 << 20,
            footprint_cache_bytes: 32 << 20,
            propagation: None,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub queue: Queue,
    /// Where live events are read from (and replayed from on `since=`).
    pub bus: Bus,
    pub hub: Arc<EventHub>,
    pub paths: Arc<Paths>,
    pub http: Arc<HttpMetrics>,
    pub tiles: Arc<tiles::TileCache>,
    /// Finished jobs' footprints as GeoJSON, by job and `finished_at` (µs).
    pub footprints: Arc<cache::ByteLru<(uuid::Uuid, i64), axum::body::Bytes>>,
    /// Trace propagation (see [`Propagation`]).
    pub propagation: Option<Arc<dyn Propagation>>,
    web_dir: Option<PathBuf>,
}

impl AppState {
    /// State over `queue`, with the PostgreSQL event bus and its hub started.
    pub async fn new(queue: Queue, config: &Config) -> scheduler::Result<Self> {
        let bus = Bus::Pg(PgEventBus::new(queue.pool().clone()));
        Self::with_bus(queue, bus, config).await
    }

    /// State over `queue` whose live events come from `bus`, with its hub started.
    pub async fn with_bus(queue: Queue, bus: Bus, config: &Config) -> scheduler::Result<Self> {
        let hub = EventHub::start(bus.clone(), config.ws_buffer_events).await?;
        Ok(Self {
            queue,
            bus,
            hub,
            paths: Arc::new(Paths {
                data_dir: config.data_dir.clone(),
                input_roots: config.input_roots.clone(),
            }),
            http: Arc::new(HttpMetrics::default()),
            tiles: tiles::TileCache::new(config.tile_cache_bytes),
            footprints: Arc::new(cache::ByteLru::new(config.footprint_cache_bytes)),
            propagation: config.propagation.clone(),
            web_dir: config.web_dir.clone(),
        })
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState, config: &Config) -> Router {
    let v1 = Router::new()
        .route("/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/jobs/bulk", post(jobs::bulk_jobs))
        .route("/jobs/{id}", get(jobs::get_job).delete(jobs::delete_job))
        .route("/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/jobs/{id}/retry", post(jobs::retry_job))
        .route("/jobs/{id}/tasks", get(jobs::job_tasks))
        .route("/jobs/{id}/logs", get(jobs::job_logs))
        .route("/jobs/{id}/footprints", get(jobs::job_footprints))
        .route("/jobs/{id}/stac", get(jobs::job_stac))
        .route("/jobs/{id}/tilejson", get(tiles::tilejson))
        .route("/jobs/{id}/tiles/{z}/{x}/{y}", get(tiles::tile))
        .route("/recipes", get(catalog::recipes))
        .route("/workers", get(catalog::workers))
        .route("/footprints", get(catalog::search_footprints))
        .route("/ws", get(ws::ws));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this resource does not take that method",
    )
}

/// Unknown API paths are problems; anything else is the web UI (its `index.html` for the
/// client-side routes) when it is served.
async fn fallback(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    let api_like = ["/v1", "/healthz", "/readyz", "/metrics", "/openapi"]
        .iter()
        .any(|p| path.starts_with(p));
    match &state.web_dir {
        Some(dir) if !api_like => {
            let index = dir.join("index.html");
            match ServeDir::new(dir)
                .fallback(ServeFile::new(index))
                .oneshot(req)
                .await
            {
                Ok(r) => r.into_response(),
                Err(e) => {
                    Problem::internal(format!("cannot serve the web UI: {e}")).into_response()
                }
            }
        }
        _ => Problem::not_found(format!("no route {path}")).into_response(),
    }
}

/// Serve `router` on `listener` until `shutdown` resolves (open WebSockets are closed).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
