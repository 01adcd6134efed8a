//! GPU discovery and metrics: NVIDIA GPUs through NVML (loaded at run time, behind the `nvml`
//! feature), the DCGM exporter's default set of metrics, or labelled simulated GPUs for demos.

use std::time::{SystemTime, UNIX_EPOCH};

/// One GPU as discovered.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub pci_bus_id: String,
    pub simulated: bool,
}

/// One sample of a GPU's metrics (DCGM exporter's defaults). `None` where the device or the
/// driver does not report the metric.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub index: u32,
    pub unix_ms: u64,
    pub gpu_util_pct: Option<u32>,
    pub mem_copy_util_pct: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub pcie_tx_bytes_per_s: Option<u64>,
    pub pcie_rx_bytes_per_s: Option<u64>,
    pub simulated: bool,
}

/// Where GPU facts come from.
#[derive(Debug)]
pub enum GpuSource {
    #[cfg(feature = "nvml")]
    Nvml(Box<nvml_wrapper::Nvml>),
    /// `count` simulated GPUs (for demos and UI work); every sample says `simulated`.
    Simulated { count: u32 },
    /// No GPU facts, and why.
    Unavailable(String),
}

impl GpuSource {
    /// NVML when it loads and sees a device; `simulate` GPUs when asked; else why not.
    pub fn discover(simulate: Option<u32>) -> Self {
        if let Some(count) = simulate {
            return Self::Simulated { count };
        }
        #[cfg(feature = "nvml")]
        {
            let init = nvml_wrapper::Nvml::init().or_else(|_| {
                nvml_wrapper::Nvml::builder()
                    .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
                    .init()
            });
            match init {
                Ok(nvml) => Self::Nvml(Box::new(nvml)),
                Err(e) => Self::Unavailable(format!(
                    "nvml is not available ({}); no NVIDIA GPU metrics",
                    e.to_string().to_lowercase()
                )),
            }
        }
        #[cfg(not(feature = "nvml"))]
        Self::Unavailable("this binary was built without NVML (feature nvml)".into())
    }

    /// The GPUs.
    pub fn inventory(&self) -> Vec<GpuInfo> {
        match self {
            #[cfg(feature = "nvml")]
            Self::Nvml(nvml) => {
                let count = nvml.device_count().unwrap_or(0);
                (0..count)
                    .filter_map(|i| {
                        let d = nvml.device_by_index(i).ok()?;
                        Some(GpuInfo {
                            index: i,
                            name: d.name().unwrap_or_default(),
                            uuid: d.uuid().unwrap_or_default(),
                            memory_total_bytes: d.memory_info().map_or(0, |m| m.total),
                            pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                            simulated: false,
                        })
                    })
                    .collect()
            }
            Self::Simulated { count } => (0..*count)
                .map(|i| GpuInfo {
                    index: i,
                    name: "Simulated GPU".into(),
                    uuid: format!("GPU-simulated-{i:04}"),
                    memory_total_bytes: 80 << 30,
                    pci_bus_id: format!("simulated:{i:02x}"),
                    simulated: true,
                })
                .collect(),
            Self::Unavailable(_) => Vec::new(),
        }
    }

    /// One sample of every GPU.
    pub fn sample(&self) -> Vec<GpuSample> {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match self {
            #[cfg(feature = "nvml")]
            Self::Nvml(nvml) => {
                use nvml_wrapper::enum_wrappers::device::{
                    Clock, PcieUtilCounter, TemperatureSensor,
                };
                let count = nvml.device_count().unwrap_or(0);
                (0..count)
                    .filter_map(|i| {
                        let d = nvml.device_by_index(i).ok()?;
                        let util = d.utilization_rates().ok();
                        let mem = d.memory_info().ok();
                        Some(GpuSample {
                            index: i,
                            unix_ms,
                            gpu_util_pct: util.as_ref().map(|u| u.gpu),
                            mem_copy_util_pct: util.as_ref().map(|u| u.memory),
                            memory_used_bytes: mem.as_ref().map(|m| m.used),
                            memory_total_bytes: mem.as_ref().map(|m| m.total),
                            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
                            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
                            mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
                            // NVML reports KB/s.
                            pcie_tx_bytes_per_s: d
                                .pcie_throughput(PcieUtilCounter::Send)
                                .ok()
                                .map(|kb| u64::from(kb) * 1024),
                            pcie_rx_bytes_per_s: d
                                .pcie_throughput(PcieUtilCounter::Receive)
                                .ok()
                                .map(|kb| u64::from(kb) * 1024),
                            simulated: false,
                        })
                    })
                    .collect()
            }
            Self::Simulated { count } => {
                (0..*count).map(|i| simulated_sample(i, unix_ms)).collect()
            }
            Self::Unavailable(_) => Vec::new(),
        }
    }

    /// Why there are no GPU facts, if there are none.
    pub fn unavailable_reason(&self) -> Option<&str> {
        match self {
            Self::Unavailable(r) => Some(r),
            _ => None,
        }
    }
}

/// A plausible, deterministic (in time and index) busy GPU, marked simulated.
fn simulated_sample(index: u32, unix_ms: u64) -> GpuSample {
    let t = unix_ms as f64 / 1000.0 + f64::from(index) * 1.7;
    let wave = |period_s: f64| 0.5 + 0.5 * (std::f64::consts::TAU * t / period_s).sin();
    let util = (60.0 + 38.0 * wave(23.0)).round();
    let total = 80u64 << 30;
    GpuSample {
        index,
        unix_ms,
        gpu_util_pct: Some(util as u32),
        mem_copy_util_pct: Some((25.0 + 50.0 * wave(17.0)).round() as u32),
        memory_used_bytes: Some((total as f64 * (0.3 + 0.4 * wave(41.0))) as u64),
        memory_total_bytes: Some(total),
        temperature_c: Some((45.0 + 0.3 * util) as u32),
        power_w: Some(120.0 + 5.5 * util),
        sm_clock_mhz: Some(1755),
        mem_clock_mhz: Some(2619),
        pcie_tx_bytes_per_s: Some((2.0e9 * wave(11.0)) as u64),
        pcie_rx_bytes_per_s: Some((6.0e9 * wave(13.0)) as u64),
        simulated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_gpus_are_labelled_and_plausible() {
        let src = GpuSource::discover(Some(2));
        let inv = src.inventory();
        assert_eq!(inv.len(), 2);
        assert!(inv.iter().all(|g| g.simulated));
        let samples = src.sample();
        assert_eq!(samples.len(), 2);
        for s in samples {
            assert!(s.simulated);
            let util = s.gpu_util_pct.expect("reported");
            assert!((0..=100).contains(&util));
            assert!(s.memory_used_bytes <= s.memory_total_bytes);
        }
    }

    #[test]
    fn without_a_driver_there_is_a_reason_not_a_panic() {
        // On machines without an NVIDIA driver (CI), discovery says why; with one, it finds
        // devices. Either way it returns.
        let src = GpuSource::discover(None);
        match src.unavailable_reason() {
            Some(reason) => assert!(reason.contains("nvml"), "{reason}"),
            None => assert!(!src.inventory().is_empty()),
        }
    }
}
