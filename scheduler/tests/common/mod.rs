//! Test support: a private database per test, created from `DATABASE_URL` and dropped after.

#![allow(dead_code)]

pub use scheduler::testdb::TestDb;
use scheduler::{JobSpec, TileSpec, Window, DEFAULT_ACCOUNT_ID};

/// A job of `tiles` 512-px tiles in a row, each with a small square footprint.
pub fn job(tiles: i32, priority: i32, max_attempts: i32) -> JobSpec {
    JobSpec {
        account: DEFAULT_ACCOUNT_ID,
        recipe: "ndvi".into(),
        params: serde_json::json!({}),
        inputs: serde_json::json!(["a.tif"]),
        priority,
        tiles: (0..tiles)
            .map(|i| {
                let lon = f64::from(i % 360) - 180.0;
                let lat = f64::from((i / 360) % 170) - 85.0;
                TileSpec {
                    index: i,
                    window: Window {
                        x_px: i * 512,
                        y_px: 0,
                        width_px: 512,
                        height_px: 512,
                    },
                    footprint_deg: vec![
                        (lon, lat),
                        (lon + 0.5, lat),
                        (lon + 0.5, lat + 0.5),
                        (lon, lat + 0.5),
                    ],
                }
            })
            .collect(),
        max_attempts,
        trace_context: None,
    }
}
