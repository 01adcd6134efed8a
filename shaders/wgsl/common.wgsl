// common.wgsl: the layout and helpers every element-wise kernel shares. The backend (and the
// expression generator) put this file in front of each kernel's own source.

// `src` packs the input planes of one chunk back to back, plane k at `src[k * params.n + i]`; `dst` receives the chunk's output; `params.zero` is always 0 and
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

// x / y on every device. WGSL grants `x / y` its 2.5 ulp only for |y| in [2^-126, 2^126], and a
// device that computes x · (1 / y) flushes 1 / y to zero beyond 2^126 (seen on NVIDIA's Vulkan
// driver: (16035 − 1.17e38) / (16035 + 1.17e38) came back −0, not −1). Scaling both operands by
// 1/4 there is exact and keeps the quotient; x · 1/4 only loses bits when x / y underflows anyway.
fn quotient(x: f32, y: f32) -> f32 {
    if abs(y) > bitcast<f32>(0x7e800000u) {
        // rounded(): an opaque barrier, so no compiler folds the scaling away.
        return rounded(x * 0.25) / rounded(y * 0.25);
    }
    return x / y;
}
