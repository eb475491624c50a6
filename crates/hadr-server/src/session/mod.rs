//! One client connection: PostgreSQL v3 start-up, simple and extended query
//! protocols, transaction blocks, the write permit and the commit gate.
//!
//! pgwire supplies the message types and their encoding; the session loop is
//! ours because hadr needs exact control over things pgwire's handler API
//! decides for you: the ReadyForQuery status byte and the aborted-transaction
//! state, holding a write permit across statements, waiting for durability
//! before CommandComplete, cancel through `sqlite3_interrupt`, and FATAL
//! refusals with a chosen SQLSTATE.
//!
//! Each session runs on its own OS thread, as a PostgreSQL backend runs in its
//! own process: socket reads, SQLite calls and the wait for durability happen
//! on one thread with no hand-offs between a runtime and a blocking pool,
//! which on a 2-core machine cost more than the statements themselves.
//!
//! The parts, each using only those listed before it: [`frame`] (cutting
//! and checking frontend messages before pgwire decodes them), [`wire`]
//! (I/O), [`negotiate`] (TLS negotiation decisions, pure), [`transport`]
//! (the plain or TLS stream and the handshake), [`tx`] (the transaction
//! state machine, pure), [`settings`] (SET/SHOW), [`login`], [`startup`],
//! [`portal`], [`state`] (the session and the end of its transactions),
//! [`statement`] (one statement, either protocol), [`copy`], then [`simple`] and
//! [`extended`], and this module's message loop.

pub mod copy;
mod copy_decode;
pub mod extended;
pub mod frame;
pub mod login;
pub mod negotiate;
pub mod portal;
pub mod settings;
pub mod simple;
pub mod startup;
pub mod state;
pub mod statement;
pub mod transport;
pub mod tx;
pub mod wire;

use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tracing::{error, info, warn};

pub use settings::SERVER_VERSION;

use crate::errors::{sqlstate, PgError};
use crate::node::Node;
use state::Session;
use tx::Status;
use wire::{Stream, Wire, WireError};

/// Output buffered past this is written before the next message is read.
const FLUSH_AT: usize = 1 << 20;

enum Flow {
    Continue,
    Close,
}

/// Serve one TCP connection until it closes (blocking; run on its own thread).
///
/// A panic anywhere in the session (a bug, or a dependency that panics on
/// input we failed to check) ends this session only: it is caught here, the
/// client gets FATAL XX000, and the guards below have already released what
/// the session held on the way out (its transaction, write permit, registry
/// entry and open-session count).
///
/// `slot` (the connection's place under `max_connections`) is given back
/// before the socket closes: a client that reconnects as soon as it sees
/// the close must find the slot free, not race this thread's exit.
pub fn serve<Slot>(node: Arc<Node>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    // A second handle on the socket lets shutdown end a blocked read.
    let socket = stream.try_clone().ok();
    let mut wire = Wire::new(
        transport::ClientStream::Plain(stream),
        node.config.max_message_size.0 as usize,
    );
    let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
        serve_on(&node, &mut wire, peer, socket)
    }));
    if let Err(panic) = served {
        node.stats.session_panics.fetch_add(1, Ordering::Relaxed);
        error!(%peer, panic = panic_text(&*panic), "a session ended on an internal error; its transaction was rolled back and what it held was released");
        // Whatever was queued may stop mid-message.
        wire.discard_output();
        wire.error(&PgError::fatal(
            sqlstate::INTERNAL_ERROR,
            "internal error: the session was closed",
        ));
        let _ = wire.flush();
    }
    drop(slot);
    drop(wire);
}

/// The text of a panic's payload (a `&str` or a `String` for `panic!`).
fn panic_text(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Counts a session in [`Node::open_sessions`] for as long as it lives,
/// unwinding included.
struct OpenSession<'a>(&'a Node);

impl<'a> OpenSession<'a> {
    fn new(node: &'a Node) -> OpenSession<'a> {
        node.open_sessions.fetch_add(1, Ordering::SeqCst);
        OpenSession(node)
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0.open_sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_on(
    node: &Arc<Node>,
    wire: &mut Wire<transport::ClientStream>,
    peer: SocketAddr,
    socket: Option<TcpStream>,
) {
    let startup = match startup::startup(node, wire, peer) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            wire.error(&e);
            let _ = wire.flush();
            return;
        }
    };
    // Declared before the session, so dropped after it (Session's Drop
    // ends the session: rollback, permit, registry).
    let _open = OpenSession::new(node);
    let mut s = match Session::new(node.clone(), startup, peer, socket) {
        Ok(s) => s,
        Err(e) => {
            wire.error(&e);
            let _ = wire.flush();
            return;
        }
    };
    // Read before the topology the greeting carries, so a change between
    // the two is sent again rather than missed.
    s.topology_generation = node.topology_generation();
    startup::greet(wire, s.pid, s.secret, s.settings().parameter_statuses(node));
    s.ready(wire);
    if wire.flush().is_ok() {
        s.run(wire);
    }
}

impl Session {
    fn ready<S: Stream>(&mut self, wire: &mut Wire<S>) {
        // The topology changed since the client was last told: tell it
        // before ReadyForQuery, where the protocol allows ParameterStatus.
        let generation = self.node.topology_generation();
        if generation != self.topology_generation {
            self.topology_generation = generation;
            wire.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                settings::TOPOLOGY.to_string(),
                self.node.topology().to_json(),
            )));
        }
        let status = match self.tx.status {
            Status::Idle => TransactionStatus::Idle,
            Status::Block => TransactionStatus::Transaction,
            Status::Failed => TransactionStatus::Error,
        };
        wire.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            status,
        )));
    }

    /// The message loop, until the client leaves or the session must end.
    fn run<S: Stream>(&mut self, wire: &mut Wire<S>) {
        loop {
            let idle = self.node.config.idle_in_transaction_timeout.0;
            let timeout = (self.tx.status != Status::Idle && !idle.is_zero()).then_some(idle);
            let msg = wire.read(timeout);
            // Cleared before the checks below, not after: a hand-over sets
            // `demoting` before it cancels sessions, so a cancel cleared
            // here is either seen as `demoting` below or set again after.
            self.cancel.store(false, Ordering::SeqCst);
            // Shutdown closes our socket's read side, which ends the read above.
            if let Some(e) = self.node.terminating() {
                wire.error(&e);
                let _ = wire.flush();
                return;
            }
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    if matches!(e, WireError::Timeout) {
                        info!(pid = self.pid, peer = %self.peer, "closing session idle in transaction");
                    } else {
                        warn!(pid = self.pid, peer = %self.peer, error = %e, "closing session after a protocol error");
                    }
                    wire.error(&e.into());
                    let _ = wire.flush();
                    return;
                }
            };
            let flow = self.dispatch(wire, msg);
            if matches!(flow, Flow::Close) {
                let _ = wire.flush();
                return;
            }
            if wire.pending() > FLUSH_AT && wire.flush().is_err() {
                return;
            }
        }
    }

    fn dispatch<S: Stream>(&mut self, wire: &mut Wire<S>, msg: PgWireFrontendMessage) -> Flow {
        use PgWireFrontendMessage as M;
        if msg.is_extended_query() && self.skip_to_sync && !matches!(msg, M::Sync(_)) {
            return Flow::Continue;
        }
        let r = match msg {
            M::Query(q) => {
                failpoint_panic(&q.query);
                self.simple_query(wire, &q.query);
                if wire.sent_fatal() {
                    let _ = wire.flush();
                    return Flow::Close;
                }
                self.ready(wire);
                if wire.flush().is_err() {
                    return Flow::Close;
                }
                Ok(())
            }
            M::Parse(p) => self.parse(wire, p.name.unwrap_or_default(), p.query, p.type_oids),
            M::Bind(b) => self.bind(wire, b),
            M::Describe(d) => self.describe(wire, d.target_type, d.name.unwrap_or_default()),
            M::Execute(e) => self.execute_portal(wire, e.name.unwrap_or_default(), e.max_rows),
            M::Close(c) => {
                self.close(wire, c.target_type, c.name.unwrap_or_default());
                Ok(())
            }
            M::Sync(_) => {
                self.skip_to_sync = false;
                self.portals.remove("");
                self.ready(wire);
                if wire.flush().is_err() {
                    return Flow::Close;
                }
                Ok(())
            }
            M::Flush(_) => {
                if wire.flush().is_err() {
                    return Flow::Close;
                }
                Ok(())
            }
            M::Terminate(_) => return Flow::Close,
            // What a client still sends after its COPY failed: ignored,
            // as PostgreSQL does (session/copy.rs sent the error).
            M::CopyData(_) | M::CopyDone(_) | M::CopyFail(_) => Ok(()),
            _ => {
                wire.error(&PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "unexpected message",
                ));
                return Flow::Close;
            }
        };
        if let Err(e) = r {
            let e = self.to_client(e);
            wire.error(&e);
            if e.severity == "FATAL" {
                return Flow::Close;
            }
            self.skip_to_sync = true;
        }
        Flow::Continue
    }
}

/// Test failpoint, in debug builds only: a Query whose text is the value of
/// `HADR_FAILPOINT_PANIC_QUERY` (read once, from the server's environment)
/// panics its session, so that tests/session_panic.rs can show a panic ends
/// only that session and releases what it held.
#[cfg(debug_assertions)]
fn failpoint_panic(query: &str) {
    static TRIGGER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let trigger = TRIGGER.get_or_init(|| std::env::var("HADR_FAILPOINT_PANIC_QUERY").ok());
    if trigger.as_deref() == Some(query) {
        panic!("failpoint HADR_FAILPOINT_PANIC_QUERY");
    }
}

#[cfg(not(debug_assertions))]
fn failpoint_panic(_query: &str) {}
