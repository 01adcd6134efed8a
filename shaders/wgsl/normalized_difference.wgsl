// normalized_difference: (a − b) / (a + b) with a = plane 0, b = plane 1; nodata in either
// input, a zero sum or a non-finite result give nodata. Matches
// kernels::index::normalized_difference.

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
    var a = src[i];
    var b = src[params.n + i];
    // A pair below 2^-64 is scaled by 2^64 (exact; the ratio is unchanged), so that a − b and
    // a + b never land in the subnormal range a device may flush to zero (seen on NVIDIA's
    // Vulkan driver: (5.795e-37 − 5.823e-37) / (5.795e-37 + 5.823e-37) came back −0).
    if max(abs(a), abs(b)) < bitcast<f32>(0x1f800000u) {
        a = rounded(a * 18446744073709551616.0);
        b = rounded(b * 18446744073709551616.0);
    }
    let sum = a + b;
    let r = quotient(a - b, sum);
    let bad = is_nodata(a) || is_nodata(b) || sum == 0.0;
    dst[i] = select(finite_or_nodata(r), nodata(), bad);
}
