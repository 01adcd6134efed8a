//! Test support (feature `testdb`): a private, migrated database per test, created next to
//! `DATABASE_URL`'s database and dropped (forcibly) when the handle is dropped.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::queue::Queue;

/// The admin connection string: `DATABASE_URL`, else the local server's `test` database.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database of one's own, migrated; dropped when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// How to connect to it.
    pub options: PgConnectOptions,
}

impl TestDb {
    /// Create and migrate a fresh database. Panics when the server cannot be reached: a
    /// test without its database has nothing to test.
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

    /// A connection string for this database (for child processes).
    pub fn url(&self) -> String {
        let admin = admin_url();
        match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => admin,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; do the async cleanup on a thread of its own.
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
