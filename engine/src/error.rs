//! The engine's error type: one line each, saying what failed and on which input.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can stop a run before or while it writes outputs.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A file or dataset could not be opened or read.
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    /// A read failed part way.
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    /// An output could not be written.
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// A band the recipe needs was not given.
    #[error("recipe {recipe} needs a {role} band, but none was given (given: {given})")]
    MissingBand {
        recipe: String,
        role: String,
        given: String,
    },
    /// A band index is outside the file.
    #[error("{path} has {count} band(s), there is no band {band}")]
    NoSuchBand {
        path: String,
        band: usize,
        count: usize,
    },
    /// Two inputs cannot be put on one grid.
    #[error("grids cannot be aligned: {0}")]
    Grid(String),
    /// The recipe name is not known.
    #[error("unknown recipe {name:?}; known recipes: {known}")]
    UnknownRecipe { name: String, known: String },
    /// An input argument is malformed.
    #[error("invalid input {0}")]
    InvalidInput(String),
    /// A compute backend could not start or failed while running a kernel.
    #[error("backend error: {0}")]
    Backend(String),
    /// A kernel refused its arguments (includes expression errors with their position).
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
}

/// Short alias.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
