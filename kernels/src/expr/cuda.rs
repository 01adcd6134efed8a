//! CUDA C code generation: a [`TypedExpr`] becomes a kernel with the semantics of
//! [`eval_reference`](super::eval_reference), for NVRTC.
//!
//! The kernel follows the ABI of every element-wise kernel in `shaders/cuda/`, whose
//! `common.cuh` it starts with: `extern "C" __global__ void expr(const float* __restrict__ src,
//! float* __restrict__ dst, Params p)`, where `p.n` is the number of pixels in the chunk, `src`
//! packs the bands the expression reads back to back (packed plane `k` at `src[k * p.n + i]`,
//! in the order of [`CudaKernel::bands`]) and `dst` is the output. The entry point is
//! [`ENTRY_POINT`]; it walks the pixels with a grid-stride loop (64-bit index), so any launch
//! shape covers any chunk. The source includes no header, so NVRTC needs no include path.
//!
//! Semantics are carried over exactly: values are `float`, booleans are `1.0f`, `0.0f` or
//! nodata, and nodata is tested by bit pattern (never with `x != x`, which a compiler may fold),
//! made as `__int_as_float(0x7fc00000)`, and propagated by explicit checks rather than by
//! trusting the device's IEEE behaviour. Arithmetic uses the round-to-nearest intrinsics
//! (`__fadd_rn`, `__fsub_rn`, `__fmul_rn`, `__fdiv_rn`, `__fsqrt_rn`), which are correctly
//! rounded and never contracted into a fused multiply-add whatever the compiler flags, and
//! `min` and `max` choose by an integer comparison (so no compiler can turn them into the
//! hardware instructions, which order `-0` below `+0`); so `+`, `-`, `*`, `/`, `sqrt`,
//! comparisons, `min`, `max`, `clamp`, `where` and the logic operators give the CPU's results
//! bit for bit, the sign of zero included. Constant subtrees are folded on the CPU with
//! [`semantics`](super::semantics), as the CPU compiler does, and literals are written by their
//! bit pattern. What the device may still do differently: `log`, `exp` and `^` call CUDA's
//! `logf` (1 ulp), `expf` (2 ulp) and `powf` (4 ulp), which are accurate on subnormal
//! arguments when compiled without flush-to-zero (NVRTC's `--ftz=false`), so no scaling trick
//! is needed; `^` handles its special cases (zero, negative and `1` bases, zero exponents)
//! explicitly and takes `powf` of the magnitude only.

use std::fmt::Write as _;

use super::ast::TypedExpr;
use super::codegen::{generate, Dialect};

/// The entry point of every generated kernel.
pub const ENTRY_POINT: &str = "expr";

/// A generated kernel and the band slots it reads, in packed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaKernel {
    /// The complete CUDA C source (`common.cuh` included), ready for NVRTC.
    pub source: String,
    /// Band slots (of the bound expression) packed into the input buffer, in order.
    pub bands: Vec<usize>,
}

/// The ABI (`Params`, the grid-stride helpers) and nodata helpers shared with the built-in
/// kernels.
pub const COMMON: &str = include_str!("../../../shaders/cuda/common.cuh");

/// The scalar rules of `semantics.rs`, in CUDA C, after [`COMMON`]. Bool operands are `1.0f`,
/// `0.0f` or nodata.
const PRELUDE: &str = r#"
// The scalar rules of the expression language (kernels/src/expr/semantics.rs).

__device__ __forceinline__ float fin(float x) {
    return is_finite(x) ? x : nodata();
}

__device__ __forceinline__ bool either(float a, float b) {
    return is_nodata(a) || is_nodata(b);
}

__device__ __forceinline__ float truth(bool b) {
    return b ? 1.0f : 0.0f;
}

__device__ __forceinline__ float x_neg(float x) {
    return __uint_as_float(__float_as_uint(x) ^ 0x80000000u);
}

__device__ __forceinline__ float x_not(float x) {
    return is_nodata(x) ? nodata() : truth(x == 0.0f);
}

__device__ __forceinline__ float x_abs(float x) {
    return __uint_as_float(__float_as_uint(x) & 0x7fffffffu);
}

__device__ __forceinline__ float x_sqrt(float x) {
    if (is_nodata(x) || x < 0.0f) {
        return nodata();
    }
    return fin(__fsqrt_rn(x));
}

// Natural log; logf is accurate on subnormal arguments without flush-to-zero.
__device__ __forceinline__ float x_log(float x) {
    if (is_nodata(x) || x <= 0.0f) {
        return nodata();
    }
    return fin(logf(x));
}

__device__ __forceinline__ float x_exp(float x) {
    if (is_nodata(x)) {
        return nodata();
    }
    return fin(expf(x));
}

__device__ __forceinline__ float x_add(float a, float b) {
    return either(a, b) ? nodata() : fin(__fadd_rn(a, b));
}

__device__ __forceinline__ float x_sub(float a, float b) {
    return either(a, b) ? nodata() : fin(__fsub_rn(a, b));
}

__device__ __forceinline__ float x_mul(float a, float b) {
    return either(a, b) ? nodata() : fin(__fmul_rn(a, b));
}

__device__ __forceinline__ float x_div(float a, float b) {
    return (either(a, b) || b == 0.0f) ? nodata() : fin(__fdiv_rn(a, b));
}

__device__ __forceinline__ bool is_integer(float b) {
    return truncf(b) == b;
}

__device__ __forceinline__ bool is_odd_integer(float b) {
    const float half = __fmul_rn(b, 0.5f);
    return is_integer(b) && x_abs(b) < 16777216.0f && truncf(half) != half;
}

// IEEE pow (as Rust's powf) on finite operands, then non-finite results become nodata.
__device__ __forceinline__ float x_pow(float a, float b) {
    if (either(a, b)) {
        return nodata();
    }
    if (b == 0.0f || a == 1.0f) {
        return 1.0f;
    }
    const float m = x_abs(a);
    if (m == 0.0f) {
        if (b < 0.0f) {
            return nodata();
        }
        return is_odd_integer(b) ? a : 0.0f;
    }
    if (a < 0.0f && !is_integer(b)) {
        return nodata();
    }
    // pow(m, b) for m > 0 (powf is accurate on subnormal m without flush-to-zero); the sign
    // of an odd integer power of a negative base.
    const float r = powf(m, b);
    return fin(a < 0.0f && is_odd_integer(b) ? x_neg(r) : r);
}

// An integer that orders non-NaN floats as the IEEE comparison does (both zeros are 0), so
// that min and max choose by an integer comparison: a compiler may turn `b < a ? b : a` on
// floats into the hardware min instruction, which puts -0 below +0 and so differs from the
// CPU's choice between zeros of opposite signs (seen with NVRTC when an operand is constant).
__device__ __forceinline__ int order_key(float x) {
    const int magnitude = (int)(__float_as_uint(x) & 0x7fffffffu);
    return (__float_as_uint(x) >> 31) != 0u ? -magnitude : magnitude;
}

// The smaller operand; for equal operands (zeros of either sign included), a.
__device__ __forceinline__ float x_min(float a, float b) {
    return either(a, b) ? nodata() : (order_key(b) < order_key(a) ? b : a);
}

// The larger operand; for equal operands (zeros of either sign included), a.
__device__ __forceinline__ float x_max(float a, float b) {
    return either(a, b) ? nodata() : (order_key(b) > order_key(a) ? b : a);
}

__device__ __forceinline__ float x_lt(float a, float b) {
    return either(a, b) ? nodata() : truth(a < b);
}

__device__ __forceinline__ float x_le(float a, float b) {
    return either(a, b) ? nodata() : truth(a <= b);
}

__device__ __forceinline__ float x_gt(float a, float b) {
    return either(a, b) ? nodata() : truth(a > b);
}

__device__ __forceinline__ float x_ge(float a, float b) {
    return either(a, b) ? nodata() : truth(a >= b);
}

__device__ __forceinline__ float x_eq(float a, float b) {
    return either(a, b) ? nodata() : truth(a == b);
}

__device__ __forceinline__ float x_ne(float a, float b) {
    return either(a, b) ? nodata() : truth(a != b);
}

__device__ __forceinline__ float x_and(float a, float b) {
    return either(a, b) ? nodata() : truth(a != 0.0f && b != 0.0f);
}

__device__ __forceinline__ float x_or(float a, float b) {
    return either(a, b) ? nodata() : truth(a != 0.0f || b != 0.0f);
}

__device__ __forceinline__ float x_where(float c, float a, float b) {
    return is_nodata(c) ? nodata() : (c != 0.0f ? a : b);
}

__device__ __forceinline__ float x_clamp(float x, float lo, float hi) {
    return x_min(x_max(x, lo), hi);
}
"#;

/// Generates the CUDA C kernel for `expr`.
pub fn to_cuda(expr: &TypedExpr) -> CudaKernel {
    let bands = expr.bands_used();
    let gen = generate(expr, &bands, &Cuda);
    let mut source = String::with_capacity(COMMON.len() + PRELUDE.len() + gen.body.len() + 512);
    let _ = writeln!(source, "// generated from: {expr}");
    source.push_str(COMMON);
    source.push_str(PRELUDE);
    let _ = write!(
        source,
        "\nextern \"C\" __global__ void {ENTRY_POINT}(const float* __restrict__ src, \
         float* __restrict__ dst, Params p) {{\n"
    );
    if bands.is_empty() {
        source.push_str("    (void)src; // a constant: reads no band\n");
    }
    source.push_str(
        "    for (unsigned long long i = first_pixel(); i < p.n; i += pixel_stride()) {\n",
    );
    source.push_str(&gen.body);
    let _ = write!(source, "        dst[i] = {};\n    }}\n}}\n", gen.result);
    CudaKernel { source, bands }
}

/// The Cuda spelling of the shared walk.
struct Cuda;

impl Dialect for Cuda {
    fn literal(&self, v: f32) -> String {
        literal(v)
    }

    fn load(&self, packed: usize) -> String {
        format!("load_plane(src, {packed}u, p.n, i)")
    }

    fn bind(&self, t: usize, rhs: &str) -> String {
        format!("        const float t{t} = {rhs};")
    }
}

/// An exact `float` literal, by bit pattern (nodata is the canonical NaN).
fn literal(v: f32) -> String {
    if v.is_nan() {
        "nodata()".to_string()
    } else {
        format!("__uint_as_float({:#010x}u)", v.to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{bind, parse};

    fn gen(text: &str, bands: &[&str]) -> CudaKernel {
        let typed = bind(&parse(text).expect("parses"), bands).expect("binds");
        to_cuda(&typed)
    }

    #[test]
    fn packs_only_the_bands_read() {
        let k = gen("(c - a) / (c + a)", &["a", "b", "c"]);
        assert_eq!(k.bands, vec![0, 2]);
        assert!(k.source.contains("load_plane(src, 0u, p.n, i)"));
        assert!(k.source.contains("load_plane(src, 1u, p.n, i)"));
        assert!(!k.source.contains("load_plane(src, 2u"));
    }

    #[test]
    fn constant_subtrees_fold_with_cpu_semantics() {
        let k = gen("a + 1 / 0", &["a"]);
        // 1 / 0 is nodata, folded on the CPU, never a division by a constant zero.
        assert!(k.source.contains("x_add(t0, nodata())"), "{}", k.source);
        let k = gen("a * (2 + 0.5)", &["a"]);
        assert!(k.source.contains(&literal(2.5)), "{}", k.source);
        assert!(
            k.source.contains("__uint_as_float(0x40200000u)"),
            "{}",
            k.source
        );
    }

    #[test]
    fn band_loads_are_shared() {
        let k = gen("a * a + a", &["a"]);
        assert_eq!(k.source.matches("load_plane(src, 0u").count(), 1);
    }

    #[test]
    fn has_the_abi_entry_point_and_no_includes() {
        let k = gen("a", &["a"]);
        assert!(k.source.contains(
            "extern \"C\" __global__ void expr(const float* __restrict__ src, \
             float* __restrict__ dst, Params p)"
        ));
        assert!(k.source.contains("struct Params"));
        assert!(!k.source.contains("#include"));
    }
}
