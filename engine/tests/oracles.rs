//! End-to-end runs checked against independent oracles (numpy, `gdaldem`,
//! `gdal_pansharpen.py`, GDAL's COG validator, PROJ through GDAL's Python bindings), on
//! synthetic fixtures always and on the real rasters in `../shared/fixtures/real` when present.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::io::scene::{InputSpec, Scene};
use engine::pipeline::Prepared;
use engine::recipe::{self, Params, Recipe};
use engine::run::{run, RunOptions, RunSummary};
use serde_json::{json, Value};

fn oracle(check: &str, args: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/oracle.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(check)
        .arg(args.to_string())
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "oracle {check} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle prints json")
}

fn real(name: &str) -> Option<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/real")
        .join(name);
    p.is_file().then(|| p.display().to_string())
}

fn params(kv: &[(&str, &str)]) -> Params {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run_recipe(recipe: Recipe, inputs: &[String], out: &Path, tile_px: usize) -> RunSummary {
    let prepared = Prepared::new(recipe).expect("valid recipe");
    let specs: Vec<InputSpec> = inputs
        .iter()
        .map(|s| InputSpec::parse(s).expect("valid input"))
        .collect();
    let scene = Scene::open(&specs, &prepared.recipe).expect("scene opens");
    let opts = RunOptions {
        out_dir: out.to_path_buf(),
        tile_px,
        workers: 2,
        ..RunOptions::default()
    };
    run(&prepared, &scene, &opts, &|_, _| {}).expect("run succeeds")
}

fn named(name: &str, p: &Params) -> Recipe {
    recipe::by_name(name, p).expect("known recipe")
}

/// Asserts an oracle comparison: within `tol`, nodata in the same places, no infinity.
fn assert_match(what: &str, r: &Value, tol: f64) {
    let max = r["max_abs_diff"].as_f64().expect("number");
    assert_eq!(r["inf"], 0, "{what}: infinity in output: {r}");
    assert_eq!(r["nodata_mismatch"], 0, "{what}: nodata differs: {r}");
    assert!(
        r["valid"].as_u64().expect("count") > 0,
        "{what}: nothing compared: {r}"
    );
    assert!(max <= tol, "{what}: max abs diff {max} > {tol}: {r}");
}

/// Asserts the output is a valid COG with the expected layout and statistics.
fn assert_cog(s: &RunSummary) {
    let path = s.cog.display().to_string();
    let r = oracle("cog", json!({ "path": path }));
    assert_eq!(r["errors"], json!([]), "{path}: {r}");
    assert_eq!(r["warnings"], json!([]), "{path}: {r}");
    assert_eq!(r["compression"], "DEFLATE", "{r}");
    assert_eq!(r["predictor"], "3", "{r}");
    assert_eq!(r["layout"], "COG", "{r}");
    assert_eq!(r["block"], json!([512, 512]), "{r}");
    if s.width_px.max(s.height_px) > 1024 {
        assert!(r["overviews"].as_u64().expect("count") >= 1, "{r}");
    }
    assert_eq!(r["nodata"], json!(-9999.0), "{r}");
    // GDAL's own statistics of the file agree with the ones we computed while streaming.
    let b = &s.bands[0];
    if b.stats.count > 0 {
        let gdal_stats: Vec<f64> = serde_json::from_value(r["stats"].clone()).expect("stats");
        let ours = [
            b.stats.min,
            b.stats.max,
            b.stats.mean,
            b.stats.std().expect("some"),
        ];
        for (g, o) in gdal_stats.iter().zip(ours) {
            assert!(
                (g - o).abs() <= 1e-5 * (1.0 + o.abs()),
                "stats {gdal_stats:?} vs {ours:?}"
            );
        }
    }
    // No partial files left beside the output.
    let dir = s.cog.parent().expect("folder");
    for entry in std::fs::read_dir(dir).expect("list") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        assert!(!name.starts_with('.'), "leftover partial file {name}");
    }
    // The STAC Item describes the COG.
    let item: Value =
        serde_json::from_slice(&std::fs::read(&s.stac).expect("stac written")).expect("json");
    assert_eq!(item["type"], "Feature");
    assert_eq!(item["stac_version"], "1.0.0");
    assert_eq!(
        item["assets"]["data"]["type"],
        "image/tiff; application=geotiff; profile=cloud-optimized"
    );
    assert_eq!(
        item["properties"]["proj:shape"],
        json!([s.height_px, s.width_px])
    );
    let ring = item["geometry"]["coordinates"][0].as_array().expect("ring");
    assert!(ring.len() > 4 && ring.first() == ring.last(), "closed ring");
    assert_eq!(
        item["assets"]["data"]["raster:bands"][0]["statistics"]["minimum"]
            .as_f64()
            .unwrap_or(f64::NAN)
            .is_nan(),
        b.stats.count == 0
    );
}

struct Synthetic {
    _dir: tempfile::TempDir,
    scene: fixtures::GeneratedScene,
    out: PathBuf,
}

fn synthetic(spec: fixtures::SceneSpec) -> Synthetic {
    let dir = tempfile::tempdir().expect("tempdir");
    let input_dir = dir.path().join("in");
    std::fs::create_dir_all(&input_dir).expect("mkdir");
    let scene = fixtures::generate(&spec, &input_dir).expect("fixtures");
    let out = dir.path().join("out");
    Synthetic {
        _dir: dir,
        scene,
        out,
    }
}

fn role_inputs(scene: &fixtures::GeneratedScene, roles: &[&str]) -> Vec<String> {
    roles
        .iter()
        .map(|r| format!("{r}={}", scene.path(r).expect("role").display()))
        .collect()
}

fn path_of(scene: &fixtures::GeneratedScene, role: &str) -> String {
    scene.path(role).expect("role").display().to_string()
}

#[test]
fn landsat_c2l2_indices_match_numpy_on_synthetic_scene() {
    let s = synthetic(fixtures::SceneSpec::landsat(700, 600, 11));
    let p = Params::new();
    for (index, roles) in [
        ("ndvi", vec!["nir", "red"]),
        ("ndwi", vec!["green", "nir"]),
        ("nbr", vec!["nir", "swir2"]),
        ("evi", vec!["nir", "red", "blue"]),
        ("savi", vec!["nir", "red"]),
    ] {
        let mut inputs = role_inputs(&s.scene, &roles);
        inputs.push(format!("qa={}", path_of(&s.scene, "qa")));
        let summary = run_recipe(
            named(&format!("{index}-landsat-c2l2"), &p),
            &inputs,
            &s.out.join(index),
            256,
        );
        assert_eq!(summary.tiles, 9);
        let bands: serde_json::Map<String, Value> = roles
            .iter()
            .map(|r| (r.to_string(), json!(path_of(&s.scene, r))))
            .collect();
        let r = oracle(
            "index",
            json!({"sensor": "landsat-c2l2", "index": index, "bands": bands,
                   "qa": path_of(&s.scene, "qa"), "ours": summary.cog.display().to_string()}),
        );
        // Same float32 operations in the same order as numpy: expected bit-exact; the
        // tolerance allows one ulp near 1.
        assert_match(index, &r, 2e-7);
        assert_cog(&summary);
        // The streamed, merged statistics and histogram agree with numpy's on the same pixels.
        let want: Vec<f64> = serde_json::from_value(r["stats"].clone()).expect("stats");
        let st = summary.bands[0].stats;
        let got = [st.min, st.max, st.mean, st.std().expect("valid pixels")];
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-9 * (1.0 + w.abs()),
                "{index} stats {got:?} vs {want:?}"
            );
        }
        if index != "evi" {
            // EVI leaves [-1, 1]; the others stay inside, so every valid pixel is counted.
            let want: Vec<u64> = serde_json::from_value(r["histogram"].clone()).expect("histogram");
            let hist = summary.bands[0].histogram.as_ref().expect("histogram");
            assert_eq!(hist.bins.iter().sum::<u64>(), st.count, "{index}");
            // Bin edges are computed differently (f64 division vs numpy's edges): a pixel on
            // an edge may land one bin over.
            let moved: u64 = hist
                .bins
                .iter()
                .zip(&want)
                .map(|(a, b)| a.abs_diff(*b))
                .sum();
            assert!(
                moved <= st.count / 10_000 + 2,
                "{index}: histogram {:?} vs {want:?}",
                hist.bins
            );
        }
    }
}

#[test]
fn landsat_c2l2_ndvi_matches_numpy_on_real_scene() {
    let c2 = "LC08_L2SP_008059_20191201_20200825_02_T1";
    let (Some(red), Some(nir), Some(qa)) = (
        real(&format!("{c2}_SR_B4.TIF")),
        real(&format!("{c2}_SR_B5.TIF")),
        real(&format!("{c2}_QA_PIXEL.TIF")),
    ) else {
        eprintln!("real fixtures absent: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = run_recipe(
        named("ndvi-landsat-c2l2", &Params::new()),
        &[red.clone(), nir.clone(), qa.clone()],
        dir.path(),
        128,
    );
    let r = oracle(
        "index",
        json!({"sensor": "landsat-c2l2", "index": "ndvi", "bands": {"red": red, "nir": nir},
               "qa": qa, "ours": summary.cog.display().to_string()}),
    );
    assert_match("real c2l2 ndvi", &r, 2e-7);
    // 52 % of that scene is high-confidence cloud and 31 % fill: most pixels are masked.
    assert!(summary.bands[0].stats.count < 512 * 512 / 5);
    assert_cog(&summary);
    assert!(summary
        .cog
        .file_name()
        .expect("name")
        .to_string_lossy()
        .starts_with(c2));
}

#[test]
fn landsat_l1_toa_ndvi_with_legacy_bqa_matches_numpy_on_real_scene() {
    let (Some(red), Some(nir), Some(qa), Some(mtl)) = (
        real("l8_B4.tif"),
        real("l8_B5.tif"),
        real("l8_BQA.tif"),
        real("l8_MTL.txt"),
    ) else {
        eprintln!("real fixtures absent: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = [red.clone(), nir.clone(), qa.clone()];
    let specs: Vec<InputSpec> = inputs
        .iter()
        .map(|s| InputSpec::parse(s).expect("spec"))
        .collect();
    let recipe = named("ndvi-landsat-l1", &Params::new());
    let scene = Scene::open(&specs, &recipe).expect("scene");
    // The MTL beside the bands is found by name.
    let resolved = scene.resolve(recipe, &Params::new()).expect("resolves");
    assert!(
        resolved.description.contains("l8_MTL.txt"),
        "{}",
        resolved.description
    );
    let prepared = Prepared::new(resolved).expect("prepared");
    let opts = RunOptions {
        out_dir: dir.path().to_path_buf(),
        tile_px: 200,
        ..RunOptions::default()
    };
    let summary = run(&prepared, &scene, &opts, &|_, _| {}).expect("run");
    assert!(
        summary.cog.ends_with("l8_ndvi-landsat-l1.tif"),
        "{}",
        summary.cog.display()
    );
    let r = oracle(
        "index",
        json!({"sensor": "landsat-l1", "index": "ndvi", "mtl": mtl, "qa": qa,
               "bands": {"red": [red, 4], "nir": [nir, 5]},
               "ours": summary.cog.display().to_string()}),
    );
    // TOA in f32 (ours) vs f64 then f32 (numpy): a few ulps on the ratio.
    assert_match("l1 toa ndvi", &r, 2e-6);
    // The legacy BQA marks clouds in this scene (cloud cover 11 %): some pixels are masked.
    assert!(summary.bands[0].stats.count < 627 * 603);
    assert_cog(&summary);
}

#[test]
fn sentinel2_ndvi_with_half_resolution_scl_matches_numpy() {
    // An odd size, so the 20 m SCL grid does not divide evenly into tiles.
    let s = synthetic(fixtures::SceneSpec::sentinel2(515, 5));
    let summary = run_recipe(
        named("ndvi-sentinel2-l2a", &Params::new()),
        &role_inputs(&s.scene, &["red", "nir", "scl"]),
        &s.out,
        200,
    );
    let r = oracle(
        "index",
        json!({"sensor": "sentinel2-l2a", "index": "ndvi",
               "bands": {"red": path_of(&s.scene, "red"), "nir": path_of(&s.scene, "nir")},
               "scl": path_of(&s.scene, "scl"), "ours": summary.cog.display().to_string()}),
    );
    assert_match("s2 ndvi", &r, 2e-7);
    assert_cog(&summary);
    // The overview built tile by tile is the mean of the valid pixels of each 2×2 block.
    let r = oracle(
        "overview",
        json!({"path": summary.cog.display().to_string()}),
    );
    assert_eq!(r["overviews"], 1, "{r}");
    assert_match("overview", &r, 1e-6);
}

#[test]
fn sentinel2_ndvi_matches_numpy_on_real_scene() {
    let (Some(red), Some(nir), Some(scl)) = (real("B04.tif"), real("B08.tif"), real("SCL.tif"))
    else {
        eprintln!("real fixtures absent: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A 2020 product: before processing baseline 04.00, so no BOA offset.
    let p = params(&[("boa_add_offset", "0")]);
    let summary = run_recipe(
        named("ndvi-sentinel2-l2a", &p),
        &[red.clone(), nir.clone(), scl.clone()],
        dir.path(),
        512,
    );
    let r = oracle(
        "index",
        json!({"sensor": "sentinel2-l2a", "index": "ndvi", "boa_add_offset": 0.0,
               "bands": {"red": red, "nir": nir}, "scl": scl,
               "ours": summary.cog.display().to_string()}),
    );
    assert_match("real s2 ndvi", &r, 2e-7);
    // Bare desert: NDVI is low (0.05–0.08 for most pixels).
    let mean = summary.bands[0].stats.mean().expect("valid pixels");
    assert!((0.0..0.15).contains(&mean), "mean ndvi {mean}");
    assert_cog(&summary);
}

#[test]
fn tiled_run_equals_whole_scene_run_bit_for_bit() {
    let s = synthetic(fixtures::SceneSpec::sentinel2(515, 9));
    let inputs = role_inputs(&s.scene, &["red", "nir", "scl"]);
    let read = |p: &Path| -> Vec<f32> {
        let ds = gdal::Dataset::open(p).expect("open output");
        let b = ds.rasterband(1).expect("band");
        b.read_band_as::<f32>().expect("read").data().to_vec()
    };
    let recipe = named("ndvi-sentinel2-l2a", &Params::new());
    let whole = run_recipe(recipe.clone(), &inputs, &s.out.join("whole"), 4096);
    assert_eq!(whole.tiles, 1);
    let reference = read(&whole.cog);
    for tile_px in [64, 100, 333] {
        let tiled = run_recipe(
            recipe.clone(),
            &inputs,
            &s.out.join(format!("t{tile_px}")),
            tile_px,
        );
        assert!(tiled.tiles > 1);
        let got = read(&tiled.cog);
        assert!(
            got.iter()
                .zip(&reference)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "tile {tile_px} differs from the whole-scene run"
        );
        assert_eq!(tiled.bands[0].stats.count, whole.bands[0].stats.count);
    }
}

#[test]
fn expression_matches_numpy_on_multiband_file() {
    let path = match real("L7_ETMs.tif") {
        Some(p) => p,
        None => {
            // Without the real file, a synthetic Landsat band pair stands in.
            let s = synthetic(fixtures::SceneSpec::landsat(300, 200, 3));
            let red = path_of(&s.scene, "red");
            let nir = path_of(&s.scene, "nir");
            let text = "where(nir > red, sqrt(abs(nir - red)) / (nir + red), -log(red / 1000))";
            let recipe = recipe::expression_recipe(text, &["red".into(), "nir".into()])
                .expect("valid expression");
            let summary = run_recipe(
                recipe,
                &[format!("red={red}"), format!("nir={nir}")],
                &s.out,
                128,
            );
            let r = oracle(
                "expr",
                json!({"bands": {"red": [red, 1], "nir": [nir, 1]},
                       "numpy": "np.where(nir > red, np.sqrt(np.abs(nir - red)) / (nir + red), -np.log(red / np.float32(1000)))",
                       "ours": summary.cog.display().to_string()}),
            );
            assert_match("expr synthetic", &r, 1e-6);
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "where(b4 + b3 > 0, (b4 - b3) / (b4 + b3), -1) * clamp(b1 / 255, 0.1, 0.9)";
    let roles: Vec<String> = (1..=6).map(|i| format!("b{i}")).collect();
    let recipe = recipe::expression_recipe(text, &roles).expect("valid expression");
    let inputs: Vec<String> = (1..=6).map(|i| format!("b{i}={path}#{i}")).collect();
    let summary = run_recipe(recipe, &inputs, dir.path(), 128);
    let r = oracle(
        "expr",
        json!({"bands": {"b1": [path, 1], "b3": [path, 3], "b4": [path, 4]},
               "numpy": "np.where(b4 + b3 > 0, (b4 - b3) / (b4 + b3), np.float32(-1)) * np.clip(b1 / np.float32(255), np.float32(0.1), np.float32(0.9))",
               "ours": summary.cog.display().to_string()}),
    );
    assert_match("expr on L7_ETMs", &r, 1e-6);
    assert_cog(&summary);
}

#[test]
fn hillshade_and_slope_match_gdaldem_on_synthetic_dem() {
    let s = synthetic(fixtures::SceneSpec::dem(400, 300, 21));
    let dem = path_of(&s.scene, "dem");
    let p = Params::new();
    for (name, tol) in [("hillshade", 1.0), ("slope", 1e-3), ("aspect", 1e-3)] {
        let summary = run_recipe(
            named(name, &p),
            &[format!("dem={dem}")],
            &s.out.join(name),
            128,
        );
        let r = oracle(
            "gdaldem",
            json!({"mode": name, "dem": dem, "ours": summary.cog.display().to_string()}),
        );
        // Hillshade: gdaldem rounds to a byte, ours is float (≤ 1 DN). Slope, aspect: degrees.
        assert_match(name, &r, tol);
        assert_cog(&summary);
    }
}

#[test]
fn hillshade_matches_gdaldem_on_real_geographic_dem() {
    let Some(dem) = real("Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif") else {
        eprintln!("real fixtures absent: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A 700×700 crop over São Tomé's high ground, through GDAL's VRT.
    let crop = dir.path().join("crop.vrt");
    let ok = Command::new("gdal_translate")
        .args([
            "-q", "-of", "VRT", "-srcwin", "1400", "1300", "700", "700", &dem,
        ])
        .arg(&crop)
        .status()
        .expect("gdal_translate");
    assert!(ok.success());
    let crop = crop.display().to_string();
    for (name, tol) in [("hillshade", 1.0), ("slope", 1e-3)] {
        let summary = run_recipe(
            named(name, &Params::new()),
            &[format!("dem={crop}")],
            &dir.path().join(name),
            256,
        );
        let r = oracle(
            "gdaldem",
            json!({"mode": name, "dem": crop, "ours": summary.cog.display().to_string(),
                   "extra": ["-s", "111120"]}),
        );
        assert_match(name, &r, tol);
    }
}

#[test]
fn pansharpen_matches_gdalwarp_cubic_and_numpy_brovey_on_real_landsat() {
    let (Some(pan), Some(red), Some(green), Some(blue)) = (
        real("l8_B8.tif"),
        real("l8_B4.tif"),
        real("l8_B3.tif"),
        real("l8_B2.tif"),
    ) else {
        eprintln!("real fixtures absent: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = run_recipe(
        named("pansharpen", &Params::new()),
        &[pan.clone(), red.clone(), green.clone(), blue.clone()],
        dir.path(),
        512,
    );
    assert_eq!((summary.width_px, summary.height_px), (1254, 1207));
    let r = oracle(
        "pansharpen",
        json!({"pan": pan, "ms": [red, green, blue], "ours": summary.cog.display().to_string(),
               "border": 0}),
    );
    // MS resampled by gdalwarp (cubic, georeferenced), Brovey in numpy f64; ours is f32
    // (values up to ~30 000 DN, so an ulp is ~0.002 DN). No border excluded.
    assert_match("pansharpen", &r, 0.01);
    assert_cog(&summary);
}

#[test]
fn footprints_match_proj_through_gdal() {
    let s = synthetic(fixtures::SceneSpec::sentinel2(300, 1));
    let red = path_of(&s.scene, "red");
    let recipe = recipe::expression_recipe("red", &["red".into()]).expect("valid");
    let scene = Scene::open(
        &[InputSpec::parse(&format!("red={red}")).expect("spec")],
        &recipe,
    )
    .expect("scene");
    let f = engine::io::footprint::Footprinter::new(&scene.grid).expect("crs");
    let w = engine::grid::Window::new(100, 50, 128, 128);
    let ring = f.outline(w, 4).expect("outline");
    let points: Vec<[f64; 2]> = [(100.0, 50.0), (100.0, 178.0), (228.0, 178.0), (228.0, 50.0)]
        .iter()
        .map(|&(c, r)| {
            let (x, y) = scene.grid.pixel_to_geo(c, r);
            [x, y]
        })
        .collect();
    let r = oracle(
        "transform",
        json!({"wkt": scene.grid.crs_wkt, "points": points}),
    );
    let want: Vec<[f64; 2]> = serde_json::from_value(r["points"].clone()).expect("points");
    // Corners are ring points 0, 4, 8, 12 (four points per edge).
    for (k, w) in want.iter().enumerate() {
        let (lon, lat) = ring[k * 4];
        assert!(
            (lon - w[0]).abs() < 1e-9 && (lat - w[1]).abs() < 1e-9,
            "{k}: {lon},{lat} vs {w:?}"
        );
    }
    // Counter-clockwise (positive signed area in lon/lat), as GeoJSON wants.
    let area: f64 = ring
        .windows(2)
        .map(|p| p[0].0 * p[1].1 - p[1].0 * p[0].1)
        .sum();
    assert!(area > 0.0);
}

#[test]
fn stencil_recipes_tiled_equal_whole_bit_for_bit() {
    let s = synthetic(fixtures::SceneSpec::dem(300, 260, 4));
    let dem = format!("dem={}", path_of(&s.scene, "dem"));
    let band = format!("band={}", path_of(&s.scene, "dem"));
    let read = |p: &Path| -> Vec<f32> {
        let ds = gdal::Dataset::open(p).expect("open output");
        let b = ds.rasterband(1).expect("band");
        b.read_band_as::<f32>().expect("read").data().to_vec()
    };
    for (name, input) in [
        ("hillshade", &dem),
        ("slope", &dem),
        ("aspect", &dem),
        ("smooth", &band),
        ("edges", &band),
    ] {
        let recipe = named(name, &Params::new());
        let whole = run_recipe(
            recipe.clone(),
            std::slice::from_ref(input),
            &s.out.join(format!("{name}-whole")),
            4096,
        );
        let reference = read(&whole.cog);
        for tile_px in [37, 128] {
            let tiled = run_recipe(
                recipe.clone(),
                std::slice::from_ref(input),
                &s.out.join(format!("{name}-{tile_px}")),
                tile_px,
            );
            let got = read(&tiled.cog);
            assert!(
                got.iter()
                    .zip(&reference)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: tile {tile_px} differs from the whole-scene run"
            );
        }
    }
}

#[test]
fn every_input_data_type_reads_with_its_nodata() {
    let s = synthetic(fixtures::SceneSpec::landsat(160, 120, 6));
    let red = path_of(&s.scene, "red");
    let nir = path_of(&s.scene, "nir");
    for (ot, nodata) in [
        ("Byte", "0"),
        ("Int16", "-32768"),
        ("UInt32", "4000000000"),
        ("Int32", "-1"),
        ("Float32", "nan"),
        ("Float64", "-1e30"),
    ] {
        let dir = s.out.join(ot);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut converted = Vec::new();
        for (role, src) in [("red", &red), ("nir", &nir)] {
            let dst = dir.join(format!("{role}.tif"));
            // Same pixels in another type (Byte rescaled to fit); the fill collar (0) becomes
            // the type's declared nodata value.
            let status = if ot == "Byte" {
                Command::new("gdal_translate")
                    .args([
                        "-q",
                        "-ot",
                        ot,
                        "-scale",
                        "0",
                        "65535",
                        "0",
                        "255",
                        "-a_nodata",
                        nodata,
                        src,
                    ])
                    .arg(&dst)
                    .status()
            } else {
                Command::new("gdalwarp")
                    .args([
                        "-q",
                        "-ot",
                        ot,
                        "-srcnodata",
                        "0",
                        "-dstnodata",
                        nodata,
                        src,
                    ])
                    .arg(&dst)
                    .status()
            }
            .expect("gdal tool");
            assert!(status.success());
            converted.push((role, dst.display().to_string()));
        }
        let text = "(nir - red) / (nir + red)";
        let recipe = recipe::expression_recipe(text, &["red".into(), "nir".into()]).expect("valid");
        let inputs: Vec<String> = converted.iter().map(|(r, p)| format!("{r}={p}")).collect();
        let summary = run_recipe(recipe, &inputs, &dir.join("out"), 64);
        let r = oracle(
            "expr",
            json!({"bands": {"red": [converted[0].1, 1], "nir": [converted[1].1, 1]},
                   "numpy": "(nir - red) / (nir + red)",
                   "ours": summary.cog.display().to_string()}),
        );
        assert_match(ot, &r, 1e-6);
        // The fill collar is nodata, so part of the scene is not counted.
        let count = summary.bands[0].stats.count;
        assert!(count > 0 && count < 160 * 120 * 9 / 10, "{ot}: {count}");
    }
}

/// The COG writer on its own: tiles of any size in any order, two bands, both codecs, a
/// forced BigTIFF. GDAL reads back every pixel bit for bit, every overview equals the level
/// below halved (mean of valid pixels), and the metadata, georeferencing and layout are what
/// GDAL's own COG driver would write; GDAL's validator finds nothing to say.
#[test]
fn the_cog_writer_takes_tiles_of_any_size_in_any_order() {
    use engine::grid::{Grid, Window};
    use engine::io::cog::{BandMeta, CogWriter, Compression};
    use engine::tiling::TilePlan;
    use gdal::Metadata;

    let dir = tempfile::tempdir().expect("temp dir");
    let (w, h) = (1300usize, 700usize);
    let srs = gdal::spatial_ref::SpatialRef::from_epsg(32633).expect("epsg");
    let grid = Grid {
        width_px: w,
        height_px: h,
        geotransform: [300_000.0, 10.0, 0.0, 5_000_000.0, 0.0, -10.0],
        crs_wkt: srs.to_wkt().expect("wkt"),
        epsg: Some(32633),
    };
    // Band b at (x, y): a smooth field with holes (NaN) and an infinity, both become nodata.
    let pixel = |b: usize, x: usize, y: usize| -> f32 {
        if (x * 7 + y * 3 + b) % 11 == 0 {
            f32::NAN
        } else if x == 5 && y == 9 {
            f32::INFINITY
        } else {
            ((x as f32 * 0.013).sin() + (y as f32 * 0.007).cos()) * (b as f32 + 1.0)
        }
    };
    let nodata = -9999.0f32;
    let expected_band = |b: usize| -> Vec<f32> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| pixel(b, x, y))
            .map(|v| if v.is_finite() { v } else { f32::NAN })
            .collect()
    };
    let metas = [
        BandMeta {
            description: "first".into(),
            statistics: Some((-1.5, 2.5, 0.25, 0.75)),
        },
        BandMeta {
            description: "second <&> \"quoted\"".into(),
            statistics: None,
        },
    ];
    for (case, (compression, tile_px, big)) in [
        (Compression::Deflate, 512, false),
        (Compression::Zstd, 300, true),
        (Compression::Deflate, 97, false),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("case{case}.tif"));
        let mut writer =
            CogWriter::create(&path, &grid, 2, nodata as f64, compression).expect("create");
        if big {
            writer.force_bigtiff();
        }
        let plan = TilePlan::new(w, h, tile_px);
        // Odd tiles first, then even ones backwards: neither row-major nor reversed.
        let order: Vec<usize> = (0..plan.len())
            .filter(|i| i % 2 == 1)
            .chain((0..plan.len()).filter(|i| i % 2 == 0).rev())
            .collect();
        for i in order {
            let win: Window = plan.tile(i).window;
            let bands = (0..2)
                .map(|b| {
                    (0..win.height_px)
                        .flat_map(|dy| (0..win.width_px).map(move |dx| (dx, dy)))
                        .map(|(dx, dy)| pixel(b, win.x_px as usize + dx, win.y_px as usize + dy))
                        .collect()
                })
                .collect();
            writer.write_tile(win, bands).expect("write tile");
        }
        writer.finish(&metas).expect("finish");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        let head = std::fs::read(&path).expect("read");
        assert_eq!(&head[..4], if big { b"II\x2b\x00" } else { b"II\x2a\x00" });

        let ds = gdal::Dataset::open(&path).expect("gdal opens it");
        assert_eq!(ds.raster_size(), (w, h));
        assert_eq!(ds.geo_transform().expect("geotransform"), grid.geotransform);
        let got_srs = ds.spatial_ref().expect("srs");
        assert_eq!(got_srs.auth_code().expect("code"), 32633);
        assert_eq!(
            ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
                .as_deref(),
            Some(if compression == Compression::Zstd {
                "ZSTD"
            } else {
                "DEFLATE"
            })
        );
        assert_eq!(
            ds.metadata_item("PREDICTOR", "IMAGE_STRUCTURE").as_deref(),
            Some("3")
        );
        assert_eq!(
            ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
            Some("COG")
        );
        for (b, meta) in metas.iter().enumerate() {
            let band = ds.rasterband(b + 1).expect("band");
            assert_eq!(band.no_data_value(), Some(nodata as f64));
            assert_eq!(band.description().expect("description"), meta.description);
            // What GDAL reads (nodata back to NaN) against `want`, bit for bit.
            let same_bits = |rb: &gdal::raster::RasterBand, want: &[f32]| -> bool {
                let got = rb.read_band_as::<f32>().expect("read");
                got.data().len() == want.len()
                    && got.data().iter().zip(want).all(|(&a, e)| {
                        let a = if a == nodata { f32::NAN } else { a };
                        a.to_bits() == e.to_bits()
                    })
            };
            let mut level = expected_band(b);
            let (mut lw, mut lh) = (w, h);
            assert!(
                same_bits(&band, &level),
                "case {case} band {b}: pixels differ"
            );
            assert_eq!(band.overview_count().expect("count"), 2);
            for k in 0..2 {
                let (half, hw, hh) = kernels::overview::halve_mean(&level, lw, lh).expect("halve");
                let ov = band.overview(k).expect("overview");
                assert_eq!(ov.size(), (hw, hh));
                assert!(
                    same_bits(&ov, &half),
                    "case {case} band {b} overview {k} differs"
                );
                (level, lw, lh) = (half, hw, hh);
            }
        }
        let first = ds.rasterband(1).expect("band");
        assert_eq!(
            first.metadata_item("STATISTICS_MEAN", "").as_deref(),
            Some("0.25")
        );
        drop(ds);
        let r = oracle("cog", json!({ "path": path.display().to_string() }));
        assert_eq!(r["errors"], json!([]), "case {case}: {r}");
        assert_eq!(r["warnings"], json!([]), "case {case}: {r}");
        assert_eq!(r["layout"], "COG", "{r}");
    }

    // A writer dropped half way leaves nothing behind.
    let path = dir.path().join("dropped.tif");
    let mut writer =
        CogWriter::create(&path, &grid, 1, -9999.0, Compression::Deflate).expect("create");
    writer
        .write_tile(Window::new(0, 0, 512, 512), vec![vec![1.0; 512 * 512]])
        .expect("write");
    drop(writer);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains("dropped"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
