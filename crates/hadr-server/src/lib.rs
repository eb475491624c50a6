//! A hadr node: the PostgreSQL wire front end, the admin HTTP endpoint and
//! the configuration, wired around the engine.

pub mod activity;
pub mod admin;
pub mod config;
pub mod errors;
pub mod exec;
pub mod node;
pub mod session;
pub mod values;
pub mod write_lock;

pub use config::Config;
pub use node::{run, Bound, Node, NodeError, Outcome};
