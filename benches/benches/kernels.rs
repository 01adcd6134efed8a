//! Criterion micro-benchmarks of the CPU kernels on 1024² planes, reported in pixels/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::convolve::{convolve, ConvolveKind};
use kernels::index::normalized_difference;
use kernels::mask::{apply_mask, MaskRule};
use kernels::terrain::{hillshade, slope, SlopeUnits, TerrainParams};
use kernels::Plane;

const SIDE_PX: usize = 1024;

fn streaming(c: &mut Criterion) {
    let n = SIDE_PX * SIDE_PX;
    let nir = benches::plane(n, 1, 0.0, 0.6);
    let red = benches::plane(n, 2, 0.0, 0.3);
    let qa: Vec<f32> = benches::plane(n, 3, 0.0, 1.0)
        .iter()
        .map(|&u| if u < 0.8 { 21824.0 } else { 22280.0 })
        .collect();
    let mut out = vec![0.0f32; n];
    let mut g = c.benchmark_group("streaming");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("normalized_difference", |b| {
        b.iter(|| normalized_difference(&nir, &red, &mut out).expect("same shapes"))
    });
    let rule = MaskRule::landsat_default();
    g.bench_function("apply_mask_landsat", |b| {
        b.iter(|| {
            out.copy_from_slice(&nir);
            apply_mask(&mut out, &qa, &rule).expect("same shapes")
        })
    });
    let ndvi = kernels::expr::compile("(nir - red) / (nir + red)", &["nir", "red"])
        .expect("valid expression");
    g.bench_function("expr_ndvi", |b| {
        b.iter(|| ndvi.eval(&[&nir, &red], &mut out).expect("same shapes"))
    });
    g.finish();
}

fn stencils(c: &mut Criterion) {
    let side = SIDE_PX + 2;
    let dem = benches::dem(side);
    let plane = Plane::new(side, side, &dem).expect("square");
    let mut out = vec![0.0f32; SIDE_PX * SIDE_PX];
    let p = TerrainParams::new(30.0, 30.0);
    let mut g = c.benchmark_group("stencil");
    g.throughput(Throughput::Elements((SIDE_PX * SIDE_PX) as u64));
    g.bench_function("hillshade", |b| {
        b.iter(|| hillshade(plane, 1, &p, 315.0, 45.0, &mut out).expect("valid"))
    });
    g.bench_function("slope", |b| {
        b.iter(|| slope(plane, 1, &p, SlopeUnits::Degrees, &mut out).expect("valid"))
    });
    g.bench_function("gaussian3", |b| {
        b.iter(|| convolve(ConvolveKind::Gaussian3, plane, 1, &mut out).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, streaming, stencils);
criterion_main!(benches);
