//! The scheduler's error type.

/// Everything the queue can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A job spec that cannot be queued (the message names the field at fault).
    #[error("invalid job spec: {0}")]
    InvalidSpec(String),
    /// A value read back from the database that this code does not know.
    #[error("unknown {what} in the database: {value:?}")]
    Unknown {
        /// What was being decoded (`task kind`, `job state` …).
        what: &'static str,
        /// The value found.
        value: String,
    },
}

/// The scheduler's result type.
pub type Result<T> = std::result::Result<T, SchedulerError>;
