//! A portal: a prepared statement bound to values (extended protocol).

use std::sync::Arc;

use hadr_sql::PgType;
use rusqlite::types::Value;

use crate::exec::{Outcome, Prepared};

/// A bound statement, ready to Execute, possibly part way through its rows.
pub struct Portal {
    /// The statement.
    pub stmt: Arc<Prepared>,
    /// Its bound values.
    pub params: Vec<Value>,
    /// Result column formats (true: binary), as Bind asked.
    pub result_binary: Vec<bool>,
    /// Types announced by a Describe of this portal, to be honoured at Execute.
    pub described: Option<Vec<PgType>>,
    /// Rows fetched but not yet sent (Execute with a row limit), and how
    /// many of them were sent.
    pub pending: Option<(Outcome, usize)>,
    /// Ran to completion: a further Execute returns no rows, as in PostgreSQL.
    pub exhausted: bool,
}
