//! `/v1/jobs`: create, list, get, cancel, retry, delete, bulk actions, and each job's tasks,
//! logs, footprints and STAC Item.

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use scheduler::{Change, JobCursor, JobFilter, JobState, DEFAULT_ACCOUNT_ID};
use serde_json::Value;
use uuid::Uuid;

use crate::dto::{
    BulkAction, BulkRequest, BulkResult, CreateJob, FeatureCollection, JobDto, JobFilterDto,
    JobPage, JobStateDto, LogDto, LogPage, LogParams, PageParams, TaskDto, TaskList, TaskStateDto,
};
use crate::problem::{ApiResult, Json, Path, Problem, Query};
use crate::submit;
use crate::tiles::matches_etag;
use crate::AppState;

/// Jobs a bulk action by filter may touch at most, per request.
pub const BULK_LIMIT: i64 = 10_000;

/// Parses `west,south,east,north`.
pub(crate) fn parse_bbox(field: &str, text: &str) -> Result<[f64; 4], Problem> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| Problem::invalid(field, "expected west,south,east,north in degrees"))?;
    let [w, s, e, n] = parts[..] else {
        return Err(Problem::invalid(
            field,
            "expected four numbers: west,south,east,north",
        ));
    };
    if !(-180.0..=180.0).contains(&w)
        || !(-180.0..=180.0).contains(&e)
        || !(-90.0..=90.0).contains(&s)
        || !(-90.0..=90.0).contains(&n)
        || w > e
        || s > n
    {
        return Err(Problem::invalid(
            field,
            "must lie within -180..180, -90..90 with west <= east and south <= north",
        ));
    }
    Ok([w, s, e, n])
}

fn parse_state(text: &str) -> Result<JobState, Problem> {
    let dto: JobStateDto = serde_json::from_value(Value::String(text.trim().to_owned()))
        .map_err(|_| {
            Problem::invalid(
                "state",
                format!("unknown state {text:?}: expected queued, running, succeeded, failed or cancelled"),
            )
        })?;
    Ok(dto.into())
}

/// The queue's filter from the query's.
pub(crate) fn filter_of(f: &JobFilterDto) -> Result<JobFilter, Problem> {
    let states = match &f.state {
        Some(s) if !s.is_empty() => s.split(',').map(parse_state).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    if let (Some(a), Some(b)) = (f.created_after, f.created_before) {
        if a > b {
            return Err(Problem::invalid(
                "created_after",
                "must not be later than created_before",
            ));
        }
    }
    Ok(JobFilter {
        states,
        recipe: f.recipe.clone().filter(|r| !r.is_empty()),
        text: f.q.clone().filter(|q| !q.trim().is_empty()),
        created_after: f.created_after,
        created_before: f.created_before,
        bbox_deg: f
            .bbox
            .as_deref()
            .filter(|b| !b.is_empty())
            .map(|b| parse_bbox("bbox", b))
            .transpose()?,
    })
}

fn encode_cursor(c: JobCursor) -> String {
    format!("{}_{}", c.created_at.timestamp_micros(), c.id.simple())
}

fn decode_cursor(text: &str) -> Result<JobCursor, Problem> {
    let bad = || Problem::invalid("cursor", "not a cursor this server issued");
    let (micros, id) = text.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(JobCursor {
        created_at: DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?,
        id: Uuid::parse_str(id).map_err(|_| bad())?,
    })
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<JobDto> {
    state
        .queue
        .job_view(DEFAULT_ACCOUNT_ID, id)
        .await?
        .map(JobDto::from)
        .ok_or_else(|| Problem::not_found(format!("no job {id}")))
}

/// Create a job from a recipe or an expression. Every input is opened and the tiles planned
/// before anything is stored.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    responses(
        (status = 201, description = "queued", body = JobDto),
        (status = 400, description = "malformed json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid request", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_job(
    State(state): State<AppState>,
    Json(body): Json<CreateJob>,
) -> ApiResult<Response> {
    let request = submit::request_of(&body, &state.paths)?;
    let (priority, max_attempts) = (body.priority, body.max_attempts);
    // The workers that run the job's tasks continue this request's trace.
    let trace_context = state
        .propagation
        .as_ref()
        .and_then(|p| p.job_context(&tracing::Span::current()));
    let spec = tokio::task::spawn_blocking(move || {
        let plan = request.plan()?;
        submit::job_spec(&request, &plan, priority, max_attempts, trace_context)
    })
    .await
    .map_err(|e| Problem::internal(format!("planning failed: {e}")))?
    .map_err(|e| {
        let detail = e.to_string();
        let field = if detail.contains("area of interest") {
            "aoi"
        } else {
            "inputs"
        };
        Problem::invalid(field, detail)
    })?;
    let id = state.queue.submit(&spec).await?;
    tracing::info!(job_id = %id, "job submitted");
    let job = find(&state, id).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/jobs/{id}"))],
        Json(job),
    )
        .into_response())
}

/// List jobs, newest first, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobFilterDto, PageParams),
    responses(
        (status = 200, body = JobPage),
        (status = 422, description = "invalid filter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Query(filter): Query<JobFilterDto>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<JobPage>> {
    let filter = filter_of(&filter)?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::invalid("limit", "must be between 1 and 500"));
    }
    let cursor = page.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut rows = state
        .queue
        .list_jobs(DEFAULT_ACCOUNT_ID, &filter, cursor, limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|j| {
        encode_cursor(JobCursor {
            created_at: j.created_at,
            id: j.id,
        })
    });
    Ok(Json(JobPage {
        items: rows.into_iter().map(JobDto::from).collect(),
        next_cursor,
    }))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JobDto>> {
    Ok(Json(find(&state, id).await?))
}

/// Cancel a queued or running job; running workers stop at their next heartbeat.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "already finished", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JobDto>> {
    let job = find(&state, id).await?;
    if !state.queue.cancel(id, "cancelled by request").await? {
        return Err(Problem::conflict(format!(
            "job {id} already finished ({})",
            state_text(job.state)
        )));
    }
    Ok(Json(find(&state, id).await?))
}

fn state_text(s: JobStateDto) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Run a failed or cancelled job again; its succeeded tiles are kept.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "not failed or cancelled", body = Problem, content_type = "application/problem+json")))]
pub async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JobDto>> {
    match state.queue.retry(DEFAULT_ACCOUNT_ID, id).await? {
        Change::Done => Ok(Json(find(&state, id).await?)),
        Change::NotFound => Err(Problem::not_found(format!("no job {id}"))),
        Change::Conflict(s) => Err(Problem::conflict(format!(
            "job {id} is {}: only failed or cancelled jobs can be retried",
            state_text(s.into())
        ))),
    }
}

/// Deletes a finished job's records and its leftover tile pieces (its outputs stay): a failed
/// or cancelled job keeps the pieces of its succeeded tiles for a retry until it is deleted.
async fn delete_one(state: &AppState, id: Uuid) -> ApiResult<Change> {
    let out_dir = state
        .queue
        .job_view(DEFAULT_ACCOUNT_ID, id)
        .await?
        .and_then(|j| {
            j.params
                .get("out_dir")
                .and_then(|d| d.as_str())
                .map(PathBuf::from)
        });
    let change = state.queue.delete_job(DEFAULT_ACCOUNT_ID, id).await?;
    if let (Change::Done, Some(out_dir)) = (&change, out_dir) {
        let removed = tokio::task::spawn_blocking(move || remove_pieces(&out_dir, id)).await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(job_id = %id, error = %e, "tile pieces of a deleted job not removed");
        }
    }
    Ok(change)
}

/// Removes `<out_dir>/.pieces/<job>`, and `.pieces` itself once no other job's are in it.
fn remove_pieces(out_dir: &std::path::Path, job: Uuid) -> std::io::Result<()> {
    let dir = engine::tiles::pieces_dir(out_dir, &job.to_string());
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        // Fails, harmlessly, while other jobs' pieces are there.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Delete a finished job's records and leftover tile pieces (its output files stay).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "still queued or running", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_job(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    match delete_one(&state, id).await? {
        Change::Done => Ok(StatusCode::NO_CONTENT),
        Change::NotFound => Err(Problem::not_found(format!("no job {id}"))),
        Change::Conflict(s) => Err(Problem::conflict(format!(
            "job {id} is {}: cancel it before deleting it",
            state_text(s.into())
        ))),
    }
}

/// Cancel, retry or delete many jobs: by ids, or every job matching a filter (up to 10 000).
#[utoipa::path(post, path = "/v1/jobs/bulk", tag = "jobs", request_body = BulkRequest,
    responses((status = 200, body = BulkResult), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn bulk_jobs(
    State(state): State<AppState>,
    Json(body): Json<BulkRequest>,
) -> ApiResult<Json<BulkResult>> {
    let ids: Vec<Uuid> = match (&body.ids, &body.filter) {
        (Some(ids), None) => {
            if ids.len() > BULK_LIMIT as usize {
                return Err(Problem::invalid(
                    "ids",
                    format!("at most {BULK_LIMIT} per request"),
                ));
            }
            ids.clone()
        }
        (None, Some(f)) => {
            let filter = filter_of(f)?;
            state
                .queue
                .list_jobs(DEFAULT_ACCOUNT_ID, &filter, None, BULK_LIMIT)
                .await?
                .into_iter()
                .map(|j| j.id)
                .collect()
        }
        _ => return Err(Problem::invalid("ids", "give ids or filter, exactly one")),
    };
    let (mut affected, mut skipped) = (0, 0);
    for id in ids {
        let changed = match body.action {
            BulkAction::Cancel => state.queue.cancel(id, "cancelled by request").await?,
            BulkAction::Retry => state.queue.retry(DEFAULT_ACCOUNT_ID, id).await? == Change::Done,
            BulkAction::Delete => delete_one(&state, id).await? == Change::Done,
        };
        if changed {
            affected += 1;
        } else {
            skipped += 1;
        }
    }
    Ok(Json(BulkResult { affected, skipped }))
}

/// A job's tasks (tile tasks and the finalize task), in id order.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn job_tasks(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<TaskList>> {
    find(&state, id).await?;
    let tasks = state.queue.tasks(id).await?;
    Ok(Json(TaskList {
        items: tasks.into_iter().map(TaskDto::from).collect(),
    }))
}

/// A job's log, oldest first; page with `after`. Live lines arrive as `log` events on the
/// WebSocket.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = Uuid, Path), LogParams),
    responses((status = 200, body = LogPage), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "invalid paging", body = Problem, content_type = "application/problem+json")))]
pub async fn job_logs(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(p): Query<LogParams>,
) -> ApiResult<Json<LogPage>> {
    let limit = p.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "must be between 1 and 1000"));
    }
    find(&state, id).await?;
    let lines = state.queue.logs(id, p.after.unwrap_or(0), limit).await?;
    Ok(Json(LogPage {
        items: lines.into_iter().map(LogDto::from).collect(),
    }))
}

/// The tiles as a GeoJSON FeatureCollection (the `FeatureCollection` schema): feature `id`
/// is the tile index, properties `{job_id, tile_index, state}`. Written directly, with each
/// geometry passed through as the text PostGIS wrote, never parsed and printed again.
pub(crate) fn features_json(tiles: &[scheduler::TileFootprint]) -> Bytes {
    use std::fmt::Write as _;
    let size_bytes = tiles
        .iter()
        .map(|t| 140 + t.geometry.as_ref().map_or(4, String::len))
        .sum::<usize>();
    let mut out = String::with_capacity(48 + size_bytes);
    out.push_str(r#"{"type":"FeatureCollection","features":["#);
    for (i, t) in tiles.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            r#"{{"type":"Feature","id":{index},"geometry":{geometry},"properties":{{"job_id":"{job}","tile_index":{index},"state":"{state}"}}}}"#,
            index = t.tile_index,
            geometry = t.geometry.as_deref().unwrap_or("null"),
            job = t.job_id,
            state = TaskStateDto::from(t.state).name(),
        );
    }
    out.push_str("]}");
    Bytes::from(out)
}

/// A GeoJSON response.
pub(crate) fn geojson(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/geo+json")], body).into_response()
}

/// What identifies a finished job's footprints: they cannot change until it finishes again
/// (a retry clears `finished_at`, and finishing sets a new one).
type FootprintsKey = (Uuid, i64);

fn footprints_etag((job, finished_at_us): FootprintsKey) -> String {
    format!("\"{}-footprints-{finished_at_us:x}\"", job.simple())
}

/// A job's tile footprints as GeoJSON, each with its task's state. A finished job's answer
/// carries a strong `ETag` (`If-None-Match` answers 304) and is kept in memory.
#[utoipa::path(get, path = "/v1/jobs/{id}/footprints", tag = "jobs",
    params(("id" = Uuid, Path),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client holds")),
    responses((status = 200, body = FeatureCollection, content_type = "application/geo+json",
               headers(("ETag" = String, description = "only once the job has finished"), ("Cache-Control" = String))),
              (status = 304, description = "the client's copy (If-None-Match) is current"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn job_footprints(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job = find(&state, id).await?;
    let finished = !matches!(job.state, JobStateDto::Queued | JobStateDto::Running);
    let Some(key) = job
        .finished_at
        .filter(|_| finished)
        .map(|t| (id, t.timestamp_micros()))
    else {
        let tiles = state.queue.job_footprints(id).await?;
        let mut r = geojson(features_json(&tiles));
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(r);
    };
    let etag = footprints_etag(key);
    let mut r = if matches_etag(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match state.footprints.get(&key) {
            Some(hit) => hit,
            None => {
                let body = features_json(&state.queue.job_footprints(id).await?);
                state.footprints.insert(key, body.clone(), body.len());
                body
            }
        };
        geojson(body)
    };
    let h = r.headers_mut();
    // A retry can change them, so clients revalidate (cheaply, with the ETag).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

/// A succeeded job's STAC Item.
#[utoipa::path(get, path = "/v1/jobs/{id}/stac", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, description = "a STAC 1.0 Item", body = Object, content_type = "application/geo+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "not succeeded yet", body = Problem, content_type = "application/problem+json")))]
pub async fn job_stac(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<Response> {
    let job = find(&state, id).await?;
    let Some(outputs) = job.outputs else {
        return Err(Problem::conflict(format!(
            "job {id} has no outputs yet ({})",
            state_text(job.state)
        )));
    };
    let text = tokio::fs::read(&outputs.stac)
        .await
        .map_err(|e| Problem::internal(format!("cannot read the job's STAC item: {e}")))?;
    let item: Value = serde_json::from_slice(&text)
        .map_err(|e| Problem::internal(format!("the job's STAC item is not json: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(item)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_and_garbage_is_named() {
        let c = JobCursor {
            created_at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(c)).unwrap(), c);
        assert_eq!(decode_cursor("zz").unwrap_err().errors[0].field, "cursor");
    }

    #[test]
    fn features_are_geojson_with_the_geometry_passed_through() {
        let job = Uuid::new_v4();
        let square = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#;
        let tiles = [
            scheduler::TileFootprint {
                job_id: job,
                tile_index: 4,
                geometry: Some(square.into()),
                state: scheduler::TaskState::Succeeded,
            },
            scheduler::TileFootprint {
                job_id: job,
                tile_index: 5,
                geometry: None,
                state: scheduler::TaskState::Blocked,
            },
        ];
        let got: Value = serde_json::from_slice(&features_json(&tiles)).unwrap();
        let feature = |i: i32, geometry: Value, state: &str| {
            json!({"type": "Feature", "id": i, "geometry": geometry,
                   "properties": {"job_id": job, "tile_index": i, "state": state}})
        };
        let polygon: Value = serde_json::from_str(square).unwrap();
        assert_eq!(
            got,
            json!({"type": "FeatureCollection", "features": [
                feature(4, polygon, "succeeded"), feature(5, Value::Null, "blocked")]})
        );
        let none: Value = serde_json::from_slice(&features_json(&[])).unwrap();
        assert_eq!(none, json!({"type": "FeatureCollection", "features": []}));
    }

    #[test]
    fn bboxes_are_checked() {
        assert_eq!(parse_bbox("bbox", "1,2,3,4").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        for bad in ["1,2,3", "a,b,c,d", "3,2,1,4", "0,0,200,1"] {
            assert_eq!(parse_bbox("bbox", bad).unwrap_err().status, 422, "{bad}");
        }
    }

    #[test]
    fn filters_parse_states_and_reject_unknown_ones() {
        let f = filter_of(&JobFilterDto {
            state: Some("running,failed".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.states, vec![JobState::Running, JobState::Failed]);
        let p = filter_of(&JobFilterDto {
            state: Some("done".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(p.errors[0].field, "state");
    }
}
