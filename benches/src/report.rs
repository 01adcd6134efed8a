//! Results as JSON, a Markdown table and an SVG bar chart, each stamped with the machine.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::e2e::{Case, FLOOR, GDAL_CALC, NUMPY, OURS};
use crate::machine::Machine;
use crate::stream::Bandwidth;
use crate::throughput::Row;

/// Everything one `constellation bench` run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub mode: String,
    pub date: String,
    pub bandwidth: Bandwidth,
    pub rows: Vec<Row>,
    pub cases: Vec<Case>,
    /// `(pixels, seconds, peak bytes)` of our run on scenes of growing size.
    pub memory: Vec<(u64, f64, u64)>,
    /// Kernels measured through compute backends (`--backend`), one report per backend.
    pub devices: Vec<crate::device::DeviceReport>,
    pub notes: Vec<String>,
}

impl Report {
    /// Share of the copy bandwidth a row reaches.
    pub fn share_of_copy(&self, row: &Row) -> f64 {
        row.bytes_per_s / self.bandwidth.copy_bytes_per_s
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "machine": self.machine.to_json(),
            "mode": self.mode,
            "date": self.date,
            "limits": {
                "copy_bytes_per_s": self.bandwidth.copy_bytes_per_s,
                "triad_bytes_per_s": self.bandwidth.triad_bytes_per_s,
            },
            "kernels": self.rows.iter().map(|r| json!({
                "kernel": r.kernel, "backend": r.backend, "tile_px": r.tile_px, "batch": r.batch,
                "mpx_per_s": r.mpx_per_s, "bytes_per_s": r.bytes_per_s,
                "share_of_copy_bandwidth": self.share_of_copy(r), "streaming": r.streaming,
            })).collect::<Vec<_>>(),
            "backends": self.devices.iter().map(crate::device::DeviceReport::to_json).collect::<Vec<_>>(),
            "end_to_end": self.cases.iter().map(Case::to_json).collect::<Vec<_>>(),
            "memory": self.memory.iter().map(|(px, s, b)| json!({
                "pixels": px, "seconds": s, "peak_rss_bytes": b,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// A Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Constellation bench ({}) — {}\n",
            self.mode, self.date
        );
        let _ = writeln!(md, "Machine: {}\n", self.machine.describe());
        let _ = writeln!(
            md,
            "Measured limit, same run: STREAM-style copy {:.1} GB/s, triad {:.1} GB/s (read + write bytes, all cores).\n",
            self.bandwidth.copy_bytes_per_s / 1e9,
            self.bandwidth.triad_bytes_per_s / 1e9
        );
        let _ = writeln!(md, "## Kernels (CPU backend)\n");
        let _ = writeln!(
            md,
            "Bytes counted from each kernel's inputs and outputs. A batch of small tiles fits in cache, so its share of the memory limit can exceed 100 %.\n"
        );
        let _ = writeln!(
            md,
            "| kernel | backend | tile px | batch | Mpx/s | GB/s | share of copy bandwidth |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {:.1} | {:.0} % |",
                r.kernel,
                r.backend,
                r.tile_px,
                r.batch,
                r.mpx_per_s,
                r.bytes_per_s / 1e9,
                100.0 * self.share_of_copy(r)
            );
        }
        for d in &self.devices {
            let _ = writeln!(md);
            md.push_str(&d.to_markdown());
        }
        let _ = writeln!(md, "\n## End to end: cloud-masked NDVI to a COG\n");
        let _ = writeln!(
            md,
            "Same files, same output format (Float32 COG, DEFLATE + predictor, 512 blocks, overviews), same run; a peer's time counts only if its output matches ours (nodata identical, |Δ| ≤ 1e-5). Times are wall clock of the whole process.\n"
        );
        for c in &self.cases {
            let _ = writeln!(md, "### {} ({}×{})\n", c.name, c.width_px, c.height_px);
            let _ = writeln!(md, "| contender | seconds | peak RSS MiB | output | note |");
            let _ = writeln!(md, "|---|---:|---:|---|---|");
            for k in &c.contenders {
                let _ = writeln!(
                    md,
                    "| {} | {:.2} | {:.0} | {} | {} |",
                    k.name,
                    k.seconds,
                    k.peak_rss_bytes as f64 / (1u64 << 20) as f64,
                    match k.output_matches {
                        None => "reference",
                        Some(true) => "matches",
                        Some(false) => "DIFFERS (not counted)",
                    },
                    k.note
                );
            }
            let ratio = |v: Option<f64>| v.map_or("n/a".to_string(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                md,
                "\nConstellation vs {NUMPY}: {} faster; vs {GDAL_CALC}: {} faster; time over the I/O floor: {}.\n",
                ratio(c.speedup_over(NUMPY)),
                ratio(c.speedup_over(GDAL_CALC)),
                ratio(c.over_floor())
            );
        }
        if !self.memory.is_empty() {
            let _ = writeln!(md, "## Memory as the scene grows (Constellation)\n");
            let _ = writeln!(md, "| pixels | seconds | peak RSS MiB |");
            let _ = writeln!(md, "|---:|---:|---:|");
            for (px, s, b) in &self.memory {
                let _ = writeln!(
                    md,
                    "| {px} | {s:.2} | {:.0} |",
                    *b as f64 / (1u64 << 20) as f64
                );
            }
            let _ = writeln!(md);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }

    /// An SVG bar chart of the end-to-end times (one group per case).
    pub fn to_svg(&self) -> String {
        let names = [OURS, NUMPY, GDAL_CALC, FLOOR];
        let colours = ["#1a9850", "#3b528b", "#d73027", "#999999"];
        let (bar_h, gap, left, width) = (18.0, 10.0, 210.0, 760.0);
        let rows: usize = self.cases.iter().map(|c| c.contenders.len()).sum();
        let height = 60.0 + (rows as f64) * (bar_h + 4.0) + self.cases.len() as f64 * (gap + 22.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            svg,
            r#"<text x="10" y="20" font-size="14">End-to-end NDVI → COG, seconds (lower is better) — {}</text>"#,
            xml(&self.machine.describe())
        );
        let mut y = 40.0;
        for c in &self.cases {
            let max = c
                .contenders
                .iter()
                .map(|k| k.seconds)
                .filter(|s| s.is_finite())
                .fold(0.0f64, f64::max)
                .max(1e-9);
            let _ = write!(
                svg,
                r#"<text x="10" y="{:.0}" font-weight="bold">{} ({}×{})</text>"#,
                y + 12.0,
                xml(&c.name),
                c.width_px,
                c.height_px
            );
            y += 22.0;
            for k in &c.contenders {
                let i = names.iter().position(|n| *n == k.name).unwrap_or(3);
                let w = if k.seconds.is_finite() {
                    (width - left - 80.0) * k.seconds / max
                } else {
                    0.0
                };
                let _ = write!(
                    svg,
                    r#"<text x="10" y="{:.0}">{}</text><rect x="{left}" y="{y:.0}" width="{w:.1}" height="{bar_h}" fill="{}"/><text x="{:.0}" y="{:.0}">{:.2} s</text>"#,
                    y + 13.0,
                    xml(&k.name),
                    colours[i],
                    left + w + 5.0,
                    y + 13.0,
                    k.seconds
                );
                y += bar_h + 4.0;
            }
            y += gap;
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
