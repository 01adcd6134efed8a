//! placeholder
use thiserror::Error;
/// placeholder
#[derive(Debug, Error, Clone, PartialEq)]
#[error("expression error")]
pub struct ExprError;
