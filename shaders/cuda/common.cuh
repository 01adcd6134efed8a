// common.cuh: the layout and helpers every element-wise CUDA kernel shares. The backend (and the
// expression generator) put this file, as text, in front of each kernel's own source, which is
// then compiled with NVRTC. No system header is included: NVRTC has none by default.
//
// The ABI of every kernel:
//     extern "C" __global__ void NAME(const float* __restrict__ src, float* __restrict__ dst,
//                                     Params p)
// `src` packs the input planes of one chunk back to back, plane k at `src[k * p.n + i]`; `dst`
// receives the chunk's one output plane; the kernel walks the pixels with a grid-stride loop,
// so any grid covers any `n`.
//
// Numerics: every product that the CPU reference rounds before an add is written as
// `__fmul_rn` and the add as `__fadd_rn` (neither is ever contracted into a fused multiply-add,
// whatever the compiler flags); divisions and square roots are the correctly rounded
// `__fdiv_rn` and `__fsqrt_rn`. Nodata is NaN, tested by bit pattern (never `x != x`).

// The kernel parameters, passed by value (48 bytes, no padding).
struct Params {
    unsigned int n;        // pixels in this chunk
    unsigned int u0;       // kernel integer: landsat_qa's bit mask
    float f0;              // kernel float: scale's scale, savi's l
    float f1;              // kernel float: scale's offset
    unsigned int words[8]; // scl: class c is masked when bit c % 32 of words[c / 32] is set
};

static_assert(sizeof(Params) == 48, "Params must be 48 bytes, as the backend packs it");

// The first pixel of this thread and the distance to its next one. 64-bit, so that neither
// the product nor `i + stride` can wrap around, whatever the grid and `n`.
__device__ __forceinline__ unsigned long long first_pixel() {
    return (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ unsigned long long pixel_stride() {
    return (unsigned long long)gridDim.x * blockDim.x;
}

// Pixel i of packed input plane k, in a chunk of n pixels.
__device__ __forceinline__ float load_plane(const float* __restrict__ src, unsigned int k,
                                            unsigned int n, unsigned long long i) {
    return src[(unsigned long long)k * n + i];
}

// Nodata: the quiet NaN the CPU reference writes (f32::NAN).
__device__ __forceinline__ float nodata() {
    return __int_as_float(0x7fc00000);
}

__device__ __forceinline__ bool is_nodata(float x) {
    return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u;
}

__device__ __forceinline__ bool is_finite(float x) {
    return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

// Non-finite values become nodata.
__device__ __forceinline__ float finite_or_nodata(float x) {
    return is_finite(x) ? x : nodata();
}
