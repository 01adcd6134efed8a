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
    // With both bands and L below 2^-64, all three are scaled by 2^64, so that nir + red + L
    // never lands in the subnormal range a device may flush to zero (seen on NVIDIA's Vulkan
    // driver with L = 0: −2.596e-37 + 2.534e-37 flushed, a zero denominator, nodata instead of
    // 82.47). Exact only there: 1 + L is then 1, so no product rounds differently once scaled
    // (with a larger L the reference's (1 + L)(nir − red) rounds at subnormal precision, and
    // scaling would move the result away from it). 1 + L keeps L unscaled.
    var l_den = l;
    if max(max(abs(nir), abs(red)), l) < bitcast<f32>(0x1f800000u) {
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
