// savi: (1 + L)(nir − red) / (nir + red + L) with nir, red = planes 0, 1 and L = p.f0;
// nodata in either input, a zero denominator or a non-finite result give nodata. Matches
// kernels::index::savi: the product is rounded before the division, and the sum runs left to
// right, as on the CPU.

// The shared layout and helpers (Params, nodata, the grid-stride loop) come from common.cuh,
// which the backend puts in front of this file.

extern "C" __global__ void savi(const float* __restrict__ src, float* __restrict__ dst,
                                Params p) {
    const float l = p.f0;
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float nir = load_plane(src, 0, p.n, i);
        const float red = load_plane(src, 1, p.n, i);
        const float numerator = __fmul_rn(__fadd_rn(1.0f, l), __fsub_rn(nir, red));
        const float denominator = __fadd_rn(__fadd_rn(nir, red), l);
        const float r = __fdiv_rn(numerator, denominator);
        const bool bad = is_nodata(nir) || is_nodata(red) || denominator == 0.0f;
        dst[i] = bad ? nodata() : finite_or_nodata(r);
    }
}
