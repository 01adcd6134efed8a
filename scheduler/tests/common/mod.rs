//! Test support: a private database per test, created from `DATABASE_URL` and dropped after.

#![allow(dead_code)]

use scheduler::{JobSpec, Queue, TileSpec, Window, DEFAULT_ACCOUNT_ID};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

/// The admin connection string (the CI exports it; this is its default).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database of one's own, migrated; dropped (forcibly) when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin: PgConnectOptions = admin_url().parse().expect("DATABASE_URL parses");
        let name = format!("constellation_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .expect("connect to the admin database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let db = Self {
            options: admin.database(&name),
            name,
        };
        db.queue(2).await.migrate().await.expect("migrations apply");
        db
    }

    /// A queue on this database with a pool of `connections`.
    pub async fn queue(&self, connections: u32) -> Queue {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(self.options.clone())
            .await
            .expect("connect to the test database");
        Queue::from_pool(pool)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside a runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(admin) = admin_url().parse::<PgConnectOptions>() {
                        if let Ok(mut conn) = admin.connect().await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    }
                });
            }
        })
        .join();
    }
}

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
