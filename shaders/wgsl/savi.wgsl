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
    let nir = src[i];
    let red = src[params.n + i];
    let l = params.f.x;
    let numerator = rounded((1.0 + l) * (nir - red));
    let denominator = (nir + red) + l;
    let r = quotient(numerator, denominator);
    let bad = is_nodata(nir) || is_nodata(red) || denominator == 0.0;
    dst[i] = select(finite_or_nodata(r), nodata(), bad);
}
