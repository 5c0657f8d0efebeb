//! The server: an accept loop with a connection limit (and a bounded number of "busy"
//! refusals), one task per connection, dispatch of each request to the store, and a graceful
//! shutdown. Every byte on the wire goes through [`Connection`]; every file-system call through
//! [`Root`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::connection::{Connection, ConnectionError, Incoming};
use crate::protocol::{self, HEADER_LEN, Kind, Request, Status};
use crate::store::{Refusal, Root};

/// Default TCP port of `tcp-fileserv serve`.
pub const DEFAULT_PORT: u16 = 7070;

/// Bodies up to this size are read into memory and sent with the header in one write (one
/// segment for small files); larger ones go through [`filexfer::datapath::send_range`].
const SMALL_BODY: u64 = 64 * 1024;

/// How long a refused ("busy") connection is given to read its reply.
const BUSY_LINGER: Duration = Duration::from_secs(2);

/// Most "busy" replies in flight at once; beyond that, excess connections are just closed.
const MAX_BUSY_REPLIERS: usize = 64;
/// Most listings built or being sent at once, for all connections together. A listing is built
/// whole in memory (its length comes first on the wire) and held until the client has read it,
/// up to the I/O timeout per stall: this bounds that memory whatever the number of clients. A
/// LIST waits for a slot; a small one holds it for milliseconds.
pub const MAX_LISTINGS: usize = 4;

/// Server settings (validated; see [`crate::config::ServeConfig`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The directory served, read-only.
    pub root: PathBuf,
    /// Most connections served at once; more get a "busy" reply.
    pub max_connections: usize,
    /// How long a connection may sit without sending a request before it is closed.
    pub idle_timeout: Duration,
    /// How long a read or write inside a request may stall before the peer is dropped.
    pub io_timeout: Duration,
    /// How long running transfers may go on after shutdown was asked for.
    pub grace: Duration,
    /// Serve dotfiles (`.git`, `.env`, `.ssh`) too; by default they are neither listed nor
    /// served (see [`crate::store`]).
    pub hidden: bool,
}

impl ServerConfig {
    /// Defaults for serving `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            hidden: false,
        }
    }
}

/// Errors that stop the server (or keep it from starting).
#[derive(Debug, Error)]
pub enum ServerError {
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr} (--bind)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The root could not be opened.
    #[error("cannot open root directory {path}")]
    Root {
        /// The root asked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Accepting connections failed for good.
    #[error("accept failed")]
    Accept(#[source] io::Error),
}

struct Shared {
    root: Root,
    config: ServerConfig,
    /// [`MAX_LISTINGS`] slots.
    listings: Semaphore,
}

/// Serves `config.root` on `listener` until `shutdown` completes; then stops accepting, lets
/// running transfers finish for up to `config.grace`, and returns.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let root = Root::open(&config.root)
        .map_err(|source| ServerError::Root {
            path: config.root.clone(),
            source,
        })?
        .hidden(config.hidden);
    let shared = Arc::new(Shared {
        root,
        config,
        listings: Semaphore::new(MAX_LISTINGS),
    });
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let busy_limit = Arc::new(Semaphore::new(MAX_BUSY_REPLIERS));
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    // Per-connection errors (ECONNABORTED, EMFILE, ...) must not end the server;
                    // back off briefly so a full fd table does not spin the loop.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let conn = Connection::new(
                            stream,
                            shared.config.idle_timeout,
                            shared.config.io_timeout,
                        );
                        let shared = shared.clone();
                        let cancel = cancel.clone();
                        tasks.spawn(serve_connection(conn, peer, shared, cancel, permit));
                    }
                    // Over the limit: a "busy" reply, from at most MAX_BUSY_REPLIERS tasks at
                    // once; beyond that the connection is just closed, so a flood cannot make us
                    // hold a socket (and a task) for each of its connections.
                    Err(_) => match busy_limit.clone().try_acquire_owned() {
                        Ok(p) => {
                            tracing::warn!(%peer, "connection limit reached, replying busy");
                            tasks.spawn(async move {
                                Connection::turn_away(stream, BUSY_LINGER).await;
                                drop(p);
                            });
                        }
                        Err(_) => tracing::debug!(%peer, "connection limit reached, closing"),
                    },
                }
            }
        }
    }

    drop(listener);
    cancel.cancel();
    let grace = shared.config.grace;
    tracing::info!(
        running = tasks.len(),
        "shutting down: no new connections, waiting up to {grace:?} for transfers"
    );
    let drained = timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            aborted = tasks.len(),
            "grace period over, closing remaining connections"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// Serves one connection's requests until it closes, breaks, or the server shuts down.
#[tracing::instrument(level = "debug", skip_all, fields(%peer))]
async fn serve_connection(
    mut conn: Connection,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let ended = loop {
        let served = match conn.read_request(&cancel).await {
            Ok(Some(Incoming::Request(req))) => match req.kind {
                Kind::Get => serve_get(&mut conn, peer, &shared, &req).await,
                Kind::List => serve_list(&mut conn, peer, &shared, &req).await,
            },
            // The frame was whole: answer, and the connection stays usable.
            Ok(Some(Incoming::BadName { shown, error })) => {
                log_result(peer, &shown, 0, Instant::now(), "refused: bad name");
                conn.send_error(Status::BadRequest, &format!("bad request: {error}"))
                    .await
                    .map_err(|e| format!("writing reply: {e}"))
            }
            Ok(None) => break None,
            Err(ConnectionError::BadHeader(e)) => {
                conn.refuse_and_close(&e).await;
                break Some(format!("bad header: {e}"));
            }
            Err(e) => break Some(e.to_string()),
        };
        if let Err(why) = served {
            break Some(why);
        }
    };
    if let Some(reason) = ended {
        tracing::info!(%peer, %reason, "connection closed");
    }
    // Free the slot before the socket closes, so a client that has seen the close can get in
    // at once.
    drop(permit);
}

fn log_result(peer: SocketAddr, name: &str, bytes: u64, start: Instant, result: &str) {
    tracing::info!(
        %peer,
        name,
        bytes,
        duration_ms = start.elapsed().as_secs_f64() * 1e3,
        result,
        "transfer"
    );
}

/// Why a connection must end after a request; the message goes to the log.
type Broken = String;

async fn refuse(
    conn: &mut Connection,
    peer: SocketAddr,
    name: &str,
    start: Instant,
    r: Refusal,
) -> Result<(), Broken> {
    log_result(peer, name, 0, start, &format!("refused: {}", r.message));
    conn.send_error(r.status, &r.message)
        .await
        .map_err(|e| format!("writing refusal: {e}"))
}

/// What a GET turned into once the blocking file-system work is done.
enum Prepared {
    /// A small body, read already, with its header in front: one write.
    Small(Vec<u8>),
    /// A large body, sent from the open file by [`filexfer::datapath::send_range`].
    Large(std::fs::File),
}

/// Opens (and, if small, reads) `name` off the async runtime: file-system calls block.
async fn prepare_get(shared: &Arc<Shared>, req: &Request) -> Result<(Prepared, u64), Refusal> {
    let shared = shared.clone();
    let (name, offset, escaped) = (req.name.clone(), req.offset, req.escaped);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let (file, size) = shared.root.open_file(&name, escaped)?;
        if offset > size {
            return Err(Refusal {
                status: Status::BadOffset,
                message: format!(
                    "cannot resume {name:?} at byte {offset}: the file has only {size} bytes"
                ),
            });
        }
        let length = size - offset;
        if length > SMALL_BODY {
            return Ok((Prepared::Large(file), length));
        }
        let mut buf = vec![0u8; HEADER_LEN + length as usize];
        buf[..HEADER_LEN].copy_from_slice(&protocol::encode_ok(length));
        file.read_exact_at(&mut buf[HEADER_LEN..], offset)
            .map_err(|e| Refusal {
                status: Status::ServerError,
                message: format!("server error reading {name:?}: {e}"),
            })?;
        Ok((Prepared::Small(buf), length))
    })
    .await
    .unwrap_or_else(|e| Err(join_refusal(&e)))
}

async fn serve_get(
    conn: &mut Connection,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    req: &Request,
) -> Result<(), Broken> {
    let (name, offset) = (req.name.as_str(), req.offset);
    let start = Instant::now();
    let (prepared, length) = match prepare_get(shared, req).await {
        Ok(p) => p,
        Err(r) => return refuse(conn, peer, name, start, r).await,
    };
    let result = match prepared {
        Prepared::Small(buf) => conn.write_reply(&buf).await,
        Prepared::Large(file) => conn.send_file(file, offset, length).await,
    };
    match result {
        Ok(()) => {
            log_result(peer, name, length, start, "ok");
            Ok(())
        }
        Err(e) => {
            log_result(peer, name, 0, start, &format!("failed: {e}"));
            // Part of the body may be on the wire: the framing is lost, close.
            Err(format!("sending {name:?}: {e}"))
        }
    }
}

async fn serve_list(
    conn: &mut Connection,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    req: &Request,
) -> Result<(), Broken> {
    let name = req.name.as_str();
    let start = Instant::now();
    // Held until the listing is written (or the client is dropped for stalling).
    let Ok(_slot) = shared.listings.acquire().await else {
        unreachable!("the listing semaphore is never closed")
    };
    let listed = {
        let shared = shared.clone();
        let (name, escaped) = (name.to_owned(), req.escaped);
        // The entries are freed as soon as the reply is encoded: only the reply is held.
        tokio::task::spawn_blocking(move || {
            shared
                .root
                .list(&name, escaped)
                .map(|entries| protocol::encode_listing_reply(&entries))
        })
        .await
    };
    let out = match listed.unwrap_or_else(|e| Err(join_refusal(&e))) {
        Ok(out) => out,
        Err(r) => return refuse(conn, peer, name, start, r).await,
    };
    let body_len = (out.len() - HEADER_LEN) as u64;
    match conn.write_reply(&out).await {
        Ok(()) => {
            log_result(peer, name, body_len, start, "ok (listing)");
            Ok(())
        }
        Err(e) => Err(format!("sending listing: {e}")),
    }
}

/// A blocking task that panicked or was cancelled, as a reply.
fn join_refusal(e: &tokio::task::JoinError) -> Refusal {
    Refusal {
        status: Status::ServerError,
        message: format!("server error: {e}"),
    }
}
