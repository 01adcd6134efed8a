//! The bench harness on a small scene: every peer runs, its output matches ours, and the
//! reports carry the numbers (speed itself is measured by `constellation bench`, not here).

use std::path::{Path, PathBuf};

use benches::e2e::{self, Inputs, FLOOR, GDAL_CALC, NUMPY, OURS};

#[test]
fn peers_run_and_match_on_a_small_scene() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scene = fixtures::generate(
        &fixtures::SceneSpec::sentinel2(600, 12),
        &dir.path().join("s2"),
    )
    .expect("fixtures");
    let p = |r: &str| scene.path(r).expect("role").to_path_buf();
    let inputs = Inputs {
        sensor: "s2",
        red: p("red"),
        nir: p("nir"),
        qa: p("scl"),
        boa_add_offset: -1000.0,
    };
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_constellation"));
    let case = e2e::run_case("small", &exe, &peers, &inputs, &dir.path().join("work"))
        .expect("bench case runs");
    assert_eq!((case.width_px, case.height_px), (600, 600));
    let names: Vec<&str> = case.contenders.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [OURS, NUMPY, GDAL_CALC, FLOOR]);
    for c in &case.contenders {
        assert!(c.seconds.is_finite() && c.seconds > 0.0, "{c:?}");
        assert!(c.peak_rss_bytes > 0, "{c:?}");
        if c.name == NUMPY || c.name == GDAL_CALC {
            assert_eq!(c.output_matches, Some(true), "{c:?}");
        }
    }
    assert!(case.speedup_over(NUMPY).is_some());
    assert!(case.speedup_over(GDAL_CALC).is_some());
    assert!(case.over_floor().is_some());

    let report = benches::report::Report {
        machine: benches::machine::Machine::detect(),
        mode: "test".into(),
        date: "2026-01-01T00:00:00Z".into(),
        bandwidth: benches::stream::measure(1 << 20, 2),
        rows: vec![benches::throughput::measure(
            benches::throughput::Kernel::NormalizedDifference,
            256,
            2,
            std::time::Duration::from_millis(10),
            1,
        )],
        cases: vec![case],
        memory: vec![(360_000, 0.5, 50 << 20)],
        devices: vec![],
        notes: vec![],
    };
    let md = report.to_markdown();
    assert!(
        md.contains("| normalized_difference | cpu | 256 | 2 |"),
        "{md}"
    );
    assert!(md.contains("Constellation vs numpy+gdal:"), "{md}");
    assert!(!md.contains("DIFFERS"), "{md}");
    let json = report.to_json();
    assert!(json["limits"]["copy_bytes_per_s"].as_f64().expect("number") > 0.0);
    assert!(report.to_svg().starts_with("<svg"));
}
