//! The `constellation` binary as a user drives it: a good run, the recipe list, and every kind
//! of bad input, each of which must exit non-zero with one line and leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_constellation"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run constellation")
}

/// Asserts a failure with exactly one line on stderr containing `needle`.
fn assert_fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {stderr}"
    );
    // `--backend auto` may log why it fell back; that line is information, not the error.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("auto: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "expected {needle:?} in {stderr:?}"
    );
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

struct Scene {
    dir: tempfile::TempDir,
    s2: fixtures::GeneratedScene,
    landsat: fixtures::GeneratedScene,
}

fn scenes() -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("s2"), dir.path().join("ls"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let s2 = fixtures::generate(&fixtures::SceneSpec::sentinel2(300, 1), &a).expect("s2");
    let landsat = fixtures::generate(&fixtures::SceneSpec::landsat(300, 300, 2), &b).expect("ls");
    Scene { dir, s2, landsat }
}

fn p(scene: &fixtures::GeneratedScene, role: &str) -> String {
    scene.path(role).expect("role").display().to_string()
}

fn out_dir(s: &Scene, name: &str) -> PathBuf {
    s.dir.path().join(name)
}

#[test]
fn a_good_run_writes_a_cog_and_stac_and_reports_json() {
    let s = scenes();
    let out = out_dir(&s, "out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "--tile-px",
        "128",
        "--threads",
        "2",
        "--json",
        "-i",
        &p(&s.s2, "red"),
        &p(&s.s2, "nir"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert_eq!(v["tiles"], 9);
    assert_eq!(v["width_px"], 300);
    assert!(v["mpx_per_s"].as_f64().expect("number") > 0.0);
    assert!(v["bands"][0]["count"].as_u64().expect("count") > 0);
    let files = files_in(&out);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("_ndvi-sentinel2-l2a.tif")));
    assert!(files
        .iter()
        .any(|f| f.ends_with("_ndvi-sentinel2-l2a.json")));
}

#[test]
fn recipes_lists_the_catalog() {
    let o = run(&["recipes"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for name in [
        "ndvi-landsat-c2l2",
        "ndvi-landsat-l1",
        "ndvi-sentinel2-l2a",
        "ndwi-landsat-c2l2",
        "evi-sentinel2-l2a",
        "hillshade",
        "slope",
        "pansharpen",
        "expr",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let o = run(&["recipes", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v.as_array().expect("array").len() >= 20);
}

#[test]
fn missing_file() {
    let s = scenes();
    let out = out_dir(&s, "out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "-i",
        "/nonexistent/B04.tif",
        &p(&s.s2, "nir"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "cannot open /nonexistent/B04.tif");
    assert!(files_in(&out).is_empty());
}

#[test]
fn corrupt_file() {
    let s = scenes();
    let bad = s.dir.path().join("B04.tif");
    std::fs::write(&bad, b"II*\0 this is not a tiff").expect("write");
    let out = out_dir(&s, "out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "-i",
        bad.to_str().expect("utf-8"),
        &p(&s.s2, "nir"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "cannot open");
    assert!(files_in(&out).is_empty());
}

#[test]
fn band_that_is_not_there() {
    let s = scenes();
    let out = out_dir(&s, "out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "-i",
        &format!("red={}#4", p(&s.s2, "red")),
        &p(&s.s2, "nir"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "has 1 band(s), there is no band 4");
    // A role the recipe needs but nobody gave.
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "-i",
        &p(&s.s2, "red"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "needs a nir band");
    assert!(files_in(&out).is_empty());
}

#[test]
fn grids_that_cannot_be_aligned() {
    let s = scenes();
    let out = out_dir(&s, "out");
    // Sentinel-2 red (UTM 29N) with Landsat NIR (UTM 33N).
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "-i",
        &p(&s.s2, "red"),
        &format!("nir={}", p(&s.landsat, "nir")),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "grids cannot be aligned");
    assert!(files_in(&out).is_empty());
}

#[test]
fn unknown_recipe() {
    let s = scenes();
    let o = run(&[
        "run",
        "--recipe",
        "nvdi",
        "-i",
        &p(&s.s2, "red"),
        "-o",
        out_dir(&s, "o").to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "unknown recipe \"nvdi\"");
}

#[test]
fn invalid_expression_says_where() {
    let s = scenes();
    let out = out_dir(&s, "out");
    let o = run(&[
        "run",
        "--expr",
        "(nir - red) / (nir + red",
        "-i",
        &p(&s.s2, "red"),
        &p(&s.s2, "nir"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "invalid expression at column 25");
    let o = run(&[
        "run",
        "--expr",
        "(nir - red) / (nir + blue)",
        "-i",
        &p(&s.s2, "red"),
        &p(&s.s2, "nir"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "blue");
    assert!(files_in(&out).is_empty());
}

#[test]
fn unwritable_output_folder() {
    let s = scenes();
    let file = s.dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let out = file.join("out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "-i",
        &p(&s.s2, "red"),
        &p(&s.s2, "nir"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "cannot write");
}

#[test]
fn a_run_that_fails_midway_keeps_the_previous_output_and_leaves_no_partial_files() {
    let s = scenes();
    let out = out_dir(&s, "out");
    let good = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "--tile-px",
        "64",
        "-i",
        &p(&s.s2, "red"),
        &p(&s.s2, "nir"),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let before = files_in(&out);
    let cog = before.iter().find(|f| f.ends_with(".tif")).expect("cog");
    let bytes_before = std::fs::read(out.join(cog)).expect("read");
    // The same scene, but with the NIR band truncated: it opens, and tiles fail while reading.
    let nir = p(&s.s2, "nir");
    let broken_dir = s.dir.path().join("broken");
    std::fs::create_dir_all(&broken_dir).expect("mkdir");
    let broken = broken_dir.join(Path::new(&nir).file_name().expect("name"));
    let full = std::fs::read(&nir).expect("read");
    std::fs::write(&broken, &full[..full.len() / 2]).expect("write");
    // Same output name: the scene id comes from the SCL/red folder, so give those from the
    // same folder as before.
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "--tile-px",
        "64",
        "-i",
        &p(&s.s2, "red"),
        &format!("nir={}", broken.display()),
        &p(&s.s2, "scl"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "cannot read");
    assert_eq!(files_in(&out), before, "no partial files, nothing removed");
    assert_eq!(
        std::fs::read(out.join(cog)).expect("read"),
        bytes_before,
        "previous output intact"
    );
}

#[test]
fn unavailable_backend_is_an_error() {
    let s = scenes();
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "--backend",
        "cuda",
        "-i",
        &p(&s.s2, "red"),
        "-o",
        out_dir(&s, "o").to_str().expect("utf-8"),
    ]);
    if cfg!(feature = "cuda") {
        if o.status.success() {
            eprintln!("NOT RUN: unavailable_backend_is_an_error: a CUDA device is present here");
            return;
        }
        // Built in, but no driver here: the reason names what is missing.
        assert_fails_with(&o, "no CUDA driver library (libcuda.so)");
    } else {
        assert_fails_with(&o, "the cuda backend is not built into this binary");
    }
}

#[test]
fn inputs_through_gdal_virtual_file_systems() {
    // /vsizip/ stands in for /vsicurl/ and /vsis3/, which need a network: the path is handed
    // to GDAL untouched and roles are still inferred from the member names.
    let s = scenes();
    let zip = s.dir.path().join("scene.zip");
    let members: Vec<String> = ["red", "nir", "scl"].iter().map(|r| p(&s.s2, r)).collect();
    let status = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, zipfile, os\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    [z.write(f, os.path.basename(f)) for f in sys.argv[2:]]",
            zip.to_str().expect("utf-8"),
        ])
        .args(&members)
        .status()
        .expect("python");
    assert!(status.success());
    let inputs: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "/vsizip/{}/{}",
                zip.display(),
                Path::new(m).file_name().expect("name").to_string_lossy()
            )
        })
        .collect();
    let out = out_dir(&s, "out");
    let mut args = vec![
        "run",
        "--recipe",
        "ndvi-sentinel2-l2a",
        "--json",
        "-o",
        out.to_str().expect("utf-8"),
        "-i",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["bands"][0]["count"].as_u64().expect("count") > 0);
}

#[test]
fn a_multiband_file_without_roles_is_not_bound_by_position() {
    let s = scenes();
    let vrt = s.dir.path().join("stack.vrt");
    let status = Command::new("gdalbuildvrt")
        .args([
            "-q",
            "-separate",
            vrt.to_str().expect("utf-8"),
            &p(&s.landsat, "nir"),
            &p(&s.landsat, "red"),
            &p(&s.landsat, "qa"),
        ])
        .status()
        .expect("gdalbuildvrt");
    assert!(status.success());
    let out = out_dir(&s, "out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-landsat-c2l2",
        "-i",
        vrt.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&o, "cannot tell which band of");
    // Named explicitly, the same file works.
    let v = vrt.display().to_string();
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-landsat-c2l2",
        "-o",
        out.to_str().expect("utf-8"),
        "-i",
        &format!("nir={v}#1"),
        &format!("red={v}#2"),
        &format!("qa={v}#3"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_folder_of_scenes_runs_every_matching_scene() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("scenes");
    // Two Landsat products side by side, and a Sentinel-2 tile in a sub-folder.
    fixtures::generate(&fixtures::SceneSpec::landsat(200, 150, 1), &root).expect("landsat 1");
    fixtures::generate(&fixtures::SceneSpec::landsat(180, 120, 2), &root).expect("landsat 2");
    fixtures::generate(
        &fixtures::SceneSpec::sentinel2(150, 3),
        &root.join("T29RKH"),
    )
    .expect("s2");
    let out = dir.path().join("out");
    let o = run(&[
        "run",
        "--recipe",
        "ndvi-landsat-c2l2",
        "--json",
        "-i",
        root.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json array");
    let runs = v.as_array().expect("array");
    assert_eq!(runs.len(), 2, "{v}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("skipped T29RKH"), "{stderr}");
    let files = files_in(&out);
    assert!(
        files.contains(&"LC08_L2SP_SYNTH_1_ndvi-landsat-c2l2.tif".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"LC08_L2SP_SYNTH_2_ndvi-landsat-c2l2.tif".to_string()),
        "{files:?}"
    );
    // No scene fits: an error, not an empty success.
    let o = run(&[
        "run",
        "--recipe",
        "hillshade",
        "-i",
        root.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("error: no scene in"));
}

/// `--backend wgpu` (Mesa's lavapipe in CI) gives the CPU's result on the real rasters.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_backend_matches_cpu_on_real_fixtures() {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real");
    let s = scenes();
    let c2 = "LC08_L2SP_008059_20191201_20200825_02_T1";
    let mut cases: Vec<(Vec<String>, Vec<String>)> = vec![(
        // Synthetic, always present: Sentinel-2 NDVI with the SCL mask.
        vec!["--recipe".into(), "ndvi-sentinel2-l2a".into()],
        vec![p(&s.s2, "red"), p(&s.s2, "nir"), p(&s.s2, "scl")],
    )];
    if real.is_dir() {
        let f = |n: &str| real.join(n).display().to_string();
        cases.push((
            vec!["--recipe".into(), "ndvi-landsat-c2l2".into()],
            vec![
                f(&format!("{c2}_SR_B4.TIF")),
                f(&format!("{c2}_SR_B5.TIF")),
                f(&format!("{c2}_QA_PIXEL.TIF")),
            ],
        ));
        // No B02 among the fixtures: B04 stands in for blue (this compares backends, not EVI).
        cases.push((
            vec![
                "--recipe".into(),
                "evi-sentinel2-l2a".into(),
                "-p".into(),
                "boa_add_offset=0".into(),
            ],
            vec![
                f("B04.tif"),
                f("B08.tif"),
                format!("blue={}", f("B04.tif")),
                f("SCL.tif"),
            ],
        ));
        cases.push((
            vec![
                "--expr".into(),
                "where(nir > red, sqrt(nir - red) / (nir + red), -log(red + 1))".into(),
            ],
            vec![f("B04.tif"), f("B08.tif")],
        ));
    } else {
        eprintln!("real fixtures absent: synthetic case only");
    }
    for (i, (recipe, inputs)) in cases.iter().enumerate() {
        let mut outs = Vec::new();
        for backend in ["cpu", "wgpu"] {
            let out = out_dir(&s, &format!("{i}-{backend}"));
            let mut args: Vec<String> = vec![
                "run".into(),
                "--backend".into(),
                backend.into(),
                "-o".into(),
                out.display().to_string(),
            ];
            args.extend(recipe.iter().cloned());
            args.push("-i".into());
            args.extend(inputs.iter().cloned());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = run(&refs);
            assert!(
                o.status.success(),
                "{backend}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let cog = files_in(&out)
                .into_iter()
                .find(|f| f.ends_with(".tif"))
                .expect("cog");
            outs.push(out.join(cog));
        }
        // Index arithmetic is exact on lavapipe; the expression's sqrt/log get WGSL's ulps.
        let tol = if recipe[0] == "--expr" { "1e-5" } else { "0" };
        let cmp = Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers/compare.py"))
            .args([&outs[0], &outs[1]])
            .arg(tol)
            .output()
            .expect("compare");
        let v: serde_json::Value = serde_json::from_slice(&cmp.stdout).expect("json");
        assert_eq!(v["equal"], true, "case {i} {recipe:?}: {v}");
    }
}

#[test]
fn gpus_reports_simulated_gpus_and_says_why_when_there_is_no_nvml() {
    let o = run(&["gpus", "--simulate-gpus", "3", "--json"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let inventory: serde_json::Value =
        serde_json::from_str(lines.next().expect("inventory line")).expect("json");
    assert_eq!(inventory["gpus"].as_array().expect("array").len(), 3);
    let samples: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(samples.len(), 3);
    assert!(samples.iter().all(|s| s["simulated"] == true));
    // Without the flag: real devices when NVML finds some, else one line saying why.
    let o = run(&["gpus", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .expect("line"),
    )
    .expect("json");
    assert!(
        v["reason"].is_string() || !v["gpus"].as_array().expect("array").is_empty(),
        "{v}"
    );
}
