// evi: 2.5 (nir − red) / (nir + 6 red − 7.5 blue + 1) with nir, red, blue = planes 0, 1, 2;
// nodata in any input, a zero denominator or a non-finite result give nodata. Matches
// kernels::index::evi: each product is rounded before it is added (never a fused
// multiply-add), and the sum runs left to right, as on the CPU.

// The shared layout and helpers (Params, nodata, the grid-stride loop) come from common.cuh,
// which the backend puts in front of this file.

extern "C" __global__ void evi(const float* __restrict__ src, float* __restrict__ dst,
                               Params p) {
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float nir = load_plane(src, 0, p.n, i);
        const float red = load_plane(src, 1, p.n, i);
        const float blue = load_plane(src, 2, p.n, i);
        const float numerator = __fmul_rn(2.5f, __fsub_rn(nir, red));
        const float denominator = __fadd_rn(
            __fsub_rn(__fadd_rn(nir, __fmul_rn(6.0f, red)), __fmul_rn(7.5f, blue)), 1.0f);
        const float r = __fdiv_rn(numerator, denominator);
        const bool bad =
            is_nodata(nir) || is_nodata(red) || is_nodata(blue) || denominator == 0.0f;
        dst[i] = bad ? nodata() : finite_or_nodata(r);
    }
}
