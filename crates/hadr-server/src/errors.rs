//! PostgreSQL errors: SQLSTATE codes and the mapping from SQLite's errors.

use rusqlite::ffi;

/// An error to send to a client as an ErrorResponse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{severity} {code}: {message}")]
pub struct PgError {
    /// ERROR or FATAL.
    pub severity: &'static str,
    /// Five-character SQLSTATE.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Optional hint.
    pub hint: Option<String>,
    /// Where it happened (PostgreSQL's CONTEXT, e.g. "COPY t, line 3").
    pub context: Option<String>,
}

impl PgError {
    /// An ERROR with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            severity: "ERROR",
            code,
            message: message.into(),
            hint: None,
            context: None,
        }
    }

    /// A FATAL error (the connection is closed after it).
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            severity: "FATAL",
            code,
            message: message.into(),
            hint: None,
            context: None,
        }
    }

    /// Add a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Add a context line.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// The ErrorResponse fields.
    pub fn fields(&self) -> Vec<(u8, String)> {
        let mut f = vec![
            (b'S', self.severity.to_string()),
            (b'V', self.severity.to_string()),
            (b'C', self.code.to_string()),
            (b'M', self.message.clone()),
        ];
        if let Some(h) = &self.hint {
            f.push((b'H', h.clone()));
        }
        if let Some(w) = &self.context {
            f.push((b'W', w.clone()));
        }
        f
    }
}

/// SQLSTATE codes used by hadr.
pub mod sqlstate {
    /// syntax_error
    pub const SYNTAX_ERROR: &str = "42601";
    /// undefined_table
    pub const UNDEFINED_TABLE: &str = "42P01";
    /// undefined_column
    pub const UNDEFINED_COLUMN: &str = "42703";
    /// undefined_function
    pub const UNDEFINED_FUNCTION: &str = "42883";
    /// undefined_object
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// duplicate_table
    pub const DUPLICATE_TABLE: &str = "42P07";
    /// duplicate_object
    pub const DUPLICATE_OBJECT: &str = "42710";
    /// datatype_mismatch
    pub const DATATYPE_MISMATCH: &str = "42804";
    /// syntax_error_or_access_rule_violation
    pub const SYNTAX_OR_ACCESS: &str = "42000";
    /// insufficient_privilege
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// object_in_use
    pub const OBJECT_IN_USE: &str = "55006";
    /// invalid_authorization_specification
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// invalid_password
    pub const INVALID_PASSWORD: &str = "28P01";
    /// unique_violation
    pub const UNIQUE_VIOLATION: &str = "23505";
    /// not_null_violation
    pub const NOT_NULL_VIOLATION: &str = "23502";
    /// foreign_key_violation
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    /// check_violation
    pub const CHECK_VIOLATION: &str = "23514";
    /// integrity_constraint_violation
    pub const INTEGRITY_CONSTRAINT: &str = "23000";
    /// serialization_failure
    pub const SERIALIZATION_FAILURE: &str = "40001";
    /// lock_not_available
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// query_canceled
    pub const QUERY_CANCELED: &str = "57014";
    /// admin_shutdown
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// cannot_connect_now
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// in_failed_sql_transaction
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    /// no_active_sql_transaction
    pub const NO_ACTIVE_TRANSACTION: &str = "25P01";
    /// active_sql_transaction
    pub const ACTIVE_TRANSACTION: &str = "25001";
    /// read_only_sql_transaction
    pub const READ_ONLY_TRANSACTION: &str = "25006";
    /// idle_in_transaction_session_timeout
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    /// invalid_savepoint_specification
    pub const INVALID_SAVEPOINT: &str = "3B001";
    /// disk_full
    pub const DISK_FULL: &str = "53100";
    /// too_many_connections
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// program_limit_exceeded
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// io_error
    pub const IO_ERROR: &str = "58030";
    /// data_corrupted
    pub const DATA_CORRUPTED: &str = "XX001";
    /// internal_error
    pub const INTERNAL_ERROR: &str = "XX000";
    /// protocol_violation
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// transaction_resolution_unknown
    pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
    /// feature_not_supported
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// invalid_text_representation
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    /// bad_copy_file_format
    pub const BAD_COPY_FORMAT: &str = "22P04";
    /// invalid_binary_representation
    pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
    /// datetime_field_overflow
    pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
    /// numeric_value_out_of_range
    pub const NUMERIC_OUT_OF_RANGE: &str = "22003";
    /// invalid_parameter_value
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    /// undefined_parameter (unknown prepared statement / portal)
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    /// invalid_cursor_name
    pub const INVALID_CURSOR_NAME: &str = "34000";
    /// duplicate_prepared_statement
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    /// indeterminate_datatype / wrong parameter count
    pub const PROTOCOL_PARAM_COUNT: &str = "08P01";
}

use sqlstate::*;

/// Map an SQLite error to a PostgreSQL error.
pub fn from_sqlite(e: &rusqlite::Error) -> PgError {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let text = msg.clone().unwrap_or_else(|| f.to_string());
            let code = match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    UNIQUE_VIOLATION
                }
                ffi::SQLITE_CONSTRAINT_NOTNULL => NOT_NULL_VIOLATION,
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => FOREIGN_KEY_VIOLATION,
                ffi::SQLITE_CONSTRAINT_CHECK => CHECK_VIOLATION,
                ffi::SQLITE_BUSY_SNAPSHOT => {
                    return PgError::new(
                        SERIALIZATION_FAILURE,
                        "could not serialize access due to concurrent update",
                    )
                    .with_hint("another transaction committed a write after this transaction's first read; retry the transaction")
                }
                _ => match f.code {
                    rusqlite::ErrorCode::ConstraintViolation => INTEGRITY_CONSTRAINT,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                        SERIALIZATION_FAILURE
                    }
                    rusqlite::ErrorCode::OperationInterrupted => {
                        return PgError::new(
                            QUERY_CANCELED,
                            "canceling statement due to user request",
                        )
                    }
                    rusqlite::ErrorCode::DiskFull => DISK_FULL,
                    rusqlite::ErrorCode::ReadOnly => READ_ONLY_TRANSACTION,
                    // The authorizer that guards the role tables (auth/roles.rs).
                    rusqlite::ErrorCode::AuthorizationForStatementDenied => INSUFFICIENT_PRIVILEGE,
                    rusqlite::ErrorCode::TooBig => PROGRAM_LIMIT_EXCEEDED,
                    rusqlite::ErrorCode::TypeMismatch => DATATYPE_MISMATCH,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => {
                        DATA_CORRUPTED
                    }
                    rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::FileLockingProtocolFailed => IO_ERROR,
                    _ => classify_message(&text),
                },
            };
            PgError::new(code, text)
        }
        rusqlite::Error::SqlInputError { error, msg, .. }
            if error.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
        {
            PgError::new(INSUFFICIENT_PRIVILEGE, msg.clone())
        }
        rusqlite::Error::SqlInputError { msg, .. } => {
            PgError::new(classify_message(msg), msg.clone())
        }
        rusqlite::Error::InvalidParameterCount(got, want) => PgError::new(
            PROTOCOL_PARAM_COUNT,
            format!(
                "bind message supplies {got} parameters, but prepared statement requires {want}"
            ),
        ),
        other => PgError::new(INTERNAL_ERROR, other.to_string()),
    }
}

fn classify_message(m: &str) -> &'static str {
    let m = m.to_ascii_lowercase();
    if m.contains("syntax error")
        || m.contains("incomplete input")
        || m.contains("unrecognized token")
    {
        SYNTAX_ERROR
    } else if m.starts_with("no such table") || m.starts_with("no such view") {
        UNDEFINED_TABLE
    } else if m.starts_with("no such column") || m.contains("has no column named") {
        UNDEFINED_COLUMN
    } else if m.starts_with("no such function") || m.contains("wrong number of arguments") {
        UNDEFINED_FUNCTION
    } else if m.starts_with("no such index")
        || m.starts_with("no such trigger")
        || m.starts_with("no such collation")
    {
        UNDEFINED_OBJECT
    } else if m.starts_with("no such savepoint") {
        INVALID_SAVEPOINT
    } else if m.contains("already exists") {
        if m.starts_with("table") || m.starts_with("view") {
            DUPLICATE_TABLE
        } else {
            DUPLICATE_OBJECT
        }
    } else if m.contains("datatype mismatch") {
        DATATYPE_MISMATCH
    } else if m.contains("too big") || m.contains("too many") {
        PROGRAM_LIMIT_EXCEEDED
    } else {
        SYNTAX_OR_ACCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_sqlite_messages() {
        assert_eq!(classify_message("no such table: foo"), UNDEFINED_TABLE);
        assert_eq!(
            classify_message("near \"SELEC\": syntax error"),
            SYNTAX_ERROR
        );
        assert_eq!(classify_message("table t already exists"), DUPLICATE_TABLE);
        assert_eq!(classify_message("index i already exists"), DUPLICATE_OBJECT);
        assert_eq!(classify_message("no such column: x"), UNDEFINED_COLUMN);
        assert_eq!(
            classify_message("table t has no column named x"),
            UNDEFINED_COLUMN
        );
    }
}
