// apply_mask: dst = nodata where the quality plane (plane 1) is masked, else the data plane
// (plane 0), bit for bit. One entry point per kernels::mask::MaskRule:
// - landsat_qa: masked when any of the bits params.u0 is set in the code;
// - scl: masked when class c has bit c % 32 set in word c / 32 of params.words, or c > 255;
// - bqa_legacy: designated fill (bit 0), cloud (bit 4), or bits 14–15 or 12–13 equal to 3.
// Nodata or negative quality values are always masked. Float-to-integer conversions saturate
// as Rust's `q as u32` does.

// The shared layout and helpers (Params, bindings, nodata, rounding) come from common.wgsl,
// which the backend puts in front of this file.

fn is_invalid_code(q: f32) -> bool {
    return is_nodata(q) || q < 0.0;
}

// `q as u32` for q ≥ 0.
fn code_via_u32(q: f32) -> u32 {
    if q >= 4294967296.0 {
        return 0xffffffffu;
    }
    return u32(q);
}

fn write(i: u32, masked: bool) {
    dst[i] = select(src[i], nodata(), masked);
}

@compute @workgroup_size(256)
fn landsat_qa(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = pixel_index(wid, nwg, lid);
    if i >= params.n {
        return;
    }
    let q = src[params.n + i];
    var masked = is_invalid_code(q);
    if !masked {
        masked = (code_via_u32(q) & params.u0) != 0u;
    }
    write(i, masked);
}

@compute @workgroup_size(256)
fn scl(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = pixel_index(wid, nwg, lid);
    if i >= params.n {
        return;
    }
    let q = src[params.n + i];
    var masked = is_invalid_code(q);
    if !masked {
        let c = code_via_u32(q);
        if c > 255u {
            masked = true;
        } else {
            let w = c / 32u;
            let word = params.words[w / 4u][w % 4u];
            masked = ((word >> (c % 32u)) & 1u) != 0u;
        }
    }
    write(i, masked);
}

@compute @workgroup_size(256)
fn bqa_legacy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = pixel_index(wid, nwg, lid);
    if i >= params.n {
        return;
    }
    let q = src[params.n + i];
    var masked = is_invalid_code(q);
    if !masked {
        let c = code_via_u32(q);
        masked = (c & 1u) != 0u || (c & 16u) != 0u || ((c >> 14u) & 3u) == 3u
            || ((c >> 12u) & 3u) == 3u;
    }
    write(i, masked);
}
