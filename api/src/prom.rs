//! Prometheus text exposition (format 0.0.4): labelled counters and histograms kept in
//! memory, and the database pool's gauges, written by the API's and the worker's `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Bucket bounds in seconds, from a millisecond to five minutes.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A label value escaped for the text format.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_set(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[derive(Debug, Clone, Default)]
struct Hist {
    /// Observations at or below each bound (not cumulative; summed when written).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram family: one histogram per combination of label values.
#[derive(Debug)]
pub struct Histograms {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Hist>>,
}

impl Histograms {
    /// A family named `name` (base unit in the name, e.g. `_seconds`).
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            buckets,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records `value` under the label values (in the family's label order).
    pub fn observe(&self, values: &[&str], value: f64) {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if let Ok(mut m) = self.series.lock() {
            let h = m.entry(key).or_insert_with(|| Hist {
                counts: vec![0; self.buckets.len()],
                ..Hist::default()
            });
            if let Some(i) = self.buckets.iter().position(|&b| value <= b) {
                h.counts[i] += 1;
            }
            h.sum += value;
            h.count += 1;
        }
    }

    /// Writes the family: `_bucket` (cumulative, with `+Inf`), `_sum` and `_count`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let series = self.series.lock().map(|m| m.clone()).unwrap_or_default();
        for (values, h) in &series {
            let mut cumulative = 0;
            for (bound, n) in self.buckets.iter().zip(&h.counts) {
                cumulative += n;
                let labels = label_set(self.labels, values, Some(("le", &bound.to_string())));
                let _ = writeln!(out, "{}_bucket{labels} {cumulative}", self.name);
            }
            let labels = label_set(self.labels, values, Some(("le", "+Inf")));
            let _ = writeln!(out, "{}_bucket{labels} {}", self.name, h.count);
            let labels = label_set(self.labels, values, None);
            let _ = writeln!(out, "{}_sum{labels} {}", self.name, h.sum);
            let _ = writeln!(out, "{}_count{labels} {}", self.name, h.count);
        }
    }
}

/// A counter family: one monotonic total per combination of label values.
#[derive(Debug)]
pub struct Counters {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Counters {
    /// A family named `name` (ending in `_total`).
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `by` (≥ 0) under the label values.
    pub fn add(&self, values: &[&str], by: f64) {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if let Ok(mut m) = self.series.lock() {
            *m.entry(key).or_default() += by.max(0.0);
        }
    }

    /// Writes the family.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        let series = self.series.lock().map(|m| m.clone()).unwrap_or_default();
        for (values, v) in &series {
            let labels = label_set(self.labels, values, None);
            let _ = writeln!(out, "{}{labels} {v}", self.name);
        }
    }
}

/// The database pool's gauges: open connections by state, and the pool's limit.
pub fn render_pool(out: &mut String, queue: &scheduler::Queue) {
    let (open, idle, max) = queue.pool_stats();
    let open = open as usize;
    let idle = idle.min(open);
    let _ = writeln!(
        out,
        "# HELP constellation_db_pool_connections Open database connections of this process, by state."
    );
    let _ = writeln!(out, "# TYPE constellation_db_pool_connections gauge");
    let _ = writeln!(
        out,
        "constellation_db_pool_connections{{state=\"idle\"}} {idle}"
    );
    let _ = writeln!(
        out,
        "constellation_db_pool_connections{{state=\"in_use\"}} {}",
        open - idle
    );
    let _ = writeln!(
        out,
        "# HELP constellation_db_pool_max_connections The pool's connection limit."
    );
    let _ = writeln!(out, "# TYPE constellation_db_pool_max_connections gauge");
    let _ = writeln!(out, "constellation_db_pool_max_connections {max}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let h = Histograms::new("x_seconds", "help", &["kind"], &[0.1, 1.0]);
        h.observe(&["a"], 0.05);
        h.observe(&["a"], 0.5);
        h.observe(&["a"], 5.0);
        let mut out = String::new();
        h.render(&mut out);
        assert!(out.contains("# TYPE x_seconds histogram"), "{out}");
        assert!(
            out.contains("x_seconds_bucket{kind=\"a\",le=\"0.1\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{kind=\"a\",le=\"1\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{kind=\"a\",le=\"+Inf\"} 3"),
            "{out}"
        );
        assert!(out.contains("x_seconds_sum{kind=\"a\"} 5.55"), "{out}");
        assert!(out.contains("x_seconds_count{kind=\"a\"} 3"), "{out}");
    }

    #[test]
    fn counters_add_per_label_set_and_escape() {
        let c = Counters::new("y_total", "help", &["who"]);
        c.add(&["a\"b"], 2.0);
        c.add(&["a\"b"], 3.0);
        c.add(&["c"], -1.0);
        let mut out = String::new();
        c.render(&mut out);
        assert!(out.contains("y_total{who=\"a\\\"b\"} 5"), "{out}");
        assert!(out.contains("y_total{who=\"c\"} 0"), "{out}");
    }
}
