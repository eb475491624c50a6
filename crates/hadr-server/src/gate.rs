//! What a node answers while it is not serving (docs/clients.md §Admission).
//!
//! The client and admin ports are bound once, by the supervisor, for the
//! life of the process. While a run of the node serves, its own accept loop
//! and admin server use them; between runs — opening and recovering the
//! database, promoting, rewinding, re-cloning, stopping — the gate does:
//!
//! - every client connection gets FATAL 57P03 naming the phase ("the
//!   database system is re-cloning from 10.0.0.1:9433: 45%"), from a tokio
//!   task, without a session thread: drivers move to the next host, and a
//!   person sees why instead of "connection refused";
//! - every admin request gets 503 with the phase as JSON
//!   (`{"phase":"re-cloning","detail":"…"}`), so `hadr status` and a load
//!   balancer's health check learn what the node is doing (the admin
//!   token is checked first, as in a run: crates/hadr-server/src/admin_auth.rs).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::admin_auth::AdminAuth;
use crate::client_tls::ClientTls;
use crate::config::Config;
use crate::errors::{sqlstate, PgError};
use crate::node::NodeError;

/// Addresses a started node listens on.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// PostgreSQL protocol address.
    pub pg: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

/// What the node is doing while it does not serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// One word: starting, promoting, rewinding, re-cloning, retrying, stopping.
    pub phase: &'static str,
    /// A sentence for people.
    pub detail: String,
}

impl Phase {
    /// A phase and its sentence.
    pub fn new(phase: &'static str, detail: impl Into<String>) -> Phase {
        Phase {
            phase,
            detail: detail.into(),
        }
    }

    fn refusal(&self) -> PgError {
        PgError::fatal(
            sqlstate::CANNOT_CONNECT_NOW,
            format!("the database system is {}", self.detail),
        )
    }
}

/// The process's client and admin listeners, and the gate that answers on
/// them between runs.
pub struct Gate {
    pg: std::net::TcpListener,
    admin: std::net::TcpListener,
    bound: Bound,
    phase: watch::Sender<Phase>,
    task: Mutex<Option<JoinHandle<()>>>,
    auth: Arc<AdminAuth>,
    /// Client TLS, so that a client that asks for it reads the phase too.
    tls: Option<Arc<ClientTls>>,
    /// The admin port's TLS (None: plain HTTP).
    admin_tls: Option<Arc<ClientTls>>,
}

impl Gate {
    /// Bind the client and admin ports (the supervisor, once); `auth`
    /// guards the admin port in every run and between runs.
    pub fn bind(
        config: &Config,
        auth: Arc<AdminAuth>,
        tls: Option<Arc<ClientTls>>,
        admin_tls: Option<Arc<ClientTls>>,
    ) -> Result<Arc<Gate>, NodeError> {
        let bind = |addr: SocketAddr| {
            let l = listen(addr).map_err(|source| NodeError::Bind { addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| NodeError::Bind { addr, source })?;
            Ok::<_, NodeError>((l, local))
        };
        let (pg, pg_addr) = bind(config.listen)?;
        let (admin, admin_addr) = bind(config.admin)?;
        Ok(Arc::new(Gate {
            pg,
            admin,
            bound: Bound {
                pg: pg_addr,
                admin: admin_addr,
            },
            phase: watch::channel(Phase::new("starting", "starting up")).0,
            task: Mutex::new(None),
            auth,
            tls,
            admin_tls,
        }))
    }

    /// Who may use the admin port.
    pub fn admin_auth(&self) -> Arc<AdminAuth> {
        self.auth.clone()
    }

    /// The admin port's TLS (None: plain HTTP).
    pub fn admin_tls(&self) -> Option<Arc<ClientTls>> {
        self.admin_tls.clone()
    }

    /// The addresses bound.
    pub fn bound(&self) -> Bound {
        self.bound
    }

    /// The node is not serving: answer for it, saying `phase`.
    pub fn close(self: &Arc<Self>, phase: Phase) {
        debug!(phase = phase.phase, detail = %phase.detail, "not serving");
        self.phase.send_replace(phase);
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.is_none() {
            match self.listeners() {
                Ok((pg, admin)) => {
                    let rx = self.phase.subscribe();
                    *task = Some(tokio::spawn(answer(
                        pg,
                        admin,
                        rx,
                        self.auth.clone(),
                        self.tls.clone(),
                        self.admin_tls.clone(),
                    )));
                }
                Err(e) => warn!(error = %e, "the gate cannot answer for the node"),
            }
        }
    }

    /// Say how the phase is going (a re-clone's progress).
    pub fn progress(&self, detail: String) {
        self.phase.send_modify(|p| p.detail = detail);
    }

    /// A run serves now: stop answering for it and hand it the listeners.
    pub fn open(&self) -> std::io::Result<(TcpListener, TcpListener)> {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        self.listeners()
    }

    /// Tokio listeners on the same sockets (each a duplicate descriptor:
    /// dropping one leaves the socket bound).
    fn listeners(&self) -> std::io::Result<(TcpListener, TcpListener)> {
        let pg = TcpListener::from_std(self.pg.try_clone()?)?;
        let admin = TcpListener::from_std(self.admin.try_clone()?)?;
        Ok((pg, admin))
    }
}

/// Connections the kernel queues before hadr accepts them. A storm of
/// reconnecting clients fills a short queue at once, and a SYN that finds
/// it full is dropped: the client — the operator's psql among them — waits
/// a whole second before it tries again. The kernel caps this at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
const BACKLOG: i32 = 4096;

/// A non-blocking listener on `addr` with [`BACKLOG`] (std's is 128).
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Refuse clients and answer admin requests until aborted.
async fn answer(
    pg: TcpListener,
    admin: TcpListener,
    phase: watch::Receiver<Phase>,
    auth: Arc<AdminAuth>,
    tls: Option<Arc<ClientTls>>,
    admin_tls: Option<Arc<ClientTls>>,
) {
    // Guarded as in a run: with admin_require_token_for_reads even the
    // phase is told only to callers with the token.
    let app = Router::new()
        .fallback(not_serving)
        .with_state(phase.clone())
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::admin_auth::guard,
        ));
    let admin = tokio::spawn(crate::admin_http::serve(admin, app, admin_tls));
    // Aborting this task must stop the admin server too.
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _admin = AbortOnDrop(admin);
    loop {
        match pg.accept().await {
            Ok((stream, _)) => {
                let err = phase.borrow().refusal();
                let tls = tls.as_ref().map(|t| t.current());
                tokio::spawn(crate::accept::refuse_stream(None, tls, stream, err));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn not_serving(State(phase): State<watch::Receiver<Phase>>) -> impl IntoResponse {
    let p = phase.borrow().clone();
    let body = hadr_admin_api::NotServing {
        phase: p.phase.to_string(),
        detail: p.detail,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}
