//! The direct TIFF reader against GDAL: the same file written by `gdal_translate` in every
//! layout the reader takes (and some it leaves to GDAL), read over windows that start, end
//! and cross block edges; every value must be GDAL's, bit for bit.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::grid::Window;
use engine::io::tiff_read::TiffBand;

fn translate(src: &Path, dst: &Path, args: &[&str]) {
    let status = Command::new("gdal_translate")
        .arg("-q")
        .args(args)
        .arg(src)
        .arg(dst)
        .status()
        .expect("run gdal_translate");
    assert!(status.success(), "gdal_translate {args:?}");
}

fn gdal_window(path: &Path, band: usize, w: Window) -> Vec<f32> {
    let ds = gdal::Dataset::open(path).expect("gdal opens it");
    let rb = ds.rasterband(band).expect("band");
    let mut buf = vec![0.0f32; w.len_px()];
    rb.read_into_slice::<f32>(
        (w.x_px as isize, w.y_px as isize),
        (w.width_px, w.height_px),
        (w.width_px, w.height_px),
        &mut buf,
        None,
    )
    .expect("gdal reads it");
    buf
}

/// Windows of a `width` × `height` raster: whole, one pixel, and ones that start, end and
/// cross block edges of 64 × 32 and of strips of 7 rows.
fn windows(width: usize, height: usize) -> Vec<Window> {
    let mut out = vec![
        Window::new(0, 0, width, height),
        Window::new(0, 0, 1, 1),
        Window::new(width as i64 - 1, height as i64 - 1, 1, 1),
        Window::new(63, 31, 2, 2),
        Window::new(64, 32, 64, 32),
        Window::new(5, 6, width - 11, height - 13),
    ];
    // A deterministic spread of others.
    let mut seed = 0x9e37_79b9_u64;
    let mut next = |m: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    for _ in 0..12 {
        let (x, y) = (next(width), next(height));
        let (w, h) = (1 + next(width - x), 1 + next(height - y));
        out.push(Window::new(x as i64, y as i64, w, h));
    }
    out
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn the_direct_reader_equals_gdal_on_every_layout_it_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scene = fixtures::generate(&fixtures::SceneSpec::landsat(301, 223, 11), dir.path())
        .expect("synthetic scene");
    let roles = ["red", "nir", "swir1"];
    let band_files: Vec<PathBuf> = roles
        .iter()
        .map(|r| scene.path(r).expect("role").to_path_buf())
        .collect();
    // Three bands in one file, to make pixel- and band-interleaved variants from.
    let vrt = dir.path().join("stack.vrt");
    let status = Command::new("gdalbuildvrt")
        .args(["-q", "-separate"])
        .arg(&vrt)
        .args(&band_files)
        .status()
        .expect("run gdalbuildvrt");
    assert!(status.success());

    let tiled = [
        "-co",
        "TILED=YES",
        "-co",
        "BLOCKXSIZE=64",
        "-co",
        "BLOCKYSIZE=32",
    ];
    let strips = ["-co", "BLOCKYSIZE=7"];
    let cases: Vec<(&str, Vec<&str>, usize)> = vec![
        (
            "u16-deflate-pred2-tiled",
            [
                &tiled[..],
                &["-co", "COMPRESS=DEFLATE", "-co", "PREDICTOR=2"],
            ]
            .concat(),
            1,
        ),
        (
            "u16-zstd-pred2-strips",
            [&strips[..], &["-co", "COMPRESS=ZSTD", "-co", "PREDICTOR=2"]].concat(),
            1,
        ),
        ("u16-raw-strips", strips.to_vec(), 1),
        (
            "i16-deflate-pred2",
            vec![
                "-ot",
                "Int16",
                "-co",
                "COMPRESS=DEFLATE",
                "-co",
                "PREDICTOR=2",
            ],
            1,
        ),
        (
            "u8-deflate-pred2-tiled",
            [
                &tiled[..],
                &[
                    "-ot",
                    "Byte",
                    "-scale",
                    "0",
                    "65535",
                    "0",
                    "255",
                    "-co",
                    "COMPRESS=DEFLATE",
                    "-co",
                    "PREDICTOR=2",
                ],
            ]
            .concat(),
            1,
        ),
        (
            "u32-zstd-pred2",
            vec![
                "-ot",
                "UInt32",
                "-co",
                "COMPRESS=ZSTD",
                "-co",
                "PREDICTOR=2",
            ],
            1,
        ),
        (
            "i32-deflate",
            vec!["-ot", "Int32", "-co", "COMPRESS=DEFLATE"],
            1,
        ),
        (
            "f32-deflate-pred3-tiled",
            [
                &tiled[..],
                &[
                    "-ot",
                    "Float32",
                    "-scale",
                    "0",
                    "65535",
                    "-1",
                    "1",
                    "-co",
                    "COMPRESS=DEFLATE",
                    "-co",
                    "PREDICTOR=3",
                ],
            ]
            .concat(),
            1,
        ),
        (
            "f32-zstd-pred3-strips",
            [
                &strips[..],
                &[
                    "-ot",
                    "Float32",
                    "-co",
                    "COMPRESS=ZSTD",
                    "-co",
                    "PREDICTOR=3",
                ],
            ]
            .concat(),
            1,
        ),
        (
            "f32-raw-bigtiff",
            vec!["-ot", "Float32", "-co", "BIGTIFF=YES"],
            1,
        ),
        (
            "pixel-interleaved-pred2",
            [
                &tiled[..],
                &[
                    "-co",
                    "INTERLEAVE=PIXEL",
                    "-co",
                    "COMPRESS=DEFLATE",
                    "-co",
                    "PREDICTOR=2",
                ],
            ]
            .concat(),
            3,
        ),
        (
            "pixel-interleaved-f32-pred3",
            [
                &strips[..],
                &[
                    "-ot",
                    "Float32",
                    "-co",
                    "INTERLEAVE=PIXEL",
                    "-co",
                    "COMPRESS=DEFLATE",
                    "-co",
                    "PREDICTOR=3",
                ],
            ]
            .concat(),
            3,
        ),
        (
            "band-interleaved-pred2",
            [
                &tiled[..],
                &[
                    "-co",
                    "INTERLEAVE=BAND",
                    "-co",
                    "COMPRESS=ZSTD",
                    "-co",
                    "PREDICTOR=2",
                ],
            ]
            .concat(),
            3,
        ),
    ];
    for (name, args, bands) in cases {
        let src = if bands == 1 { &band_files[0] } else { &vrt };
        let path = dir.path().join(format!("{name}.tif"));
        translate(src, &path, &args);
        for band in 1..=bands {
            let reader = TiffBand::open(path.to_str().expect("utf-8"), band)
                .expect("readable")
                .unwrap_or_else(|| panic!("{name}: the direct reader takes this layout"));
            let mut nonzero = 0usize;
            for w in windows(301, 223) {
                let want = gdal_window(&path, band, w);
                let mut got = vec![0.0f32; w.len_px()];
                assert!(reader.read(w, None, &mut got).expect("reads"), "{name}");
                assert!(same_bits(&got, &want), "{name} band {band} window {w:?}");
                nonzero += got.iter().filter(|v| **v != 0.0).count();
            }
            assert!(nonzero > 1000, "{name} band {band}: the fixture has values");
        }
    }

    // Nodata (and infinities) become NaN as the values are decoded.
    let path = dir.path().join("u16-deflate-pred2-tiled.tif");
    let reader = TiffBand::open(path.to_str().expect("utf-8"), 1)
        .expect("readable")
        .expect("taken");
    let whole = Window::new(0, 0, 301, 223);
    let raw = gdal_window(&path, 1, whole);
    let mut got = vec![0.0f32; whole.len_px()];
    assert!(reader.read(whole, Some(0.0), &mut got).expect("reads"));
    let zeros = raw.iter().filter(|v| **v == 0.0).count();
    assert!(zeros > 0, "the fixture has a fill collar of zeros");
    for (g, r) in got.iter().zip(&raw) {
        if *r == 0.0 {
            assert!(g.is_nan());
        } else {
            assert_eq!(g.to_bits(), r.to_bits());
        }
    }

    // Layouts it leaves to GDAL, and files that are not TIFF at all.
    for (name, args) in [
        ("lzw", vec!["-co", "COMPRESS=LZW"]),
        ("f64", vec!["-ot", "Float64"]),
    ] {
        let path = dir.path().join(format!("{name}.tif"));
        translate(&band_files[0], &path, &args);
        let reader = TiffBand::open(path.to_str().expect("utf-8"), 1).expect("readable");
        assert!(reader.is_none(), "{name} is left to GDAL");
    }
    assert!(TiffBand::open(vrt.to_str().expect("utf-8"), 1)
        .expect("readable")
        .is_none());
    assert!(TiffBand::open("/nonexistent/x.tif", 1)
        .expect("no error")
        .is_none());
}
