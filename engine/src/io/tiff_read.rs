//! A GDAL-free reader for the band files most scenes come as: little-endian TIFF or BigTIFF,
//! tiled or striped, uncompressed, DEFLATE or ZSTD, horizontal or floating-point predictor,
//! 8/16/32-bit integer or 32-bit float samples. It decodes blocks a window covers whole
//! straight into the window as `f32` (libdeflate, no intermediate copies) and keeps only the
//! few blocks windows cover in part. Any other layout is left to GDAL ([`TiffBand::open`] says
//! `None`), and so is any block it cannot place ([`TiffBand::read`] says `false`).

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use crate::grid::Window;
use crate::io::tiff::field_type_bytes;

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    U8,
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl Sample {
    fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Deflate,
    Zstd,
}

/// One band of a TIFF file, ready for windowed reads.
#[derive(Debug)]
pub struct TiffBand {
    file: File,
    width_px: usize,
    height_px: usize,
    block_width_px: usize,
    block_height_px: usize,
    /// Tiles are whole at the edges (padded); strips end with the raster.
    tiled: bool,
    blocks_across: usize,
    blocks_down: usize,
    /// Offsets and byte counts of every block, as the file lists them (band-major when
    /// planar, one set otherwise).
    offsets: Vec<u64>,
    counts: Vec<u64>,
    sample: Sample,
    /// Interleaved samples per pixel in a block (1 when the file is planar).
    stride: usize,
    /// The band's sample within a pixel (chunky), 0 when planar.
    lane: usize,
    /// First block of the band in `offsets` (planar files list band after band).
    first_block: usize,
    compression: Compression,
    predictor: u16,
    /// Recently decoded blocks read in part, most recent last.
    cache: Mutex<Vec<CachedBlock>>,
}

/// `((block index, nodata bits), values)`: a block decoded with one nodata value.
type CachedBlock = ((usize, u32), Arc<Vec<f32>>);

/// How many partly read blocks a band keeps decoded (a row of neighbouring windows' edges).
const CACHED_BLOCKS: usize = 16;

/// Buffers one read reuses from block to block.
#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    block: Vec<u8>,
    inflater: Option<libdeflater::Decompressor>,
}

/// A TIFF directory entry's values, read as unsigned integers.
struct Field {
    typ: u16,
    count: u64,
    /// The value bytes inline in the entry, or where they are.
    inline: Vec<u8>,
    offset: Option<u64>,
}

struct Header {
    big: bool,
    ifd: u64,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn read_at(file: &File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(a)
}

impl Field {
    fn values(&self, file: &File) -> io::Result<Vec<u64>> {
        // Integer types only (BYTE, SHORT, LONG, their signed kinds, LONG8, SLONG8).
        let size = match self.typ {
            1 | 3 | 4 | 6 | 8 | 9 | 16 | 17 => field_type_bytes(self.typ),
            _ => None,
        }
        .ok_or_else(|| bad("unexpected tiff field type"))?;
        let count = usize::try_from(self.count).map_err(|_| bad("tiff field too long"))?;
        let bytes = match self.offset {
            Some(at) => read_at(file, at, size * count)?,
            None => self.inline[..size * count].to_vec(),
        };
        Ok(bytes.chunks_exact(size).map(le_u64).collect())
    }

    fn first(&self, file: &File) -> io::Result<u64> {
        self.values(file)?
            .first()
            .copied()
            .ok_or_else(|| bad("empty tiff field"))
    }
}

fn header(file: &File) -> io::Result<Option<Header>> {
    let mut head = [0u8; 16];
    let n = file.read_at(&mut head, 0)?;
    if n < 8 || &head[0..2] != b"II" {
        return Ok(None);
    }
    match u16::from_le_bytes([head[2], head[3]]) {
        42 => Ok(Some(Header {
            big: false,
            ifd: le_u64(&head[4..8]),
        })),
        43 if n == 16 => Ok(Some(Header {
            big: true,
            ifd: le_u64(&head[8..16]),
        })),
        _ => Ok(None),
    }
}

/// The first directory's entries, by tag.
fn first_ifd(file: &File, h: &Header) -> io::Result<Vec<(u16, Field)>> {
    let (count_len, entry_len, value_len) = if h.big { (8, 20, 8) } else { (2, 12, 4) };
    let n = le_u64(&read_at(file, h.ifd, count_len)?);
    if n > 4096 {
        return Err(bad("implausible tiff directory"));
    }
    let raw = read_at(file, h.ifd + count_len as u64, n as usize * entry_len)?;
    let mut out = Vec::with_capacity(n as usize);
    for e in raw.chunks_exact(entry_len) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let typ = u16::from_le_bytes([e[2], e[3]]);
        let (count, value) = if h.big {
            (le_u64(&e[4..12]), &e[12..20])
        } else {
            (le_u64(&e[4..8]), &e[8..12])
        };
        // An unknown type is kept as if inline; nothing reads it.
        let size = field_type_bytes(typ).unwrap_or(0) as u64;
        let fits = size.saturating_mul(count) <= value_len as u64;
        out.push((
            tag,
            Field {
                typ,
                count,
                inline: value.to_vec(),
                offset: (!fits).then(|| le_u64(value)),
            },
        ));
    }
    Ok(out)
}

impl TiffBand {
    /// Opens band `band` (1-based) of `path` when its layout is one this reader decodes;
    /// `Ok(None)` when it is not (GDAL reads it instead), an error when the file cannot be
    /// read at all.
    pub fn open(path: &str, band: usize) -> io::Result<Option<Self>> {
        let Ok(file) = File::open(path) else {
            return Ok(None);
        };
        let Some(h) = header(&file)? else {
            return Ok(None);
        };
        let ifd = first_ifd(&file, &h)?;
        let get = |tag: u16| ifd.iter().find(|(t, _)| *t == tag).map(|(_, f)| f);
        let num = |tag: u16, default: u64| -> io::Result<u64> {
            get(tag).map_or(Ok(default), |f| f.first(&file))
        };
        let width_px = num(256, 0)? as usize;
        let height_px = num(257, 0)? as usize;
        let spp = num(277, 1)? as usize;
        let bits = num(258, 1)?;
        let format = num(339, 1)?;
        let planar = num(284, 1)?;
        let predictor = num(317, 1)? as u16;
        let compression = match num(259, 1)? {
            1 => Compression::None,
            8 | 32946 => Compression::Deflate,
            50000 => Compression::Zstd,
            _ => return Ok(None),
        };
        let sample = match (format, bits) {
            (1, 8) => Sample::U8,
            (1, 16) => Sample::U16,
            (2, 16) => Sample::I16,
            (1, 32) => Sample::U32,
            (2, 32) => Sample::I32,
            (3, 32) => Sample::F32,
            _ => return Ok(None),
        };
        // Every sample the same type (a per-sample list must agree with the first).
        if let Some(f) = get(258) {
            if f.values(&file)?.iter().any(|&b| b != bits) {
                return Ok(None);
            }
        }
        let predictor_fits = match predictor {
            1 => true,
            2 => sample != Sample::F32,
            3 => sample == Sample::F32,
            _ => false,
        };
        if width_px == 0
            || height_px == 0
            || band == 0
            || band > spp
            || !predictor_fits
            || !matches!(planar, 1 | 2)
            || get(330).is_some()
        {
            return Ok(None);
        }
        let tiled = get(322).is_some() && get(323).is_some();
        let (block_width_px, block_height_px, offsets, counts) = match (get(322), get(323)) {
            (Some(tw), Some(th)) => {
                let (Some(o), Some(c)) = (get(324), get(325)) else {
                    return Ok(None);
                };
                (
                    tw.first(&file)? as usize,
                    th.first(&file)? as usize,
                    o.values(&file)?,
                    c.values(&file)?,
                )
            }
            _ => {
                let (Some(o), Some(c)) = (get(273), get(279)) else {
                    return Ok(None);
                };
                let rows = num(278, height_px as u64)?.min(height_px as u64) as usize;
                (width_px, rows, o.values(&file)?, c.values(&file)?)
            }
        };
        if block_width_px == 0 || block_height_px == 0 {
            return Ok(None);
        }
        let blocks_across = width_px.div_ceil(block_width_px);
        let blocks_down = height_px.div_ceil(block_height_px);
        let per_band = blocks_across * blocks_down;
        let (stride, lane, first_block) = if planar == 2 {
            (1, 0, (band - 1) * per_band)
        } else {
            (spp, band - 1, 0)
        };
        let needed = if planar == 2 {
            per_band * spp
        } else {
            per_band
        };
        if offsets.len() < needed || counts.len() < needed {
            return Err(bad("tiff lists fewer blocks than its size needs"));
        }
        Ok(Some(Self {
            file,
            width_px,
            height_px,
            block_width_px,
            block_height_px,
            tiled,
            blocks_across,
            blocks_down,
            offsets,
            counts,
            sample,
            stride,
            lane,
            first_block,
            compression,
            predictor,
            cache: Mutex::new(Vec::new()),
        }))
    }

    /// Reads `clip` (inside the band) into `out` (`clip.len_px()` values) as `f32`, with
    /// `nodata` (and infinities) turned into `NaN`. `Ok(false)` when a block is absent from
    /// the file (a sparse file: GDAL fills those in), leaving `out` partly written.
    ///
    /// Blocks the window covers whole are decoded straight into `out`; blocks it covers in
    /// part (the edges of a halo or of a resampled band's window, which the neighbouring
    /// window reads again) are decoded once into a small cache of recent blocks.
    pub fn read(&self, clip: Window, nodata: Option<f64>, out: &mut [f32]) -> io::Result<bool> {
        let (x0, y0) = (clip.x_px as usize, clip.y_px as usize);
        let (x1, y1) = (x0 + clip.width_px, y0 + clip.height_px);
        if clip.x_px < 0 || clip.y_px < 0 || x1 > self.width_px || y1 > self.height_px {
            return Err(bad("window outside the raster"));
        }
        if out.len() != clip.len_px() {
            return Err(bad("output buffer does not match the window"));
        }
        let nd = nodata.map_or(f32::NAN, |v| v as f32);
        // The buffers (and the inflater) of this thread's earlier reads: growing them zeroes
        // only the new part, where fresh ones were zeroed whole on every read.
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.read_blocks(clip, nd, out, &mut scratch),
            Err(_) => self.read_blocks(clip, nd, out, &mut Scratch::default()),
        })
    }

    /// [`TiffBand::read`] once the window is checked, with `nd` the nodata value as `f32`.
    fn read_blocks(
        &self,
        clip: Window,
        nd: f32,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> io::Result<bool> {
        let (x0, y0) = (clip.x_px as usize, clip.y_px as usize);
        let (x1, y1) = (x0 + clip.width_px, y0 + clip.height_px);
        let (bw, bh) = (self.block_width_px, self.block_height_px);
        let row_bytes = bw * self.stride * self.sample.bytes();
        for by in y0 / bh..y1.div_ceil(bh).min(self.blocks_down) {
            for bx in x0 / bw..x1.div_ceil(bw).min(self.blocks_across) {
                let index = self.first_block + by * self.blocks_across + bx;
                let (bx0, by0) = (bx * bw, by * bh);
                // A strip at the bottom may hold fewer rows than the others; a block at the
                // right or bottom edge has padding beyond the raster.
                let rows = bh.min(self.height_px - by0);
                let cols = bw.min(self.width_px - bx0);
                // The part of this block inside the window.
                let (cx0, cx1) = (x0.max(bx0), x1.min(bx0 + cols));
                let (cy0, cy1) = (y0.max(by0), y1.min(by0 + rows));
                if cx0 == bx0 && cx1 == bx0 + cols && cy0 == by0 && cy1 == by0 + rows {
                    if !self.decode_block(index, rows, scratch)? {
                        return Ok(false);
                    }
                    for y in cy0..cy1 {
                        let row = &mut scratch.block[(y - by0) * row_bytes..][..row_bytes];
                        let dst = &mut out[(y - y0) * clip.width_px + (cx0 - x0)..][..cx1 - cx0];
                        self.decode_row(row, dst, nd);
                    }
                    continue;
                }
                let Some(values) = self.cached(index, rows, cols, nd, scratch)? else {
                    return Ok(false);
                };
                for y in cy0..cy1 {
                    let src = &values[(y - by0) * cols + (cx0 - bx0)..][..cx1 - cx0];
                    out[(y - y0) * clip.width_px + (cx0 - x0)..][..cx1 - cx0].copy_from_slice(src);
                }
            }
        }
        Ok(true)
    }

    /// Block `index` (`rows` × `cols` inside the raster) as values, from the cache or
    /// decoded into it. `None` when the file does not hold the block.
    fn cached(
        &self,
        index: usize,
        rows: usize,
        cols: usize,
        nd: f32,
        scratch: &mut Scratch,
    ) -> io::Result<Option<Arc<Vec<f32>>>> {
        let key = (index, nd.to_bits());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = cache.iter().position(|(k, _)| *k == key) {
            let hit = cache.remove(at);
            let values = Arc::clone(&hit.1);
            cache.push(hit);
            return Ok(Some(values));
        }
        drop(cache);
        if !self.decode_block(index, rows, scratch)? {
            return Ok(None);
        }
        let row_bytes = self.block_width_px * self.stride * self.sample.bytes();
        let mut values = vec![0.0f32; rows * cols];
        for (y, dst) in values.chunks_exact_mut(cols).enumerate() {
            self.decode_row(&mut scratch.block[y * row_bytes..][..row_bytes], dst, nd);
        }
        let values = Arc::new(values);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() == CACHED_BLOCKS {
            cache.remove(0);
        }
        cache.push((key, Arc::clone(&values)));
        Ok(Some(values))
    }

    /// Reads and decompresses block `index` into `scratch.block`, predictor still applied:
    /// `rows` rows of a strip, a tile whole. `false` when the file does not hold the block.
    fn decode_block(&self, index: usize, rows: usize, scratch: &mut Scratch) -> io::Result<bool> {
        let (at, len) = (self.offsets[index], self.counts[index] as usize);
        if at == 0 || len == 0 {
            return Ok(false);
        }
        let rows = if self.tiled {
            self.block_height_px
        } else {
            rows
        };
        let size = rows * self.block_width_px * self.stride * self.sample.bytes();
        let Scratch {
            raw,
            block,
            inflater,
        } = scratch;
        block.resize(size, 0);
        match self.compression {
            Compression::None => {
                if len < size {
                    return Err(bad("uncompressed tiff block is short"));
                }
                self.file.read_exact_at(block, at)?;
            }
            Compression::Deflate => {
                raw.resize(len, 0);
                self.file.read_exact_at(raw, at)?;
                let n = inflater
                    .get_or_insert_with(libdeflater::Decompressor::new)
                    .zlib_decompress(raw, block)
                    .map_err(|e| bad(&format!("deflate block {index}: {e}")))?;
                if n != size {
                    return Err(bad(&format!("deflate block {index} is short")));
                }
            }
            Compression::Zstd => {
                raw.resize(len, 0);
                self.file.read_exact_at(raw, at)?;
                let n = zstd::bulk::decompress_to_buffer(raw, &mut block[..])
                    .map_err(|e| bad(&format!("zstd block {index}: {e}")))?;
                if n != size {
                    return Err(bad(&format!("zstd block {index} is short")));
                }
            }
        }
        Ok(true)
    }

    /// Undoes the predictor over a block row (its differences run from the row's start) and
    /// writes the band's samples of its first `dst.len()` pixels into `dst`.
    fn decode_row(&self, row: &mut [u8], dst: &mut [f32], nd: f32) {
        let (stride, lane) = (self.stride, self.lane);
        let fix = |v: f32| {
            if v == nd || v.is_infinite() {
                f32::NAN
            } else {
                v
            }
        };
        macro_rules! ints {
            ($t:ty, $n:expr) => {{
                let get = |i: usize| {
                    <$t>::from_le_bytes(row[i * $n..(i + 1) * $n].try_into().unwrap_or([0; $n]))
                };
                if self.predictor == 2 && stride == 1 {
                    // The common case, kept free of bounds checks: one running sum.
                    let mut acc: $t = 0;
                    for (c, d) in row.chunks_exact($n).zip(dst.iter_mut()) {
                        acc =
                            acc.wrapping_add(<$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])));
                        let v = acc as f32;
                        *d = if v == nd { f32::NAN } else { v };
                    }
                } else if self.predictor == 2 {
                    // Each interleaved sample has its own running sum.
                    let mut acc: Vec<$t> = vec![0; stride];
                    for (x, d) in dst.iter_mut().enumerate() {
                        for (s, a) in acc.iter_mut().enumerate() {
                            *a = a.wrapping_add(get(x * stride + s));
                        }
                        *d = fix(acc[lane] as f32);
                    }
                } else {
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = fix(get(k * stride + lane) as f32);
                    }
                }
            }};
        }
        match self.sample {
            Sample::U8 => ints!(u8, 1),
            Sample::U16 => ints!(u16, 2),
            Sample::I16 => ints!(i16, 2),
            Sample::U32 => ints!(u32, 4),
            Sample::I32 => ints!(i32, 4),
            Sample::F32 if self.predictor == 3 => {
                // Byte differences over the row (per interleaved sample), then the row's
                // bytes are four planes, most significant first.
                for i in stride..row.len() {
                    row[i] = row[i].wrapping_add(row[i - stride]);
                }
                let n = row.len() / 4;
                for (k, d) in dst.iter_mut().enumerate() {
                    let i = k * stride + lane;
                    *d = fix(f32::from_be_bytes([
                        row[i],
                        row[n + i],
                        row[2 * n + i],
                        row[3 * n + i],
                    ]));
                }
            }
            Sample::F32 => {
                for (k, d) in dst.iter_mut().enumerate() {
                    let i = 4 * (k * stride + lane);
                    *d = fix(f32::from_le_bytes([
                        row[i],
                        row[i + 1],
                        row[i + 2],
                        row[i + 3],
                    ]));
                }
            }
        }
    }
}
