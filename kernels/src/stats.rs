//! Per-tile statistics (count, min, max, mean, standard deviation) and histograms, nodata
//! excluded; both merge exactly across tiles, so a tiled run gives the whole-scene answer.

use rayon::prelude::*;

use crate::error::KernelError;
use crate::plane::PIXELS_PER_TASK;

/// Summary statistics of the valid (non-nodata) pixels.
///
/// Sums are kept in `f64` and merged with Chan's parallel update, so results do not depend on
/// how the data was split beyond floating-point rounding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sum of squared deviations from the mean (`M2`).
    pub m2: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Stats {
    /// No pixels.
    pub const EMPTY: Self = Self {
        count: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        mean: 0.0,
        m2: 0.0,
    };

    /// Population standard deviation (numpy's `std`, `gdalinfo -stats`); `None` when empty.
    pub fn std(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).sqrt())
    }

    /// Minimum, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Maximum, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Combines two disjoint sets of pixels.
    pub fn merge(self, other: Self) -> Self {
        if self.count == 0 {
            return other;
        }
        if other.count == 0 {
            return self;
        }
        let count = self.count + other.count;
        let (na, nb) = (self.count as f64, other.count as f64);
        let delta = other.mean - self.mean;
        let mean = self.mean + delta * nb / count as f64;
        let m2 = self.m2 + other.m2 + delta * delta * na * nb / count as f64;
        Self {
            count,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            mean,
            m2,
        }
    }

    /// [`of_chunk_portable`](Self::of_chunk_portable) in its AVX2 build where the CPU has it
    /// (same bits either way: see `crate::simd`). Dispatched here rather than through
    /// `simd::with_avx2`, whose closure LLVM left out of the AVX2 build for this much code.
    #[allow(unsafe_code)]
    fn of_chunk(data: &[f32]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { Self::of_chunk_avx2(data) };
        }
        Self::of_chunk_portable(data)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn of_chunk_avx2(data: &[f32]) -> Self {
        Self::of_chunk_portable(data)
    }

    #[inline(always)]
    fn of_chunk_portable(data: &[f32]) -> Self {
        // Two passes over a cache-sized chunk, each in eight independent lanes (a NaN adds
        // nothing to its lane), so both loops vectorize; the lanes are combined at the end.
        // The accumulators are the passes' own locals: a loop writing them through captured
        // references kept every lane in memory and ran scalar.
        let (lanes, rest) = data.split_at(data.len() - data.len() % LANES);
        let mut first = first_pass(lanes);
        for &v in rest.iter().filter(|v| !v.is_nan()) {
            first.count[0] += 1;
            first.sum[0] += f64::from(v);
            first.min[0] = first.min[0].min(v);
            first.max[0] = first.max[0].max(v);
        }
        let count: u64 = first.count.iter().sum();
        if count == 0 {
            return Self::EMPTY;
        }
        let mean = first.sum.iter().sum::<f64>() / count as f64;
        let min = first.min.iter().copied().fold(f32::INFINITY, f32::min);
        let max = first.max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut m2 = second_pass(lanes, mean);
        for &v in rest.iter().filter(|v| !v.is_nan()) {
            let d = f64::from(v) - mean;
            m2[0] += d * d;
        }
        let m2 = m2.iter().sum();
        Self {
            count,
            min: f64::from(min),
            max: f64::from(max),
            mean,
            m2,
        }
    }
}

/// Independent accumulator lanes of [`Stats::of_chunk`]'s passes.
const LANES: usize = 8;

/// Per-lane count, sum, minimum and maximum of the first pass.
struct FirstPass {
    count: [u64; LANES],
    sum: [f64; LANES],
    min: [f32; LANES],
    max: [f32; LANES],
}

/// Count, sum, minimum and maximum of `lanes` (a multiple of [`LANES`] long), lane by lane.
#[inline(always)]
fn first_pass(lanes: &[f32]) -> FirstPass {
    // Counted in 32 bits, one vector of lanes; each lane counts an eighth of the pixels, so
    // this is exact up to 2^35 pixels (128 GiB of f32), far past any chunk (`stats` passes
    // `PIXELS_PER_TASK`).
    let (mut count, mut sum) = ([0u32; LANES], [0.0f64; LANES]);
    let (mut min, mut max) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    for c in lanes.chunks_exact(LANES) {
        for i in 0..LANES {
            let v = c[i];
            let valid = !v.is_nan();
            count[i] += u32::from(valid);
            sum[i] += if valid { f64::from(v) } else { 0.0 };
            // Comparisons with NaN are false: a NaN leaves both as they are.
            min[i] = if v < min[i] { v } else { min[i] };
            max[i] = if v > max[i] { v } else { max[i] };
        }
    }
    FirstPass {
        count: count.map(u64::from),
        sum,
        min,
        max,
    }
}

/// Per-lane sums of squared deviations from `mean` of the valid values of `lanes`.
#[inline(always)]
fn second_pass(lanes: &[f32], mean: f64) -> [f64; LANES] {
    let mut m2 = [0.0f64; LANES];
    for c in lanes.chunks_exact(LANES) {
        for i in 0..LANES {
            let d = f64::from(c[i]) - mean;
            m2[i] += if c[i].is_nan() { 0.0 } else { d * d };
        }
    }
    m2
}

/// Statistics of the valid pixels of `data`.
pub fn stats(data: &[f32]) -> Stats {
    data.par_chunks(PIXELS_PER_TASK)
        .map(Stats::of_chunk)
        .reduce(|| Stats::EMPTY, Stats::merge)
}

/// A histogram of `bins.len()` equal bins over `[min, max]`, numpy's convention: every bin is
/// half-open except the last, which includes `max`; values outside and nodata are not counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub bins: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over `[min, max]` with `bin_count` bins.
    pub fn new(min: f64, max: f64, bin_count: usize) -> Result<Self, KernelError> {
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(KernelError::InvalidParam {
                name: "histogram range",
                reason: format!("need finite min < max, got [{min}, {max}]"),
            });
        }
        if bin_count == 0 {
            return Err(KernelError::InvalidParam {
                name: "bin_count",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            min,
            max,
            bins: vec![0; bin_count],
        })
    }

    /// Counts the valid pixels of `data` into this histogram.
    pub fn add(&mut self, data: &[f32]) {
        let partial = data
            .par_chunks(PIXELS_PER_TASK)
            .map(|chunk| {
                let mut bins = vec![0u64; self.bins.len()];
                self.count_into(chunk, &mut bins);
                bins
            })
            .reduce(
                || vec![0u64; self.bins.len()],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        self.bins.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
    }

    fn count_into(&self, data: &[f32], bins: &mut [u64]) {
        let n = bins.len();
        let width = (self.max - self.min) / n as f64;
        for &v in data {
            let v = f64::from(v);
            if !(v >= self.min && v <= self.max) {
                continue; // nodata (NaN) fails both comparisons
            }
            let i = (((v - self.min) / width) as usize).min(n - 1);
            bins[i] += 1;
        }
    }

    /// Adds another histogram over the same range and bins.
    pub fn merge(&mut self, other: &Self) -> Result<(), KernelError> {
        if self.min != other.min || self.max != other.max || self.bins.len() != other.bins.len() {
            return Err(KernelError::InvalidParam {
                name: "histogram",
                reason: "cannot merge histograms over different bins".into(),
            });
        }
        self.bins
            .iter_mut()
            .zip(&other.bins)
            .for_each(|(a, b)| *a += b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodata_is_excluded_and_splits_merge() {
        let data: Vec<f32> = (0..100_000)
            .map(|i| {
                if i % 7 == 0 {
                    f32::NAN
                } else {
                    (i % 1000) as f32 * 0.5
                }
            })
            .collect();
        let whole = stats(&data);
        let split = Stats::of_chunk(&data[..33_333]).merge(stats(&data[33_333..]));
        assert_eq!(whole.count, split.count);
        assert_eq!(whole.count, 100_000 - 100_000usize.div_ceil(7) as u64);
        assert!((whole.mean - split.mean).abs() < 1e-9);
        assert!((whole.m2 - split.m2).abs() / whole.m2 < 1e-12);
        assert_eq!(whole.min, 0.0);
        assert_eq!(whole.max, 499.5);
    }

    #[test]
    fn the_vector_build_gives_the_portable_builds_bits() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<f32> = (0..32_771)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 11 {
                    0 => f32::NAN,
                    1 => -1e30,
                    _ => (seed >> 40) as f32 / 3.0 - 2e6,
                }
            })
            .collect();
        let portable = Stats::of_chunk_portable(&data);
        let dispatched = Stats::of_chunk(&data);
        assert_eq!(portable.count, dispatched.count);
        for (p, d) in [
            (portable.min, dispatched.min),
            (portable.max, dispatched.max),
            (portable.mean, dispatched.mean),
            (portable.m2, dispatched.m2),
        ] {
            assert_eq!(p.to_bits(), d.to_bits());
        }
    }

    #[test]
    fn empty_has_no_values() {
        let s = stats(&[f32::NAN, f32::NAN]);
        assert_eq!(s.count, 0);
        assert_eq!(s.mean(), None);
        assert_eq!(s.std(), None);
    }

    #[test]
    fn histogram_last_bin_is_closed() {
        let mut h = Histogram::new(0.0, 1.0, 4).expect("valid range");
        h.add(&[0.0, 0.25, 0.5, 1.0, 1.5, -0.1, f32::NAN]);
        assert_eq!(h.bins, vec![1, 1, 1, 1]);
    }
}
