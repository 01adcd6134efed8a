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
    let a = src[i];
    let b = src[params.n + i];
    let sum = a + b;
    let r = (a - b) / sum;
    let bad = is_nodata(a) || is_nodata(b) || sum == 0.0;
    dst[i] = select(finite_or_nodata(r), nodata(), bad);
}
