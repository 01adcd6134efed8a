//! `constellation gpus`: the GPU inventory and live samples (NVML), or simulated GPUs.

use anyhow::Result;
use engine::gpu::{GpuSample, GpuSource};

/// Options of `constellation gpus`.
#[derive(Debug, clap::Args)]
pub struct GpusArgs {
    /// Report N simulated GPUs (every sample is marked simulated), for demos and UI work.
    #[arg(long)]
    simulate_gpus: Option<u32>,
    /// Samples to take.
    #[arg(long, default_value_t = 1)]
    samples: u32,
    /// Milliseconds between samples.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// As JSON lines.
    #[arg(long)]
    json: bool,
}

fn sample_json(s: &GpuSample) -> serde_json::Value {
    serde_json::json!({
        "index": s.index, "unix_ms": s.unix_ms, "simulated": s.simulated,
        "gpu_util_pct": s.gpu_util_pct, "mem_copy_util_pct": s.mem_copy_util_pct,
        "memory_used_bytes": s.memory_used_bytes, "memory_total_bytes": s.memory_total_bytes,
        "temperature_c": s.temperature_c, "power_w": s.power_w,
        "sm_clock_mhz": s.sm_clock_mhz, "mem_clock_mhz": s.mem_clock_mhz,
        "pcie_tx_bytes_per_s": s.pcie_tx_bytes_per_s, "pcie_rx_bytes_per_s": s.pcie_rx_bytes_per_s,
    })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Prints the inventory and samples; without NVML (and no simulation) says why and succeeds.
pub fn run(args: &GpusArgs) -> Result<()> {
    let source = GpuSource::discover(args.simulate_gpus);
    if let Some(reason) = source.unavailable_reason() {
        if args.json {
            println!("{}", serde_json::json!({ "gpus": [], "reason": reason }));
        } else {
            println!("no GPUs: {reason}");
        }
        return Ok(());
    }
    let inventory = source.inventory();
    if args.json {
        let gpus: Vec<_> = inventory
            .iter()
            .map(|g| {
                serde_json::json!({
                    "index": g.index, "name": g.name, "uuid": g.uuid,
                    "memory_total_bytes": g.memory_total_bytes, "pci_bus_id": g.pci_bus_id,
                    "simulated": g.simulated,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "gpus": gpus }));
    } else {
        for g in &inventory {
            println!(
                "gpu {}: {}{} {} {:.1} GiB {}",
                g.index,
                g.name,
                if g.simulated { " (simulated)" } else { "" },
                g.uuid,
                g.memory_total_bytes as f64 / (1u64 << 30) as f64,
                g.pci_bus_id
            );
        }
    }
    for k in 0..args.samples {
        if k > 0 {
            std::thread::sleep(std::time::Duration::from_millis(args.interval_ms));
        }
        for s in source.sample() {
            if args.json {
                println!("{}", sample_json(&s));
            } else {
                println!(
                    "gpu {} util {}% mem {}/{} MiB temp {} °C power {} W sm {} MHz pcie tx/rx {}/{} B/s{}",
                    s.index,
                    opt(s.gpu_util_pct),
                    opt(s.memory_used_bytes.map(|b| b >> 20)),
                    opt(s.memory_total_bytes.map(|b| b >> 20)),
                    opt(s.temperature_c),
                    opt(s.power_w.map(|w| format!("{w:.0}"))),
                    opt(s.sm_clock_mhz),
                    opt(s.pcie_tx_bytes_per_s),
                    opt(s.pcie_rx_bytes_per_s),
                    if s.simulated { " (simulated)" } else { "" }
                );
            }
        }
    }
    Ok(())
}
