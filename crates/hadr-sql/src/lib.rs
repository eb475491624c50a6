//! The SQL text layer of hadr: between PostgreSQL-speaking clients and the
//! SQLite engine.
//!
//! Pure functions over `&str`, no I/O:
//! - [`split`] a simple-query string into statements, with a real tokenizer
//!   (PostgreSQL and SQLite quoting, nested comments, trigger bodies);
//! - [`translate`] a statement from PostgreSQL dialect to SQLite (`$N`
//!   parameters, `::` casts) and infer each parameter's likely type;
//! - [`classify`] a statement for command tags and transaction control, and
//!   build its [`command_tag`];
//! - tell the [`result_column_types`] a statement's text determines;
//! - map PostgreSQL type names, OIDs and SQLite declared types with [`PgType`].
//!
//! Every public function accepts arbitrary input without panicking.

#![warn(missing_docs)]

mod classify;
mod columns;
mod lexer;
mod split;
mod translate;
mod types;

pub use classify::{classify, command_tag, is_transaction_control, Command};
pub use columns::result_column_types;
pub use split::split;
pub use translate::{translate, ParamHint, Translated};
pub use types::PgType;

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
    /// Malformed syntax this layer has to understand (e.g. `::` without an operand).
    #[error("syntax error: {0}")]
    Syntax(String),
}

#[cfg(test)]
mod proptests;
