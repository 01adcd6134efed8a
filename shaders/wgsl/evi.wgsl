// evi: 2.5 (nir − red) / (nir + 6 red − 7.5 blue + 1) with nir, red, blue = planes 0, 1, 2;
// nodata in any input, a zero denominator or a non-finite result give nodata. Matches
// kernels::index::evi (each product rounded before it is added, as on the CPU).

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
    let blue = src[2u * params.n + i];
    let numerator = rounded(2.5 * (nir - red));
    let denominator = ((nir + rounded(6.0 * red)) - rounded(7.5 * blue)) + 1.0;
    let r = quotient(numerator, denominator);
    let bad = is_nodata(nir) || is_nodata(red) || is_nodata(blue) || denominator == 0.0;
    dst[i] = select(finite_or_nodata(r), nodata(), bad);
}
