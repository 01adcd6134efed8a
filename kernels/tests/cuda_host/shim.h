// shim.h: just enough of CUDA's device environment for g++ to compile the CUDA C kernels of
// shaders/cuda/ (and generated expressions) as host C++, for kernels/tests/cuda_source.rs.
//
// Passed with `-include`, so it comes before common.cuh. It includes no header, so a kernel
// that uses anything NVRTC lacks without headers (size_t, std::, printf...) fails here too.
// The intrinsics are host implementations with the same IEEE results: plain float arithmetic
// under -ffp-contract=off is correctly rounded (x86-64 SSE), the volatile stores keep g++
// from fusing or widening anything, and the math functions are the C library's (logf, expf
// and powf are the very functions Rust's f32::ln, exp and powf call on Linux).

#define __global__
#define __device__
#define __forceinline__ inline

// The thread coordinates; host_launch_grid sets them for each simulated thread.
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};
inline uint3 blockIdx;
inline uint3 threadIdx;
inline dim3 blockDim;
inline dim3 gridDim;

inline unsigned int __float_as_uint(float x) {
    unsigned int u;
    __builtin_memcpy(&u, &x, sizeof u);
    return u;
}
inline int __float_as_int(float x) {
    int i;
    __builtin_memcpy(&i, &x, sizeof i);
    return i;
}
inline float __uint_as_float(unsigned int u) {
    float x;
    __builtin_memcpy(&x, &u, sizeof x);
    return x;
}
inline float __int_as_float(int i) {
    float x;
    __builtin_memcpy(&x, &i, sizeof x);
    return x;
}

inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r;
}
inline float __fsub_rn(float a, float b) {
    volatile float r = a - b;
    return r;
}
inline float __fmul_rn(float a, float b) {
    volatile float r = a * b;
    return r;
}
inline float __fdiv_rn(float a, float b) {
    volatile float r = a / b;
    return r;
}
inline float __fsqrt_rn(float x) {
    volatile float r = __builtin_sqrtf(x);
    return r;
}

// The C library's functions, declared here as the C library declares them (no header).
extern "C" float truncf(float) noexcept;
extern "C" float fabsf(float) noexcept;
extern "C" float sqrtf(float) noexcept;
extern "C" float logf(float) noexcept;
extern "C" float log2f(float) noexcept;
extern "C" float expf(float) noexcept;
extern "C" float exp2f(float) noexcept;
extern "C" float powf(float, float) noexcept;

// Runs `kernel` once for every thread of a 1-D grid of `grid_blocks` × `block_threads`, one
// thread after the other (the kernels share no memory between threads).
template <typename Kernel, typename P>
void host_launch_grid(Kernel kernel, unsigned int grid_blocks, unsigned int block_threads,
                      const float* src, float* dst, const P& p) {
    gridDim = {grid_blocks, 1, 1};
    blockDim = {block_threads, 1, 1};
    for (unsigned int b = 0; b < grid_blocks; ++b) {
        for (unsigned int t = 0; t < block_threads; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            kernel(src, dst, p);
        }
    }
}
