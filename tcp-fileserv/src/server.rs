//! The server: an accept loop with a connection limit, one task per connection, several requests
//! per connection, timeouts for idle and stalled peers, and a graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, HEADER_LEN, Kind, Status};
use crate::sendfile::send_file_range;
use crate::store::{Refusal, Root};

/// Default TCP port of `tcp-fileserv serve`.
pub const DEFAULT_PORT: u16 = 7070;

/// Bodies up to this size are read into memory and sent with the header in one write (one
/// segment for small files); larger ones go through sendfile(2).
const SMALL_BODY: u64 = 64 * 1024;

/// How long a refused ("busy") connection is given to read its reply.
const BUSY_LINGER: Duration = Duration::from_secs(2);

/// Most "busy" replies in flight at once; beyond that, excess connections are just closed.
const MAX_BUSY_REPLIERS: usize = 64;

/// Server settings (validated; see `Config::try_from` in the binary).
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
        }
    }
}

/// Errors that stop the server.
#[derive(Debug, Error)]
pub enum ServerError {
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
}

/// Serves `config.root` on `listener` until `shutdown` completes; then stops accepting, lets
/// running transfers finish for up to `config.grace`, and returns.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let root = Root::open(&config.root).map_err(|source| ServerError::Root {
        path: config.root.clone(),
        source,
    })?;
    let shared = Arc::new(Shared { root, config });
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
                let _ = stream.set_nodelay(true);
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let cancel = cancel.clone();
                        tasks.spawn(async move {
                            serve_connection(stream, peer, &shared, cancel).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "connection limit reached, replying busy");
                        if let Ok(p) = busy_limit.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                reply_busy(stream).await;
                                drop(p);
                            });
                        }
                    }
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

async fn reply_busy(mut stream: TcpStream) {
    let msg = protocol::encode_error(
        Status::Busy,
        "server busy: too many connections, try again later",
    );
    let _ = timeout(BUSY_LINGER, async {
        let _ = stream.write_all(&msg).await;
        let _ = stream.shutdown().await;
        // Drain what the client sent so closing does not turn into a reset that could destroy
        // the reply before the client reads it.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Why a connection ends early.
enum Stop {
    /// The peer closed cleanly between requests, or we are shutting down.
    Done,
    /// The peer broke the protocol or the connection; the message goes to the log.
    Broken(String),
}

async fn read_exact_within(
    stream: &mut TcpStream,
    buf: &mut [u8],
    limit: Duration,
    what: &str,
) -> Result<(), Stop> {
    match timeout(limit, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Stop::Broken(format!("reading {what}: {e}"))),
        Err(_) => Err(Stop::Broken(format!("timed out reading {what}"))),
    }
}

async fn write_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    timeout(limit, stream.write_all(bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))?
}

#[tracing::instrument(level = "debug", skip_all, fields(%peer))]
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        match serve_one(&mut stream, peer, shared, &cancel).await {
            Ok(()) => {}
            Err(Stop::Done) => break,
            Err(Stop::Broken(why)) => {
                tracing::info!(%peer, reason = %why, "connection closed");
                break;
            }
        }
    }
}

/// Reads one request, answers it. `Err` ends the connection.
async fn serve_one(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let cfg = &shared.config;
    let mut header = [0u8; HEADER_LEN];
    // Between requests: wait for the first byte, for at most the idle timeout, and give up at
    // once on shutdown.
    let first = tokio::select! {
        _ = cancel.cancelled() => return Err(Stop::Done),
        r = timeout(cfg.idle_timeout, stream.read(&mut header[..1])) => r,
    };
    match first {
        Ok(Ok(0)) => return Err(Stop::Done),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(Stop::Broken(format!("reading request: {e}"))),
        Err(_) => return Err(Stop::Broken("idle timeout".into())),
    }
    read_exact_within(stream, &mut header[1..], cfg.io_timeout, "request header").await?;
    let head = match protocol::decode_request_header(&header) {
        Ok(Some(h)) => h,
        Ok(None) => unreachable!("a full header was read"),
        Err(e) => {
            // The framing cannot be trusted after a bad header: answer, then close.
            let status = match e {
                protocol::DecodeError::UnsupportedVersion(_) => Status::UnsupportedVersion,
                _ => Status::BadRequest,
            };
            let _ = write_within(
                stream,
                &protocol::encode_error(status, &format!("bad request: {e}")),
                cfg.io_timeout,
            )
            .await;
            let _ = stream.shutdown().await;
            return Err(Stop::Broken(format!("bad header: {e}")));
        }
    };
    let mut name_bytes = vec![0u8; head.name_len as usize];
    read_exact_within(stream, &mut name_bytes, cfg.io_timeout, "request name").await?;
    let name = match protocol::decode_name(&name_bytes) {
        Ok(n) => n,
        Err(e) => {
            let shown = String::from_utf8_lossy(&name_bytes).into_owned();
            log_result(peer, &shown, 0, Instant::now(), "refused: bad name");
            let reply = protocol::encode_error(Status::BadRequest, &format!("bad request: {e}"));
            return write_within(stream, &reply, cfg.io_timeout)
                .await
                .map_err(|e| Stop::Broken(format!("writing reply: {e}")));
        }
    };
    match head.kind {
        Kind::Get => serve_get(stream, peer, shared, &name, head.offset).await,
        Kind::List => serve_list(stream, peer, shared, &name).await,
    }
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

async fn refuse(
    stream: &mut TcpStream,
    peer: SocketAddr,
    name: &str,
    start: Instant,
    r: Refusal,
    io_timeout: Duration,
) -> Result<(), Stop> {
    log_result(peer, name, 0, start, &format!("refused: {}", r.message));
    write_within(
        stream,
        &protocol::encode_error(r.status, &r.message),
        io_timeout,
    )
    .await
    .map_err(|e| Stop::Broken(format!("writing refusal: {e}")))
}

/// What a GET turned into once the blocking file-system work is done.
enum Prepared {
    /// A small body, read already, with its header in front: one write.
    Small(Vec<u8>),
    /// A large body, sent with sendfile(2) from the open file.
    Large(std::fs::File),
}

/// Opens (and, if small, reads) `name` off the async runtime: file-system calls block.
async fn prepare_get(
    shared: &Arc<Shared>,
    name: &str,
    offset: u64,
) -> Result<(Prepared, u64), Refusal> {
    let shared = shared.clone();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let (file, size) = shared.root.open_file(&name)?;
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
    .unwrap_or_else(|e| {
        Err(Refusal {
            status: Status::ServerError,
            message: format!("server error: {e}"),
        })
    })
}

async fn serve_get(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    name: &str,
    offset: u64,
) -> Result<(), Stop> {
    let start = Instant::now();
    let io_timeout = shared.config.io_timeout;
    let (prepared, length) = match prepare_get(shared, name, offset).await {
        Ok(p) => p,
        Err(r) => return refuse(stream, peer, name, start, r, io_timeout).await,
    };
    let result = match prepared {
        Prepared::Small(buf) => write_within(stream, &buf, io_timeout).await,
        Prepared::Large(file) => {
            match write_within(stream, &protocol::encode_ok(length), io_timeout).await {
                Ok(()) => send_file_range(&*stream, &file, offset, length, io_timeout).await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => {
            log_result(peer, name, length, start, "ok");
            Ok(())
        }
        Err(e) => {
            log_result(peer, name, 0, start, &format!("failed: {e}"));
            // Part of the body may be on the wire: the framing is lost, close.
            Err(Stop::Broken(format!("sending {name:?}: {e}")))
        }
    }
}

async fn serve_list(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    name: &str,
) -> Result<(), Stop> {
    let start = Instant::now();
    let io_timeout = shared.config.io_timeout;
    let listed = {
        let shared = shared.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || shared.root.list(&name)).await
    };
    let entries = match listed.unwrap_or_else(|e| {
        Err(Refusal {
            status: Status::ServerError,
            message: format!("server error: {e}"),
        })
    }) {
        Ok(e) => e,
        Err(r) => return refuse(stream, peer, name, start, r, io_timeout).await,
    };
    let body = protocol::encode_listing(&entries);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&protocol::encode_ok(body.len() as u64));
    out.extend_from_slice(&body);
    match write_within(stream, &out, io_timeout).await {
        Ok(()) => {
            log_result(peer, name, body.len() as u64, start, "ok (listing)");
            Ok(())
        }
        Err(e) => Err(Stop::Broken(format!("sending listing: {e}"))),
    }
}
