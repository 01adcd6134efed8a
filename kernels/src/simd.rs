//! Wider vectors where the CPU has them: a loop run through [`with_avx2`] is compiled a
//! second time for AVX2 and that build runs when the CPU supports it.
//!
//! Only for loops of element-wise IEEE operations, whose results do not depend on the vector
//! width: the AVX2 build computes the same operation lane by lane, and Rust never fuses a
//! multiply and an add on its own, so both builds give the same bits.

/// Runs `body` in its AVX2 build when the CPU has AVX2, as is otherwise.
#[allow(unsafe_code)]
#[inline(always)]
pub(crate) fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2(body) };
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}
