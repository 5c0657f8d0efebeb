//! The server: our own accept loop in front of libunftp's `Server::service()`.
//!
//! Accepting connections ourselves (instead of `Server::listen()`) lets us
//! - set TCP_NODELAY on the control connection: without it every reply waits on Nagle /
//!   delayed-ACK and a one-file session takes 40 ms instead of 2 ms;
//! - enforce `max_connections` (a [`Semaphore`] of session slots) and `max_connections_per_ip`
//!   (a small map whose counts RAII guards give back), replying `421` (RFC 959: "Service not
//!   available, closing control connection") before closing. Refusals are bounded too: a few
//!   refusers wait briefly for the client to close, beyond them a connection is closed at once,
//!   so a flood cannot pile up tasks or file descriptors;
//! - shut down gracefully (the model is tokio-rs/mini-redis `src/server.rs`): a
//!   [`CancellationToken`] stops the accept loop and every lingering task, the transfers'
//!   [`TaskTracker`] says when running transfers are done (within the grace period), then the
//!   remaining control connections are closed and the sessions' tracker is waited for.
//!
//! - behind a load balancer (`proxy_protocol`), take connections only from the listed balancers
//!   and read each one's PROXY header ([`crate::proxy`]) in the connection's own task; the
//!   client it names is then the session's address for the limits, the lockout, the data
//!   connections' checks and the logs (libunftp patch 45: `Server::service_with_peer`);
//! - serve the health endpoint ([`crate::health`]): `/ready` turns `503` when shutdown starts.
//!
//! libunftp's `service_until()` consumes its `Server`, so a (cheap) `Server` is built per
//! connection; the accounts, lockout state and xferlog are shared between them. Its shutdown
//! signal (libunftp patch 42) closes the sessions at shutdown, and `close_linger` (patch 43)
//! lets the client close first after `QUIT`, and its session end signal (patch 44) tells the
//! session's uploads whether their client is still there ([`crate::control`]), so no duplicate
//! of a control socket is kept: a session holds one descriptor.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libunftp::ServerBuilder;
use libunftp::options::{ActivePassiveMode, SiteMd5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account::FtpUser;
use crate::auth::{Accounts, SessionAuth};
use crate::config::Config;
use crate::control::ControlLink;
use crate::storage::{FtpStorage, StorageShared};
use crate::xferlog::XferLog;

/// The 220 greeting (libunftp only takes a `&'static str`).
const GREETING: &str = "ftp-server ready";

/// Open files a logged-in session holds: the control socket, the duplicate kept for shutdown
/// and for its uploads' check that the client is still there ([`crate::control`]), and two
/// handles of the home directory (the file-system back-end's and ours); a transfer
/// adds its data socket and file. The binary raises its open-file limit to fit
/// `max_connections` sessions of this many (`filexfer::fdlimit`).
pub const DESCRIPTORS_PER_SESSION: usize = 6;

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
    /// The TLS certificate or key is not usable (the message names the file and the cause).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Most directory listings (LIST, NLST, MLSD, STAT of a directory) produced at once, for all
/// sessions together (libunftp patch 18). LIST, NLST and MLSD are now written as the client
/// reads them (libunftp patch 41, [`crate::storage::LIST_BATCH`] entries at a time): each holds
/// a batch and a 16 KiB chunk, about 1.2 MiB of RSS for 20 unread listings of 100,000 entries.
/// But STAT of a directory still answers with the whole listing as one reply on the control
/// connection (a listing of 100,000 entries with 100-byte names took 65 MiB when built whole),
/// held until the client has read it or the data timeout ends it: so the limit stays, and stays
/// small. Small listings hold a permit for milliseconds.
const MAX_LISTINGS: usize = 4;

/// Refused connections that may wait (briefly) for their client to close; beyond this many, a
/// refused connection is closed right after its `421` line.
const MAX_REFUSERS: usize = 32;

/// How long a lingering connection (refused, or ended by `QUIT`) waits for the client to close
/// first.
const LINGER: Duration = Duration::from_secs(1);

/// How long, after the last transfer ended at shutdown, its session gets to send the final
/// reply before the control connections are closed.
const REPLY_SETTLE: Duration = Duration::from_millis(250);

/// Why a connection is refused before its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `max_connections` sessions are running.
    ServerFull,
    /// `max_connections_per_ip` sessions from this address are running.
    AddressFull,
}

impl Refusal {
    /// The reply (RFC 959 `421`: service not available, closing control connection).
    fn reply(self) -> &'static str {
        match self {
            Refusal::ServerFull => "421 Too many connections to this server, try again later\r\n",
            Refusal::AddressFull => {
                "421 Too many connections from your address, try again later\r\n"
            }
        }
    }
}

/// Sessions open per client IP.
#[derive(Debug, Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One session counted for its IP; the count is given back on drop.
#[derive(Debug)]
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a session for `ip` unless it already has `max`. An IPv4 client arriving
    /// IPv4-mapped on a `[::]` listener counts as its IPv4 address.
    fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per_ip: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.per_ip.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The connection limits.
#[derive(Debug)]
struct Limits {
    sessions: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    max_per_ip: usize,
}

/// A session's place within the limits, given back when the session task drops it.
#[derive(Debug)]
struct Admission {
    _slot: OwnedSemaphorePermit,
    _ip: IpSlot,
}

impl Limits {
    fn new(max: usize, max_per_ip: usize) -> Self {
        Self {
            sessions: Arc::new(Semaphore::new(max)),
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let slot = Arc::clone(&self.sessions)
            .try_acquire_owned()
            .map_err(|_| Refusal::ServerFull)?;
        let ip = self
            .per_ip
            .acquire(ip, self.max_per_ip)
            .ok_or(Refusal::AddressFull)?;
        Ok(Admission {
            _slot: slot,
            _ip: ip,
        })
    }
}

/// A configuration checked against the file system, with the state every session shares built
/// from it: done once per server, before any socket is bound (the in-process
/// [`BackgroundServer`] does it in the caller's thread, so configuration errors surface there;
/// the binary does it before its banner, which shows the TLS fingerprint).
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    accounts: Arc<Accounts>,
    shared: Arc<StorageShared>,
    tls: Option<crate::tls::TlsMaterial>,
}

impl Prepared {
    /// Checks the directories, opens the xferlog, loads (or makes) the TLS certificate.
    pub fn new(config: Config) -> Result<Self, ServerError> {
        prepare(config)
    }

    /// The SHA-256 fingerprint of the TLS certificate, when FTPS is on.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.fingerprint.as_str())
    }

    /// Warnings about the TLS certificate (out of date, expiring soon, renewed), for the banner.
    pub fn tls_warnings(&self) -> &[String] {
        self.tls.as_ref().map_or(&[], |t| t.warnings.as_slice())
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Checks what only exists at run time (the directories), opens the xferlog and builds the
/// shared state.
fn prepare(mut config: Config) -> Result<Prepared, ServerError> {
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
    config.root = root.clone();
    let mut shared = StorageShared::new(root, config.data_timeout, xferlog);
    shared.hidden = config.hidden;
    let tls = match &config.tls {
        Some(t) => Some(crate::tls::load(&t.source)?),
        None => None,
    };
    Ok(Prepared {
        tls,
        accounts: Arc::new(Accounts::new(&config)),
        shared: Arc::new(shared),
        config,
    })
}

/// Serves FTP on an already bound `listener` until `shutdown` completes, then stops accepting,
/// waits up to `config.shutdown_grace` for running transfers, closes the remaining sessions and
/// returns `Ok(())`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    serve(listener, None, None, prepare(config)?, shutdown).await
}

/// Serves a [`Prepared`] configuration on `listener` and, for implicit FTPS (TLS from the first
/// byte, `ftps://`), on `implicit`, until `shutdown` completes (as [`run`]); with `health`, the
/// health endpoint ([`crate::health`]) on it, with libunftp's metrics collected.
pub async fn run_prepared(
    listener: TcpListener,
    implicit: Option<TcpListener>,
    health: Option<TcpListener>,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    serve(listener, implicit, health, prepared, shutdown).await
}

/// Accepts on `l`, or waits for ever when there is no such listener.
async fn accept_on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve(
    listener: TcpListener,
    implicit_listener: Option<TcpListener>,
    health_listener: Option<TcpListener>,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let Prepared {
        config,
        accounts,
        shared,
        tls,
    } = prepared;
    if implicit_listener.is_some() && tls.is_none() {
        return Err(ServerError::Listen(std::io::Error::other(
            "implicit FTPS needs a TLS certificate",
        )));
    }
    // USER and transfers of the accounts whose class requires TLS are refused until the
    // session is protected (libunftp patch 36; RFC 4217 §9, §11).
    let tls_required = {
        let accounts = accounts.clone();
        libunftp::options::FtpsRequiredFor::new(move |name| {
            accounts.tls_policy(name) == crate::config::TlsPolicy::Required
        })
    };
    let require_reuse = config.tls.as_ref().is_some_and(|t| t.require_reuse);
    let stop = CancellationToken::new();
    let sessions = TaskTracker::new();
    // Cancelled once running transfers are done (or the grace period is over): every session's
    // control connection is then closed (libunftp's `service_until`).
    let close = CancellationToken::new();
    let readiness = Arc::new(crate::health::Readiness::default());
    let health_stop = CancellationToken::new();
    let health = health_listener.map(|l| {
        tokio::spawn(crate::health::serve(
            l,
            readiness.clone(),
            health_stop.clone(),
        ))
    });
    let ctx = Arc::new(Sessions {
        metrics: health.is_some(),
        limits: Limits::new(config.max_connections, config.max_connections_per_ip),
        refusers: Arc::new(Semaphore::new(MAX_REFUSERS)),
        listings: Arc::new(Semaphore::new(MAX_LISTINGS)),
        sessions: sessions.clone(),
        stop: stop.clone(),
        close: close.clone(),
        accounts,
        shared: shared.clone(),
        tls,
        tls_required,
        require_reuse,
        config,
    });
    let headers = Arc::new(Semaphore::new(ctx.config.max_connections));
    tokio::pin!(shutdown);
    readiness.set(true);
    loop {
        let (accepted, implicit) = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => (a, false),
            a = accept_on(implicit_listener.as_ref()) => (a, true),
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
        let Some(proxy) = ctx.config.proxy.as_ref() else {
            ctx.start(stream, peer, None, implicit)?;
            continue;
        };
        // Behind a balancer only the listed balancers may connect, and only with a PROXY
        // header: from anyone else a header would be a forged client address (and a direct
        // client would bypass the balancer), so the connection is closed unread.
        if !proxy.trusts(peer.ip()) {
            tracing::warn!(peer = %peer, "connection refused: not a listed PROXY protocol balancer");
            continue;
        }
        // Connections still sending their header are bounded like sessions: a balancer that
        // opens many and sends nothing cannot pile up tasks beyond `max_connections`.
        let Ok(pending) = Arc::clone(&headers).try_acquire_owned() else {
            tracing::warn!(peer = %peer, "connection refused: too many PROXY headers pending");
            continue;
        };
        let timeout = proxy.header_timeout;
        let ctx = ctx.clone();
        // The header is read in the connection's own task, so a slow balancer connection
        // never holds up the accept loop.
        sessions.spawn(async move {
            let mut stream = stream;
            let header = tokio::select! {
                () = ctx.stop.cancelled() => return,
                h = crate::proxy::read_header(&mut stream, timeout) => h,
            };
            drop(pending);
            match header {
                Ok(client) => {
                    if let Err(e) = ctx.start(stream, peer, client, implicit) {
                        tracing::warn!(peer = %peer, error = %e, "cannot start the session");
                    }
                }
                // A balancer's TCP health check connects and closes without a byte.
                Err(crate::proxy::ProxyError::Truncated) => {
                    tracing::debug!(peer = %peer, "connection closed: no PROXY header");
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "connection refused: bad PROXY header");
                }
            }
        });
    }
    // The balancer's health check sees it first, and sends new sessions elsewhere.
    readiness.set(false);
    stop.cancel();
    drop(listener);
    drop(implicit_listener);
    let grace = ctx.config.shutdown_grace;
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
    close.cancel();
    sessions.close();
    if tokio::time::timeout(Duration::from_secs(2), sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = sessions.len(),
            "sessions still ending; the runtime's shutdown ends them"
        );
    }
    health_stop.cancel();
    if let Some(h) = health {
        let _ = h.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// What every session of a server shares, and how a session is started.
struct Sessions {
    config: Config,
    /// Whether libunftp collects its Prometheus metrics (for the health endpoint).
    metrics: bool,
    accounts: Arc<Accounts>,
    shared: Arc<StorageShared>,
    tls: Option<crate::tls::TlsMaterial>,
    tls_required: libunftp::options::FtpsRequiredFor,
    require_reuse: bool,
    limits: Limits,
    refusers: Arc<Semaphore>,
    listings: Arc<Semaphore>,
    sessions: TaskTracker,
    stop: CancellationToken,
    /// Cancelled once running transfers are done at shutdown: sessions then close.
    close: CancellationToken,
}

impl Sessions {
    /// Admits a connection from `peer` (on behalf of `proxied`, the client a PROXY header
    /// named, when there is one) within the limits and starts its session.
    fn start(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        proxied: Option<SocketAddr>,
        implicit: bool,
    ) -> Result<(), ServerError> {
        // The client: what the limits, the lockout, the data-connection checks and the logs
        // see (libunftp patch 45).
        let client = proxied.unwrap_or(peer);
        let admission = match self.limits.admit(client.ip()) {
            Ok(a) => a,
            Err(refusal) => {
                refuse(
                    stream,
                    client,
                    refusal,
                    &self.refusers,
                    &self.sessions,
                    &self.stop,
                );
                return Ok(());
            }
        };
        let config = &self.config;
        let auth = Arc::new(SessionAuth::new(self.accounts.clone()));
        let storage_shared = self.shared.clone();
        // Cancelled by libunftp when the session ends (patch 44): its uploads ask it whether
        // their client is still there (crate::control).
        let ended = CancellationToken::new();
        let control = ControlLink::new(ended.clone());
        let mut builder = ServerBuilder::<FtpStorage, FtpUser>::with_user_detail_provider::<FtpUser>(
            Box::new(move || FtpStorage::new(storage_shared.clone(), client, control.clone())),
            auth.clone(),
        );
        if let Some(t) = &self.tls {
            // One rustls configuration for every session: its session cache and ticket keys
            // let data connections resume the control connection's TLS session.
            builder = builder
                .ftps_manual::<std::path::PathBuf>(t.server_config.clone())
                .ftps_required_for(self.tls_required.clone())
                .ftps_require_resumption(self.require_reuse)
                .ftps_implicit(implicit);
        }
        if self.metrics {
            builder = builder.metrics();
        }
        let server = builder
            .authenticator(auth)
            .greeting(GREETING)
            .passive_ports(config.passive_ports.clone())
            .passive_host(config.passive_host.clone())
            .idle_session_timeout(config.idle_timeout.as_secs())
            .login_timeout(config.login_timeout)
            // A listing the client does not read ends after the data timeout, as RETR and STOR do
            // (libunftp patch 17): it cannot hold the listing and its task for longer.
            .data_stall_timeout(config.data_timeout)
            .listing_permits(self.listings.clone())
            // libunftp closes right after `221` (QUIT); waiting for the client to close first
            // leaves the TIME-WAIT on its side (without this, 100 curl sessions in a row left 90
            // on ours). Cut short by the shutdown signal.
            .close_linger(LINGER)
            .session_end_signal(ended)
            .sitemd5(SiteMd5::None)
            // PORT/EPRT connect only to the client's own host and ports >= 1024, checked before
            // any connection (RFC 2577; our libunftp patches 6 and 7).
            .active_passive_mode(if config.active {
                ActivePassiveMode::ActiveAndPassive
            } else {
                ActivePassiveMode::PassiveOnly
            })
            .build()
            .map_err(ServerError::Engine)?;
        let closed = self.close.clone().cancelled_owned();
        self.sessions.spawn(async move {
            let _admission = admission;
            let started = Instant::now();
            tracing::debug!(peer = %client, via = ?proxied.map(|_| peer), "session opened");
            if let Err(e) = server.service_with_peer_until(stream, proxied, closed).await {
                tracing::warn!(peer = %client, error = %e, "session failed");
            }
            tracing::debug!(peer = %client, secs = started.elapsed().as_secs_f64(), "session closed");
        });
        Ok(())
    }
}

/// Refuses a connection beyond the limits with its `421` line. Cheap and bounded: the line goes
/// out with one non-blocking write (a new connection's send buffer is empty, so it fits), then
/// the write side is closed. Up to [`MAX_REFUSERS`] refused connections then wait briefly for
/// the client to close: closing a socket with unread input resets the connection, which can
/// destroy the `421` before the client reads it. Beyond them, the socket is closed at once.
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    refusal: Refusal,
    refusers: &Arc<Semaphore>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    let _ = stream.try_write(refusal.reply().as_bytes());
    let Ok(permit) = Arc::clone(refusers).try_acquire_owned() else {
        // A flood: even a log line each would cost more than the refusal itself.
        tracing::debug!(peer = %peer, reply = refusal.reply().trim_end(), "connection refused");
        return;
    };
    tracing::warn!(peer = %peer, reply = refusal.reply().trim_end(), "connection refused");
    let stop = stop.clone();
    tracker.spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = stream.shutdown().await;
        linger(stream, &stop).await;
    });
}

/// Waits up to [`LINGER`] (or until shutdown) for the client to close, reading and dropping at
/// most a few KiB of whatever it still sends, then closes.
async fn linger(mut s: TcpStream, stop: &CancellationToken) {
    let mut buf = [0u8; 512];
    let drain = async {
        for _ in 0..8 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        _ = tokio::time::timeout(LINGER, drain) => {}
    }
}

/// A server running on its own thread and runtime, for tests (ours and the ftp-client's) and
/// for embedding. Stopped (gracefully) on drop.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    implicit_addr: Option<SocketAddr>,
    health_addr: Option<SocketAddr>,
    fingerprint: Option<String>,
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
        // Here, in the caller's thread, so that configuration errors surface here; once.
        let prepared = prepare(config)?;
        let bind = |addr: SocketAddr| -> Result<std::net::TcpListener, ServerError> {
            let l = std::net::TcpListener::bind(addr).map_err(ServerError::Listen)?;
            l.set_nonblocking(true).map_err(ServerError::Listen)?;
            Ok(l)
        };
        let std_listener = bind(addr)?;
        let addr = std_listener.local_addr().map_err(ServerError::Listen)?;
        let implicit = match prepared.config.tls.as_ref().and_then(|t| t.implicit_bind) {
            Some(a) => Some(bind(a)?),
            None => None,
        };
        let implicit_addr = match &implicit {
            Some(l) => Some(l.local_addr().map_err(ServerError::Listen)?),
            None => None,
        };
        let health = match prepared.config.health_bind {
            Some(a) => Some(bind(a)?),
            None => None,
        };
        let health_addr = match &health {
            Some(l) => Some(l.local_addr().map_err(ServerError::Listen)?),
            None => None,
        };
        let fingerprint = prepared.tls_fingerprint().map(str::to_string);
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
                    let implicit = implicit
                        .map(TcpListener::from_std)
                        .transpose()
                        .map_err(ServerError::Listen)?;
                    let health = health
                        .map(TcpListener::from_std)
                        .transpose()
                        .map_err(ServerError::Listen)?;
                    serve(listener, implicit, health, prepared, async {
                        let _ = rx.await;
                    })
                    .await
                })
            })
            .map_err(ServerError::Listen)?;
        Ok(Self {
            addr,
            implicit_addr,
            health_addr,
            fingerprint,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The implicit FTPS listener's address, when the configuration has one.
    pub fn implicit_addr(&self) -> Option<SocketAddr> {
        self.implicit_addr
    }

    /// The SHA-256 fingerprint of the TLS certificate, when FTPS is on.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The health endpoint's address, when the configuration has one (`health_bind`).
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
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

    #[tokio::test]
    async fn limits_count_per_ip_and_total_and_give_slots_back() {
        let l = Limits::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let p1 = l.admit(a).expect("first");
        let _p2 = l.admit(a).expect("second");
        assert_eq!(l.admit(a).err(), Some(Refusal::AddressFull));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(
            l.admit(mapped).err(),
            Some(Refusal::AddressFull),
            "IPv4-mapped is the same client"
        );
        let _p3 = l.admit(b).expect("other ip");
        assert_eq!(l.admit(b).err(), Some(Refusal::ServerFull));
        drop(p1);
        assert!(l.admit(a).is_ok(), "slot given back");
        assert!(l.per_ip.lock().len() <= 2);
    }
}
