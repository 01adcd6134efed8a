//! The API's JSON shapes (each one a schema in the OpenAPI document) and their conversions
//! from the queue's views.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use scheduler::{JobState, JobView, LogLine, TaskInfo, TaskKind, TaskState, WorkerView};

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStateDto {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<JobState> for JobStateDto {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => Self::Queued,
            JobState::Running => Self::Running,
            JobState::Succeeded => Self::Succeeded,
            JobState::Failed => Self::Failed,
            JobState::Cancelled => Self::Cancelled,
        }
    }
}

impl From<JobStateDto> for JobState {
    fn from(s: JobStateDto) -> Self {
        match s {
            JobStateDto::Queued => Self::Queued,
            JobStateDto::Running => Self::Running,
            JobStateDto::Succeeded => Self::Succeeded,
            JobStateDto::Failed => Self::Failed,
            JobStateDto::Cancelled => Self::Cancelled,
        }
    }
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStateDto {
    Blocked,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStateDto {
    /// The state as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl From<TaskState> for TaskStateDto {
    fn from(s: TaskState) -> Self {
        match s {
            TaskState::Blocked => Self::Blocked,
            TaskState::Queued => Self::Queued,
            TaskState::Running => Self::Running,
            TaskState::Succeeded => Self::Succeeded,
            TaskState::Failed => Self::Failed,
            TaskState::Cancelled => Self::Cancelled,
        }
    }
}

/// One input band: a file, optionally the band in it, optionally the role it plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputDto {
    /// The role in the recipe (`red`, `nir`, …); inferred from Landsat/Sentinel-2 file names
    /// when absent.
    #[serde(default)]
    pub role: Option<String>,
    /// A path the server and its workers can read (or a GDAL `/vsi…` path).
    pub path: String,
    /// 1-based band number in the file.
    #[serde(default)]
    pub band: Option<usize>,
}

fn default_tile_px() -> usize {
    512
}
fn default_max_attempts() -> i32 {
    3
}
fn default_compression() -> String {
    "deflate".into()
}
fn default_nodata() -> f64 {
    -9999.0
}

/// A job to create: a named recipe or an inline expression over the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// A recipe name from `GET /v1/recipes` (exactly one of `recipe` and `expr`).
    #[serde(default)]
    pub recipe: Option<String>,
    /// A band-math expression over the inputs' roles, e.g. `(nir - red) / (nir + red)`.
    #[serde(default)]
    pub expr: Option<String>,
    /// The input bands.
    pub inputs: Vec<InputDto>,
    /// Recipe parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Tile size in pixels (16–16384).
    #[serde(default = "default_tile_px")]
    #[schema(minimum = 16, maximum = 16384)]
    pub tile_px: usize,
    /// Runs allowed per task before the job fails (1–100).
    #[serde(default = "default_max_attempts")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: i32,
    /// COG compression: `deflate` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Nodata value written to the output.
    #[serde(default = "default_nodata")]
    pub nodata: f64,
    /// Only tiles meeting this area are computed; the rest of the output is nodata.
    #[serde(default)]
    pub aoi: Option<GeoJsonPolygon>,
}

/// A GeoJSON Polygon in EPSG:4326 (one ring; holes are not supported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoJsonPolygon {
    /// Always `Polygon`.
    #[serde(rename = "type")]
    pub kind: String,
    /// One linear ring of `[longitude, latitude]` positions.
    pub coordinates: Vec<Vec<Vec<f64>>>,
}

/// Where a succeeded job's outputs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OutputsDto {
    /// The Cloud Optimized GeoTIFF.
    pub cog: String,
    /// The STAC Item.
    pub stac: String,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobDto {
    pub id: Uuid,
    pub account_id: Uuid,
    /// The recipe's name (`expr` for inline expressions).
    pub recipe: String,
    /// The inline expression, if any.
    pub expr: Option<String>,
    pub state: JobStateDto,
    pub priority: i32,
    pub tiles_total: i32,
    pub tiles_succeeded: i32,
    pub tiles_failed: i32,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub inputs: Vec<InputDto>,
    pub params: BTreeMap<String, String>,
    /// The footprints' extent in EPSG:4326: west, south, east, north.
    pub bbox: Option<[f64; 4]>,
    /// Set once the job succeeded.
    pub outputs: Option<OutputsDto>,
}

impl From<JobView> for JobDto {
    fn from(j: JobView) -> Self {
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let inputs = j
            .inputs
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| InputDto {
                        role: str_of(i, "role"),
                        path: str_of(i, "path").unwrap_or_default(),
                        band: i
                            .get("band")
                            .and_then(Value::as_u64)
                            .and_then(|b| usize::try_from(b).ok()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let params = j
            .params
            .get("params")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let outputs = j.output.as_ref().and_then(|o| {
            Some(OutputsDto {
                cog: str_of(o, "cog")?,
                stac: str_of(o, "stac")?,
            })
        });
        Self {
            id: j.id,
            account_id: j.account_id,
            recipe: j.recipe,
            expr: str_of(&j.params, "expr"),
            state: j.state.into(),
            priority: j.priority,
            tiles_total: j.tiles_total,
            tiles_succeeded: j.tiles_succeeded,
            tiles_failed: j.tiles_failed,
            error: j.error,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            inputs,
            params,
            bbox: j.bbox_deg,
            outputs,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of a job list (all optional; they combine with AND).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct JobFilterDto {
    /// Comma-separated states, e.g. `running,failed`.
    #[serde(default)]
    pub state: Option<String>,
    /// Exactly this recipe.
    #[serde(default)]
    pub recipe: Option<String>,
    /// Text in the id, recipe, parameters or input paths.
    #[serde(default)]
    pub q: Option<String>,
    /// Submitted at or after (RFC 3339).
    #[serde(default)]
    pub created_after: Option<DateTime<Utc>>,
    /// Submitted before (RFC 3339).
    #[serde(default)]
    pub created_before: Option<DateTime<Utc>>,
    /// `west,south,east,north` in degrees: jobs whose footprints' extent intersects it.
    #[serde(default)]
    pub bbox: Option<String>,
}

/// Paging of a job list.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (1–500, default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// What a bulk request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    Cancel,
    Retry,
    Delete,
}

/// One action over many jobs: the listed ids, or every job matching a filter.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub action: BulkAction,
    /// These jobs (exactly one of `ids` and `filter`).
    #[serde(default)]
    pub ids: Option<Vec<Uuid>>,
    /// Every job matching this filter.
    #[serde(default)]
    pub filter: Option<JobFilterDto>,
}

/// What a bulk request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BulkResult {
    /// Jobs the action changed.
    pub affected: usize,
    /// Jobs it skipped because their state does not allow it.
    pub skipped: usize,
}

/// Tile or finalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskKindDto {
    Tile,
    Finalize,
}

/// A task of a job.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TaskDto {
    pub id: i64,
    pub kind: TaskKindDto,
    pub tile_index: Option<i32>,
    pub state: TaskStateDto,
    pub attempt: i32,
    pub max_attempts: i32,
    pub worker_id: Option<Uuid>,
    pub error: Option<String>,
}

impl From<TaskInfo> for TaskDto {
    fn from(t: TaskInfo) -> Self {
        Self {
            id: t.id,
            kind: match t.kind {
                TaskKind::Tile => TaskKindDto::Tile,
                TaskKind::Finalize => TaskKindDto::Finalize,
            },
            tile_index: t.tile_index,
            state: t.state.into(),
            attempt: t.attempt,
            max_attempts: t.max_attempts,
            worker_id: t.worker_id,
            error: t.error,
        }
    }
}

/// A job's tasks.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TaskList {
    pub items: Vec<TaskDto>,
}

/// A log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LogDto {
    pub id: i64,
    pub ts: DateTime<Utc>,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    pub task_id: Option<i64>,
}

impl From<LogLine> for LogDto {
    fn from(l: LogLine) -> Self {
        Self {
            id: l.id,
            ts: l.ts,
            level: l.level,
            message: l.message,
            task_id: l.task_id,
        }
    }
}

/// Log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LogPage {
    pub items: Vec<LogDto>,
}

/// Paging of a job's log.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Lines after this id.
    #[serde(default)]
    pub after: Option<i64>,
    /// At most this many (1–1000, default 200).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// A recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RecipeDto {
    pub name: String,
    pub description: String,
    /// The input roles it reads.
    pub roles: Vec<String>,
    /// The output bands it writes.
    pub outputs: Vec<String>,
}

/// The recipe catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RecipeList {
    pub items: Vec<RecipeDto>,
}

/// One GPU sample.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GpuSampleDto {
    pub gpu_index: i32,
    pub ts: DateTime<Utc>,
    /// True for samples made up by `--simulate-gpus` (demos), never for real cards.
    pub simulated: bool,
    pub util_gpu_pct: Option<f32>,
    pub util_mem_pct: Option<f32>,
    pub mem_used_bytes: Option<i64>,
    pub mem_total_bytes: Option<i64>,
    pub temp_c: Option<f32>,
    pub power_w: Option<f32>,
}

/// A worker.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkerDto {
    pub id: Uuid,
    pub host: String,
    /// `cuda`, `wgpu` or `cpu`.
    pub backend: String,
    /// `up`, `draining` or `down`.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Its GPU inventory as it registered it.
    #[schema(value_type = Vec<Object>)]
    pub gpus: Value,
    /// The last ten minutes of GPU samples, oldest first.
    pub samples: Vec<GpuSampleDto>,
}

impl From<WorkerView> for WorkerDto {
    fn from(w: WorkerView) -> Self {
        Self {
            id: w.id,
            host: w.host,
            backend: w.backend,
            state: w.state,
            started_at: w.started_at,
            heartbeat_at: w.heartbeat_at,
            gpus: w.gpus,
            samples: w
                .samples
                .into_iter()
                .map(|s| GpuSampleDto {
                    gpu_index: s.gpu_index,
                    ts: s.ts,
                    simulated: s.simulated,
                    util_gpu_pct: s.util_gpu_pct,
                    util_mem_pct: s.util_mem_pct,
                    mem_used_bytes: s.mem_used_bytes,
                    mem_total_bytes: s.mem_total_bytes,
                    temp_c: s.temp_c,
                    power_w: s.power_w,
                })
                .collect(),
        }
    }
}

/// Workers seen in the last day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkerList {
    pub items: Vec<WorkerDto>,
}

/// A GeoJSON FeatureCollection of tile footprints; each feature's `id` is its tile index
/// and its properties are `{job_id, tile_index, state}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeatureCollection {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Vec<Object>)]
    pub features: Vec<Value>,
}

/// A bounding box query.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BboxParams {
    /// `west,south,east,north` in degrees.
    pub bbox: String,
    /// At most this many tiles (1–10000, default 2000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// Liveness or readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or what is not ready.
    pub status: String,
}
