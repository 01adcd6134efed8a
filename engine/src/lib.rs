//! The tile engine.
