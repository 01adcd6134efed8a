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
    /// The event bus (NATS) refused or could not be reached.
    #[error("event bus error: {0}")]
    Bus(String),
    /// A value read back from the database that this code does not know.
    #[error("unknown {what} in the database: {value:?}")]
    Unknown {
        /// What was being decoded (`task kind`, `job state` …).
        what: &'static str,
        /// The value found.
        value: String,
    },
}

impl SchedulerError {
    /// Whether the connection failed rather than the statement: the server unreachable, shut
    /// down or restarting, the connection lost, the pool out of connections. The same call
    /// may go through once the server is back.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Self::Db(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // Class 08 (connection exception), the server shutting down (57P01, 57P02) or
            // starting up (57P03), too many connections (53300).
            Self::Db(sqlx::Error::Database(e)) => e.code().is_some_and(|c| {
                c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
            }),
            _ => false,
        }
    }
}

/// The scheduler's result type.
pub type Result<T> = std::result::Result<T, SchedulerError>;

#[cfg(test)]
mod tests {
    use super::SchedulerError;

    #[test]
    fn only_connection_failures_are_connection_lost() {
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert!(SchedulerError::Db(sqlx::Error::Io(io)).is_connection_lost());
        assert!(SchedulerError::Db(sqlx::Error::PoolTimedOut).is_connection_lost());
        assert!(!SchedulerError::Db(sqlx::Error::RowNotFound).is_connection_lost());
        assert!(!SchedulerError::InvalidSpec("x".into()).is_connection_lost());
    }
}
