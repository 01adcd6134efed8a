//! Kernel throughput through a compute backend (`engine::backend::Backend`: cpu, wgpu or cuda):
//! host-to-host calls over batches of tiles packed into one call, and on CUDA and wgpu the same
//! kernels resident on the device, each held to a limit measured in the same run.

use std::time::{Duration, Instant};

use engine::backend::{Backend, Chain, ChainOp, ExprKernel};
use kernels::mask::MaskRule;
use kernels::scale::Scaling;
use serde_json::{json, Value};

use crate::throughput::Kernel;

/// The element-wise kernels every backend runs.
pub const KERNELS: [Kernel; 6] = [
    Kernel::NormalizedDifference,
    Kernel::Evi,
    Kernel::Savi,
    Kernel::Scale,
    Kernel::ApplyMask,
    Kernel::ExprNdvi,
];

/// One measured row of a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub kernel: String,
    pub tile_px: usize,
    /// Tiles packed into one call.
    pub batch: usize,
    /// Host memory in, host memory out: what a caller of the backend sees.
    pub host_mpx_per_s: f64,
    pub host_bytes_per_s: f64,
    /// Host-to-host time's share of the transfer bound (inputs up and output down at the
    /// measured page-locked rates, fully overlapped), when transfer limits were measured.
    pub share_of_transfer: Option<f64>,
    /// The kernel alone on device-resident buffers (CUDA and wgpu).
    pub resident_mpx_per_s: Option<f64>,
    pub resident_bytes_per_s: Option<f64>,
    /// Resident bytes/s over the device-to-device copy bandwidth.
    pub share_of_device_copy: Option<f64>,
}

/// What one backend measured: its device, limits and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReport {
    pub backend: String,
    pub device: String,
    /// Named limits in bytes per second (`device copy`, `host to device`, `device to host`).
    pub limits: Vec<(String, f64)>,
    pub rows: Vec<DeviceRow>,
    pub notes: Vec<String>,
}

impl DeviceReport {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "backend": self.backend,
            "device": self.device,
            "limits_bytes_per_s": self.limits.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "rows": self.rows.iter().map(|r| json!({
                "kernel": r.kernel, "tile_px": r.tile_px, "batch": r.batch,
                "host_mpx_per_s": r.host_mpx_per_s, "host_bytes_per_s": r.host_bytes_per_s,
                "share_of_transfer_bound": r.share_of_transfer,
                "resident_mpx_per_s": r.resident_mpx_per_s,
                "resident_bytes_per_s": r.resident_bytes_per_s,
                "share_of_device_copy": r.share_of_device_copy,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// A Markdown section.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut md = String::new();
        let _ = writeln!(md, "## Kernels on {} — {}\n", self.backend, self.device);
        if !self.limits.is_empty() {
            let limits: Vec<String> = self
                .limits
                .iter()
                .map(|(k, v)| format!("{k} {:.1} GB/s", v / 1e9))
                .collect();
            let _ = writeln!(md, "Measured limits, same run: {}.\n", limits.join(", "));
        }
        let _ = writeln!(
            md,
            "Host → host: planes in host memory, uploaded, computed and downloaded by one backend call over `batch` tiles. Resident: the kernel alone over the same pixels already on the device. Bytes counted from each kernel's inputs and outputs.\n"
        );
        let pct = |v: Option<f64>| v.map_or("—".to_string(), |s| format!("{:.0} %", 100.0 * s));
        let num = |v: Option<f64>, scale: f64, digits: usize| {
            v.map_or("—".to_string(), |x| format!("{:.*}", digits, x / scale))
        };
        let _ = writeln!(
            md,
            "| kernel | tile px | batch | host→host Mpx/s | host→host GB/s | share of transfer bound | resident Mpx/s | resident GB/s | share of device copy |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} |",
                r.kernel,
                r.tile_px,
                r.batch,
                r.host_mpx_per_s,
                r.host_bytes_per_s / 1e9,
                pct(r.share_of_transfer),
                num(r.resident_mpx_per_s, 1.0, 0),
                num(r.resident_bytes_per_s, 1e9, 1),
                pct(r.share_of_device_copy),
            );
        }
        for n in &self.notes {
            let _ = writeln!(md, "\n- {n}");
        }
        let _ = writeln!(md);
        md
    }
}

/// Input planes for one call: `px` pixels of realistic digital numbers and a quality plane.
struct Planes {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    qa: Vec<f32>,
    out: Vec<f32>,
}

impl Planes {
    fn new(px: usize) -> Self {
        Self {
            a: crate::plane(px, 11, 7000.0, 20000.0),
            b: crate::plane(px, 12, 7000.0, 20000.0),
            c: crate::plane(px, 13, 7000.0, 20000.0),
            qa: crate::plane(px, 14, 21824.0, 21900.0),
            out: vec![0.0; px],
        }
    }
}

/// Bytes the kernel reads from host memory per pixel (its input planes).
fn in_bytes_per_px(kernel: Kernel) -> usize {
    kernel.bytes_per_px() - 4
}

fn call(
    backend: &Backend,
    kernel: Kernel,
    p: &mut Planes,
    expr: &ExprKernel,
) -> engine::Result<()> {
    match kernel {
        Kernel::NormalizedDifference => backend.normalized_difference(&p.a, &p.b, &mut p.out),
        Kernel::Evi => backend.evi(&p.a, &p.b, &p.c, &mut p.out),
        Kernel::Savi => backend.savi(&p.a, &p.b, 0.5, &mut p.out),
        // In place, over the same plane every call (scaling converges to a fixed point and
        // masking an already masked plane is the same work), so no copy is timed.
        Kernel::Scale => backend.scale_in_place(&mut p.c, Scaling::LANDSAT_C2_L2_SR),
        Kernel::ApplyMask => backend.apply_mask(&mut p.c, &p.qa, &MaskRule::landsat_default()),
        Kernel::ExprNdvi => backend.expr(expr, &[&p.a, &p.b], &mut p.out),
        other => Err(engine::EngineError::InvalidInput(format!(
            "{} is not an element-wise backend kernel",
            other.name()
        ))),
    }
}

/// The Landsat NDVI chain: both bands scaled and masked, then the normalized difference.
fn landsat_ndvi_chain() -> engine::Result<Chain> {
    let scale = |src| ChainOp::Scale {
        src,
        scaling: Scaling::LANDSAT_C2_L2_SR,
    };
    let mask = |src| ChainOp::Mask {
        src,
        qa: 2,
        rule: MaskRule::landsat_default(),
    };
    Chain::new(
        3,
        vec![
            scale(0),
            scale(1),
            mask(3),
            mask(4),
            ChainOp::NormalizedDifference { a: 6, b: 5 },
        ],
        vec![7],
    )
}

/// The names of the two ways the NDVI chain is measured.
pub const CHAIN_FUSED: &str = "ndvi chain, fused";
pub const CHAIN_STEPS: &str = "ndvi chain, step by step";

/// One call of the NDVI chain over red `a`, nir `b` and quality `qa`: fused (one backend call,
/// intermediates kept on a device) or step by step (five calls, each a round trip; in place
/// on the same planes every call, as the scale and mask rows are).
fn chain_call(backend: &Backend, chain: &Chain, p: &mut Planes, fused: bool) -> engine::Result<()> {
    if fused {
        return backend.run_chain_into(chain, &[&p.a, &p.b, &p.qa], &mut [&mut p.out]);
    }
    let rule = MaskRule::landsat_default();
    backend.scale_in_place(&mut p.a, Scaling::LANDSAT_C2_L2_SR)?;
    backend.scale_in_place(&mut p.b, Scaling::LANDSAT_C2_L2_SR)?;
    backend.apply_mask(&mut p.a, &p.qa, &rule)?;
    backend.apply_mask(&mut p.b, &p.qa, &rule)?;
    backend.normalized_difference(&p.b, &p.a, &mut p.out)
}

/// Measures every element-wise kernel on `backend` for each tile size and batch, at least
/// `min_time` per repetition, best of `reps`.
pub fn measure(
    backend: &Backend,
    tiles_px: &[usize],
    batches: &[usize],
    min_time: Duration,
    reps: usize,
) -> engine::Result<DeviceReport> {
    let expr = ExprKernel::parse("(nir - red) / (nir + red)", &["nir", "red"])?;
    let mut report = DeviceReport {
        backend: backend.name().to_string(),
        device: backend.describe(),
        limits: Vec::new(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let limits = device_limits(backend, &mut report)?;
    for kernel in KERNELS {
        for &tile_px in tiles_px {
            for &batch in batches {
                let px = tile_px * tile_px * batch;
                let mut planes = Planes::new(px);
                // Warm up: compiles expressions, grows staging buffers.
                call(backend, kernel, &mut planes, &expr)?;
                let mut best = 0.0f64;
                for _ in 0..reps.max(1) {
                    let start = Instant::now();
                    let mut calls = 0u64;
                    while start.elapsed() < min_time || calls == 0 {
                        call(backend, kernel, &mut planes, &expr)?;
                        calls += 1;
                    }
                    best = best.max(px as f64 * calls as f64 / start.elapsed().as_secs_f64());
                }
                let bytes = kernel.bytes_per_px() as f64;
                let share_of_transfer = limits.map(|l| {
                    let bound_secs = (in_bytes_per_px(kernel) as f64 / l.h2d_bytes_per_s)
                        .max(4.0 / l.d2h_bytes_per_s);
                    bound_secs * best
                });
                let resident = resident_px_per_s(backend, kernel, &expr, px, reps)?;
                let d2d = limits.map(|l| l.d2d_bytes_per_s);
                let row = DeviceRow {
                    kernel: kernel.name().to_string(),
                    tile_px,
                    batch,
                    host_mpx_per_s: best / 1e6,
                    host_bytes_per_s: best * bytes,
                    share_of_transfer,
                    resident_mpx_per_s: resident.map(|r| r / 1e6),
                    resident_bytes_per_s: resident.map(|r| r * bytes),
                    share_of_device_copy: resident.zip(d2d).map(|(r, d)| r * bytes / d),
                };
                eprintln!(
                    "{:5} {:22} tile {tile_px:4} batch {batch:3}: host {:8.0} Mpx/s{}",
                    report.backend,
                    row.kernel,
                    row.host_mpx_per_s,
                    row.resident_mpx_per_s
                        .map_or(String::new(), |r| format!(", resident {r:9.0} Mpx/s"))
                );
                report.rows.push(row);
            }
        }
    }
    // The NDVI chain: three planes in, one out (16 bytes a pixel), fused and step by step.
    // The fused row only where the backend fuses (elsewhere a chain runs op by op anyway).
    let chain = landsat_ndvi_chain()?;
    let ways: &[(&str, bool)] = if backend.fuses_chains() {
        &[(CHAIN_FUSED, true), (CHAIN_STEPS, false)]
    } else {
        &[(CHAIN_STEPS, false)]
    };
    for &(name, fused) in ways {
        for &tile_px in tiles_px {
            for &batch in batches {
                let px = tile_px * tile_px * batch;
                let mut planes = Planes::new(px);
                chain_call(backend, &chain, &mut planes, fused)?;
                let mut best = 0.0f64;
                for _ in 0..reps.max(1) {
                    let start = Instant::now();
                    let mut calls = 0u64;
                    while start.elapsed() < min_time || calls == 0 {
                        chain_call(backend, &chain, &mut planes, fused)?;
                        calls += 1;
                    }
                    best = best.max(px as f64 * calls as f64 / start.elapsed().as_secs_f64());
                }
                let share_of_transfer =
                    limits.map(|l| (12.0 / l.h2d_bytes_per_s).max(4.0 / l.d2h_bytes_per_s) * best);
                eprintln!(
                    "{:5} {name:26} tile {tile_px:4} batch {batch:3}: host {:8.0} Mpx/s",
                    report.backend,
                    best / 1e6
                );
                report.rows.push(DeviceRow {
                    kernel: name.to_string(),
                    tile_px,
                    batch,
                    host_mpx_per_s: best / 1e6,
                    host_bytes_per_s: best * 16.0,
                    share_of_transfer,
                    resident_mpx_per_s: None,
                    resident_bytes_per_s: None,
                    share_of_device_copy: None,
                });
            }
        }
    }
    report.notes.push(format!(
        "{CHAIN_STEPS}: scale and mask on red and nir, then the normalized difference, as five \
         backend calls (on a device, each a round trip); {CHAIN_FUSED} (on backends that fuse): \
         the same five kernels as one call, one upload and one download a chunk, intermediates \
         on the device. Both count 16 bytes a pixel (three planes in, one out)."
    ));
    Ok(report)
}

/// A device's measured limits, in bytes per second.
#[cfg_attr(
    not(any(feature = "cuda", feature = "wgpu")),
    allow(dead_code, reason = "only device backends measure their limits")
)]
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Device-to-device copy, read plus written.
    d2d_bytes_per_s: f64,
    /// Page-locked host to device.
    h2d_bytes_per_s: f64,
    /// Device to page-locked host.
    d2h_bytes_per_s: f64,
}

/// Measures the backend's limits into `report`, and returns them where the backend can say.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn device_limits(backend: &Backend, report: &mut DeviceReport) -> engine::Result<Option<Limits>> {
    let l = match backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda(cuda) => cuda.measure_limits(1 << 30, 5)?,
        // Smaller: on a software adapter these buffers are host memory, three of them.
        #[cfg(feature = "wgpu")]
        Backend::Wgpu(wgpu) => wgpu.measure_limits(256 << 20, 5)?,
        _ => return Ok(None),
    };
    report.limits = vec![
        ("device copy".into(), l.d2d_bytes_per_s),
        ("host to device".into(), l.h2d_bytes_per_s),
        ("device to host".into(), l.d2h_bytes_per_s),
    ];
    eprintln!(
        "{} limits: device copy {:.0} GB/s, host to device {:.1} GB/s, device to host {:.1} GB/s",
        backend.name(),
        l.d2d_bytes_per_s / 1e9,
        l.h2d_bytes_per_s / 1e9,
        l.d2h_bytes_per_s / 1e9
    );
    Ok(Some(Limits {
        d2d_bytes_per_s: l.d2d_bytes_per_s,
        h2d_bytes_per_s: l.h2d_bytes_per_s,
        d2h_bytes_per_s: l.d2h_bytes_per_s,
    }))
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn device_limits(_backend: &Backend, _report: &mut DeviceReport) -> engine::Result<Option<Limits>> {
    Ok(None)
}

/// Pixels per second of `kernel` resident on the device, where the backend can say.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn resident_px_per_s(
    backend: &Backend,
    kernel: Kernel,
    expr: &ExprKernel,
    px: usize,
    reps: usize,
) -> engine::Result<Option<f64>> {
    use engine::backend::ResidentKernel;
    let k = match kernel {
        Kernel::NormalizedDifference => ResidentKernel::Builtin("normalized_difference"),
        Kernel::Evi => ResidentKernel::Builtin("evi"),
        Kernel::Savi => ResidentKernel::Builtin("savi"),
        Kernel::Scale => ResidentKernel::Builtin("scale"),
        Kernel::ApplyMask => ResidentKernel::Builtin("landsat_qa"),
        Kernel::ExprNdvi => ResidentKernel::Expr(expr),
        _ => return Ok(None),
    };
    // Enough launches that launch overhead is visible but not dominant: best of 5 + reps.
    let secs = match backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda(cuda) => cuda.resident_secs(k, px, reps.max(5))?,
        #[cfg(feature = "wgpu")]
        Backend::Wgpu(wgpu) => wgpu.resident_secs(k, px, reps.max(5))?,
        _ => return Ok(None),
    };
    Ok(Some(px as f64 / secs))
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn resident_px_per_s(
    _backend: &Backend,
    _kernel: Kernel,
    _expr: &ExprKernel,
    _px: usize,
    _reps: usize,
) -> engine::Result<Option<f64>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backend_measures_every_kernel() {
        let report = measure(&Backend::Cpu, &[64], &[2], Duration::from_millis(1), 1)
            .expect("cpu runs every kernel");
        assert_eq!(report.rows.len(), KERNELS.len() + 1);
        assert!(report.rows.iter().any(|r| r.kernel == CHAIN_STEPS));
        assert!(!report.rows.iter().any(|r| r.kernel == CHAIN_FUSED));
        for r in &report.rows {
            assert!(
                r.host_mpx_per_s > 0.0 && r.host_mpx_per_s.is_finite(),
                "{r:?}"
            );
            assert!(r.resident_mpx_per_s.is_none());
        }
        let md = report.to_markdown();
        assert!(md.contains("| normalized_difference | 64 | 2 |"), "{md}");
    }

    /// On wgpu (Mesa's lavapipe in CI): the limits are measured, the chain is measured both
    /// ways, and every kernel with a resident form gets a resident rate.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_measures_limits_and_resident_rates() {
        use engine::backend::{WgpuBackend, WgpuOptions};
        let backend = match WgpuBackend::new(&WgpuOptions {
            allow_software: true,
            ..WgpuOptions::default()
        }) {
            Ok(w) => Backend::from(w),
            Err(e) => {
                eprintln!("NOT RUN: wgpu did not start: {e}");
                return;
            }
        };
        let report = measure(&backend, &[64], &[2], Duration::from_millis(1), 1)
            .expect("wgpu runs every kernel");
        let names: Vec<&str> = report.limits.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["device copy", "host to device", "device to host"]);
        for (name, rate) in &report.limits {
            assert!(*rate > 0.0 && rate.is_finite(), "{name}: {rate}");
        }
        assert!(report.rows.iter().any(|r| r.kernel == CHAIN_FUSED));
        let resident: Vec<&str> = report
            .rows
            .iter()
            .filter(|r| {
                r.resident_mpx_per_s
                    .is_some_and(|v| v > 0.0 && v.is_finite())
            })
            .map(|r| r.kernel.as_str())
            .collect();
        for kernel in [
            "normalized_difference",
            "evi",
            "savi",
            "scale",
            "apply_mask",
        ] {
            assert!(
                resident.contains(&kernel),
                "{kernel} has no resident rate: {resident:?}"
            );
        }
        assert!(
            resident.iter().any(|k| k.starts_with("expr")),
            "{resident:?}"
        );
    }
}
