//! Atomic Cloud-Optimized GeoTIFF output, encoded here rather than by GDAL: tiles are cut
//! into 512 px blocks, every overview level is built from the level below as its blocks
//! complete, blocks are predicted and compressed on a pool of threads while tiles are still
//! being computed and spilled to a hidden file, and `finish` writes the COG (IFDs first,
//! smallest overview first, GDAL's block framing) into a hidden file renamed into place only
//! when complete. GDAL is used for one thing: the georeferencing tags of the grid.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gdal::spatial_ref::SpatialRef;
use gdal::DriverManager;

use crate::error::{EngineError, Result};
use crate::grid::{Grid, Window};
use crate::io::reason;
use crate::io::tiff::{self, Codec, Entry, Level, BLOCK_PX};

/// Compression for the COG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Deflate,
    Zstd,
}

impl Compression {
    /// The codec at GDAL's default level (`ZLEVEL=6`, `ZSTD_LEVEL=9`).
    fn codec(self) -> Codec {
        match self {
            Self::Deflate => Codec::Deflate { level: 6 },
            Self::Zstd => Codec::Zstd { level: 9 },
        }
    }

    /// Parses `deflate` or `zstd`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "deflate" => Ok(Self::Deflate),
            "zstd" => Ok(Self::Zstd),
            other => Err(EngineError::InvalidInput(format!(
                "compression {other:?}: expected deflate or zstd"
            ))),
        }
    }
}

/// Per-band facts written into the COG's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct BandMeta {
    pub description: String,
    /// `(min, max, mean, std)` of the valid pixels, when any.
    pub statistics: Option<(f64, f64, f64, f64)>,
}

/// A COG being written. Dropping it without [`CogWriter::finish`] stops its threads and
/// removes every partial file.
#[derive(Debug)]
pub struct CogWriter {
    spill_path: PathBuf,
    cog_partial_path: PathBuf,
    final_path: PathBuf,
    nodata: f64,
    codec: Codec,
    band_count: usize,
    /// `(width_px, height_px)` of every level, full resolution first.
    levels: Vec<(usize, usize)>,
    /// Blocks still waiting for pixels, per level, keyed by `(band, block x, block y)`.
    partial: Vec<HashMap<(usize, usize, usize), PartialBlock>>,
    geo: Vec<Entry>,
    pool: Option<Pool>,
    force_bigtiff: bool,
}

#[derive(Debug)]
struct PartialBlock {
    /// `BLOCK_PX²` values, `NaN` where nothing was written yet (and in the padding).
    data: Vec<f32>,
    filled_px: usize,
}

/// A block on its way to the encoder threads.
#[derive(Debug)]
struct Job {
    level: usize,
    /// Band-major, then row-major index of the block within its level.
    index: usize,
    data: Vec<f32>,
}

#[derive(Debug)]
struct Shared {
    spill: std::fs::File,
    spill_end: AtomicU64,
    /// `(level, index, offset, length)` of every block in the spill file.
    placed: Mutex<Vec<(usize, usize, u64, u32)>>,
    error: Mutex<Option<String>>,
    abort: AtomicBool,
}

/// The encoder threads: each predicts, compresses and appends blocks to the spill file.
#[derive(Debug)]
struct Pool {
    tx: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Pool {
    fn start(spill: std::fs::File, codec: Codec, nodata: f32) -> Self {
        let threads_n = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Two blocks queued per thread bound the memory in flight (1 MiB each).
        let (tx, rx) = sync_channel::<Job>(2 * threads_n);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            spill,
            spill_end: AtomicU64::new(0),
            placed: Mutex::new(Vec::new()),
            error: Mutex::new(None),
            abort: AtomicBool::new(false),
        });
        let threads = (0..threads_n)
            .map(|_| {
                let (rx, shared) = (Arc::clone(&rx), Arc::clone(&shared));
                std::thread::spawn(move || encode_blocks(&rx, &shared, codec, nodata))
            })
            .collect();
        Self {
            tx: Some(tx),
            threads,
            shared,
        }
    }

    fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }

    /// Waits for every queued block; the first error any thread met, if one did.
    fn join(&mut self) -> Option<String> {
        self.tx = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                return Some("a block encoder thread panicked".into());
            }
        }
        self.error()
    }
}

fn encode_blocks(rx: &Mutex<Receiver<Job>>, shared: &Shared, codec: Codec, nodata: f32) {
    let mut encoder = tiff::Encoder::new(codec, nodata);
    loop {
        let job = match rx.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if shared.abort.load(Ordering::Relaxed) {
            continue;
        }
        let placed = encoder.encode(&job.data, BLOCK_PX).and_then(|bytes| {
            let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
            let offset = shared
                .spill_end
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            shared.spill.write_all_at(bytes, offset)?;
            Ok((offset, len))
        });
        match placed {
            Ok((offset, len)) => {
                if let Ok(mut p) = shared.placed.lock() {
                    p.push((job.level, job.index, offset, len));
                }
            }
            Err(e) => {
                if let Ok(mut slot) = shared.error.lock() {
                    slot.get_or_insert_with(|| e.to_string().to_lowercase());
                }
                shared.abort.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Overview decimation factors the COG gets: halve until the image fits one 512 px block.
pub fn overview_factors(width_px: usize, height_px: usize) -> Vec<i32> {
    let mut factors = Vec::new();
    let (mut w, mut h, mut f) = (width_px, height_px, 1i32);
    while w > BLOCK_PX || h > BLOCK_PX {
        f *= 2;
        w = w.div_ceil(2);
        h = h.div_ceil(2);
        factors.push(f);
    }
    factors
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The georeferencing tags GDAL writes for `grid`, taken from a 1×1 GeoTIFF it writes in memory.
fn geo_entries(grid: &Grid, path_for_errors: &Path) -> Result<Vec<Entry>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let err = |e: gdal::errors::GdalError| write_err(path_for_errors, reason(e));
    let mem = format!(
        "/vsimem/constellation-georef-{}-{}.tif",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(err)?;
    {
        let mut ds = driver
            .create_with_band_type::<u8, _>(&mem, 1, 1, 1)
            .map_err(err)?;
        ds.set_geo_transform(&grid.geotransform).map_err(err)?;
        if !grid.crs_wkt.is_empty() {
            let srs = SpatialRef::from_wkt(&grid.crs_wkt).map_err(err)?;
            ds.set_spatial_ref(&srs).map_err(err)?;
        }
        ds.close().map_err(err)?;
    }
    let bytes = gdal::vsi::get_vsi_mem_file_bytes_owned(&mem).map_err(err)?;
    tiff::geo_entries(&bytes).map_err(|e| write_err(path_for_errors, e))
}

impl CogWriter {
    /// Starts a `band_count`-band `Float32` COG at `final_path` on `grid`. Tiles may come in
    /// any size and order; overview blocks are the mean of the valid pixels of each 2×2 block
    /// of the level below.
    pub fn create(
        final_path: &Path,
        grid: &Grid,
        band_count: usize,
        nodata: f64,
        compression: Compression,
    ) -> Result<Self> {
        crate::io::init();
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let name = final_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| write_err(final_path, "output path has no file name"))?;
        if band_count == 0 || band_count > u16::MAX as usize {
            return Err(write_err(
                final_path,
                format!("cannot write {band_count} bands"),
            ));
        }
        let spill_path = dir.join(format!(".{name}.blocks"));
        let cog_partial_path = dir.join(format!(".{name}.partial"));
        let geo = geo_entries(grid, final_path)?;
        let spill = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&spill_path)
            .map_err(|e| write_err(&spill_path, e.to_string().to_lowercase()))?;
        let mut levels = vec![(grid.width_px, grid.height_px)];
        for _ in overview_factors(grid.width_px, grid.height_px) {
            let &(w, h) = levels.last().unwrap_or(&(1, 1));
            levels.push((w.div_ceil(2), h.div_ceil(2)));
        }
        let codec = compression.codec();
        Ok(Self {
            spill_path,
            cog_partial_path,
            final_path: final_path.to_path_buf(),
            nodata,
            codec,
            band_count,
            partial: levels.iter().map(|_| HashMap::new()).collect(),
            levels,
            geo,
            pool: Some(Pool::start(spill, codec, nodata as f32)),
            force_bigtiff: false,
        })
    }

    /// Writes a BigTIFF even when a classic TIFF would do (for tests of large outputs).
    pub fn force_bigtiff(&mut self) {
        self.force_bigtiff = true;
    }

    /// Writes one tile's bands (each `window.len_px()` values, `NaN` = nodata).
    pub fn write_tile(&mut self, window: Window, bands: Vec<Vec<f32>>) -> Result<()> {
        let (w, h) = self.levels[0];
        if bands.len() != self.band_count
            || window.x_px < 0
            || window.y_px < 0
            || window.x_px as usize + window.width_px > w
            || window.y_px as usize + window.height_px > h
            || bands
                .iter()
                .any(|b| b.len() != window.width_px * window.height_px)
        {
            return Err(write_err(
                &self.final_path,
                "tile does not fit the output grid",
            ));
        }
        if let Some(e) = self.pool.as_ref().and_then(Pool::error) {
            return Err(write_err(&self.spill_path, e));
        }
        let (x0, y0) = (window.x_px as usize, window.y_px as usize);
        for (band, mut data) in bands.into_iter().enumerate() {
            // Infinities are nodata too, and must not reach the overviews' means.
            for v in &mut data {
                if v.is_infinite() {
                    *v = f32::NAN;
                }
            }
            let whole_block = x0 % BLOCK_PX == 0
                && y0 % BLOCK_PX == 0
                && window.width_px == BLOCK_PX
                && window.height_px == BLOCK_PX;
            if whole_block {
                let key = (band, x0 / BLOCK_PX, y0 / BLOCK_PX);
                if self.partial[0].contains_key(&key) {
                    return Err(write_err(&self.final_path, "a tile was written twice"));
                }
                self.complete(0, key, data)?;
                continue;
            }
            self.place(0, band, x0, y0, window.width_px, window.height_px, &data)?;
        }
        Ok(())
    }

    /// Copies a `width_px` × `height_px` region at (`x0`, `y0`) of `level` into its blocks,
    /// passing on every block it completes.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        level: usize,
        band: usize,
        x0: usize,
        y0: usize,
        width_px: usize,
        height_px: usize,
        data: &[f32],
    ) -> Result<()> {
        let (bx0, bx1) = (x0 / BLOCK_PX, (x0 + width_px).div_ceil(BLOCK_PX));
        let (by0, by1) = (y0 / BLOCK_PX, (y0 + height_px).div_ceil(BLOCK_PX));
        for by in by0..by1 {
            for bx in bx0..bx1 {
                // The part of the region inside this block.
                let cx0 = x0.max(bx * BLOCK_PX);
                let cx1 = (x0 + width_px).min((bx + 1) * BLOCK_PX);
                let cy0 = y0.max(by * BLOCK_PX);
                let cy1 = (y0 + height_px).min((by + 1) * BLOCK_PX);
                let key = (band, bx, by);
                let (vw, vh) = self.valid_px(level, bx, by);
                let block = self.partial[level]
                    .entry(key)
                    .or_insert_with(|| PartialBlock {
                        data: vec![f32::NAN; BLOCK_PX * BLOCK_PX],
                        filled_px: 0,
                    });
                for y in cy0..cy1 {
                    let src = &data[(y - y0) * width_px + (cx0 - x0)..][..cx1 - cx0];
                    let dst = &mut block.data
                        [(y - by * BLOCK_PX) * BLOCK_PX + (cx0 - bx * BLOCK_PX)..][..cx1 - cx0];
                    dst.copy_from_slice(src);
                }
                block.filled_px += (cx1 - cx0) * (cy1 - cy0);
                if block.filled_px > vw * vh {
                    return Err(write_err(&self.final_path, "a tile was written twice"));
                }
                if block.filled_px == vw * vh {
                    let block = self.partial[level].remove(&key).map(|b| b.data);
                    if let Some(data) = block {
                        self.complete(level, key, data)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The valid width and height of block (`bx`, `by`) of `level`.
    fn valid_px(&self, level: usize, bx: usize, by: usize) -> (usize, usize) {
        let (w, h) = self.levels[level];
        (
            (w - bx * BLOCK_PX).min(BLOCK_PX),
            (h - by * BLOCK_PX).min(BLOCK_PX),
        )
    }

    /// A finished block: its halving goes into the next level, and it goes to the encoders.
    fn complete(&mut self, level: usize, key: (usize, usize, usize), data: Vec<f32>) -> Result<()> {
        let (band, bx, by) = key;
        let (vw, vh) = self.valid_px(level, bx, by);
        if level + 1 < self.levels.len() {
            let (half, hw, hh) = if vw == BLOCK_PX && vh == BLOCK_PX {
                kernels::overview::halve_mean(&data, vw, vh)?
            } else {
                let compact: Vec<f32> = data
                    .chunks(BLOCK_PX)
                    .take(vh)
                    .flat_map(|row| &row[..vw])
                    .copied()
                    .collect();
                kernels::overview::halve_mean(&compact, vw, vh)?
            };
            self.place(
                level + 1,
                band,
                bx * BLOCK_PX / 2,
                by * BLOCK_PX / 2,
                hw,
                hh,
                &half,
            )?;
        }
        let (across, down) = tiff::blocks(self.levels[level].0, self.levels[level].1);
        let index = band * across * down + by * across + bx;
        let sent = self
            .pool
            .as_ref()
            .and_then(|p| p.tx.as_ref())
            .map(|tx| tx.send(Job { level, index, data }));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(write_err(
                &self.spill_path,
                self.pool
                    .as_ref()
                    .and_then(Pool::error)
                    .unwrap_or_else(|| "the block encoders stopped".into()),
            )),
        }
    }

    /// Writes band metadata, assembles the COG and renames it into place. Returns the final path.
    pub fn finish(mut self, bands: &[BandMeta]) -> Result<PathBuf> {
        if self.partial.iter().any(|p| !p.is_empty()) {
            return Err(write_err(
                &self.final_path,
                "not every pixel of the output was written",
            ));
        }
        let mut pool = self
            .pool
            .take()
            .ok_or_else(|| write_err(&self.final_path, "writer already finished"))?;
        if let Some(e) = pool.join() {
            return Err(write_err(&self.spill_path, e));
        }
        let mut levels: Vec<Level> = self
            .levels
            .iter()
            .map(|&(w, h)| {
                let (across, down) = tiff::blocks(w, h);
                Level {
                    width_px: w,
                    height_px: h,
                    blocks: vec![(0, 0); across * down * self.band_count],
                }
            })
            .collect();
        let placed = std::mem::take(
            &mut *pool
                .shared
                .placed
                .lock()
                .map_err(|_| write_err(&self.spill_path, "block index poisoned"))?,
        );
        let mut seen = 0usize;
        for (level, index, offset, len) in placed {
            if let Some(slot) = levels.get_mut(level).and_then(|l| l.blocks.get_mut(index)) {
                *slot = (offset, len);
                seen += 1;
            }
        }
        let expected: usize = levels.iter().map(|l| l.blocks.len()).sum();
        if seen != expected {
            return Err(write_err(
                &self.final_path,
                format!("{seen} of {expected} blocks were encoded"),
            ));
        }
        let mut items = Vec::new();
        for (i, meta) in bands.iter().enumerate().take(self.band_count) {
            if let Some((min, max, mean, std)) = meta.statistics {
                for (k, v) in [
                    ("STATISTICS_MAXIMUM", max),
                    ("STATISTICS_MEAN", mean),
                    ("STATISTICS_MINIMUM", min),
                    ("STATISTICS_STDDEV", std),
                ] {
                    items.push((i, k, None, format!("{v}")));
                }
            }
            if !meta.description.is_empty() {
                items.push((
                    i,
                    "DESCRIPTION",
                    Some("description"),
                    meta.description.clone(),
                ));
            }
        }
        let mut main_extra = self.geo.clone();
        if let Some(xml) = tiff::gdal_metadata(&items) {
            main_extra.push(Entry::ascii(42112, &xml));
        }
        let image = tiff::Image {
            bands: self.band_count,
            codec: self.codec,
            nodata: nodata_text(self.nodata),
            main_extra,
            force_bigtiff: self.force_bigtiff,
        };
        let err = |e: std::io::Error| write_err(&self.final_path, e.to_string().to_lowercase());
        let file = std::fs::File::create(&self.cog_partial_path).map_err(err)?;
        // A small buffer for the framing; blocks (larger) are written straight through.
        let mut out = std::io::BufWriter::with_capacity(64 << 10, file);
        tiff::assemble(&mut out, &pool.shared.spill, &image, &levels).map_err(err)?;
        let file = out.into_inner().map_err(|e| err(e.into_error()))?;
        drop(file);
        std::fs::rename(&self.cog_partial_path, &self.final_path).map_err(err)?;
        let _ = std::fs::remove_file(&self.spill_path);
        Ok(self.final_path.clone())
    }
}

/// `GDAL_NODATA` text as GDAL writes it: integers without a fraction, `nan` for NaN.
fn nodata_text(nodata: f64) -> String {
    if nodata.is_nan() {
        "nan".into()
    } else {
        format!("{nodata}")
    }
}

impl Drop for CogWriter {
    fn drop(&mut self) {
        if let Some(mut pool) = self.pool.take() {
            pool.shared.abort.store(true, Ordering::Relaxed);
            let _ = pool.join();
        }
        let _ = std::fs::remove_file(&self.spill_path);
        let _ = std::fs::remove_file(&self.cog_partial_path);
    }
}
