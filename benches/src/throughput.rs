//! Kernel throughput on the CPU backend: every kernel × tile size × batch size, in pixels/s and
//! bytes/s (counted from each kernel's inputs and outputs), best of several timed runs.

use std::time::{Duration, Instant};

use kernels::convolve::{convolve, ConvolveKind};
use kernels::expr::CompiledExpr;
use kernels::mask::MaskRule;
use kernels::terrain::{SlopeUnits, TerrainParams};
use kernels::Plane;
use rayon::prelude::*;

/// One measured row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub kernel: String,
    pub backend: String,
    pub tile_px: usize,
    pub batch: usize,
    pub mpx_per_s: f64,
    pub bytes_per_s: f64,
    /// Whether the kernel only streams (no neighbourhood, little arithmetic).
    pub streaming: bool,
}

/// The kernels measured, with the bytes each moves per output pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    NormalizedDifference,
    Evi,
    Savi,
    Scale,
    ApplyMask,
    ExprNdvi,
    Stats,
    Gaussian3,
    Hillshade,
    Slope,
}

impl Kernel {
    /// Every kernel measured.
    pub const ALL: [Self; 10] = [
        Self::NormalizedDifference,
        Self::Evi,
        Self::Savi,
        Self::Scale,
        Self::ApplyMask,
        Self::ExprNdvi,
        Self::Stats,
        Self::Gaussian3,
        Self::Hillshade,
        Self::Slope,
    ];

    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::NormalizedDifference => "normalized_difference",
            Self::Evi => "evi",
            Self::Savi => "savi",
            Self::Scale => "scale",
            Self::ApplyMask => "apply_mask",
            Self::ExprNdvi => "expr(ndvi)",
            Self::Stats => "stats",
            Self::Gaussian3 => "convolve(gaussian3)",
            Self::Hillshade => "hillshade",
            Self::Slope => "slope",
        }
    }

    /// Bytes read plus written per output pixel.
    pub fn bytes_per_px(self) -> usize {
        match self {
            Self::NormalizedDifference | Self::Savi | Self::ExprNdvi => 12,
            Self::Evi => 16,
            Self::Scale => 8,
            Self::ApplyMask => 12,
            Self::Stats => 4,
            Self::Gaussian3 | Self::Hillshade | Self::Slope => 8,
        }
    }

    /// Memory-bound kernels, held to the copy bandwidth.
    pub fn streaming(self) -> bool {
        !matches!(
            self,
            Self::Gaussian3 | Self::Hillshade | Self::Slope | Self::Stats
        )
    }
}

struct TileData {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    qa: Vec<f32>,
    dem: Vec<f32>,
    out: Vec<f32>,
}

fn tile_data(tile_px: usize, seed: u64) -> TileData {
    let n = tile_px * tile_px;
    let halo = tile_px + 2;
    TileData {
        a: crate::plane(n, seed, 0.0, 0.6),
        b: crate::plane(n, seed + 1, 0.0, 0.3),
        c: crate::plane(n, seed + 2, 0.0, 0.2),
        qa: crate::plane(n, seed + 3, 0.0, 1.0)
            .into_iter()
            .map(|u| if u < 0.8 { 21824.0 } else { 22280.0 })
            .collect(),
        dem: crate::dem(halo),
        out: vec![0.0; halo * halo],
    }
}

fn run_once(kernel: Kernel, t: &mut TileData, tile_px: usize, expr: &CompiledExpr) {
    let n = tile_px * tile_px;
    let out = &mut t.out[..n];
    let dem = Plane {
        width_px: tile_px + 2,
        height_px: tile_px + 2,
        data: &t.dem,
    };
    let p = TerrainParams::new(30.0, 30.0);
    let ok = match kernel {
        Kernel::NormalizedDifference => kernels::index::normalized_difference(&t.a, &t.b, out),
        Kernel::Evi => kernels::index::evi(&t.a, &t.b, &t.c, out),
        Kernel::Savi => kernels::index::savi(&t.a, &t.b, 0.5, out),
        Kernel::Scale => {
            kernels::scale::scale_in_place(&mut t.a, kernels::scale::Scaling::IDENTITY)
        }
        Kernel::ApplyMask => {
            kernels::mask::apply_mask(&mut t.a, &t.qa, &MaskRule::LandsatQa { bits: 0 })
        }
        Kernel::ExprNdvi => expr.eval(&[&t.a, &t.b], out),
        Kernel::Stats => {
            std::hint::black_box(kernels::stats::stats(&t.a));
            Ok(())
        }
        Kernel::Gaussian3 => convolve(ConvolveKind::Gaussian3, dem, 1, out),
        Kernel::Hillshade => kernels::terrain::hillshade(dem, 1, &p, 315.0, 45.0, out),
        Kernel::Slope => kernels::terrain::slope(dem, 1, &p, SlopeUnits::Degrees, out),
    };
    // The inputs are generated to fit every kernel; an error here is a harness bug.
    debug_assert!(ok.is_ok(), "{kernel:?}: {ok:?}");
    std::hint::black_box(&t.out);
}

/// Measures `kernel` on `batch` tiles of `tile_px`² processed together (tiles in parallel,
/// each kernel call parallel inside), for at least `min_time` per repetition, best of `reps`.
pub fn measure(
    kernel: Kernel,
    tile_px: usize,
    batch: usize,
    min_time: Duration,
    reps: usize,
) -> Row {
    let mut tiles: Vec<TileData> = (0..batch)
        .map(|i| tile_data(tile_px, 7 + i as u64))
        .collect();
    let expr = kernels::expr::compile("(nir - red) / (nir + red)", &["nir", "red"])
        .unwrap_or_else(|e| panic!("built-in expression must compile: {e}"));
    let px_per_call = (tile_px * tile_px * batch) as f64;
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < min_time || calls == 0 {
            tiles
                .par_iter_mut()
                .for_each(|t| run_once(kernel, t, tile_px, &expr));
            calls += 1;
        }
        let rate = px_per_call * calls as f64 / start.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    Row {
        kernel: kernel.name().to_string(),
        backend: "cpu".to_string(),
        tile_px,
        batch,
        mpx_per_s: best / 1e6,
        bytes_per_s: best * kernel.bytes_per_px() as f64,
        streaming: kernel.streaming(),
    }
}
