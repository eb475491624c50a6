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
//! - parse the role statements hadr runs itself ([`RoleStatement`]) and the
//!   COPY statements it carries out ([`CopyStatement`]);
//! - plan the `ALTER TABLE` forms SQLite lacks as a table rebuild
//!   ([`TableRebuild`], [`edit_create`]);
//! - answer PostgreSQL's catalogs as subqueries over SQLite's schema
//!   (inside [`translate`]; [`catalog_column_type`] types their columns);
//! - map PostgreSQL type names, OIDs and SQLite declared types with [`PgType`].
//!
//! Every public function accepts arbitrary input without panicking.

#![warn(missing_docs)]

mod alter;
mod brackets;
mod catalog;
mod classify;
mod columns;
mod comment;
mod copy;
mod ddl;
mod derived;
mod error;
mod expr_type;
mod keywords;
mod lexer;
mod param_hints;
mod rewrite;
mod role;
mod split;
mod translate;
mod type_name;
mod types;
mod unsupported;

pub use alter::{edit_create, AlterAction, EditError, TableRebuild};
pub use catalog::column_type as catalog_column_type;
pub use classify::{classify, command_tag, is_transaction_control, Command};
pub use columns::result_column_types;
pub use comment::TABLE as COMMENTS_TABLE;
pub use copy::{CopyError, CopySource, CopyStatement};
pub use error::SqlError;
pub use hadr_copy;
pub use param_hints::ParamHint;
pub use role::{Password, RoleOptions, RoleStatement, RoleSyntaxError};
pub use split::split;
pub use translate::{translate, Translated};
pub use types::PgType;

#[cfg(test)]
mod proptests;
