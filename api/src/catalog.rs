//! The catalog endpoints: recipes, workers with their GPUs, and spatial search of tile
//! footprints across jobs.

use axum::extract::State;
use axum::response::Response;
use engine::recipe::{self, Params};
use scheduler::DEFAULT_ACCOUNT_ID;

use crate::dto::{BboxParams, RecipeDto, RecipeList, WorkerDto, WorkerList};
use crate::jobs::{features_json, geojson, parse_bbox};
use crate::problem::{ApiResult, Json, Problem, Query};
use crate::AppState;

/// The recipes jobs can name.
#[utoipa::path(get, path = "/v1/recipes", tag = "catalog",
    responses((status = 200, body = RecipeList)))]
pub async fn recipes() -> ApiResult<Json<RecipeList>> {
    let all = recipe::catalog(&Params::new())
        .map_err(|e| Problem::internal(format!("the recipe catalog failed: {e}")))?;
    Ok(Json(RecipeList {
        items: all
            .iter()
            .map(|r| RecipeDto {
                name: r.name.clone(),
                description: r.description.clone(),
                roles: r.roles().map(str::to_owned).collect(),
                outputs: r.outputs.iter().map(|o| o.plane.clone()).collect(),
            })
            .collect(),
    }))
}

/// Workers seen in the last day, newest first, with their GPUs and recent samples.
#[utoipa::path(get, path = "/v1/workers", tag = "catalog",
    responses((status = 200, body = WorkerList)))]
pub async fn workers(State(state): State<AppState>) -> ApiResult<Json<WorkerList>> {
    let all = state.queue.workers().await?;
    Ok(Json(WorkerList {
        items: all.into_iter().map(WorkerDto::from).collect(),
    }))
}

/// Tiles of every job whose footprint intersects a bounding box, newest jobs first.
#[utoipa::path(get, path = "/v1/footprints", tag = "catalog", params(BboxParams),
    responses((status = 200, body = crate::dto::FeatureCollection, content_type = "application/geo+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn search_footprints(
    State(state): State<AppState>,
    Query(p): Query<BboxParams>,
) -> ApiResult<Response> {
    let bbox = parse_bbox("bbox", &p.bbox)?;
    let limit = p.limit.unwrap_or(2000);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::invalid("limit", "must be between 1 and 10000"));
    }
    let tiles = state
        .queue
        .search_footprints(DEFAULT_ACCOUNT_ID, bbox, limit)
        .await?;
    Ok(geojson(features_json(&tiles)))
}
