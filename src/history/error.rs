//! [`StoreError`]: how storing or reading history failed, as callers branch
//! on it, whatever the backend; and [`StoreError::reason`], the words a
//! client may see.

use super::sqlite::files::FileProblem;

/// A storage failure, as callers branch on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("cannot migrate database: {0}")]
    Migration(String),
    #[error("database query failed: {0}")]
    Query(String),
    /// The database's files changed under the connection, or cannot be
    /// used as they are; nothing was written.
    #[error("{0}")]
    Files(FileProblem),
    /// The history threads have stopped (the server is shutting down).
    #[error("the history service has stopped")]
    Stopped,
}

impl From<FileProblem> for StoreError {
    fn from(problem: FileProblem) -> Self {
        StoreError::Files(problem)
    }
}

impl StoreError {
    /// What went wrong in words for someone without access to the log
    /// (`/health` is unauthenticated): no path, no SQL, no SQLite text.
    pub fn reason(&self) -> String {
        let detail = match self {
            StoreError::Files(problem) => return problem.to_string(),
            StoreError::Stopped => return "the history service has stopped".to_string(),
            StoreError::Open { reason, .. } => reason,
            StoreError::Migration(detail) | StoreError::Query(detail) => detail,
        }
        .to_lowercase();
        let what = if detail.contains("disk is full") {
            "the disk is full"
        } else if detail.contains("locked") || detail.contains("busy") {
            "the database is locked by another process"
        } else if detail.contains("readonly") || detail.contains("read-only") {
            "the database file or its folder is read-only"
        } else if detail.contains("unable to open") {
            "the database file cannot be opened"
        } else if detail.contains("i/o error") {
            "the disk reported an I/O error"
        } else if detail.contains("no such table") {
            "the database file has no chat tables"
        } else {
            "see the server log"
        };
        format!("the last write to the database failed: {what}")
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Query(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_condition_without_sqlite_text_or_paths() {
        let query = |detail: &str| StoreError::Query(detail.into()).reason();
        assert_eq!(
            query("database or disk is full"),
            "the last write to the database failed: the disk is full"
        );
        assert!(query("database is locked").ends_with("locked by another process"));
        assert!(query("attempt to write a readonly database").ends_with("read-only"));
        assert!(query("near \"x\": syntax error").ends_with("see the server log"));
        let open = StoreError::Open {
            path: "/secret/place/chat.db".into(),
            reason: "unable to open database file".into(),
        };
        assert!(!open.reason().contains("/secret"), "{}", open.reason());
        assert_eq!(
            StoreError::Files(FileProblem::Gone).reason(),
            "the database file is gone"
        );
    }
}
