// scale: dst = src · scale + offset (params.f.x, params.f.y); nodata stays nodata; non-finite
// results become nodata. Matches kernels::scale::scale_in_place.

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
    let v = src[i];
    let r = rounded(v * params.f.x) + params.f.y;
    dst[i] = select(finite_or_nodata(r), nodata(), is_nodata(v));
}
