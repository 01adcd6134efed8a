//! The TIFF side of the COG writer, with no GDAL: the floating-point predictor, block
//! compression, and a file laid out as GDAL's COG driver lays it out — the structural-metadata
//! ghost area, every IFD before the data, the smallest overview's blocks first, and each block
//! framed by its size (leader) and its last four bytes repeated (trailer).

use std::io::{self, Write};

/// Block edge of every level, in pixels.
pub const BLOCK_PX: usize = 512;

/// GDAL's promise about the layout that follows, read by GDAL and COG validators.
const GHOST: &str = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n\
BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ";

/// How blocks are compressed (with the floating-point predictor in front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zlib-wrapped deflate (TIFF compression 8) at a libdeflate level, 1–12.
    Deflate { level: u32 },
    /// Zstandard (TIFF compression 50000, as GDAL writes it) at a level, 1–22.
    Zstd { level: i32 },
}

impl Codec {
    /// The TIFF `Compression` tag value.
    pub fn tiff_code(self) -> u16 {
        match self {
            Self::Deflate { .. } => 8,
            Self::Zstd { .. } => 50000,
        }
    }
}

/// A reusable block encoder (one per thread): predictor, then the codec.
pub struct Encoder {
    codec: Codec,
    nodata: f32,
    predicted: Vec<u8>,
    compressed: Vec<u8>,
    deflate: Option<libdeflater::Compressor>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("codec", &self.codec)
            .finish()
    }
}

impl Encoder {
    /// An encoder writing `NaN` as `nodata`.
    pub fn new(codec: Codec, nodata: f32) -> Self {
        Self {
            codec,
            nodata,
            predicted: Vec::new(),
            compressed: Vec::new(),
            deflate: None,
        }
    }

    /// Encodes a block of `width_px`-sample rows (`NaN` written as the nodata value); the
    /// bytes stay valid until the next call.
    pub fn encode(&mut self, block: &[f32], width_px: usize) -> io::Result<&[u8]> {
        predict_float_rows(block, width_px, self.nodata, &mut self.predicted);
        match self.codec {
            Codec::Deflate { level } => {
                let c = match &mut self.deflate {
                    Some(c) => c,
                    None => {
                        let level = libdeflater::CompressionLvl::new(level.min(12) as i32)
                            .map_err(|_| io::Error::other("bad deflate level"))?;
                        self.deflate.insert(libdeflater::Compressor::new(level))
                    }
                };
                // Grown once, never cleared: the compressor overwrites what it reports.
                let bound = c.zlib_compress_bound(self.predicted.len());
                if self.compressed.len() < bound {
                    self.compressed.resize(bound, 0);
                }
                let n = c
                    .zlib_compress(&self.predicted, &mut self.compressed)
                    .map_err(|e| io::Error::other(format!("deflate: {e:?}")))?;
                Ok(&self.compressed[..n])
            }
            Codec::Zstd { level } => {
                self.compressed = zstd::bulk::compress(&self.predicted, level)?;
                Ok(&self.compressed)
            }
        }
    }
}

/// TIFF predictor 3 (floating point) over rows of `width_px` single-sample pixels, as libtiff
/// writes it: each row's bytes regrouped most significant byte first (all the rows' first
/// bytes, then their second …), then every byte replaced by its difference from the one before.
/// `NaN` is written as `nodata`.
pub fn predict_float_rows(data: &[f32], width_px: usize, nodata: f32, out: &mut Vec<u8>) {
    // Every byte is written below: only a change of length touches the buffer here (an
    // encoder's blocks all have one size, so it is zeroed once, not per block).
    out.resize(data.len() * 4, 0);
    if width_px == 0 {
        return;
    }
    for (row, o) in data.chunks(width_px).zip(out.chunks_mut(4 * width_px)) {
        let (b3, rest) = o.split_at_mut(width_px);
        let (b2, rest) = rest.split_at_mut(width_px);
        let (b1, b0) = rest.split_at_mut(width_px);
        for (i, &v) in row.iter().enumerate() {
            let v = if v.is_nan() { nodata } else { v };
            let [x0, x1, x2, x3] = v.to_le_bytes();
            b3[i] = x3;
            b2[i] = x2;
            b1[i] = x1;
            b0[i] = x0;
        }
        // The first byte of a row is kept as is (its predecessor counts as zero).
        let mut prev = 0u8;
        for b in o.iter_mut() {
            let cur = *b;
            *b = cur.wrapping_sub(prev);
            prev = cur;
        }
    }
}

/// TIFF field types used here.
const SHORT: u16 = 3;
const LONG: u16 = 4;
const ASCII: u16 = 2;
const LONG8: u16 = 16;

/// One IFD entry: its tag, TIFF type, count and little-endian value bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub tag: u16,
    pub typ: u16,
    pub count: u64,
    pub bytes: Vec<u8>,
}

impl Entry {
    pub fn shorts(tag: u16, values: &[u16]) -> Self {
        Self {
            tag,
            typ: SHORT,
            count: values.len() as u64,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// SHORT when every value fits, LONG otherwise (as GDAL writes sizes).
    pub fn short_or_long(tag: u16, value: u32) -> Self {
        match u16::try_from(value) {
            Ok(v) => Self::shorts(tag, &[v]),
            Err(_) => Self {
                tag,
                typ: LONG,
                count: 1,
                bytes: value.to_le_bytes().to_vec(),
            },
        }
    }

    pub fn ascii(tag: u16, text: &str) -> Self {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        Self {
            tag,
            typ: ASCII,
            count: bytes.len() as u64,
            bytes,
        }
    }

    /// Offsets or byte counts: LONG in a classic TIFF, LONG8 in a BigTIFF.
    fn offsets(tag: u16, values: &[u64], big: bool) -> Self {
        if big {
            Self {
                tag,
                typ: LONG8,
                count: values.len() as u64,
                bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            }
        } else {
            Self {
                tag,
                typ: LONG,
                count: values.len() as u64,
                bytes: values
                    .iter()
                    .flat_map(|&v| (v as u32).to_le_bytes())
                    .collect(),
            }
        }
    }
}

/// One resolution level as the assembler sees it.
#[derive(Debug, Clone)]
pub struct Level {
    pub width_px: usize,
    pub height_px: usize,
    /// Where each compressed block lies in the spill file, `(offset, length)`: band-major,
    /// then row-major over the level's blocks.
    pub blocks: Vec<(u64, u32)>,
}

/// Blocks across and down a `width_px` × `height_px` level.
pub fn blocks(width_px: usize, height_px: usize) -> (usize, usize) {
    (width_px.div_ceil(BLOCK_PX), height_px.div_ceil(BLOCK_PX))
}

/// What every IFD shares, and what only the full-resolution one carries.
#[derive(Debug, Clone)]
pub struct Image {
    pub bands: usize,
    pub codec: Codec,
    /// `GDAL_NODATA` text, written on every level.
    pub nodata: String,
    /// Georeferencing and `GDAL_METADATA`, on the full-resolution IFD only.
    pub main_extra: Vec<Entry>,
    /// Write a BigTIFF even when a classic TIFF would do (tests).
    pub force_bigtiff: bool,
}

fn ifd_entries(
    image: &Image,
    level: &Level,
    overview: bool,
    offsets: &[u64],
    big: bool,
) -> Vec<Entry> {
    let bands = image.bands as u16;
    let mut e = Vec::new();
    if overview {
        e.push(Entry {
            tag: 254,
            typ: LONG,
            count: 1,
            bytes: 1u32.to_le_bytes().to_vec(),
        });
    }
    e.push(Entry::short_or_long(256, level.width_px as u32));
    e.push(Entry::short_or_long(257, level.height_px as u32));
    e.push(Entry::shorts(258, &vec![32; image.bands]));
    e.push(Entry::shorts(259, &[image.codec.tiff_code()]));
    e.push(Entry::shorts(262, &[1]));
    e.push(Entry::shorts(277, &[bands]));
    e.push(Entry::shorts(284, &[if image.bands > 1 { 2 } else { 1 }]));
    e.push(Entry::shorts(317, &[3]));
    e.push(Entry::shorts(322, &[BLOCK_PX as u16]));
    e.push(Entry::shorts(323, &[BLOCK_PX as u16]));
    e.push(Entry::offsets(324, offsets, big));
    let counts: Vec<u64> = level.blocks.iter().map(|&(_, len)| len as u64).collect();
    e.push(Entry::offsets(325, &counts, big));
    if image.bands > 1 {
        e.push(Entry::shorts(338, &vec![0; image.bands - 1]));
    }
    e.push(Entry::shorts(339, &vec![3; image.bands]));
    if !overview {
        e.extend(image.main_extra.iter().cloned());
    }
    e.push(Entry::ascii(42113, &image.nodata));
    e.sort_by_key(|x| x.tag);
    e
}

/// Bytes an IFD and its out-of-line values take (values at even offsets).
fn ifd_len(entries: &[Entry], big: bool) -> u64 {
    let (head, per, tail, inline) = if big { (8, 20, 8, 8) } else { (2, 12, 4, 4) };
    let mut len = head + per * entries.len() as u64 + tail;
    for e in entries {
        if e.bytes.len() > inline {
            len += e.bytes.len() as u64;
            len += len % 2;
        }
    }
    len
}

/// Serializes an IFD at file offset `at`, its values right after it, pointing on to `next`.
fn write_ifd(buf: &mut Vec<u8>, at: u64, entries: &[Entry], big: bool, next: u64) {
    let (head, per, tail, inline) = if big { (8, 20, 8, 8) } else { (2, 12, 4, 4) };
    let mut values_at = at + head + per * entries.len() as u64 + tail;
    let mut values = Vec::new();
    if big {
        buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    } else {
        buf.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    }
    for e in entries {
        buf.extend_from_slice(&e.tag.to_le_bytes());
        buf.extend_from_slice(&e.typ.to_le_bytes());
        if big {
            buf.extend_from_slice(&e.count.to_le_bytes());
        } else {
            buf.extend_from_slice(&(e.count as u32).to_le_bytes());
        }
        if e.bytes.len() <= inline {
            let mut v = e.bytes.clone();
            v.resize(inline, 0);
            buf.extend_from_slice(&v);
        } else {
            if big {
                buf.extend_from_slice(&values_at.to_le_bytes());
            } else {
                buf.extend_from_slice(&(values_at as u32).to_le_bytes());
            }
            values.extend_from_slice(&e.bytes);
            values_at += e.bytes.len() as u64;
            if values_at % 2 == 1 {
                values.push(0);
                values_at += 1;
            }
        }
    }
    if big {
        buf.extend_from_slice(&next.to_le_bytes());
    } else {
        buf.extend_from_slice(&(next as u32).to_le_bytes());
    }
    buf.extend_from_slice(&values);
}

/// The file header, the ghost area and every IFD, for blocks whose data starts right after.
/// `levels[0]` is full resolution; overviews follow, largest first.
fn header(image: &Image, levels: &[Level], big: bool) -> Vec<u8> {
    let header_len: u64 = if big { 16 } else { 8 };
    let ghost = format!(
        "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{GHOST}",
        GHOST.len()
    );
    let mut first_ifd = header_len + ghost.len() as u64;
    first_ifd += first_ifd % 2;
    // Sizes do not depend on the offsets' values: lay out with zeros first.
    let zero_entries: Vec<Vec<Entry>> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| ifd_entries(image, l, i > 0, &vec![0; l.blocks.len()], big))
        .collect();
    let mut ifd_at = Vec::with_capacity(levels.len());
    let mut at = first_ifd;
    for e in &zero_entries {
        ifd_at.push(at);
        at += ifd_len(e, big);
    }
    let data_start = at;
    // Data: smallest overview first, full resolution last; each block framed by 4 + 4 bytes.
    let mut offsets: Vec<Vec<u64>> = levels.iter().map(|l| vec![0; l.blocks.len()]).collect();
    let mut pos = data_start;
    for (li, level) in levels.iter().enumerate().rev() {
        for (bi, &(_, len)) in level.blocks.iter().enumerate() {
            offsets[li][bi] = pos + 4;
            pos += 4 + len as u64 + 4;
        }
    }
    let mut buf = Vec::with_capacity(data_start as usize);
    if big {
        buf.extend_from_slice(b"II\x2b\x00\x08\x00\x00\x00");
        buf.extend_from_slice(&first_ifd.to_le_bytes());
    } else {
        buf.extend_from_slice(b"II\x2a\x00");
        buf.extend_from_slice(&(first_ifd as u32).to_le_bytes());
    }
    buf.extend_from_slice(ghost.as_bytes());
    buf.resize(first_ifd as usize, 0);
    for (i, level) in levels.iter().enumerate() {
        let entries = ifd_entries(image, level, i > 0, &offsets[i], big);
        let next = ifd_at.get(i + 1).copied().unwrap_or(0);
        write_ifd(&mut buf, ifd_at[i], &entries, big, next);
        debug_assert_eq!(buf.len() as u64, ifd_at[i] + ifd_len(&entries, big));
    }
    buf
}

/// Total file size for `levels` in a classic TIFF (header and every framed block).
fn classic_len(image: &Image, levels: &[Level]) -> u64 {
    let data: u64 = levels
        .iter()
        .flat_map(|l| &l.blocks)
        .map(|&(_, len)| 8 + len as u64)
        .sum();
    header(image, levels, false).len() as u64 + data
}

/// Writes the whole COG to `out`: header, IFDs, then each level's blocks copied from `spill`
/// (smallest overview first), framed. A classic TIFF unless the file would pass 4 GiB.
pub fn assemble(
    out: &mut impl Write,
    spill: &std::fs::File,
    image: &Image,
    levels: &[Level],
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let big = image.force_bigtiff || classic_len(image, levels) > u32::MAX as u64;
    let head = header(image, levels, big);
    out.write_all(&head)?;
    let mut written = head.len() as u64;
    let mut block = Vec::new();
    for level in levels.iter().rev() {
        for &(offset, len) in &level.blocks {
            block.resize(len as usize, 0);
            spill.read_exact_at(&mut block, offset)?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&block)?;
            let tail_at = block.len().saturating_sub(4);
            let mut trailer = [0u8; 4];
            trailer[..block.len() - tail_at].copy_from_slice(&block[tail_at..]);
            out.write_all(&trailer)?;
            written += 8 + len as u64;
        }
    }
    Ok(written)
}

/// Bytes per value of TIFF field type `typ` (BYTE … IFD8), `None` for an unknown type.
pub(crate) fn field_type_bytes(typ: u16) -> Option<usize> {
    match typ {
        1 | 2 | 6 | 7 => Some(1),
        3 | 8 => Some(2),
        4 | 9 | 11 | 13 => Some(4),
        5 | 10 | 12 | 16 | 17 | 18 => Some(8),
        _ => None,
    }
}

/// Reads the georeferencing tags (model transform or tie point and scale, GeoKey directory and
/// its double and ASCII parameters) from the first IFD of a little-endian classic TIFF.
pub fn geo_entries(tiff: &[u8]) -> io::Result<Vec<Entry>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let u16_at = |at: usize| -> io::Result<u16> {
        tiff.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("truncated tiff"))
    };
    let u32_at = |at: usize| -> io::Result<u32> {
        tiff.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("truncated tiff"))
    };
    if tiff.get(0..4) != Some(b"II\x2a\x00".as_slice()) {
        return Err(bad(
            "georeferencing template is not a little-endian classic tiff",
        ));
    }
    let ifd = u32_at(4)? as usize;
    let n = u16_at(ifd)? as usize;
    let mut out = Vec::new();
    for i in 0..n {
        let at = ifd + 2 + 12 * i;
        let tag = u16_at(at)?;
        if !matches!(tag, 33550 | 33922 | 34264 | 34735 | 34736 | 34737) {
            continue;
        }
        let typ = u16_at(at + 2)?;
        let count = u32_at(at + 4)? as usize;
        let size = field_type_bytes(typ)
            .ok_or_else(|| bad("unexpected tiff field type in georeferencing"))?
            * count;
        let start = if size <= 4 {
            at + 8
        } else {
            u32_at(at + 8)? as usize
        };
        let bytes = tiff
            .get(start..start + size)
            .ok_or_else(|| bad("truncated tiff"))?
            .to_vec();
        out.push(Entry {
            tag,
            typ,
            count: count as u64,
            bytes,
        });
    }
    Ok(out)
}

/// `GDAL_METADATA` XML for per-band items: `(band index from 0, name, role, value)`.
pub fn gdal_metadata(items: &[(usize, &str, Option<&str>, String)]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let mut xml = String::from("<GDALMetadata>\n");
    for (band, name, role, value) in items {
        let role = role.map_or(String::new(), |r| format!(" role=\"{r}\""));
        xml.push_str(&format!(
            "  <Item name=\"{}\" sample=\"{band}\"{role}>{}</Item>\n",
            escape(name),
            // GDAL escapes item values itself before its XML writer escapes the tree, and
            // unescapes twice when reading: so do we.
            escape(&escape(value))
        ));
    }
    xml.push_str("</GDALMetadata>\n");
    Some(xml)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse of [`predict_float_rows`] (what a reader does).
    fn unpredict_float_rows(bytes: &[u8], width_px: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(bytes.len() / 4);
        for o in bytes.chunks(4 * width_px) {
            let mut row = o.to_vec();
            for i in 1..row.len() {
                row[i] = row[i].wrapping_add(row[i - 1]);
            }
            for i in 0..width_px {
                out.push(f32::from_le_bytes([
                    row[3 * width_px + i],
                    row[2 * width_px + i],
                    row[width_px + i],
                    row[i],
                ]));
            }
        }
        out
    }

    #[test]
    fn predictor_round_trips_and_matches_libtiff_order() {
        let mut data: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.37).collect();
        data[7] = f32::NAN;
        let mut p = Vec::new();
        predict_float_rows(&data, 4, -9999.0, &mut p);
        assert_eq!(p.len(), 48);
        data[7] = -9999.0;
        assert_eq!(unpredict_float_rows(&p, 4), data);
        // Row 0's first byte is the most significant byte of its first sample, undifferenced.
        assert_eq!(p[0], data[0].to_le_bytes()[3]);
        // The second byte is the difference of the next sample's most significant byte.
        assert_eq!(
            p[1],
            data[1].to_le_bytes()[3].wrapping_sub(data[0].to_le_bytes()[3])
        );
    }

    #[test]
    fn ifd_length_matches_what_is_written() {
        let image = Image {
            bands: 2,
            codec: Codec::Deflate { level: 6 },
            nodata: "-9999".into(),
            main_extra: vec![Entry::ascii(42112, "<GDALMetadata>\n</GDALMetadata>\n")],
            force_bigtiff: false,
        };
        let level = Level {
            width_px: 1000,
            height_px: 700,
            blocks: vec![(0, 17); 8],
        };
        for big in [false, true] {
            let e = ifd_entries(&image, &level, false, &[0; 8], big);
            let mut buf = Vec::new();
            write_ifd(&mut buf, 100, &e, big, 0);
            assert_eq!(buf.len() as u64, ifd_len(&e, big));
        }
    }

    #[test]
    fn metadata_is_escaped() {
        let xml = gdal_metadata(&[(0, "DESCRIPTION", Some("description"), "a<b & \"c\"".into())])
            .expect("one item");
        assert!(xml.contains(
            "<Item name=\"DESCRIPTION\" sample=\"0\" role=\"description\">\
             a&amp;lt;b &amp;amp; &amp;quot;c&amp;quot;</Item>"
        ));
        assert!(gdal_metadata(&[]).is_none());
    }
}
