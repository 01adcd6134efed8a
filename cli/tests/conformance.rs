//! `constellation conformance` as a GPU machine runs it: the suite on the CPU with a JSON
//! report, exit status 2 for a backend asked for by name that cannot start, and a usage error
//! for a backend name that does not exist.

use std::process::{Command, Output};

fn conformance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_constellation"))
        .arg("conformance")
        .args(args)
        .output()
        .expect("run constellation")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_cpu_passes_and_the_json_report_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.json");
    let path_arg = path.to_str().expect("utf-8 path");
    let o = conformance(&["--backend", "cpu", "--seed", "7", "--json", path_arg]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("cpu: ok   expr \"log(a)\""), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("report written")).expect("json");
    assert_eq!(v["seed"], 7);
    assert_eq!(v["passed"], true);
    assert_eq!(v["exit_code"], 0);
    let backends = v["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 1);
    let report = &backends[0]["report"];
    assert_eq!(report["backend"], "cpu");
    assert!(report["device"]
        .as_str()
        .is_some_and(|d| d.starts_with("cpu")));
    let cases = report["cases"].as_array().expect("cases");
    assert!(cases.len() > 30, "{} cases", cases.len());
    assert!(cases.iter().all(|c| c["passed"] == true));
    assert!(v["host"]["name"].is_string());
}

#[test]
fn a_backend_asked_for_that_cannot_start_exits_2() {
    let o = conformance(&["--backend", "cuda,cpu", "--seed", "3"]);
    let stdout = text(&o.stdout);
    // cpu runs and passes all the same.
    let summary = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu: ")?
                .strip_suffix(" cases passed (seed 3)")
        })
        .and_then(|counts| counts.split_once(" of "));
    assert!(summary.is_some_and(|(p, all)| p == all), "{stdout}");
    // Where a cuda backend is built and a GPU is present it runs (and must pass) instead.
    let expected = if stdout.contains("NOT RUN: cuda: ") {
        2
    } else {
        0
    };
    assert_eq!(
        o.status.code(),
        Some(expected),
        "{stdout}{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_backend_names_are_usage_errors() {
    let o = conformance(&["--backend", "gpu"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("gpu"), "{}", text(&o.stderr));
}
