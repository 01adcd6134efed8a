//! End-to-end runs against the tools people use today, on the same files in the same run:
//! Constellation (`constellation run`), a tuned numpy + GDAL script, `gdal_calc.py` +
//! `gdal_translate -of COG`, and the I/O floor (decode the inputs, encode an output of the
//! same size). Every contender writes the same COG (DEFLATE, predictor, 512 blocks, overviews);
//! a peer's time counts only when its output matches ours. Each contender runs as its own
//! process under `/usr/bin/time`, which gives wall time and peak resident memory.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// One contender's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    pub name: String,
    pub seconds: f64,
    pub peak_rss_bytes: u64,
    /// `None` for Constellation itself and the floor; else whether the output matched ours.
    pub output_matches: Option<bool>,
    pub note: String,
}

/// One end-to-end case (a scene, its contenders).
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub width_px: usize,
    pub height_px: usize,
    pub contenders: Vec<Contender>,
}

impl Case {
    fn get(&self, name: &str) -> Option<&Contender> {
        self.contenders.iter().find(|c| c.name == name)
    }

    /// `peer time / our time` for a peer whose output matched.
    pub fn speedup_over(&self, peer: &str) -> Option<f64> {
        let ours = self.get(OURS)?;
        let p = self.get(peer)?;
        (p.output_matches == Some(true) && ours.seconds > 0.0).then(|| p.seconds / ours.seconds)
    }

    /// `our time / floor time`.
    pub fn over_floor(&self) -> Option<f64> {
        let ours = self.get(OURS)?;
        let f = self.get(FLOOR)?;
        (f.seconds > 0.0).then(|| ours.seconds / f.seconds)
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "contenders": self.contenders.iter().map(|c| json!({
                "name": c.name, "seconds": c.seconds, "peak_rss_bytes": c.peak_rss_bytes,
                "output_matches": c.output_matches, "note": c.note,
            })).collect::<Vec<_>>(),
            "speedup_over_numpy": self.speedup_over(NUMPY),
            "speedup_over_gdal_calc": self.speedup_over(GDAL_CALC),
            "over_io_floor": self.over_floor(),
        })
    }
}

pub const OURS: &str = "constellation";
pub const NUMPY: &str = "numpy+gdal";
pub const GDAL_CALC: &str = "gdal_calc.py+gdal_translate";
pub const FLOOR: &str = "io floor";

/// Tolerance of a peer's output against ours: float64 peers differ in the last f32 bits.
const TOLERANCE: f64 = 1e-5;

/// The inputs of one case.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub sensor: &'static str,
    pub red: PathBuf,
    pub nir: PathBuf,
    pub qa: PathBuf,
    /// Sentinel-2 BOA offset in DN (−1000 for baseline ≥ 04.00, 0 before).
    pub boa_add_offset: f64,
}

/// Error of a contender that could not run at all.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct BenchError {
    pub what: String,
    pub reason: String,
}

fn timed(cmd: &mut Command, what: &str) -> Result<(f64, u64, String), BenchError> {
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped.arg("-f").arg("CONSTELLATION_TIME %e %M");
    wrapped.arg(cmd.get_program());
    wrapped.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let out = wrapped.output().map_err(|e| BenchError {
        what: what.into(),
        reason: format!("cannot start /usr/bin/time: {e}"),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.starts_with("CONSTELLATION_TIME"));
        return Err(BenchError {
            what: what.into(),
            reason: last.unwrap_or("failed").to_string(),
        });
    }
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("CONSTELLATION_TIME "))
        .ok_or_else(|| BenchError {
            what: what.into(),
            reason: "no timing from /usr/bin/time".into(),
        })?;
    let mut it = line.split_whitespace();
    let secs: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let kb: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((
        secs,
        kb * 1024,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn python() -> Command {
    let mut c = Command::new("/usr/bin/python3");
    c.env("GDAL_NUM_THREADS", "ALL_CPUS");
    c
}

fn compare(peers: &Path, ours: &Path, theirs: &Path) -> Result<(bool, String), BenchError> {
    let out = python()
        .arg(peers.join("compare.py"))
        .arg(ours)
        .arg(theirs)
        .arg(TOLERANCE.to_string())
        .output()
        .map_err(|e| BenchError {
            what: "compare".into(),
            reason: e.to_string(),
        })?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| BenchError {
        what: "compare".into(),
        reason: String::from_utf8_lossy(&out.stderr).into_owned(),
    })?;
    Ok((
        v["equal"].as_bool().unwrap_or(false),
        format!(
            "max |Δ| {:.2e}, nodata mismatches {}",
            v["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
            v["nodata_mismatch"]
        ),
    ))
}

/// Runs every contender on `inputs` in `work`, ours first.
pub fn run_case(
    name: &str,
    exe: &Path,
    peers: &Path,
    inputs: &Inputs,
    work: &Path,
) -> Result<Case, BenchError> {
    let io = |e: std::io::Error| BenchError {
        what: "work folder".into(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(work).map_err(io)?;
    let recipe = match inputs.sensor {
        "s2" => "ndvi-sentinel2-l2a",
        _ => "ndvi-landsat-c2l2",
    };
    let ours_dir = work.join("ours");
    let _ = std::fs::remove_dir_all(&ours_dir);
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--recipe", recipe, "--json", "-o"])
        .arg(&ours_dir)
        .arg("-p")
        .arg(format!("boa_add_offset={}", inputs.boa_add_offset))
        .arg("-i")
        .arg(format!("red={}", inputs.red.display()))
        .arg(format!("nir={}", inputs.nir.display()))
        .arg(format!(
            "{}={}",
            if inputs.sensor == "s2" { "scl" } else { "qa" },
            inputs.qa.display()
        ));
    let (secs, rss, stdout) = timed(&mut cmd, OURS)?;
    let summary: Value = serde_json::from_str(stdout.trim()).map_err(|e| BenchError {
        what: OURS.into(),
        reason: format!("summary is not json: {e}"),
    })?;
    let ours_cog = PathBuf::from(summary["cog"].as_str().unwrap_or_default());
    let (w, h) = (
        summary["width_px"].as_u64().unwrap_or(0) as usize,
        summary["height_px"].as_u64().unwrap_or(0) as usize,
    );
    let mut contenders = vec![Contender {
        name: OURS.into(),
        seconds: secs,
        peak_rss_bytes: rss,
        output_matches: None,
        note: format!("{} tiles", summary["tiles"]),
    }];

    let numpy_out = work.join("numpy.tif");
    let mut cmd = python();
    cmd.arg(peers.join("ndvi_numpy.py"))
        .args(["--sensor", inputs.sensor, "--red"])
        .arg(&inputs.red)
        .arg("--nir")
        .arg(&inputs.nir)
        .arg("--qa")
        .arg(&inputs.qa)
        .arg("--out")
        .arg(&numpy_out)
        .arg(format!("--boa-add-offset={}", inputs.boa_add_offset));
    contenders.push(peer(NUMPY, &mut cmd, peers, &ours_cog, &numpy_out));

    let calc_out = work.join("gdal_calc.tif");
    let mut cmd = Command::new("bash");
    cmd.arg(peers.join("ndvi_gdal_calc.sh"))
        .arg(inputs.sensor)
        .arg(&inputs.red)
        .arg(&inputs.nir)
        .arg(&inputs.qa)
        .arg(&calc_out)
        .arg(inputs.boa_add_offset.to_string());
    contenders.push(peer(GDAL_CALC, &mut cmd, peers, &ours_cog, &calc_out));

    let mut cmd = python();
    cmd.arg(peers.join("io_floor.py"))
        .arg("--inputs")
        .arg(&inputs.red)
        .arg(&inputs.nir)
        .arg(&inputs.qa)
        .arg("--like")
        .arg(&ours_cog)
        .arg("--out")
        .arg(work.join("floor.tif"));
    match timed(&mut cmd, FLOOR) {
        Ok((_, rss, stdout)) => {
            let v: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
            let decode = v["decode_s"].as_f64().unwrap_or(f64::NAN);
            let encode = v["encode_s"].as_f64().unwrap_or(f64::NAN);
            contenders.push(Contender {
                name: FLOOR.into(),
                seconds: decode + encode,
                peak_rss_bytes: rss,
                output_matches: None,
                note: format!("decode {decode:.2} s + encode {encode:.2} s"),
            });
        }
        Err(e) => contenders.push(Contender {
            name: FLOOR.into(),
            seconds: f64::NAN,
            peak_rss_bytes: 0,
            output_matches: None,
            note: format!("did not run: {e}"),
        }),
    }
    Ok(Case {
        name: name.into(),
        width_px: w,
        height_px: h,
        contenders,
    })
}

fn peer(name: &str, cmd: &mut Command, peers: &Path, ours: &Path, theirs: &Path) -> Contender {
    match timed(cmd, name) {
        Ok((secs, rss, _)) => {
            let (matches, note) = compare(peers, ours, theirs)
                .unwrap_or_else(|e| (false, format!("comparison failed: {e}")));
            Contender {
                name: name.into(),
                seconds: secs,
                peak_rss_bytes: rss,
                output_matches: Some(matches),
                note,
            }
        }
        Err(e) => Contender {
            name: name.into(),
            seconds: f64::NAN,
            peak_rss_bytes: 0,
            output_matches: Some(false),
            note: format!("did not run: {e}"),
        },
    }
}

/// Runs only Constellation on a scene, for the memory check; returns (seconds, peak bytes).
pub fn ours_only(exe: &Path, inputs: &Inputs, work: &Path) -> Result<(f64, u64), BenchError> {
    let out = work.join("ours-memory");
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--recipe", "ndvi-sentinel2-l2a", "--json", "-o"])
        .arg(&out)
        .arg("-i")
        .arg(&inputs.red)
        .arg(&inputs.nir)
        .arg(&inputs.qa);
    let (secs, rss, _) = timed(&mut cmd, OURS)?;
    let _ = std::fs::remove_dir_all(&out);
    Ok((secs, rss))
}
