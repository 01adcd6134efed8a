// normalized_difference: (a − b) / (a + b) with a = plane 0, b = plane 1; nodata in either
// input, a zero sum or a non-finite result give nodata. Matches
// kernels::index::normalized_difference (each step correctly rounded, as on the CPU).

// The shared layout and helpers (Params, nodata, the grid-stride loop) come from common.cuh,
// which the backend puts in front of this file.

extern "C" __global__ void normalized_difference(const float* __restrict__ src,
                                                 float* __restrict__ dst, Params p) {
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float a = load_plane(src, 0, p.n, i);
        const float b = load_plane(src, 1, p.n, i);
        const float sum = __fadd_rn(a, b);
        const float r = __fdiv_rn(__fsub_rn(a, b), sum);
        const bool bad = is_nodata(a) || is_nodata(b) || sum == 0.0f;
        dst[i] = bad ? nodata() : finite_or_nodata(r);
    }
}
