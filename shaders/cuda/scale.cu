// scale: dst = src · scale + offset (p.f0, p.f1); nodata stays nodata; non-finite results
// become nodata. Matches kernels::scale::scale_in_place: the product is rounded before the add
// (never a fused multiply-add), as on the CPU.

// The shared layout and helpers (Params, nodata, the grid-stride loop) come from common.cuh,
// which the backend puts in front of this file.

extern "C" __global__ void scale(const float* __restrict__ src, float* __restrict__ dst,
                                 Params p) {
    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {
        const float v = load_plane(src, 0, p.n, i);
        const float r = __fadd_rn(__fmul_rn(v, p.f0), p.f1);
        dst[i] = is_nodata(v) ? nodata() : finite_or_nodata(r);
    }
}
