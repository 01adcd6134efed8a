//! The one error type of the kernel catalog.

use thiserror::Error;

/// What can go wrong when a kernel is called with inputs it cannot use.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// Two planes that must share a shape do not.
    #[error("shape mismatch for {what}: expected {expected_px} pixels, got {actual_px}")]
    ShapeMismatch {
        what: &'static str,
        expected_px: usize,
        actual_px: usize,
    },
    /// A parameter is out of its domain.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    /// An expression failed to parse, type-check or bind.
    #[error(transparent)]
    Expr(#[from] crate::expr::ExprError),
}

/// Checks that `actual` holds `expected` pixels.
pub fn check_len(what: &'static str, expected_px: usize, actual: usize) -> Result<(), KernelError> {
    if expected_px == actual {
        Ok(())
    } else {
        Err(KernelError::ShapeMismatch {
            what,
            expected_px,
            actual_px: actual,
        })
    }
}
