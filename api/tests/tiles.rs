//! The output-tile endpoints over HTTP (router driven with `oneshot`, a database per test):
//! PNG tiles of a succeeded job, 204 outside its data, ETag/304, caching headers, the cache,
//! problems for unknown and unfinished jobs and bad parameters, and TileJSON.
//! The pixel values themselves are checked against gdalwarp in `engine/tests/render.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api::tiles::{render_tile, TileParams, TileQuery, IMMUTABLE};
use api::{router, AppState, Config};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use engine::grid::{Grid, Window};
use engine::io::cog::{BandMeta, CogWriter, Compression};
use engine::io::footprint::Footprinter;
use engine::render::{TileId, TileSource};
use http_body_util::BodyExt as _;
use scheduler::testdb::TestDb;
use scheduler::{JobSpec, Queue, TileSpec, DEFAULT_ACCOUNT_ID};
use serde_json::{json, Value};
use uuid::Uuid;

const SIDE_PX: usize = 1024;
const PIXEL_M: f64 = 6.6;
/// Top-left corner in UTM 33N (~45.05° N, 15.5° E).
const ORIGIN_M: (f64, f64) = (540_000.0, 4_990_000.0);
const LEASE: Duration = Duration::from_secs(60);

/// The COG's grid, in UTM 33N (the CRS borrowed from a tiny fixture DEM written to `dir`).
fn grid(dir: &Path) -> Grid {
    let dem = fixtures::generate(&fixtures::SceneSpec::dem(8, 8, 1), &dir.join("dem"))
        .expect("fixture dem");
    let dem_path = dem.path("dem").expect("a dem band");
    let crs = TileSource::open(dem_path, 1)
        .expect("open dem")
        .grid()
        .clone();
    assert_eq!(crs.epsg, Some(32633));
    Grid {
        width_px: SIDE_PX,
        height_px: SIDE_PX,
        geotransform: [ORIGIN_M.0, PIXEL_M, 0.0, ORIGIN_M.1, 0.0, -PIXEL_M],
        crs_wkt: crs.crs_wkt,
        epsg: Some(32633),
    }
}

/// A one-band COG: a smooth field with a nodata square in the middle.
fn write_cog(dir: &Path, grid: &Grid) -> PathBuf {
    let path = dir.join("out.tif");
    let mut w =
        CogWriter::create(&path, grid, 1, -9999.0, Compression::Deflate).expect("create cog");
    for ty in 0..2 {
        for tx in 0..2 {
            let mut data = Vec::with_capacity(512 * 512);
            for r in 0..512 {
                for c in 0..512 {
                    let (x, y) = ((tx * 512 + c) as f32, (ty * 512 + r) as f32);
                    let hole = (400.0..600.0).contains(&x) && (400.0..600.0).contains(&y);
                    data.push(if hole { f32::NAN } else { x / 10.0 + y / 20.0 });
                }
            }
            w.write_tile(Window::new(tx * 512, ty * 512, 512, 512), vec![data])
                .expect("write tile");
        }
    }
    w.finish(&[BandMeta {
        description: "value".into(),
        statistics: Some((0.0, 153.45, 76.0, 30.0)),
    }])
    .expect("finish cog")
}

/// The footprint of the whole COG in degrees.
fn footprint_deg(grid: &Grid) -> Vec<(f64, f64)> {
    let f = Footprinter::new(grid).expect("footprinter");
    f.outline(Window::new(0, 0, SIDE_PX, SIDE_PX), 8)
        .expect("outline")
}

fn spec(footprint: Vec<(f64, f64)>) -> JobSpec {
    JobSpec {
        account: DEFAULT_ACCOUNT_ID,
        recipe: "ndvi".into(),
        params: json!({}),
        inputs: json!(["a.tif"]),
        priority: 0,
        tiles: vec![TileSpec {
            index: 0,
            window: scheduler::Window {
                x_px: 0,
                y_px: 0,
                width_px: SIDE_PX as i32,
                height_px: SIDE_PX as i32,
            },
            footprint_deg: footprint,
        }],
        max_attempts: 1,
        trace_context: None,
    }
}

/// Submits a one-tile job and completes it by hand, its finalize naming `cog`.
async fn succeeded_job(q: &Queue, cog: &Path, grid: &Grid) -> Uuid {
    let id = q.submit(&spec(footprint_deg(grid))).await.expect("submit");
    let worker = Uuid::new_v4();
    let tile = q.claim(worker, 1, LEASE).await.expect("claim tile");
    q.complete(worker, &[(tile[0].run, json!({}))])
        .await
        .expect("complete tile");
    let fin = q.claim(worker, 1, LEASE).await.expect("claim finalize");
    let output =
        json!({"cog": cog.to_string_lossy(), "stac": cog.with_extension("json").to_string_lossy()});
    q.complete(worker, &[(fin[0].run, output)])
        .await
        .expect("complete finalize");
    id
}

struct Server {
    _db: TestDb,
    _dir: tempfile::TempDir,
    app: Router,
    state: AppState,
    cog: PathBuf,
    grid: Grid,
    job: Uuid,
    queue: Queue,
}

impl Server {
    /// The tile at `zoom` containing COG pixel `(c, r)`.
    fn tile_at(&self, zoom: u8, c: f64, r: f64) -> TileId {
        TileSource::open(&self.cog, 1)
            .expect("open cog")
            .tile_at(zoom, c, r)
            .expect("tile")
    }
}

async fn server() -> Server {
    let db = TestDb::new().await;
    let queue = db.queue(4).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let grid = grid(dir.path());
    let cog = write_cog(dir.path(), &grid);
    let job = succeeded_job(&queue, &cog, &grid).await;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let state = AppState::new(queue.clone(), &config).await.expect("state");
    let app = router(state.clone(), &config);
    Server {
        _db: db,
        _dir: dir,
        app,
        state,
        cog,
        grid,
        job,
        queue,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

async fn get(app: &Router, uri: &str, if_none_match: Option<&str>) -> Reply {
    use tower::ServiceExt as _;
    let mut req = Request::get(uri);
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes().to_vec(),
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[tokio::test]
async fn tiles_render_cache_and_revalidate() {
    let s = server().await;
    let t = s.tile_at(14, 100.0, 100.0);
    let uri = format!(
        "/v1/jobs/{}/tiles/{}/{}/{}.png?rescale=0,150&colormap=rdylgn",
        s.job, t.z, t.x, t.y
    );

    let started = Instant::now();
    let first = get(&s.app, &uri, None).await;
    let cold = started.elapsed();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header(header::CONTENT_TYPE), "image/png");
    assert_eq!(first.header(header::CACHE_CONTROL), IMMUTABLE);
    assert_eq!(png_size(&first.body), (256, 256));
    // The handler serves exactly what the renderer makes of the COG.
    let params = TileParams::parse(&TileQuery {
        rescale: Some("0,150".into()),
        colormap: Some("rdylgn".into()),
        band: None,
    })
    .expect("valid");
    let direct = render_tile(&s.cog, t, 256, &params).expect("renders");
    assert_eq!(Some(first.body.clone()), direct);
    let etag = first.header(header::ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.contains(&s.job.simple().to_string()));
    assert_eq!(s.state.tiles.len(), 1);

    // Again: from the cache, byte for byte, same validator.
    let started = Instant::now();
    let second = get(&s.app, &uri, None).await;
    let cached = started.elapsed();
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header(header::ETAG), etag);
    assert_eq!(s.state.tiles.len(), 1);
    eprintln!("256 px tile over HTTP: cold {cold:?}, cached {cached:?}");

    // Revalidation.
    let not_modified = get(&s.app, &uri, Some(&etag)).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header(header::ETAG), etag);
    let stale = get(&s.app, &uri, Some("\"something-else\"")).await;
    assert_eq!(stale.status, StatusCode::OK);

    // Another colormap is another tile with another validator.
    let greys = get(&s.app, &uri.replace("rdylgn", "greys"), None).await;
    assert_eq!(greys.status, StatusCode::OK);
    assert_ne!(greys.body, first.body);
    assert_ne!(greys.header(header::ETAG), etag);

    // @2x is 512 px; no rescale uses the COG's statistics (0..153.45) and differs from 0..150.
    let retina = get(
        &s.app,
        &format!("/v1/jobs/{}/tiles/{}/{}/{}@2x.png", s.job, t.z, t.x, t.y),
        None,
    )
    .await;
    assert_eq!(retina.status, StatusCode::OK);
    assert_eq!(png_size(&retina.body), (512, 512));
}

#[tokio::test]
async fn tiles_without_data_are_204_and_problems_name_their_cause() {
    let s = server().await;
    let t = s.tile_at(14, 512.0, 512.0);
    let base = format!("/v1/jobs/{}/tiles", s.job);

    // Far from the data, and inside the nodata square at a deep zoom: 204, still cacheable.
    for uri in [format!("{base}/{}/{}/{}.png", t.z, t.x + 40, t.y), {
        let deep = s.tile_at(18, 500.0, 500.0);
        format!("{base}/{}/{}/{}.png", deep.z, deep.x, deep.y)
    }] {
        let r = get(&s.app, &uri, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{uri}");
        assert!(r.body.is_empty());
        assert_eq!(r.header(header::CACHE_CONTROL), IMMUTABLE);
        let tag = r.header(header::ETAG).to_owned();
        assert_eq!(
            get(&s.app, &uri, Some(&tag)).await.status,
            StatusCode::NOT_MODIFIED
        );
    }

    // 422 naming the field.
    for (uri, field) in [
        (format!("{base}/31/0/0.png"), "z"),
        (format!("{base}/zz/0/0.png"), "z"),
        (format!("{base}/2/4/0.png"), "x"),
        (format!("{base}/2/0/4.png"), "y"),
        (format!("{base}/2/0/0.webp"), "y"),
        (
            format!("{base}/{}/{}/{}.png?colormap=jet", t.z, t.x, t.y),
            "colormap",
        ),
        (
            format!("{base}/{}/{}/{}.png?rescale=5,1", t.z, t.x, t.y),
            "rescale",
        ),
        (format!("{base}/{}/{}/{}.png?band=2", t.z, t.x, t.y), "band"),
    ] {
        let r = get(&s.app, &uri, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(r.header(header::CONTENT_TYPE), "application/problem+json");
        assert_eq!(r.json()["errors"][0]["field"], field, "{uri}");
    }

    // 404: no such job.
    let r = get(
        &s.app,
        &format!(
            "/v1/jobs/{}/tiles/{}/{}/{}.png",
            Uuid::new_v4(),
            t.z,
            t.x,
            t.y
        ),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/problem+json");

    // 409: a job that has not succeeded, for tiles and TileJSON alike.
    let queued = s
        .queue
        .submit(&spec(footprint_deg(&s.grid)))
        .await
        .expect("submit");
    for uri in [
        format!("/v1/jobs/{queued}/tiles/{}/{}/{}.png", t.z, t.x, t.y),
        format!("/v1/jobs/{queued}/tilejson"),
    ] {
        let r = get(&s.app, &uri, None).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{uri}");
        assert_eq!(r.header(header::CONTENT_TYPE), "application/problem+json");
        assert!(r.json()["detail"].as_str().unwrap_or("").contains("queued"));
    }
}

#[tokio::test]
async fn tilejson_describes_the_job_and_carries_the_query() {
    let s = server().await;
    let r = get(
        &s.app,
        &format!("/v1/jobs/{}/tilejson?rescale=0,150&colormap=greys", s.job),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc["tilejson"], "3.0.0");
    assert_eq!(
        doc["tiles"][0],
        format!(
            "/v1/jobs/{}/tiles/{{z}}/{{x}}/{{y}}.png?rescale=0,150&colormap=greys",
            s.job
        )
    );
    assert!(doc["name"]
        .as_str()
        .unwrap_or("")
        .contains(&s.job.to_string()));
    // Bounds: the job's footprint extent as submitted.
    let ring = footprint_deg(&s.grid);
    let want = Footprinter::bbox(&ring);
    let bounds: Vec<f64> = doc["bounds"]
        .as_array()
        .expect("bounds")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    for (got, want) in bounds.iter().zip(want) {
        assert!((got - want).abs() < 1e-9, "{bounds:?} vs {want:?}");
    }
    // Zooms: the engine's (checked against GDAL's suggested warp in engine/tests/render.rs).
    let (minzoom, maxzoom) = TileSource::open(&s.cog, 1)
        .expect("open")
        .zoom_range()
        .expect("zooms");
    assert_eq!(
        (doc["minzoom"].as_u64(), doc["maxzoom"].as_u64()),
        (Some(u64::from(minzoom)), Some(u64::from(maxzoom)))
    );
    assert_eq!(maxzoom, 15, "6.6 m pixels at 45° N are ~1.02 z14 pixels");

    // The template works: the tile under the data's centre at maxzoom is a PNG.
    let t = s.tile_at(maxzoom, 100.0, 100.0);
    let url = doc["tiles"][0]
        .as_str()
        .expect("template")
        .replace("{z}", &t.z.to_string())
        .replace("{x}", &t.x.to_string())
        .replace("{y}", &t.y.to_string());
    let tile = get(&s.app, &url, None).await;
    assert_eq!(tile.status, StatusCode::OK);
    assert_eq!(png_size(&tile.body), (256, 256));

    // Without a query the template has none; a bad one is refused.
    let plain = get(&s.app, &format!("/v1/jobs/{}/tilejson", s.job), None).await;
    assert!(plain.json()["tiles"][0]
        .as_str()
        .unwrap_or("")
        .ends_with("{y}.png"));
    let bad = get(&s.app, &format!("/v1/jobs/{}/tilejson?band=0", s.job), None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["errors"][0]["field"], "band");
}
