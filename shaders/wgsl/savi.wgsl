// savi: (1 + L)(nir − red) / (nir + red + L) with nir, red = planes 0, 1 and L = params.f.x;
// nodata in either input, a zero denominator or a non-finite result give nodata. Matches
// kernels::index::savi.

// The shared layout and helpers (Params, bindings, nodata, rounding) come from common.wgsl,
// which the backend puts in front of this file.

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = pixel_index(wid, nwg, lid);
    if i >= params.n {
        return;
    }
    var nir = src[i];
    var red = src[params.n + i];
    let l = params.f.x;
    // With both bands below 2^-64 (and L below 2^62), nir, red and L are scaled by 2^64 (exact;
    // the ratio is unchanged), so that neither nir − red nor nir + red + L lands in the
    // subnormal range a device may flush to zero (seen on NVIDIA's Vulkan driver: with L = 0,
    // −2.596e-37 + 2.534e-37 flushed, a zero denominator, nodata instead of 82.47; with
    // L = 0.5, −2.746e-37 − −2.820e-37 flushed, 0 instead of 2.2e-38). 1 + L keeps L unscaled.
    var l_den = l;
    if max(abs(nir), abs(red)) < bitcast<f32>(0x1f800000u) && l < bitcast<f32>(0x5e800000u) {
        nir = rounded(nir * 18446744073709551616.0);
        red = rounded(red * 18446744073709551616.0);
        l_den = rounded(l * 18446744073709551616.0);
    }
    let numerator = rounded((1.0 + l) * (nir - red));
    let denominator = (nir + red) + l_den;
    let r = quotient(numerator, denominator);
    let bad = is_nodata(nir) || is_nodata(red) || denominator == 0.0;
    dst[i] = select(finite_or_nodata(r), nodata(), bad);
}
