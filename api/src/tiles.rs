//! Output tiles of a succeeded job: Web Mercator XYZ PNGs rendered from its COG, and the
//! job's TileJSON document. Rendering is not built yet: both answer 501.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use crate::problem::{ApiResult, Path, Problem};
use crate::AppState;

/// Rendered tiles kept in memory, bounded by bytes.
#[derive(Debug, Default)]
pub struct TileCache {
    /// The byte budget.
    pub budget_bytes: usize,
}

impl TileCache {
    /// A cache holding at most `budget_bytes` of PNG.
    pub fn new(budget_bytes: usize) -> Arc<Self> {
        Arc::new(Self { budget_bytes })
    }
}

/// One output tile as PNG.
#[utoipa::path(get, path = "/v1/jobs/{id}/tiles/{z}/{x}/{y}", tag = "jobs",
    params(("id" = Uuid, Path), ("z" = u8, Path), ("x" = u32, Path), ("y" = String, Path, description = "row, then `.png` or `@2x.png`")),
    responses((status = 200, content_type = "image/png"), (status = 501, body = Problem, content_type = "application/problem+json")))]
pub async fn tile(
    State(_state): State<AppState>,
    Path((_id, _z, _x, _y)): Path<(Uuid, u8, u32, String)>,
) -> ApiResult<Response> {
    Err(Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "tile rendering is not built yet",
    ))
}

/// The job's TileJSON 3.0 document.
#[utoipa::path(get, path = "/v1/jobs/{id}/tilejson", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = Object), (status = 501, body = Problem, content_type = "application/problem+json")))]
pub async fn tilejson(
    State(_state): State<AppState>,
    Path(_id): Path<Uuid>,
) -> ApiResult<Response> {
    Err(Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "tile rendering is not built yet",
    ))
}
