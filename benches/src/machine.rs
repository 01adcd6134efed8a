//! A stamp for results: CPU model, cores and memory of the machine that measured them.

use serde_json::{json, Value};

/// What measured the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_bytes: u64,
}

impl Machine {
    /// Reads `/proc/cpuinfo` and `/proc/meminfo` (Linux); unknown fields stay empty.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown cpu".into());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
        }
    }

    /// One line: `AMD EPYC, 2 cores, 23.5 GiB`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} cores, {:.1} GiB",
            self.cpu_model,
            self.cores,
            self.memory_bytes as f64 / (1u64 << 30) as f64
        )
    }

    /// A file-name-safe slug: `cpu-amd-epyc-2c`, `cpu-intel-xeon-2c` (for "Intel(R)
    /// Xeon(R) Processor": trademark signs and the words "processor" and "cpu" dropped).
    pub fn slug(&self) -> String {
        let model = slug_of(&self.cpu_model);
        let words: Vec<&str> = model
            .split('-')
            .filter(|w| !matches!(*w, "r" | "tm" | "processor" | "cpu"))
            .collect();
        format!("cpu-{}-{}c", words.join("-"), self.cores)
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({ "cpu_model": self.cpu_model, "cores": self.cores, "memory_bytes": self.memory_bytes })
    }
}

/// `text` as a file-name-safe slug: lowercase letters and digits joined by single dashes.
pub fn slug_of(text: &str) -> String {
    let words: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    words
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_name_the_model_without_trademarks() {
        let slug = |model: &str| {
            Machine {
                cpu_model: model.into(),
                cores: 2,
                memory_bytes: 0,
            }
            .slug()
        };
        assert_eq!(slug("Intel(R) Xeon(R) Processor"), "cpu-intel-xeon-2c");
        assert_eq!(slug("AMD EPYC"), "cpu-amd-epyc-2c");
        assert_eq!(
            slug("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
            "cpu-intel-core-i7-8700-3-20ghz-2c"
        );
    }
}
