//! A batch run on one node: tiles read and computed by parallel workers, streamed to one
//! writer, then the COG and its STAC Item put in place atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use kernels::stats::{Histogram, Stats};

use crate::backend::Backend;
use crate::error::{EngineError, Result};
use crate::grid::Window;
use crate::io::cog::{BandMeta, CogWriter, Compression};
use crate::io::footprint::Footprinter;
use crate::io::read::SceneReader;
use crate::io::scene::Scene;
use crate::pipeline::{GridFacts, Prepared, TileInput, TilePlane};
use crate::stac::{self, StacBand};
use crate::tiling::TilePlan;

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub tile_px: usize,
    /// Worker threads reading and computing tiles.
    pub workers: usize,
    /// The nodata value written to the COG.
    pub nodata: f64,
    pub compression: Compression,
    /// Where element-wise kernels run (stencils stay on the CPU for now).
    pub backend: Arc<Backend>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("out"),
            tile_px: 512,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            nodata: -9999.0,
            compression: Compression::Deflate,
            backend: Arc::new(Backend::Cpu),
        }
    }
}

/// Per-band statistics of an output.
#[derive(Debug, Clone, PartialEq)]
pub struct BandSummary {
    pub name: String,
    pub stats: Stats,
    pub histogram: Option<Histogram>,
}

/// What a run produced and how fast.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub recipe: String,
    pub cog: PathBuf,
    pub stac: PathBuf,
    pub tiles: usize,
    pub width_px: usize,
    pub height_px: usize,
    pub megapixels: f64,
    pub seconds: f64,
    pub bands: Vec<BandSummary>,
}

impl RunSummary {
    /// Throughput in megapixels per second.
    pub fn mpx_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.megapixels / self.seconds
        } else {
            0.0
        }
    }
}

/// Checks the output folder exists (creating it) and is writable, before any work starts.
pub fn check_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string().to_lowercase(),
    })?;
    let probe = dir.join(format!(".constellation-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| EngineError::Write {
        path: dir.to_path_buf(),
        reason: format!("folder is not writable: {}", e.to_string().to_lowercase()),
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

pub(crate) struct TileResult {
    pub window: Window,
    pub bands: Vec<Vec<f32>>,
    pub stats: Vec<Stats>,
    pub hists: Vec<Option<Histogram>>,
}

/// Runs `prepared` over `scene`, calling `progress(done, total)` after each written tile.
pub fn run(
    prepared: &Prepared,
    scene: &Scene,
    opts: &RunOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RunSummary> {
    let started = Instant::now();
    check_out_dir(&opts.out_dir)?;
    let recipe = &prepared.recipe;
    let (_, cog_path, _) = output_paths(scene, prepared, &opts.out_dir);
    let grid = &scene.grid;
    let footprinter = Footprinter::new(grid)?;
    let plan = TilePlan::new(grid.width_px, grid.height_px, opts.tile_px);
    let halo_px = recipe.halo_px();
    let facts = grid_facts(scene);
    let mut writer = CogWriter::create(
        &cog_path,
        grid,
        recipe.outputs.len(),
        opts.nodata,
        opts.compression,
    )?;
    let empty_hists = empty_histograms(prepared);

    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let workers = opts.workers.clamp(1, plan.len().max(1));
    let batch = batch_tiles(&opts.backend, opts.tile_px);
    let (tx, rx) = mpsc::sync_channel::<Result<TileResult>>(workers * 2 * batch);
    let mut totals: Vec<Stats> = vec![Stats::EMPTY; recipe.outputs.len()];
    let mut hists = empty_hists.clone();
    let outcome: Result<()> = std::thread::scope(|s| {
        // Owned by this closure: an early return drops it, so blocked workers wake and stop.
        let rx = rx;
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, abort, plan, empty_hists) = (&next, &abort, &plan, &empty_hists);
            s.spawn(move || {
                let reader = match SceneReader::open(scene) {
                    Ok(r) => r,
                    Err(e) => {
                        abort.store(true, Ordering::Relaxed);
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= plan.len() || abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let windows: Vec<Window> = (first..(first + batch).min(plan.len()))
                        .map(|i| plan.tile(i).window)
                        .collect();
                    let results = compute_tiles(
                        prepared,
                        &opts.backend,
                        &reader,
                        &windows,
                        halo_px,
                        &facts,
                        empty_hists,
                    );
                    for result in results {
                        let failed = result.is_err();
                        if tx.send(result).is_err() || failed {
                            abort.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for msg in rx.iter() {
            let tile = match msg {
                Ok(t) => t,
                Err(e) => {
                    abort.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            for (i, s) in tile.stats.iter().enumerate() {
                totals[i] = totals[i].merge(*s);
            }
            for (h, t) in hists.iter_mut().zip(&tile.hists) {
                if let (Some(h), Some(t)) = (h.as_mut(), t) {
                    h.merge(t)?;
                }
            }
            writer.write_tile(tile.window, tile.bands)?;
            done += 1;
            progress(done, plan.len());
        }
        if done != plan.len() {
            return Err(EngineError::InvalidInput(format!(
                "only {done} of {} tiles were computed",
                plan.len()
            )));
        }
        Ok(())
    });
    outcome?;
    publish(
        Outputs {
            prepared,
            scene,
            opts,
            writer,
            totals,
            hists,
            tiles: plan.len(),
            started,
        },
        &footprinter,
    )
}

/// What a finished set of tiles needs to become a COG and a STAC Item.
pub(crate) struct Outputs<'a> {
    pub prepared: &'a Prepared,
    pub scene: &'a Scene,
    pub opts: &'a RunOptions,
    pub writer: CogWriter,
    pub totals: Vec<Stats>,
    pub hists: Vec<Option<Histogram>>,
    pub tiles: usize,
    pub started: Instant,
}

/// Finishes the COG (band metadata from the merged statistics) and writes the STAC Item,
/// both atomically.
pub(crate) fn publish(out: Outputs<'_>, footprinter: &Footprinter) -> Result<RunSummary> {
    let Outputs {
        prepared,
        scene,
        opts,
        writer,
        totals,
        hists,
        tiles,
        started,
    } = out;
    let recipe = &prepared.recipe;
    let grid = &scene.grid;
    let (stem, _, stac_path) = output_paths(scene, prepared, &opts.out_dir);

    let metas: Vec<BandMeta> = recipe
        .outputs
        .iter()
        .zip(&totals)
        .map(|(o, s)| BandMeta {
            description: o.description.clone(),
            statistics: s.std().map(|std| (s.min, s.max, s.mean, std)),
        })
        .collect();
    let cog = writer.finish(&metas)?;

    let outline = footprinter.outline(Window::new(0, 0, grid.width_px, grid.height_px), 21)?;
    let total_px = grid.width_px as f64 * grid.height_px as f64;
    let bands: Vec<StacBand> = recipe
        .outputs
        .iter()
        .zip(&totals)
        .zip(&hists)
        .map(|((o, s), h)| StacBand {
            name: o.plane.clone(),
            description: o.description.clone(),
            nodata: opts.nodata,
            statistics: s
                .std()
                .map(|std| (s.min, s.max, s.mean, std, 100.0 * s.count as f64 / total_px)),
            histogram: h.as_ref().map(|h| (h.min, h.max, h.bins.clone())),
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let created = stac::rfc3339(now);
    let datetime = scene
        .bands
        .iter()
        .find_map(|b| stac::date_from_product_name(&b.path))
        .unwrap_or_else(|| created.clone());
    let sources: Vec<(String, String)> = scene
        .bands
        .iter()
        .map(|b| (b.role.clone(), b.path.clone()))
        .collect();
    let asset_href = format!("./{stem}.tif");
    let item = stac::item(&stac::ItemInput {
        id: &stem,
        grid,
        outline: &outline,
        bbox: Footprinter::bbox(&outline),
        datetime: &datetime,
        created: &created,
        recipe: &recipe.name,
        asset_href: &asset_href,
        bands: &bands,
        sources: &sources,
    });
    write_atomic(
        &stac_path,
        &serde_json::to_vec_pretty(&item).unwrap_or_default(),
    )?;

    Ok(RunSummary {
        recipe: recipe.name.clone(),
        cog,
        stac: stac_path,
        tiles,
        width_px: grid.width_px,
        height_px: grid.height_px,
        megapixels: total_px / 1e6,
        seconds: started.elapsed().as_secs_f64(),
        bands: recipe
            .outputs
            .iter()
            .zip(totals)
            .zip(hists)
            .map(|((o, stats), histogram)| BandSummary {
                name: o.plane.clone(),
                stats,
                histogram,
            })
            .collect(),
    })
}

/// Tiles of `tile_px` packed into one backend call: enough to fill the backend's preferred
/// call size (one for the CPU), at most 256.
pub fn batch_tiles(backend: &Backend, tile_px: usize) -> usize {
    backend
        .batch_px()
        .map_or(1, |px| (px / (tile_px * tile_px).max(1)).clamp(1, 256))
}

/// Reads and computes the tiles over `windows`, packed into one backend call where the backend
/// gains from it; each tile's result (or its own error) in order.
pub(crate) fn compute_tiles(
    prepared: &Prepared,
    backend: &Backend,
    reader: &SceneReader<'_>,
    windows: &[Window],
    halo_px: usize,
    facts: &GridFacts,
    empty_hists: &[Option<Histogram>],
) -> Vec<Result<TileResult>> {
    let read = |window: &Window| -> Result<TileInput> {
        let read_window = window.with_halo(halo_px);
        let mut planes = HashMap::new();
        for (i, band) in prepared.recipe.bands.iter().enumerate() {
            let data = reader.read(i, read_window)?;
            planes.insert(band.role.clone(), TilePlane { halo_px, data });
        }
        Ok(TileInput {
            width_px: window.width_px,
            height_px: window.height_px,
            planes,
        })
    };
    let mut results: Vec<Option<Result<TileResult>>> = Vec::with_capacity(windows.len());
    let mut inputs = Vec::new();
    let mut at = Vec::new();
    for (i, window) in windows.iter().enumerate() {
        match read(window) {
            Ok(tile) => {
                results.push(None);
                inputs.push(tile);
                at.push(i);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let computed = prepared.run_tiles_on(backend, inputs, facts);
    for (i, bands) in at.into_iter().zip(computed) {
        results[i] = Some(bands.map(|bands| tile_result(windows[i], bands, empty_hists)));
    }
    results.into_iter().flatten().collect()
}

pub(crate) fn compute_tile(
    prepared: &Prepared,
    backend: &Backend,
    reader: &SceneReader<'_>,
    window: Window,
    halo_px: usize,
    facts: &GridFacts,
    empty_hists: &[Option<Histogram>],
) -> Result<TileResult> {
    let mut results = compute_tiles(
        prepared,
        backend,
        reader,
        &[window],
        halo_px,
        facts,
        empty_hists,
    );
    results
        .pop()
        .unwrap_or_else(|| Err(EngineError::Backend("a tile went missing".into())))
}

/// A computed tile with its statistics and histograms.
fn tile_result(
    window: Window,
    bands: Vec<Vec<f32>>,
    empty_hists: &[Option<Histogram>],
) -> TileResult {
    let stats = bands.iter().map(|b| kernels::stats::stats(b)).collect();
    let hists = empty_hists
        .iter()
        .zip(&bands)
        .map(|(h, b)| {
            h.clone().map(|mut h| {
                h.add(b);
                h
            })
        })
        .collect();
    TileResult {
        window,
        bands,
        stats,
        hists,
    }
}

/// The output stem (`<scene id>_<recipe>`), the COG path and the STAC Item path.
pub fn output_paths(
    scene: &Scene,
    prepared: &Prepared,
    out_dir: &Path,
) -> (String, PathBuf, PathBuf) {
    let stem = format!("{}_{}", scene.id, prepared.recipe.name);
    let cog = out_dir.join(format!("{stem}.tif"));
    let stac = out_dir.join(format!("{stem}.json"));
    (stem, cog, stac)
}

/// One empty histogram per output that declares a range.
pub(crate) fn empty_histograms(prepared: &Prepared) -> Vec<Option<Histogram>> {
    prepared
        .recipe
        .outputs
        .iter()
        .map(|o| {
            o.histogram_range
                .and_then(|(lo, hi)| Histogram::new(lo, hi, 64).ok())
        })
        .collect()
}

/// Grid facts for stencil kernels: pixel size, and gdaldem's scale for geographic grids.
pub fn grid_facts(scene: &Scene) -> GridFacts {
    let (pixel_width, pixel_height) = scene.grid.pixel_size();
    let geographic = gdal::spatial_ref::SpatialRef::from_wkt(&scene.grid.crs_wkt)
        .map(|s| s.is_geographic())
        .unwrap_or(false);
    GridFacts {
        pixel_width,
        pixel_height,
        scale: if geographic { 111_120.0 } else { 1.0 },
    }
}

/// Writes `bytes` to a hidden file beside `path`, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let err = |e: std::io::Error| EngineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string().to_lowercase(),
    };
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}
