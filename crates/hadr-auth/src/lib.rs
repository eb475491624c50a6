//! Client authentication for hadr, without I/O, clocks or randomness: the
//! caller (crates/hadr-server/src/session/startup.rs) reads and writes the
//! messages, supplies nonces and salts from the OS RNG and the time.
//!
//! - [`verifier`]: SCRAM-SHA-256 verifiers in PostgreSQL's text format
//!   (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`), so that a
//!   verifier made by PostgreSQL can be stored as is and the other way round.
//! - [`scram`]: the server side of the SCRAM exchange (RFC 5802/7677) with
//!   `tls-server-end-point` channel binding, as typed states.
//! - [`rules`]: access rules in the spirit of pg_hba.conf, first match wins.
//! - [`limiter`]: failed logins counted per source address, bounded.

pub mod limiter;
pub mod rules;
pub mod scram;
pub mod verifier;

pub use limiter::FailureLimiter;
pub use rules::{ConnType, Decision, Method, Refusal, Request, Rule, RuleError, Rules};
pub use scram::{Credentials, ScramError, ScramStart, ScramWaitFinal};
pub use verifier::{Verifier, VerifierError};
