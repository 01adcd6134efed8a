//! Tiles one at a time, for workers that share a job through a queue: a [`TileRunner`]
//! computes one tile into a *piece* file, and [`assemble`] turns a job's pieces into the same
//! COG and STAC Item that [`crate::run::run`] writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gdal::raster::Buffer;
use gdal::{Dataset, DriverManager};
use kernels::stats::Stats;

use crate::aoi::Aoi;
use crate::backend::Backend;
use crate::error::{EngineError, Result};
use crate::grid::Window;
use crate::io::cog::CogWriter;
use crate::io::footprint::Footprinter;
use crate::io::read::SceneReader;
use crate::io::reason;
use crate::io::scene::Scene;
use crate::pipeline::{GridFacts, Prepared};
use crate::run::{self, Outputs, RunOptions, RunSummary};
use crate::tiling::TilePlan;

/// An opened scene and a prepared recipe, ready to compute any tile of it on any thread
/// (each thread opens its own [`SceneReader`]).
#[derive(Debug)]
pub struct TileRunner {
    prepared: Prepared,
    scene: Scene,
    backend: Arc<Backend>,
    facts: GridFacts,
}

impl TileRunner {
    /// A runner for `prepared` over `scene` on `backend`.
    pub fn new(prepared: Prepared, scene: Scene, backend: Arc<Backend>) -> Self {
        let facts = run::grid_facts(&scene);
        Self {
            prepared,
            scene,
            backend,
            facts,
        }
    }

    /// The scene.
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// The prepared recipe.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// Open the scene's bands for this thread.
    pub fn reader(&self) -> Result<SceneReader<'_>> {
        SceneReader::open(&self.scene)
    }

    /// Compute the tile over `window`: one plane per recipe output (`NaN` = nodata).
    pub fn compute(&self, reader: &SceneReader<'_>, window: Window) -> Result<Vec<Vec<f32>>> {
        let tile = run::compute_tile(
            &self.prepared,
            &self.backend,
            reader,
            window,
            self.prepared.recipe.halo_px(),
            &self.facts,
            &[],
        )?;
        Ok(tile.bands)
    }

    /// Tiles packed into one backend call on this runner's backend, for tiles of `tile_px`.
    pub fn batch_tiles(&self, tile_px: usize) -> usize {
        run::batch_tiles(&self.backend, tile_px)
    }

    /// Compute the tiles over each window, packed into one backend call where the backend gains
    /// from it, and write each as the piece at its path; each tile's own outcome, in order.
    pub fn compute_pieces(
        &self,
        reader: &SceneReader<'_>,
        pieces: &[(Window, PathBuf)],
    ) -> Vec<Result<()>> {
        let windows: Vec<Window> = pieces.iter().map(|(w, _)| *w).collect();
        run::compute_tiles(
            &self.prepared,
            &self.backend,
            reader,
            &windows,
            self.prepared.recipe.halo_px(),
            &self.facts,
            &[],
        )
        .into_iter()
        .zip(pieces)
        .map(|(tile, (window, path))| tile.and_then(|t| write_piece(path, *window, &t.bands)))
        .collect()
    }

    /// Compute the tile over `window` and write it as the piece at `path`.
    pub fn compute_piece(
        &self,
        reader: &SceneReader<'_>,
        window: Window,
        path: &Path,
    ) -> Result<()> {
        let bands = self.compute(reader, window)?;
        write_piece(path, window, &bands)
    }
}

/// The folder of a job's pieces: `<out_dir>/.pieces/<job>`.
pub fn pieces_dir(out_dir: &Path, job: &str) -> PathBuf {
    out_dir.join(".pieces").join(job)
}

/// The piece of tile `index` in `dir`.
pub fn piece_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index}.tif"))
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Write a tile's planes as an uncompressed Float32 GeoTIFF (`NaN` kept), to a hidden file
/// beside `path` first, then renamed into place.
pub fn write_piece(path: &Path, window: Window, bands: &[Vec<f32>]) -> Result<()> {
    crate::io::init();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e.to_string().to_lowercase()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("piece");
    let tmp = dir.join(format!(".{name}.partial"));
    let written = (|| -> Result<()> {
        let driver =
            DriverManager::get_driver_by_name("GTiff").map_err(|e| write_err(&tmp, reason(e)))?;
        let mut ds = driver
            .create_with_band_type::<f32, _>(&tmp, window.width_px, window.height_px, bands.len())
            .map_err(|e| write_err(&tmp, reason(e)))?;
        for (i, data) in bands.iter().enumerate() {
            let mut rb = ds
                .rasterband(i + 1)
                .map_err(|e| write_err(&tmp, reason(e)))?;
            let mut buf = Buffer::new((window.width_px, window.height_px), data.clone());
            rb.write((0, 0), (window.width_px, window.height_px), &mut buf)
                .map_err(|e| write_err(&tmp, reason(e)))?;
        }
        ds.flush_cache().map_err(|e| write_err(&tmp, reason(e)))?;
        Ok(())
    })();
    let renamed = written.and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| write_err(path, e.to_string().to_lowercase()))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Read a piece written by [`write_piece`], checking it has `band_count` bands of the
/// window's size.
pub fn read_piece(path: &Path, window: Window, band_count: usize) -> Result<Vec<Vec<f32>>> {
    let open_err = |reason: String| EngineError::Open {
        path: path.display().to_string(),
        reason,
    };
    let ds = Dataset::open(path).map_err(|e| open_err(reason(e)))?;
    if ds.raster_size() != (window.width_px, window.height_px) || ds.raster_count() != band_count {
        return Err(open_err(format!(
            "piece is {:?} px with {} bands, expected {}×{} px with {band_count}",
            ds.raster_size(),
            ds.raster_count(),
            window.width_px,
            window.height_px
        )));
    }
    (1..=band_count)
        .map(|b| {
            let rb = ds.rasterband(b).map_err(|e| open_err(reason(e)))?;
            let buf = rb
                .read_as::<f32>(
                    (0, 0),
                    (window.width_px, window.height_px),
                    (window.width_px, window.height_px),
                    None,
                )
                .map_err(|e| open_err(reason(e)))?;
            Ok(buf.into_shape_and_vec().1)
        })
        .collect()
}

/// Assemble the pieces in `dir` (one per tile of the plan `opts.tile_px` gives) into the COG
/// and STAC Item [`crate::run::run`] writes for the same scene, recipe and options.
pub fn assemble(runner: &TileRunner, opts: &RunOptions, dir: &Path) -> Result<RunSummary> {
    assemble_within(runner, opts, dir, None)
}

/// [`assemble`] for a job limited to an area of interest: tiles that do not meet it have no
/// piece and are written as nodata.
pub fn assemble_within(
    runner: &TileRunner,
    opts: &RunOptions,
    dir: &Path,
    aoi: Option<&Aoi>,
) -> Result<RunSummary> {
    let started = Instant::now();
    run::check_out_dir(&opts.out_dir)?;
    let (prepared, scene) = (&runner.prepared, &runner.scene);
    let grid = &scene.grid;
    let footprinter = Footprinter::new(grid)?;
    let (_, cog_path, _) = run::output_paths(scene, prepared, &opts.out_dir);
    let outputs = prepared.recipe.outputs.len();
    let mut writer = CogWriter::create(&cog_path, grid, outputs, opts.nodata, opts.compression)?;
    let plan = TilePlan::new(grid.width_px, grid.height_px, opts.tile_px);
    let mut totals = vec![Stats::EMPTY; outputs];
    let mut hists = run::empty_histograms(prepared);
    for tile in plan.tiles() {
        if let Some(aoi) = aoi {
            let points = crate::job::FOOTPRINT_POINTS_PER_EDGE;
            if !aoi.meets(&footprinter.outline(tile.window, points)?) {
                let empty = vec![vec![f32::NAN; tile.window.len_px()]; outputs];
                writer.write_tile(tile.window, empty)?;
                continue;
            }
        }
        let bands = read_piece(&piece_path(dir, tile.index), tile.window, outputs)?;
        for (i, b) in bands.iter().enumerate() {
            totals[i] = totals[i].merge(kernels::stats::stats(b));
            if let Some(h) = hists[i].as_mut() {
                h.add(b);
            }
        }
        writer.write_tile(tile.window, bands)?;
    }
    run::publish(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_round_trips_bit_for_bit_and_checks_its_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = piece_path(&pieces_dir(dir.path(), "job"), 7);
        let window = Window::new(32, 16, 3, 2);
        let bands = vec![
            vec![1.5, f32::NAN, -0.0, 3.25, f32::MIN_POSITIVE, 7.0],
            vec![0.0; 6],
        ];
        write_piece(&path, window, &bands).expect("written");
        assert!(path.is_file());
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("listed")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no partial file left: {names:?}");
        let back = read_piece(&path, window, 2).expect("read");
        let bits = |b: &[Vec<f32>]| -> Vec<Vec<u32>> {
            b.iter()
                .map(|p| p.iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        assert_eq!(bits(&back), bits(&bands));
        assert!(read_piece(&path, Window::new(0, 0, 2, 3), 2).is_err());
        assert!(read_piece(&path, window, 3).is_err());
    }
}
