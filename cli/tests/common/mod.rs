//! Helpers the end-to-end service tests share: synthetic scenes, output paths, raster bits.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The recipe the service tests queue.
pub const RECIPE: &str = "ndvi-sentinel2-l2a";

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A synthetic Sentinel-2 scene; returns the inputs the recipe needs.
pub fn scene(dir: &Path, size_px: usize, seed: u64) -> Vec<String> {
    fixtures::generate(&fixtures::SceneSpec::sentinel2(size_px, seed), dir).expect("fixtures");
    ["B04.tif", "B08.tif", "SCL.tif"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

/// The COG in `out` (the scene id is the scene folder's name).
pub fn cog_of(out: &Path) -> PathBuf {
    let name = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(&format!("_{RECIPE}.tif")))
        .unwrap_or_else(|| "missing.tif".into());
    out.join(name)
}

/// Every band and overview of a raster as bits.
pub fn raster_bits(path: &Path) -> Vec<Vec<u32>> {
    fn bits(band: &gdal::raster::RasterBand<'_>) -> Vec<u32> {
        let (w, h) = band.size();
        let buf = band
            .read_as::<f32>((0, 0), (w, h), (w, h), None)
            .expect("read");
        buf.data().iter().map(|v| v.to_bits()).collect()
    }
    let ds = gdal::Dataset::open(path).expect("open the COG");
    let mut all = Vec::new();
    for b in 1..=ds.raster_count() {
        let band = ds.rasterband(b).expect("band");
        all.push(bits(&band));
        let n = band.overview_count().expect("overviews");
        assert!(n > 0 || band.size().0 <= 512, "overviews are compared too");
        for k in 0..n {
            all.push(bits(&band.overview(k as usize).expect("overview")));
        }
    }
    all
}

/// A local address with a free port, for a server the test starts.
pub fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// One HTTP/1.1 request to `listen` (`headers`: whole lines, each ending in CRLF): the status
/// and the body; `None` while nothing answers.
pub fn http(
    listen: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(listen).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n{headers}\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n")?.1.to_owned()))
}

/// Waits until `/healthz` on `listen` answers (at most 30 s).
pub fn wait_healthy(listen: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http(listen, "GET", "/healthz", "", "").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{listen} never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops a server with SIGTERM, checks it exits cleanly, and returns what it logged.
pub fn stop(mut child: std::process::Child) -> String {
    use std::io::Read as _;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    assert!(child.wait().expect("it ends").success(), "{stderr}");
    stderr
}
