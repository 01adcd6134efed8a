//! Web Mercator tile rendering checked against `gdalwarp -t_srs EPSG:3857 -r bilinear` on a
//! synthetic UTM COG written by the engine's own COG writer: values inside, at the raster's
//! edge and around a nodata hole, on full resolution and on an overview; the empty answer for
//! a tile outside; PNG colours and transparency; zoom range against GDAL's suggested warp.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::grid::{Grid, Window};
use engine::io::cog::{BandMeta, CogWriter, Compression};
use engine::render::Colormap;
use engine::render::{TileId, TileSource, WEB_MERCATOR_HALF_M};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::Dataset;

/// Raster side in pixels (overviews at 1024 and 512 px).
const SIDE_PX: usize = 2048;
/// Pixel size in metres: at 45° N a z14 tile pixel is ~1.02 of it (full resolution read) and
/// a z13 pixel ~1.02 of the first overview's, so `gdalwarp` keeps its 4-sample bilinear
/// (it widens the kernel only past 5 % downsampling) and both sample the same way.
const PIXEL_M: f64 = 6.6;
/// Top-left corner in UTM 33N (~45.05° N, 15.5° E).
const ORIGIN_M: (f64, f64) = (540_000.0, 4_990_000.0);
const NODATA: f64 = -9999.0;
/// Centre and radius of the nodata hole, in pixels.
const HOLE_PX: (f64, f64, f64) = (1300.0, 900.0, 150.0);

/// Values differ by PROJ evaluated on an 8 px mesh versus per pixel (`-et 0`) and by f32
/// versus f64 interpolation arithmetic; the field's gradient is below 2 per pixel. Seen:
/// 1.5e-5 (one f32 ulp at 100); allowed: 1e-4 on values of 40..170 (~1e-6 relative).
const VALUE_TOLERANCE: f32 = 1e-4;

fn value_at(c: usize, r: usize) -> f32 {
    let (x, y) = (c as f64, r as f64);
    let (dx, dy) = (x + 0.5 - HOLE_PX.0, y + 0.5 - HOLE_PX.1);
    if dx.hypot(dy) < HOLE_PX.2 {
        return f32::NAN;
    }
    (100.0 + 40.0 * (x / 23.0).sin() * (y / 31.0).cos() + 0.02 * x - 0.01 * y) as f32
}

fn utm_wkt() -> String {
    SpatialRef::from_epsg(32633).unwrap().to_wkt().unwrap()
}

/// Writes the synthetic COG (512 px tiles, overviews filled by the writer) into `dir`.
fn write_cog(dir: &Path) -> PathBuf {
    let grid = Grid {
        width_px: SIDE_PX,
        height_px: SIDE_PX,
        geotransform: [ORIGIN_M.0, PIXEL_M, 0.0, ORIGIN_M.1, 0.0, -PIXEL_M],
        crs_wkt: utm_wkt(),
        epsg: Some(32633),
    };
    let path = dir.join("synthetic.tif");
    let mut writer = CogWriter::create(&path, &grid, 1, NODATA, Compression::Deflate).unwrap();
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for ty in 0..SIDE_PX / 512 {
        for tx in 0..SIDE_PX / 512 {
            let w = Window::new((tx * 512) as i64, (ty * 512) as i64, 512, 512);
            let mut data = Vec::with_capacity(512 * 512);
            for r in 0..512 {
                for c in 0..512 {
                    let v = value_at(tx * 512 + c, ty * 512 + r);
                    if v.is_finite() {
                        lo = lo.min(f64::from(v));
                        hi = hi.max(f64::from(v));
                    }
                    data.push(v);
                }
            }
            writer.write_tile(w, vec![data]).unwrap();
        }
    }
    writer
        .finish(&[BandMeta {
            description: "value".into(),
            statistics: Some((lo, hi, 100.0, 20.0)),
        }])
        .unwrap()
}

/// The tile at `zoom` containing source pixel `(c, r)`.
fn tile_containing(zoom: u8, c: f64, r: f64) -> TileId {
    let mut utm = SpatialRef::from_epsg(32633).unwrap();
    utm.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut merc = SpatialRef::from_epsg(3857).unwrap();
    merc.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let t = CoordTransform::new(&utm, &merc).unwrap();
    let mut x = [ORIGIN_M.0 + c * PIXEL_M];
    let mut y = [ORIGIN_M.1 - r * PIXEL_M];
    t.transform_coords(&mut x, &mut y, &mut []).unwrap();
    let span_m = 2.0 * WEB_MERCATOR_HALF_M / f64::from(1u32 << zoom);
    let tx = ((x[0] + WEB_MERCATOR_HALF_M) / span_m).floor() as u32;
    let ty = ((WEB_MERCATOR_HALF_M - y[0]) / span_m).floor() as u32;
    TileId::new(zoom, tx, ty).unwrap()
}

/// `gdalwarp`'s values for the tile (nodata as `NaN`), reading raster level `ovr`
/// (`None`: full resolution) with an exact per-pixel transform.
fn gdalwarp_tile(src: &Path, tile: TileId, size_px: usize, ovr: Option<usize>) -> Vec<f32> {
    let dst = src.with_file_name(format!(
        "oracle_{}_{}_{}_{size_px}.tif",
        tile.z, tile.x, tile.y
    ));
    let [xmin, ymin, xmax, ymax] = tile.bounds_m();
    let ovr_arg = ovr.map_or("NONE".to_string(), |k| k.to_string());
    let size = size_px.to_string();
    let status = Command::new("gdalwarp")
        .args(["-q", "-overwrite", "-t_srs", "EPSG:3857", "-te"])
        .args([xmin, ymin, xmax, ymax].map(|v| v.to_string()))
        .args([
            "-ts", &size, &size, "-r", "bilinear", "-et", "0", "-ovr", &ovr_arg,
        ])
        .args(["-ot", "Float32", "-of", "GTiff"])
        .arg(src)
        .arg(&dst)
        .status()
        .expect("gdalwarp runs");
    assert!(status.success(), "gdalwarp failed for {tile:?}");
    let ds = Dataset::open(&dst).unwrap();
    let rb = ds.rasterband(1).unwrap();
    assert_eq!(
        rb.no_data_value(),
        Some(NODATA),
        "gdalwarp keeps the source nodata"
    );
    let buf = rb
        .read_as::<f32>((0, 0), (size_px, size_px), (size_px, size_px), None)
        .unwrap();
    buf.data()
        .iter()
        .map(|&v| if f64::from(v) == NODATA { f32::NAN } else { v })
        .collect()
}

/// Compares ours with the oracle; returns (valid pixels, nodata pixels).
fn check_against_oracle(name: &str, ours: &[f32], oracle: &[f32]) -> (usize, usize) {
    assert_eq!(ours.len(), oracle.len());
    let (mut valid, mut nodata, mut mask_mismatch) = (0, 0, 0);
    let mut worst = (0.0f32, 0usize);
    for (i, (&a, &b)) in ours.iter().zip(oracle).enumerate() {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => nodata += 1,
            (false, false) => {
                valid += 1;
                let d = (a - b).abs();
                if d > worst.0 {
                    worst = (d, i);
                }
            }
            _ => mask_mismatch += 1,
        }
    }
    let side = (ours.len() as f64).sqrt() as usize;
    assert!(
        worst.0 <= VALUE_TOLERANCE,
        "{name}: worst difference {} at pixel ({}, {}): ours {} gdalwarp {}",
        worst.0,
        worst.1 % side,
        worst.1 / side,
        ours[worst.1],
        oracle[worst.1]
    );
    // A target pixel whose source position lay within the mesh error (~1e-6 px) of a
    // valid/nodata boundary could fall either way; none does in these tiles, so the masks
    // must be identical.
    assert_eq!(
        mask_mismatch, 0,
        "{name}: pixels nodata in one and not the other"
    );
    eprintln!(
        "{name}: {valid} valid, {nodata} nodata, {mask_mismatch} mask mismatches, worst \
         difference {}",
        worst.0
    );
    (valid, nodata)
}

struct Fixture {
    _dir: tempfile::TempDir,
    cog: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cog = write_cog(dir.path());
    Fixture { _dir: dir, cog }
}

#[test]
fn full_resolution_tiles_match_gdalwarp_inside_at_edges_and_around_nodata() {
    let f = fixture();
    let source = TileSource::open(&f.cog, 1).unwrap();
    // Over the nodata hole; over the raster's top-left corner (partly outside); and a
    // 512 px tile one zoom up, which has the same pixel size.
    let cases = [
        ("hole z14", tile_containing(14, HOLE_PX.0, HOLE_PX.1), 256),
        ("corner z14", tile_containing(14, 0.0, 0.0), 256),
        (
            "hole z13@2x",
            tile_containing(13, HOLE_PX.0, HOLE_PX.1),
            512,
        ),
    ];
    for (name, tile, size_px) in cases {
        let ours = source
            .warp_tile(tile, size_px)
            .unwrap()
            .expect("the tile overlaps the raster");
        assert_eq!(ours.overview, None, "{name}: reads full resolution");
        assert_eq!(ours.size_px, size_px);
        let oracle = gdalwarp_tile(&f.cog, tile, size_px, None);
        let (valid, nodata) = check_against_oracle(name, &ours.values, &oracle);
        // Each case exercises both data and nodata (the hole, or the outside).
        assert!(valid > 1000, "{name}: {valid} valid pixels");
        assert!(nodata > 100, "{name}: {nodata} nodata pixels");
    }
}

#[test]
fn coarser_tiles_read_the_overview_just_finer_than_the_tile_like_gdalwarp_ovr() {
    let f = fixture();
    let source = TileSource::open(&f.cog, 1).unwrap();
    let tile = tile_containing(13, HOLE_PX.0, HOLE_PX.1);
    let ours = source.warp_tile(tile, 256).unwrap().expect("inside");
    // The tile's pixel is ~2.05 source pixels: the 2× overview (13.2 m) is just finer.
    assert_eq!(ours.overview, Some(0));
    let oracle = gdalwarp_tile(&f.cog, tile, 256, Some(0));
    let (valid, nodata) = check_against_oracle("hole z13 overview 0", &ours.values, &oracle);
    assert!(
        valid > 10_000 && nodata > 100,
        "{valid} valid, {nodata} nodata"
    );

    // Much coarser: the coarsest (4×) overview, and the values stay in the data's range.
    let tile = tile_containing(10, 1024.0, 1024.0);
    let coarse = source.warp_tile(tile, 256).unwrap().expect("inside");
    assert_eq!(coarse.overview, Some(1));
    let finite: Vec<f32> = coarse
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    assert!(!finite.is_empty());
    assert!(finite.iter().all(|v| (40.0..=180.0).contains(v)));
}

#[test]
fn tiles_outside_the_raster_are_empty() {
    let f = fixture();
    let source = TileSource::open(&f.cog, 1).unwrap();
    let inside = tile_containing(14, 1024.0, 1024.0);
    for (dx, dy) in [(20i64, 0i64), (0, -20), (-20, 20)] {
        let tile = TileId::new(
            inside.z,
            (i64::from(inside.x) + dx) as u32,
            (i64::from(inside.y) + dy) as u32,
        )
        .unwrap();
        assert_eq!(source.warp_tile(tile, 256).unwrap(), None, "{tile:?}");
        // gdalwarp agrees: nothing but nodata there.
        let oracle = gdalwarp_tile(&f.cog, tile, 256, None);
        assert!(oracle.iter().all(|v| v.is_nan()), "{tile:?}");
    }
    // The other side of the world (outside UTM 33N's domain) is empty too, not garbage.
    let antipode = TileId::new(14, inside.x ^ (1 << 13), inside.y).unwrap();
    assert_eq!(source.warp_tile(antipode, 256).unwrap(), None);
    // So is a tile over the nodata hole's centre only at a deep zoom.
    let in_hole = tile_containing(18, HOLE_PX.0, HOLE_PX.1);
    assert_eq!(source.warp_tile(in_hole, 256).unwrap(), None);
}

#[test]
fn png_is_the_colormap_of_the_values_with_nodata_transparent() {
    let f = fixture();
    let tile = tile_containing(14, HOLE_PX.0, HOLE_PX.1);
    let colormap = Colormap::named("viridis").unwrap();
    let style = engine::render::Style {
        vmin: 60.0,
        vmax: 140.0,
        colormap: colormap.clone(),
    };
    // Informational only (not asserted): open + read + warp + colour + encode.
    let started = std::time::Instant::now();
    let source = TileSource::open(&f.cog, 1).unwrap();
    let png_bytes = source
        .render_png(tile, 256, &style)
        .unwrap()
        .expect("inside");
    eprintln!(
        "one 256 px tile, opened and rendered: {:?}",
        started.elapsed()
    );
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut rgba = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgba).unwrap();
    assert_eq!((info.width, info.height), (256, 256));
    assert_eq!(info.color_type, png::ColorType::Rgba);
    // Colours from gdalwarp's values through the same lookup: equal, or the neighbouring
    // entry where the value difference (≤ 2e-3) crosses an entry boundary (80/255 ≈ 0.31).
    let oracle = gdalwarp_tile(&f.cog, tile, 256, None);
    let (mut exact, mut near, mut transparent) = (0, 0, 0);
    for (px, &v) in rgba.chunks_exact(4).zip(&oracle) {
        if v.is_nan() {
            assert_eq!(px, [0, 0, 0, 0], "nodata is fully transparent");
            transparent += 1;
            continue;
        }
        let want = colormap.color(v, 60.0, 140.0);
        if px == want {
            exact += 1;
        } else {
            let t = ((v - 60.0) / 80.0).clamp(0.0, 1.0) * 255.0;
            let neighbours = [t.floor(), t.ceil()].map(|e| colormap.entry(e as u8));
            assert!(
                neighbours.contains(&[px[0], px[1], px[2], px[3]]),
                "{px:?} for {v}"
            );
            near += 1;
        }
    }
    assert!(transparent > 100, "the hole is in the tile");
    assert!(near * 1000 <= exact, "{near} near misses for {exact} exact");
}

#[test]
fn zoom_range_and_statistics_come_from_the_cog() {
    let f = fixture();
    let source = TileSource::open(&f.cog, 1).unwrap();
    // GDAL's own suggested Web Mercator resolution for the raster (gdalwarp without -tr).
    let vrt = f.cog.with_file_name("suggested.vrt");
    let status = Command::new("gdalwarp")
        .args(["-q", "-overwrite", "-of", "VRT", "-t_srs", "EPSG:3857"])
        .arg(&f.cog)
        .arg(&vrt)
        .status()
        .unwrap();
    assert!(status.success());
    let res_m = Dataset::open(&vrt).unwrap().geo_transform().unwrap()[1];
    let z = (2.0 * WEB_MERCATOR_HALF_M / 256.0 / res_m).log2();
    let (minzoom, maxzoom) = source.zoom_range().unwrap();
    // The raster's pixel is ~1.02 z14 pixels: z14 is the closest zoom, the first at least
    // as fine is z15; the 4× overview is about z12.
    assert!((14.0..14.1).contains(&z), "suggested zoom {z}");
    assert_eq!(maxzoom, 15);
    assert_eq!(minzoom, (z - 2.0).floor() as u8);
    let (lo, hi) = source.statistics_range().unwrap();
    assert!(lo < 60.0 && hi > 140.0, "{lo}..{hi}");
    assert!(TileSource::open(&f.cog, 2).is_err(), "one band only");
}
