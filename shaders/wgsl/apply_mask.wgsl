// apply_mask: dst = nodata where the quality plane (plane 1) is masked, else the data plane
// (plane 0), bit for bit. One entry point per kernels::mask::MaskRule:
// - landsat_qa: masked when any of the bits params.u0 is set in the code;
// - scl: masked when class c has bit c % 32 set in word c / 32 of params.words, or c > 255;
// - bqa_legacy: designated fill (bit 0), cloud (bit 4), or bits 14–15 or 12–13 equal to 3.
// Nodata or negative quality values are always masked. Float-to-integer conversions saturate
// as Rust's `as` does: landsat_qa like `q as i32 as u32`, the others like `q as u32`.

// Shared layout of every Constellation element-wise kernel (repeated in each file so that every
// file validates on its own): `src` packs the input planes of one chunk back to back, plane k
// at `src[k * params.n + i]`; `dst` receives the chunk's output; `params.zero` is always 0 and
// serves as an opaque rounding barrier and a runtime NaN source (WGSL has no NaN literal).
struct Params {
    n: u32,
    zero: u32,
    u0: u32,
    u1: u32,
    f: vec4<f32>,
    words: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const WORKGROUP_SIZE: u32 = 256u;

// The pixel this invocation handles in a 2-D grid of workgroups.
fn pixel_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP_SIZE + lid;
}

// Nodata, produced at run time so no compiler folds it away.
fn nodata() -> f32 {
    return bitcast<f32>(0x7fc00000u | params.zero);
}

fn is_nodata(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Non-finite values become nodata.
fn finite_or_nodata(x: f32) -> f32 {
    return select(nodata(), x, is_finite(x));
}

// Forces `x` to be rounded to f32 here, so that it is not fused into a following add (the CPU
// reference rounds every product).
fn rounded(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | params.zero);
}

fn is_invalid_code(q: f32) -> bool {
    return is_nodata(q) || q < 0.0;
}

// `q as i32 as u32` for q ≥ 0.
fn code_via_i32(q: f32) -> u32 {
    if q >= 2147483648.0 {
        return 0x7fffffffu;
    }
    return u32(i32(q));
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
        masked = (code_via_i32(q) & params.u0) != 0u;
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
