//! The bench harness behind `constellation bench`: the machine's memory-bandwidth limit,
//! kernel throughput, end-to-end runs against peer tools, and the reports; plus shared inputs
//! for the criterion micro-benchmarks.

pub mod device;
pub mod e2e;
pub mod machine;
pub mod report;
pub mod stream;
pub mod throughput;

/// A deterministic plane of `len` values in `[lo, hi)` (a SplitMix64 stream).
pub fn plane(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// A smooth synthetic DEM in metres (rolling hills), `side_px` square.
pub fn dem(side_px: usize) -> Vec<f32> {
    (0..side_px * side_px)
        .map(|i| {
            let (x, y) = ((i % side_px) as f32, (i / side_px) as f32);
            500.0 + 200.0 * (x / 37.0).sin() * (y / 53.0).cos() + 0.05 * x
        })
        .collect()
}
