//! The kernel catalog: CPU reference kernels over `f32` planes, and the expression language.
//!
//! Conventions shared by every kernel:
//! - a plane is a row-major `&[f32]` with an explicit `width_px` × `height_px`;
//! - `NaN` marks nodata inside a plane: nodata in gives nodata out, and a kernel never
//!   produces `NaN` or `±Inf` as data (a division by zero yields nodata);
//! - stencil kernels read an input that carries a halo of `halo_px` pixels on every side and
//!   write the inner window only, so a tiled run equals a whole-scene run bit for bit;
//! - kernels do no I/O and allocate nothing per pixel; they parallelise over rows with rayon.

pub mod colormap;
pub mod convolve;
pub mod error;
pub mod expr;
pub mod index;
pub mod mask;
pub mod overview;
pub mod pansharpen;
pub mod plane;
pub mod scale;
mod simd;
pub mod stats;
pub mod terrain;
pub mod warp;

pub use error::KernelError;
pub use plane::{Plane, PlaneMut};
