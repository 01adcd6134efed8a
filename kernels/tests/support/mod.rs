//! Shared helpers for the kernel oracle tests: raw `f32` files that GDAL and numpy read,
//! deterministic test data, and running Debian's `/usr/bin/python3` (numpy, scipy, GDAL).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python that has numpy, scipy and GDAL's bindings (Debian's, not a pyenv one).
pub const PYTHON: &str = "/usr/bin/python3";

/// Writes `data` as little-endian raw `f32`.
pub fn write_f32(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw f32");
}

/// Reads little-endian raw `f32`.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read raw f32");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes `data` as a raw file plus a GDAL VRT over it, with a geotransform and an EPSG code,
/// so that GDAL's own tools (`gdaldem`, `gdalwarp` …) can read it. Returns the VRT's path.
pub fn write_vrt(
    dir: &Path,
    name: &str,
    data: &[f32],
    width_px: usize,
    height_px: usize,
    geotransform: [f64; 6],
    epsg: u32,
) -> PathBuf {
    let raw = dir.join(format!("{name}.bin"));
    write_f32(&raw, data);
    let vrt = dir.join(format!("{name}.vrt"));
    let gt = geotransform.map(|v| format!("{v:.17e}")).join(", ");
    let text = format!(
        r#"<VRTDataset rasterXSize="{width_px}" rasterYSize="{height_px}">
  <SRS>EPSG:{epsg}</SRS>
  <GeoTransform>{gt}</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1" subClass="VRTRawRasterBand">
    <NoDataValue>nan</NoDataValue>
    <SourceFilename relativetoVRT="1">{name}.bin</SourceFilename>
    <ImageOffset>0</ImageOffset>
    <PixelOffset>4</PixelOffset>
    <LineOffset>{}</LineOffset>
    <ByteOrder>LSB</ByteOrder>
  </VRTRasterBand>
</VRTDataset>
"#,
        width_px * 4
    );
    std::fs::write(&vrt, text).expect("write vrt");
    vrt
}

/// Runs a Python snippet with `/usr/bin/python3`; panics with its stderr when it fails.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command line tool; panics with its stderr when it fails.
pub fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small deterministic generator (SplitMix64) so test data never depends on a crate's
/// version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    pub fn plane(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// The real fixtures folder (`../shared/fixtures/real` from the repository root), when present.
pub fn real_fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real");
    dir.is_dir().then_some(dir)
}

/// Asserts two planes agree within `tol` (absolute), with nodata (NaN) in the same places.
pub fn assert_close(what: &str, ours: &[f32], oracle: &[f32], tol: f32) {
    assert_eq!(ours.len(), oracle.len(), "{what}: lengths differ");
    let mut worst = 0.0f32;
    let mut worst_at = 0;
    for (i, (a, b)) in ours.iter().zip(oracle).enumerate() {
        assert!(!a.is_infinite(), "{what}: infinity at {i}");
        assert_eq!(
            a.is_nan(),
            b.is_nan(),
            "{what}: nodata differs at {i}: ours {a}, oracle {b}"
        );
        if !a.is_nan() {
            let d = (a - b).abs();
            if d > worst {
                worst = d;
                worst_at = i;
            }
        }
    }
    assert!(
        worst <= tol,
        "{what}: max abs difference {worst} at {worst_at} (ours {}, oracle {}) exceeds {tol}",
        ours[worst_at],
        oracle[worst_at]
    );
}
