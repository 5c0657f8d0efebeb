//! The server: our own accept loop in front of libunftp's `Server::service()`.
//!
//! Accepting connections ourselves (instead of `Server::listen()`) lets us
//! - set TCP_NODELAY on the control connection: without it every reply waits on Nagle /
//!   delayed-ACK and a one-file session takes 40 ms instead of 2 ms;
//! - enforce `max_connections` and `max_connections_per_ip`, replying `421` (RFC 959: "Service
//!   not available, closing control connection") before closing;
//! - shut down gracefully: stop accepting, let running transfers finish within the grace period,
//!   then close the remaining control connections.
//!
//! libunftp's `service()` consumes its `Server`, so a (cheap) `Server` is built per connection;
//! the accounts, lockout state and xferlog are shared between them.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libunftp::ServerBuilder;
use libunftp::options::{ActivePassiveMode, SiteMd5};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::account::FtpUser;
use crate::auth::{Accounts, SessionAuth};
use crate::config::Config;
use crate::storage::{FtpStorage, StorageShared};
use crate::xferlog::XferLog;

/// The 220 greeting (libunftp only takes a `&'static str`).
const GREETING: &str = "ftp-server ready";

/// Errors that stop the server from starting (runtime errors are logged per connection).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The root directory is not usable.
    #[error("root directory {} is not usable", path.display())]
    Root {
        /// The root.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configured home directory is missing.
    #[error("home directory {} does not exist", path.display())]
    Home {
        /// The missing home.
        path: std::path::PathBuf,
    },
    /// The xferlog could not be opened.
    #[error("cannot open xferlog {}", path.display())]
    Xferlog {
        /// The xferlog path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// libunftp refused its configuration.
    #[error("FTP engine configuration")]
    Engine(#[source] libunftp::ServerError),
    /// Binding or configuring the listening socket failed.
    #[error("listening socket")]
    Listen(#[source] std::io::Error),
}

/// Connection counting for the limits; a [`Permit`] gives its slot back on drop.
#[derive(Debug, Default)]
struct Limits {
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

struct Permit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Permit, &'static str> {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.0 >= max {
            return Err("Too many connections to this server, try again later");
        }
        let per = g.1.entry(ip).or_insert(0);
        if *per >= max_per_ip {
            return Err("Too many connections from your address, try again later");
        }
        *per += 1;
        g.0 += 1;
        Ok(Permit {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = self
            .limits
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

/// Checks what only exists at run time (the directories) and builds the shared state.
fn prepare(config: &Config) -> Result<(Arc<Accounts>, Arc<StorageShared>), ServerError> {
    let root = std::fs::canonicalize(&config.root).map_err(|source| ServerError::Root {
        path: config.root.clone(),
        source,
    })?;
    let mut homes: Vec<std::path::PathBuf> = config.users.iter().map(|u| u.home.clone()).collect();
    if let Some(a) = &config.anonymous {
        homes.push(a.home.clone());
        if let Some(u) = &a.upload_dir {
            homes.push(a.home.join(u));
        }
    }
    if let Some(g) = &config.guest_area {
        homes.push(g.home.clone());
    }
    for h in homes {
        let full = root.join(&h);
        if !full.is_dir() {
            return Err(ServerError::Home { path: full });
        }
    }
    let xferlog = match &config.xferlog {
        Some(p) => Some(XferLog::open(p).map_err(|source| ServerError::Xferlog {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let mut cfg = config.clone();
    cfg.root = root.clone();
    Ok((
        Arc::new(Accounts::new(&cfg)),
        Arc::new(StorageShared::new(root, config.data_timeout, xferlog)),
    ))
}

/// Serves FTP on an already bound `listener` until `shutdown` completes, then stops accepting,
/// waits up to `config.shutdown_grace` for running transfers, closes the remaining sessions and
/// returns `Ok(())`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (accounts, shared) = prepare(&config)?;
    let limits = Arc::new(Limits::default());
    let controls: Arc<Mutex<HashMap<u64, std::net::TcpStream>>> = Arc::default();
    let mut sessions = JoinSet::new();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        // Reap finished sessions so the set does not grow.
        while sessions.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %peer, error = %e, "cannot set TCP_NODELAY");
        }
        let permit = match limits.acquire(
            peer.ip(),
            config.max_connections,
            config.max_connections_per_ip,
        ) {
            Ok(p) => p,
            Err(text) => {
                tracing::warn!(peer = %peer, reason = text, "connection refused with 421");
                sessions.spawn(refuse(stream, text));
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        // Keep a duplicate of the control socket so shutdown can close sessions that libunftp
        // would otherwise keep open (service() has no shutdown signal of its own).
        let stream = match stream.into_std().and_then(|s| {
            let dup = s.try_clone()?;
            Ok((TcpStream::from_std(s)?, dup))
        }) {
            Ok((s, dup)) => {
                controls
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, dup);
                s
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot take over the connection");
                continue;
            }
        };
        let auth = Arc::new(SessionAuth::new(accounts.clone()));
        let storage_shared = shared.clone();
        let builder = ServerBuilder::<FtpStorage, FtpUser>::with_user_detail_provider::<FtpUser>(
            Box::new(move || FtpStorage::new(storage_shared.clone(), peer)),
            auth.clone(),
        )
        .authenticator(auth)
        .greeting(GREETING)
        .passive_ports(config.passive_ports.clone())
        .passive_host(config.passive_host.clone())
        .idle_session_timeout(config.idle_timeout.as_secs())
        .sitemd5(SiteMd5::None)
        // RFC 2577: PORT/EPRT would let a client make us connect anywhere (FTP bounce).
        .active_passive_mode(ActivePassiveMode::PassiveOnly);
        let server = match builder.build() {
            Ok(s) => s,
            Err(e) => return Err(ServerError::Engine(e)),
        };
        let controls2 = controls.clone();
        sessions.spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            tracing::debug!(peer = %peer, "session opened");
            if let Err(e) = server.service(stream).await {
                tracing::warn!(peer = %peer, error = %e, "session failed");
            }
            let dup = controls2
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            if let Some(dup) = dup {
                linger_until_client_closes(dup).await;
            }
            tracing::debug!(peer = %peer, secs = started.elapsed().as_secs_f64(), "session closed");
        });
    }
    drop(listener);
    let grace = config.shutdown_grace;
    shared.transfers.close();
    let running = shared.transfers.len();
    tracing::info!(
        transfers = running,
        grace_secs = grace.as_secs_f64(),
        "shutting down: no longer accepting"
    );
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, shared.transfers.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            transfers = shared.transfers.len(),
            "grace period over: ending running transfers"
        );
    } else if running > 0 {
        // A transfer's tracker token goes when our storage returns; libunftp sends its `226`
        // just after, from the session's own task, which we cannot observe. Give those final
        // replies a moment (within the grace period) before closing the control connections.
        let settle = tokio::time::Instant::now() + REPLY_SETTLE;
        tokio::time::sleep_until(settle.min(deadline)).await;
    }
    for (_, c) in controls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain()
    {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.abort_all();
    tracing::info!("stopped");
    Ok(())
}

/// How long a finished session waits for the client to close first.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// After libunftp ends a session (our duplicate keeps the socket open, so no FIN has been sent
/// yet), waits briefly for the client to close first, then closes.
///
/// Why: libunftp closes the control connection itself right after `221` (QUIT), so without this
/// the server side holds a TIME-WAIT socket for every session (90 after 100 curl sessions in a
/// row); when the client closes first, the TIME-WAIT is on its side. Measured: it removes the
/// server-side pile-up, but not the occasional 200 ms pause of sequential curl sessions (see
/// docs/ftp-server.md: that pause is spent inside curl, after our `229` reply).
async fn linger_until_client_closes(dup: std::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let Ok(mut s) = TcpStream::from_std(dup) else {
        return;
    };
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, async {
        // Bounded: at most a few KiB of trailing input are read and dropped.
        for _ in 0..8 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Tells a client beyond the limits why, then closes (RFC 959 reply 421).
async fn refuse(mut stream: TcpStream, text: &'static str) {
    let line = format!("421 {text}\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// How long, after the last transfer ended at shutdown, its session gets to send the final
/// reply before the control connections are closed.
const REPLY_SETTLE: Duration = Duration::from_millis(250);

/// A server running on its own thread and runtime, for tests (ours and the ftp-client's) and
/// for embedding. Stopped (gracefully) on drop.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl BackgroundServer {
    /// Binds `127.0.0.1:0` and serves `config` in the background.
    pub fn start(config: Config) -> Result<Self, ServerError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
    }

    /// Binds `addr` (port 0 for any free port) and serves `config` in the background.
    pub fn start_on(addr: SocketAddr, config: Config) -> Result<Self, ServerError> {
        // Fail here, in the caller's thread, on configuration errors.
        prepare(&config)?;
        let std_listener = std::net::TcpListener::bind(addr).map_err(ServerError::Listen)?;
        std_listener
            .set_nonblocking(true)
            .map_err(ServerError::Listen)?;
        let addr = std_listener.local_addr().map_err(ServerError::Listen)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("ftp-server {addr}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(ServerError::Listen)?;
                rt.block_on(async move {
                    let listener =
                        TcpListener::from_std(std_listener).map_err(ServerError::Listen)?;
                    run(listener, config, async {
                        let _ = rx.await;
                    })
                    .await
                })
            })
            .map_err(ServerError::Listen)?;
        Ok(Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server gracefully and waits for it.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Listen(std::io::Error::other(
                "server thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_ip_and_total() {
        let l = Arc::new(Limits::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let p1 = l.acquire(a, 3, 2).expect("first");
        let _p2 = l.acquire(a, 3, 2).expect("second");
        assert!(l.acquire(a, 3, 2).is_err(), "per-ip limit");
        let _p3 = l.acquire(b, 3, 2).expect("other ip");
        assert!(l.acquire(b, 3, 2).is_err(), "total limit");
        drop(p1);
        assert!(l.acquire(a, 3, 2).is_ok(), "slot given back");
    }
}
