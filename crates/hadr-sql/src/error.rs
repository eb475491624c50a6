//! The error type of the SQL text layer.

/// Why a statement could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// A string, quoted identifier, dollar quote or block comment never ends.
    #[error("unterminated {what} at byte {at}")]
    Unterminated {
        /// What was left open, e.g. "string literal".
        what: &'static str,
        /// Byte offset where it starts.
        at: usize,
    },
    /// A cast names a type hadr cannot map to SQLite (SQLSTATE 42704).
    #[error("type \"{0}\" does not exist")]
    UnsupportedType(String),
    /// `$0`, or a parameter number above PostgreSQL's limit of 65535.
    #[error("invalid parameter reference {0}")]
    BadParameter(String),
    /// PostgreSQL syntax hadr cannot carry out on SQLite (SQLSTATE 0A000).
    #[error("hadr does not support {0}")]
    Unsupported(String),
    /// Malformed syntax this layer has to understand (e.g. `::` without an operand).
    #[error("syntax error: {0}")]
    Syntax(String),
}
