//! The tile engine: grids and tiles, recipes and their execution, and (with the `gdal`
//! feature) raster I/O, COG and STAC output, and the batch runner behind `constellation run`.

pub mod aoi;
pub mod backend;
pub mod conformance;
pub mod error;
pub mod gpu;
pub mod grid;
pub mod mtl;
pub mod pipeline;
pub mod recipe;
pub mod stac;
pub mod tiling;

#[cfg(feature = "gdal")]
pub mod io;
#[cfg(feature = "gdal")]
pub mod job;
#[cfg(feature = "gdal")]
pub mod render;
#[cfg(feature = "gdal")]
pub mod run;
#[cfg(feature = "gdal")]
pub mod tiles;

pub use error::{EngineError, Result};
