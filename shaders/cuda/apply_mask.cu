// apply_mask: dst = nodata where the quality plane (plane 1) is masked, else the data plane
// (plane 0), bit for bit. One entry point per kernels::mask::MaskRule:
// - landsat_qa: masked when any of the bits p.u0 is set in the code;
// - scl: masked when class c has bit c % 32 set in p.words[c / 32], or c > 255;
// - bqa_legacy: designated fill (bit 0), cloud (bit 4), or bits 14–15 or 12–13 equal to 3.
// Nodata or negative quality values are always masked. Float-to-integer conversions saturate
// as Rust's `q as u32` does (checked here, not left to the hardware, since a C++ conversion
// of an out-of-range value is undefined).

// The shared layout and helpers (Params, nodata, the grid-stride loop) come from common.cuh,
// which the backend puts in front of this file.

__device__ __forceinline__ bool is_invalid_code(float q) {
    return is_nodata(q) || q < 0.0f;
}

// `q as u32` for q ≥ 0 (not nodata): truncation, saturating at u32::MAX.
__device__ __forceinline__ unsigned int code_via_u32(float q) {
    if (q >= 4294967296.0f) {
        return 0xffffffffu;
    }
    return (unsigned int)q;
}

__device__ __forceinline__ bool landsat_qa_masked(float q, Params p) {
    return is_invalid_code(q) || (code_via_u32(q) & p.u0) != 0u;
}

__device__ __forceinline__ bool scl_masked(float q, Params p) {
    if (is_invalid_code(q)) {
        return true;
    }
    const unsigned int c = code_via_u32(q);
    if (c > 255u) {
        return true;
    }
    return ((p.words[c / 32u] >> (c % 32u)) & 1u) != 0u;
}

__device__ __forceinline__ bool bqa_legacy_masked(float q) {
    if (is_invalid_code(q)) {
        return true;
    }
    const unsigned int c = code_via_u32(q);
    return (c & 1u) != 0u || (c & 16u) != 0u || ((c >> 14u) & 3u) == 3u ||
           ((c >> 12u) & 3u) == 3u;
}

extern "C" __global__ void landsat_qa(const float* __restrict__ src, float* __restrict__ dst,
                                      Params p) {
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float q = load_plane(src, 1, p.n, i);
        dst[i] = landsat_qa_masked(q, p) ? nodata() : load_plane(src, 0, p.n, i);
    }
}

extern "C" __global__ void scl(const float* __restrict__ src, float* __restrict__ dst,
                               Params p) {
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float q = load_plane(src, 1, p.n, i);
        dst[i] = scl_masked(q, p) ? nodata() : load_plane(src, 0, p.n, i);
    }
}

extern "C" __global__ void bqa_legacy(const float* __restrict__ src, float* __restrict__ dst,
                                      Params p) {
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float q = load_plane(src, 1, p.n, i);
        dst[i] = bqa_legacy_masked(q) ? nodata() : load_plane(src, 0, p.n, i);
    }
}
