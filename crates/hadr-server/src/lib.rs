//! A hadr node: the PostgreSQL wire front end, the admin HTTP endpoint and
//! the configuration, wired around the engine.

pub mod accept;
pub mod activity;
pub mod admin;
pub mod admin_auth;
pub mod admin_http;
pub mod admin_resources;
pub mod auth;
pub mod auto_failover;
pub mod catalog_functions;
pub mod client_tls;
pub mod commit_tokens;
pub mod config;
pub mod demotion;
pub mod errors;
pub mod exec;
pub mod failover_state;
pub mod filesync;
pub mod gate;
pub mod node;
pub mod pg_functions;
pub mod rebuild;
pub mod resource_config;
pub mod resource_link;
pub mod roles;
pub mod runtime;
pub mod session;
pub mod supervisor;
pub mod units;
pub mod values;
pub mod write_lock;

pub use config::Config;
pub use node::{Node, NodeError};
pub use roles::{RoleChange, RoleEvents};
pub use runtime::{run, Bound};
pub use supervisor::supervise;
