//! Output tiles of a succeeded job: Web Mercator XYZ PNGs rendered from its COG (through the
//! engine's warp and colormap kernels), kept in a byte-bounded LRU cache with strong ETags,
//! and the job's TileJSON 3.0.0 document.
//!
//! A tile that holds no valid pixel (outside the raster, or over nodata only) is answered
//! with **204 No Content** rather than a transparent PNG: map clients (MapLibre, Leaflet)
//! draw nothing for it, and nothing is encoded or sent.

// utoipa's expansion of `params(TileQuery)` qualifies a path the lint calls unnecessary.
#![allow(unused_qualifications)]

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use engine::render::{Colormap, Style, TileId, TileSource, MAX_ZOOM};
use engine::EngineError;
use scheduler::{JobState, DEFAULT_ACCOUNT_ID};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::cache::ByteLru;
use crate::problem::{ApiResult, Path, Problem, Query};
use crate::AppState;

/// `Cache-Control` of tiles of a succeeded job: its outputs never change afterwards.
pub const IMMUTABLE: &str = "public, max-age=86400, immutable";

/// The colormap used when the request names none.
pub const DEFAULT_COLORMAP: &str = "viridis";

/// Bookkeeping charged per cache entry on top of its PNG bytes.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// How a tile is coloured, as the query string gives it.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TileQuery {
    /// `min,max`: the values mapped to the colormap's two ends (values beyond clamp).
    /// Default: the band's minimum and maximum from the COG's statistics.
    #[param(example = "-0.2,0.9")]
    pub rescale: Option<String>,
    /// The colormap: `viridis` (default), `rdylgn` or `greys`.
    #[param(example = "rdylgn")]
    pub colormap: Option<String>,
    /// The COG's band to show, from 1 (default 1).
    #[param(value_type = Option<u32>, minimum = 1, example = 1)]
    pub band: Option<String>,
}

/// The query, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TileParams {
    /// `(min, max)`, when given.
    pub rescale: Option<(f32, f32)>,
    /// The colormap's name (lowercase).
    pub colormap_name: String,
    pub colormap: Colormap,
    /// 1-based.
    pub band: usize,
}

impl TileParams {
    /// Checks the query; a bad value is a 422 naming its field.
    pub fn parse(q: &TileQuery) -> ApiResult<Self> {
        let rescale = match q.rescale.as_deref() {
            None => None,
            Some(text) => {
                let bad = || Problem::invalid("rescale", "expected min,max with finite min < max");
                let (a, b) = text.split_once(',').ok_or_else(bad)?;
                let lo: f32 = a.trim().parse().map_err(|_| bad())?;
                let hi: f32 = b.trim().parse().map_err(|_| bad())?;
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(bad());
                }
                Some((lo, hi))
            }
        };
        let colormap_name = q
            .colormap
            .as_deref()
            .unwrap_or(DEFAULT_COLORMAP)
            .trim()
            .to_ascii_lowercase();
        let colormap = Colormap::named(&colormap_name).map_err(|_| {
            Problem::invalid(
                "colormap",
                format!(
                    "unknown colormap {colormap_name:?}; known: {}",
                    Colormap::NAMES.join(", ")
                ),
            )
        })?;
        let band = match q.band.as_deref() {
            None => 1,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(b) if b >= 1 => b,
                _ => return Err(Problem::invalid("band", "expected a band number from 1")),
            },
        };
        Ok(Self {
            rescale,
            colormap_name,
            colormap,
            band,
        })
    }
}

/// Parses the path's `z`, `x` and last segment (`<row>.png` or `<row>@2x.png`) into a tile
/// and its size in pixels; a bad part is a 422 naming it.
pub fn parse_tile_path(z: &str, x: &str, y: &str) -> ApiResult<(TileId, usize)> {
    let z: u8 =
        z.parse().ok().filter(|&z| z <= MAX_ZOOM).ok_or_else(|| {
            Problem::invalid("z", format!("expected a zoom level 0..={MAX_ZOOM}"))
        })?;
    let (row, size_px) = if let Some(row) = y.strip_suffix("@2x.png") {
        (row, 512)
    } else if let Some(row) = y.strip_suffix(".png") {
        (row, 256)
    } else {
        return Err(Problem::invalid("y", "expected <row>.png or <row>@2x.png"));
    };
    let last = (1u64 << z) - 1;
    let index = |field: &str, text: &str| -> ApiResult<u32> {
        text.parse::<u32>()
            .ok()
            .filter(|&v| u64::from(v) <= last)
            .ok_or_else(|| {
                Problem::invalid(
                    field,
                    format!("expected a tile index 0..={last} at zoom {z}"),
                )
            })
    };
    let (x, y) = (index("x", x)?, index("y", row)?);
    let tile = TileId::new(z, x, y).map_err(|e| Problem::invalid("z", e.to_string()))?;
    Ok((tile, size_px))
}

/// What identifies one rendered tile. The job's `finished_at` is part of it, so a job that
/// finishes again (a retry) never serves an older rendering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TileKey {
    pub job: Uuid,
    pub finished_at_us: i64,
    pub z: u8,
    pub x: u32,
    pub y: u32,
    pub size_px: usize,
    pub band: usize,
    /// `f32::to_bits` of the requested rescale (`None`: the COG's statistics).
    pub rescale_bits: Option<(u32, u32)>,
    pub colormap: String,
}

impl TileKey {
    /// A strong ETag: the job id plus a 64-bit FNV-1a hash of every part of the key.
    pub fn etag(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}|{}|{}|{:?}|{}",
            self.job,
            self.finished_at_us,
            self.z,
            self.x,
            self.y,
            self.size_px,
            self.band,
            self.rescale_bits,
            self.colormap
        );
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("\"{}-{hash:016x}\"", self.job.simple())
    }

    fn cost_bytes(&self, tile: &Option<Bytes>) -> usize {
        ENTRY_OVERHEAD_BYTES + self.colormap.len() + tile.as_ref().map_or(0, Bytes::len)
    }
}

/// One cached rendering: the PNG, or `None` for a tile without data (204).
type Rendered = Option<Bytes>;

/// Rendered tiles kept in memory, least recently used first out, bounded by bytes.
#[derive(Debug)]
pub struct TileCache(ByteLru<TileKey, Rendered>);

impl TileCache {
    /// A cache holding at most `budget_bytes` of PNG (plus a small per-entry charge).
    pub fn new(budget_bytes: usize) -> Arc<Self> {
        Arc::new(Self(ByteLru::new(budget_bytes)))
    }

    /// The cached rendering of `key`, marking it recently used.
    pub fn get(&self, key: &TileKey) -> Option<Rendered> {
        self.0.get(key)
    }

    /// Stores a rendering, evicting the least recently used until it fits. A rendering
    /// larger than the whole budget is not kept.
    pub fn insert(&self, key: TileKey, tile: Rendered) {
        let cost = key.cost_bytes(&tile);
        self.0.insert(key, tile, cost);
    }

    /// Bytes charged for what is held now.
    pub fn used_bytes(&self) -> usize {
        self.0.used_bytes()
    }

    /// Number of renderings held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A succeeded job's facts the tile endpoints need.
#[derive(Debug, Clone)]
struct Output {
    recipe: String,
    cog: PathBuf,
    finished_at: Option<DateTime<Utc>>,
    bbox_deg: Option<[f64; 4]>,
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// The job's output COG: 404 without the job, 409 until it succeeded.
async fn succeeded_output(state: &AppState, id: Uuid) -> ApiResult<Output> {
    let job = state
        .queue
        .job_view(DEFAULT_ACCOUNT_ID, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no job {id}")))?;
    if job.state != JobState::Succeeded {
        return Err(Problem::conflict(format!(
            "job {id} is {}; its tiles exist once it succeeded",
            state_name(job.state)
        )));
    }
    let cog = job
        .output
        .as_ref()
        .and_then(|o| o.get("cog"))
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::internal(format!("job {id} succeeded but names no cog")))?;
    Ok(Output {
        recipe: job.recipe,
        cog: PathBuf::from(cog),
        finished_at: job.finished_at,
        bbox_deg: job.bbox_deg,
    })
}

fn render_problem(e: EngineError) -> Problem {
    match e {
        EngineError::NoSuchBand { count, .. } => {
            Problem::invalid("band", format!("the job's output has {count} band(s)"))
        }
        other => Problem::internal(format!("cannot render the tile: {other}")),
    }
}

/// Renders one tile of the COG at `cog` as PNG (`None`: no valid pixel there). This is what
/// the tile handler runs on a blocking thread, usable without a server.
pub fn render_tile(
    cog: &FsPath,
    tile: TileId,
    size_px: usize,
    params: &TileParams,
) -> ApiResult<Option<Vec<u8>>> {
    let source = TileSource::open(cog, params.band).map_err(render_problem)?;
    let (vmin, vmax) = params
        .rescale
        .or_else(|| source.statistics_range())
        .unwrap_or((0.0, 1.0));
    let style = Style {
        vmin,
        vmax,
        colormap: params.colormap.clone(),
    };
    source
        .render_png(tile, size_px, &style)
        .map_err(render_problem)
}

/// Whether `If-None-Match` lists `etag` (weak comparison, as RFC 9110 asks for it) or `*`.
pub(crate) fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

fn tile_response(status: StatusCode, etag: &str, png: Option<Bytes>) -> Response {
    let mut r = match png {
        Some(bytes) if status == StatusCode::OK => {
            ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
        }
        _ => status.into_response(),
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// One output tile as PNG: Web Mercator (EPSG:3857) XYZ, `<row>.png` for 256 px or
/// `<row>@2x.png` for 512 px, the band warped bilinearly from the job's COG (the overview
/// just finer than the tile), rescaled and coloured; nodata is transparent. Tiles carry a
/// strong `ETag` (`If-None-Match` answers 304) and are cached in memory.
#[utoipa::path(get, path = "/v1/jobs/{id}/tiles/{z}/{x}/{y}", tag = "jobs",
    params(
        ("id" = Uuid, Path, description = "the job"),
        ("z" = u8, Path, description = "zoom level, 0..=30"),
        ("x" = u32, Path, description = "column, 0..2^z"),
        ("y" = String, Path, description = "row, then `.png` (256 px) or `@2x.png` (512 px), e.g. `5921.png`"),
        TileQuery,
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client holds"),
    ),
    responses(
        (status = 200, description = "the tile", content_type = "image/png", body = Vec<u8>,
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 204, description = "no data in this tile (outside the raster, or nodata only)",
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the job has not succeeded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "bad z, x, y, rescale, colormap or band (named in `errors`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn tile(
    State(state): State<AppState>,
    Path((id, z, x, y)): Path<(Uuid, String, String, String)>,
    Query(query): Query<TileQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (tile, size_px) = parse_tile_path(&z, &x, &y)?;
    let params = TileParams::parse(&query)?;
    let output = succeeded_output(&state, id).await?;
    let key = TileKey {
        job: id,
        finished_at_us: output.finished_at.map_or(0, |t| t.timestamp_micros()),
        z: tile.z,
        x: tile.x,
        y: tile.y,
        size_px,
        band: params.band,
        rescale_bits: params.rescale.map(|(a, b)| (a.to_bits(), b.to_bits())),
        colormap: params.colormap_name.clone(),
    };
    let etag = key.etag();
    if matches_etag(&headers, &etag) {
        return Ok(tile_response(StatusCode::NOT_MODIFIED, &etag, None));
    }
    let rendered = match state.tiles.get(&key) {
        Some(hit) => hit,
        None => {
            let cog = output.cog.clone();
            let png =
                tokio::task::spawn_blocking(move || render_tile(&cog, tile, size_px, &params))
                    .await
                    .map_err(|e| Problem::internal(format!("tile rendering stopped: {e}")))??
                    .map(Bytes::from);
            state.tiles.insert(key, png.clone());
            png
        }
    };
    Ok(match rendered {
        Some(png) => tile_response(StatusCode::OK, &etag, Some(png)),
        None => tile_response(StatusCode::NO_CONTENT, &etag, None),
    })
}

/// The job's TileJSON 3.0.0 document: the tile URL template (an absolute path carrying this
/// request's query string, so `?rescale=…&colormap=…` flows into every tile), the job's
/// bounds, and the zooms worth requesting (from the COG's pixel size and overviews).
#[utoipa::path(get, path = "/v1/jobs/{id}/tilejson", tag = "jobs",
    params(("id" = Uuid, Path, description = "the job"), TileQuery),
    responses(
        (status = 200, description = "TileJSON 3.0.0", body = Object, content_type = "application/json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the job has not succeeded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "bad rescale, colormap or band", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn tilejson(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<TileQuery>,
    RawQuery(raw_query): RawQuery,
) -> ApiResult<Response> {
    let params = TileParams::parse(&query)?;
    let output = succeeded_output(&state, id).await?;
    let cog = output.cog.clone();
    let band = params.band;
    let (minzoom, maxzoom, cog_bbox) = tokio::task::spawn_blocking(move || {
        let source = TileSource::open(&cog, band).map_err(render_problem)?;
        let (minzoom, maxzoom) = source.zoom_range().map_err(render_problem)?;
        let grid = source.grid().clone();
        let window = engine::grid::Window::new(0, 0, grid.width_px, grid.height_px);
        let bbox = engine::io::footprint::Footprinter::new(&grid)
            .and_then(|f| f.outline(window, 16))
            .map(|ring| engine::io::footprint::Footprinter::bbox(&ring))
            .ok();
        Ok::<_, Problem>((minzoom, maxzoom, bbox))
    })
    .await
    .map_err(|e| Problem::internal(format!("reading the job's output stopped: {e}")))??;
    let bounds =
        output
            .bbox_deg
            .or(cog_bbox)
            .unwrap_or([-180.0, -85.051_128_78, 180.0, 85.051_128_78]);
    let query = raw_query
        .filter(|q| !q.is_empty())
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let center_zoom = minzoom.max(maxzoom.saturating_sub(3));
    let doc = json!({
        "tilejson": "3.0.0",
        "name": format!("{} job {id}", output.recipe),
        "scheme": "xyz",
        "tiles": [format!("/v1/jobs/{id}/tiles/{{z}}/{{x}}/{{y}}.png{query}")],
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2.0, (bounds[1] + bounds[3]) / 2.0, center_zoom],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
    });
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=86400")],
        axum::Json(doc),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(x: u32) -> TileKey {
        TileKey {
            job: Uuid::nil(),
            finished_at_us: 1,
            z: 3,
            x,
            y: 0,
            size_px: 256,
            band: 1,
            rescale_bits: None,
            colormap: "viridis".into(),
        }
    }

    #[test]
    fn the_cache_evicts_least_recently_used_within_its_byte_budget() {
        let png = |n: usize| Some(Bytes::from(vec![7u8; n]));
        let one = key(0).cost_bytes(&png(1000));
        let cache = TileCache::new(3 * one);
        cache.insert(key(0), png(1000));
        cache.insert(key(1), png(1000));
        cache.insert(key(2), png(1000));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.used_bytes(), 3 * one);
        // Touch 0, so 1 is the oldest when 3 needs room.
        assert!(cache.get(&key(0)).is_some());
        cache.insert(key(3), png(1000));
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(0)).is_some() && cache.get(&key(3)).is_some());
        assert!(cache.used_bytes() <= 3 * one);
        // Empty tiles are cached too, and something bigger than the budget is not kept.
        cache.insert(key(4), None);
        assert_eq!(cache.get(&key(4)), Some(None));
        cache.insert(key(5), png(10 * one));
        assert!(cache.get(&key(5)).is_none());
        // Replacing an entry charges it once.
        let before = cache.used_bytes();
        cache.insert(key(4), None);
        assert_eq!(cache.used_bytes(), before);
    }

    #[test]
    fn paths_and_queries_are_checked_field_by_field() {
        assert_eq!(parse_tile_path("3", "2", "5.png").unwrap().1, 256);
        assert_eq!(parse_tile_path("3", "2", "5@2x.png").unwrap().1, 512);
        for (z, x, y, field) in [
            ("31", "0", "0.png", "z"),
            ("a", "0", "0.png", "z"),
            ("3", "8", "0.png", "x"),
            ("3", "-1", "0.png", "x"),
            ("3", "0", "8.png", "y"),
            ("3", "0", "0.jpg", "y"),
            ("3", "0", "0@3x.png", "y"),
        ] {
            let p = parse_tile_path(z, x, y).unwrap_err();
            assert_eq!(
                (p.status, p.errors[0].field.as_str()),
                (422, field),
                "{z}/{x}/{y}"
            );
        }
        let q = |r: Option<&str>, c: Option<&str>, b: Option<&str>| TileQuery {
            rescale: r.map(str::to_owned),
            colormap: c.map(str::to_owned),
            band: b.map(str::to_owned),
        };
        let ok = TileParams::parse(&q(Some("-1, 2.5"), Some("RdYlGn"), Some("2"))).unwrap();
        assert_eq!(ok.rescale, Some((-1.0, 2.5)));
        assert_eq!((ok.colormap_name.as_str(), ok.band), ("rdylgn", 2));
        for (query, field) in [
            (q(Some("1"), None, None), "rescale"),
            (q(Some("2,1"), None, None), "rescale"),
            (q(Some("0,inf"), None, None), "rescale"),
            (q(None, Some("jet"), None), "colormap"),
            (q(None, None, Some("0")), "band"),
            (q(None, None, Some("x")), "band"),
        ] {
            let p = TileParams::parse(&query).unwrap_err();
            assert_eq!((p.status, p.errors[0].field.as_str()), (422, field));
        }
    }

    #[test]
    fn etags_are_strong_distinct_per_key_and_matched_weakly() {
        let (a, b) = (key(0).etag(), key(1).etag());
        assert_ne!(a, b);
        assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{a}")).unwrap(),
        );
        assert!(matches_etag(&h, &a));
        assert!(!matches_etag(&h, &b));
    }
}
