//! A worker's own `/metrics` (`constellation worker --metrics-listen`): claim latency, task run
//! times, tiles, pixels and kernel bytes per backend, and its database pool; `/healthz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use scheduler::Queue;

use crate::prom::{Counters, Histograms, SECONDS_BUCKETS};

/// What a worker counts as it runs.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Time of each claim statement, by `result` (`tasks` or `empty`).
    pub claim_seconds: Histograms,
    /// Tasks claimed.
    pub claimed_tasks: Counters,
    /// Run time of each task by `kind`, `backend` and `outcome` (tiles packed into one device
    /// call share the group's time).
    pub task_seconds: Histograms,
    /// Tile tasks completed (accepted by the queue), by backend.
    pub tiles: Counters,
    /// Pixels of completed tile tasks, by backend.
    pub pixels: Counters,
    /// Bytes through the kernels of completed tile tasks (input bands and output bands as
    /// 4-byte planes, as `constellation bench` counts them), by backend.
    pub kernel_bytes: Counters,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self {
            claim_seconds: Histograms::new(
                "constellation_worker_claim_seconds",
                "Time of each statement that claims (a plain claim, or a batch's completion with the next claim), by result (tasks or empty).",
                &["result"],
                SECONDS_BUCKETS,
            ),
            claimed_tasks: Counters::new(
                "constellation_worker_claimed_tasks_total",
                "Tasks claimed by this worker.",
                &[],
            ),
            task_seconds: Histograms::new(
                "constellation_worker_task_seconds",
                "Run time of each task by kind, backend and outcome (tiles packed into one device call share its time).",
                &["kind", "backend", "outcome"],
                SECONDS_BUCKETS,
            ),
            tiles: Counters::new(
                "constellation_worker_tiles_total",
                "Tile tasks completed by this worker, by backend.",
                &["backend"],
            ),
            pixels: Counters::new(
                "constellation_worker_pixels_total",
                "Pixels of the tile tasks completed by this worker, by backend.",
                &["backend"],
            ),
            kernel_bytes: Counters::new(
                "constellation_worker_kernel_bytes_total",
                "Bytes through the kernels (input and output bands as 4-byte planes) of the tile tasks completed, by backend.",
                &["backend"],
            ),
        }
    }
}

impl WorkerMetrics {
    /// The text exposition, with the pool's gauges.
    pub fn render(&self, queue: &Queue) -> String {
        let mut out = String::new();
        self.claim_seconds.render(&mut out);
        self.claimed_tasks.render(&mut out);
        self.task_seconds.render(&mut out);
        self.tiles.render(&mut out);
        self.pixels.render(&mut out);
        self.kernel_bytes.render(&mut out);
        crate::prom::render_pool(&mut out, queue);
        out
    }
}

#[derive(Clone)]
struct Served {
    metrics: Arc<WorkerMetrics>,
    queue: Queue,
}

async fn metrics_text(State(s): State<Served>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&s.queue),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

/// The worker's HTTP surface: `GET /metrics` and `GET /healthz`.
pub fn router(metrics: Arc<WorkerMetrics>, queue: Queue) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .with_state(Served { metrics, queue })
}
