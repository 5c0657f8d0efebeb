//! Moving file bytes between the disk and a socket, the same way in every tool, so that a
//! comparison between tcp-fileserv and ftp-server measures the protocols and not two copy
//! strategies.
//!
//! - [`send_range`]: **the** way a server sends a file range to a client, used by tcp-fileserv
//!   and ftp-server alike: sendfile(2) where possible, else the buffered copy below
//!   ([`Strategy`] says why).
//! - [`send_file_range`]: file to socket with sendfile(2) (Linux): the bytes go from the page
//!   cache to the socket without passing through user space.
//! - [`file_to_stream`]: file to any async writer (a TLS stream, a libunftp data channel): 1 MiB
//!   reads on the blocking pool, overlapped with the writes of the previous chunk.
//! - [`stream_to_writer`]: any async reader to a blocking writer (a file, standard output):
//!   the socket is read into 1 MiB while the previous 1 MiB is written on the blocking pool,
//!   in 64 KiB `write(2)` calls (1 MiB writes cost three times the CPU on the page cache; see
//!   docs/benchmarks.md).
//!
//! Every copy takes a `stall` timeout that means what the docs of every tool say: the transfer
//! fails when **no byte moved** for that long, in either direction; a slow transfer that keeps
//! moving is never cut ([`Watchdog`]).

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Size of each buffer of a copy while the process's [`BIG_BUFFER_BUDGET`] allows.
pub const CHUNK: usize = 1 << 20;
/// Size of each buffer of a copy once the budget is spent.
pub const SMALL_CHUNK: usize = 64 << 10;
/// Bytes of 1 MiB copy buffers the whole process may hold (a copy holds two: one moving, one
/// being filled). Large chunks make one transfer fast (the page cache and the socket each see
/// few large calls); under many concurrent transfers, memory matters more: beyond the budget a
/// copy uses 64 KiB chunks. With 200 downloads at once a server then holds 16 MiB plus 200 x
/// 128 KiB of buffers, instead of 200 x 2 MiB (measured 306 MB peak RSS before, see
/// docs/benchmarks.md).
pub const BIG_BUFFER_BUDGET: usize = 16 << 20;

/// A share of a buffer budget: the chunk size a copy may use, given back when dropped.
#[derive(Debug)]
pub struct ChunkLease<'a> {
    budget: &'a Budget,
    size: usize,
    reserved: usize,
}

impl ChunkLease<'_> {
    /// The chunk size to use.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for ChunkLease<'_> {
    fn drop(&mut self) {
        self.budget
            .in_use
            .fetch_sub(self.reserved, Ordering::AcqRel);
    }
}

/// How many bytes of large copy buffers may be held at once (the process has one,
/// [`BUDGET`]; tests make their own).
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    in_use: AtomicUsize,
}

/// The process's budget of large copy buffers.
pub static BUDGET: Budget = Budget::new(BIG_BUFFER_BUDGET);

impl Budget {
    /// A budget of `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        Self {
            limit,
            in_use: AtomicUsize::new(0),
        }
    }

    /// Two [`CHUNK`]s' worth while the budget allows, else [`SMALL_CHUNK`]s (never refused).
    pub fn lease(&self) -> ChunkLease<'_> {
        let want = 2 * CHUNK;
        let got = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + want <= self.limit).then_some(used + want)
            })
            .is_ok();
        ChunkLease {
            budget: self,
            size: if got { CHUNK } else { SMALL_CHUNK },
            reserved: if got { want } else { 0 },
        }
    }
}
/// Size of each write(2) into a file.
pub const WRITE_SLICE: usize = 64 << 10;

/// An async stream whose reads, writes and flushes fail with [`io::ErrorKind::TimedOut`] when
/// one of them makes no progress for `stall`. The clock starts when an operation starts waiting
/// and stops as soon as it moves a byte, so time the caller spends elsewhere (writing to disk)
/// never counts, and a 1 MiB `write_all` to a slow but live peer is never cut.
#[derive(Debug)]
pub struct Watchdog<S> {
    inner: S,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<S> Watchdog<S> {
    /// Wraps `inner`. Must be called inside a Tokio runtime.
    pub fn new(inner: S, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if !self.waiting {
            self.timer.as_mut().reset(Instant::now() + self.stall);
            self.waiting = true;
        }
        match op(&mut self.inner, cx) {
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.waiting = false;
                    Poll::Ready(Err(stalled(self.stall)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The error of a transfer on which no byte moved for `stall`.
pub fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no data moved for {} s", stall.as_secs_f64()),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Watchdog<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut()
            .guard(cx, |s, cx| Pin::new(s).poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watchdog<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |s, cx| Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .guard(cx, |s, cx| Pin::new(s).poll_shutdown(cx))
    }
}

/// A transfer rate limit: a token bucket of `rate` bytes per second that holds at most a tenth
/// of a second's worth (and at least 16 KiB), so that a limited transfer moves evenly instead
/// of in one-second bursts. [`Pace::unlimited`] costs nothing.
#[derive(Debug, Clone)]
pub struct Pace {
    rate: Option<u64>,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl Pace {
    /// No limit.
    pub fn unlimited() -> Self {
        Self {
            rate: None,
            burst: 0,
            tokens: 0,
            last: Instant::now(),
        }
    }

    /// At most `rate` bytes per second on average (0: no limit).
    pub fn per_second(rate: u64) -> Self {
        if rate == 0 {
            return Self::unlimited();
        }
        let burst = (rate / 10).max(16 << 10);
        Self {
            rate: Some(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, rate: u64) {
        let now = Instant::now();
        let earned = (now.duration_since(self.last).as_secs_f64() * rate as f64) as u64;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            self.last = now;
        }
    }

    /// Waits until some of `want` bytes may move and returns how many (at least 1 when `want`
    /// is, at most `want`). Call [`spend`](Pace::spend) with what actually moved.
    pub async fn grant(&mut self, want: usize) -> usize {
        let Some(rate) = self.rate else {
            return want;
        };
        loop {
            self.refill(rate);
            if self.tokens > 0 || want == 0 {
                return want.min(usize::try_from(self.tokens).unwrap_or(usize::MAX));
            }
            let need = (want as u64).min(self.burst);
            tokio::time::sleep(Duration::from_secs_f64(need as f64 / rate as f64)).await;
        }
    }

    /// Records `n` bytes moved.
    pub fn spend(&mut self, n: usize) {
        if self.rate.is_some() {
            self.tokens = self.tokens.saturating_sub(n as u64);
        }
    }
}

/// Why a copy stopped, with how many bytes it had moved by then.
#[derive(Debug, Error)]
pub enum CopyError {
    /// The socket side failed (reset, stalled beyond the timeout, ...).
    #[error("network error after {moved} bytes")]
    Network {
        /// Bytes moved before the failure.
        moved: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The local side (file, standard output) failed.
    #[error("local I/O error after {moved} bytes")]
    Local {
        /// Bytes moved before the failure.
        moved: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl CopyError {
    /// Bytes moved before the failure.
    pub fn moved(&self) -> u64 {
        match self {
            Self::Network { moved, .. } | Self::Local { moved, .. } => *moved,
        }
    }
}

fn joined<T>(r: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    r.unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Reads until `buf` is full or the reader ends; returns the count and whether it ended.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

/// Copies `file` from its current position to its end into `out`, then flushes `out`. Reads
/// run on the blocking pool, one chunk ahead of the writes. Fails when `out` accepts nothing
/// for `stall`; moves no faster than `pace`. Returns the bytes written.
pub async fn file_to_stream<F, W>(
    file: F,
    out: &mut W,
    stall: Duration,
    mut pace: Pace,
) -> Result<u64, CopyError>
where
    F: Read + Send + 'static,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut out = Watchdog::new(out, stall);
    let lease = BUDGET.lease();
    let chunk = lease.size();
    let read = move |mut f: F, mut buf: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            buf.resize(chunk, 0);
            let (n, eof) = fill(&mut f, &mut buf)?;
            buf.truncate(n);
            Ok::<_, io::Error>((f, buf, eof))
        })
    };
    let mut moved = 0u64;
    let mut next = Some(read(file, Vec::with_capacity(chunk)));
    let mut spare = Vec::new();
    while let Some(pending) = next.take() {
        let (f, buf, eof) =
            joined(pending.await).map_err(|source| CopyError::Local { moved, source })?;
        if !eof {
            next = Some(read(f, std::mem::take(&mut spare)));
        }
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let n = pace.grant(rest.len()).await;
            out.write_all(&rest[..n])
                .await
                .map_err(|source| CopyError::Network { moved, source })?;
            pace.spend(n);
            moved += n as u64;
            rest = &rest[n..];
        }
        spare = buf;
    }
    out.flush()
        .await
        .map_err(|source| CopyError::Network { moved, source })?;
    Ok(moved)
}

/// Copies `input` to its end into `writer` (then flushes it), calling `progress` with each
/// count of bytes read. Writes run on the blocking pool, one chunk behind the reads. Fails
/// when `input` delivers nothing for `stall`; reads no faster than `pace`. Whatever was read
/// before a network failure is still written, so a resumable `.part` holds every byte that
/// arrived. Returns the bytes written.
pub async fn stream_to_writer<R, W>(
    input: R,
    writer: W,
    stall: Duration,
    mut pace: Pace,
    mut progress: impl FnMut(u64),
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin,
    W: Write + Send + 'static,
{
    let mut input = Watchdog::new(input, stall);
    type Pending<W> = tokio::task::JoinHandle<io::Result<(W, Vec<u8>)>>;
    // The last chunk's task also flushes: one hand-off to the blocking pool less per copy,
    // which is most of a small file's local cost (mirror fetches thousands of them).
    let write = |mut w: W, chunk: Vec<u8>, flush: bool| -> Pending<W> {
        tokio::task::spawn_blocking(move || {
            for piece in chunk.chunks(WRITE_SLICE) {
                w.write_all(piece)?;
            }
            if flush {
                w.flush()?;
            }
            Ok((w, chunk))
        })
    };
    let mut flushed = false;
    let mut written = 0u64;
    let mut writer = Some(writer);
    let mut pending: Option<(Pending<W>, u64)> = None;
    let lease = BUDGET.lease();
    let chunk = lease.size();
    let mut buf = vec![0u8; chunk];
    let mut failure = None;
    loop {
        let mut filled = 0;
        let mut eof = false;
        while filled < chunk {
            let allowed = pace.grant(chunk - filled).await;
            match input.read(&mut buf[filled..filled + allowed]).await {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    pace.spend(n);
                    filled += n;
                    progress(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut spare = Vec::new();
        if let Some((h, n)) = pending.take() {
            let (w, b) = joined(h.await).map_err(|source| CopyError::Local {
                moved: written,
                source,
            })?;
            written += n;
            writer = Some(w);
            spare = b;
        }
        if filled > 0 {
            let w = writer
                .take()
                .expect("the writer is back once its write is done");
            buf.truncate(filled);
            flushed = eof && failure.is_none();
            pending = Some((write(w, std::mem::take(&mut buf), flushed), filled as u64));
        }
        if eof || failure.is_some() {
            break;
        }
        buf = spare;
        buf.resize(chunk, 0);
    }
    if let Some((h, n)) = pending.take() {
        let (w, _) = joined(h.await).map_err(|source| CopyError::Local {
            moved: written,
            source,
        })?;
        written += n;
        writer = Some(w);
    }
    if let Some(source) = failure {
        return Err(CopyError::Network {
            moved: written,
            source,
        });
    }
    if let Some(mut w) = writer.filter(|_| !flushed) {
        joined(tokio::task::spawn_blocking(move || w.flush()).await).map_err(|source| {
            CopyError::Local {
                moved: written,
                source,
            }
        })?;
    }
    Ok(written)
}

/// Largest count one sendfile(2) call may move (Linux caps it at 0x7ffff000).
#[cfg(target_os = "linux")]
const MAX_SENDFILE_CHUNK: u64 = 0x7fff_f000;

/// Sends bytes `offset .. offset + length` of `file` to `stream`. Fails if the socket accepts
/// nothing for `stall` (a peer that stopped reading), or if the file turns out shorter than
/// `offset + length` (it shrank since it was opened).
#[cfg(target_os = "linux")]
pub async fn send_file_range(
    stream: &tokio::net::TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    length: u64,
    stall: Duration,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let sock = stream.as_raw_fd();
    let fd = file.as_raw_fd();
    let end = offset + length;
    while offset < end {
        let count = (end - offset).min(MAX_SENDFILE_CHUNK) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut off = offset as libc::off_t;
            // SAFETY: both descriptors are open for the duration of the call (we hold borrows of
            // their owners) and `off` is a valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(sock, fd, &mut off, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file ended at byte {offset}, {} bytes short: it shrank while being sent",
                        end - offset
                    ),
                ));
            }
            Ok(n) => offset += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall, stream.writable())
                    .await
                    .map_err(|_| stalled(stall))??;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Portable fallback of [`send_file_range`]: a buffered copy of the range.
#[cfg(not(target_os = "linux"))]
pub async fn send_file_range(
    stream: &tokio::net::TcpStream,
    file: &std::fs::File,
    offset: u64,
    length: u64,
    stall: Duration,
) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    let mut s = stream;
    let sent = file_to_stream(f.take(length), &mut s, stall, Pace::unlimited())
        .await
        .map_err(|e| match e {
            CopyError::Network { source, .. } | CopyError::Local { source, .. } => source,
        })?;
    if sent < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being sent",
        ));
    }
    Ok(())
}

/// How [`send_range`] moves a file range to a socket.
///
/// Chosen by measurement (docs/benchmarks.md, "One data path"): on this suite's 2-core test
/// machine sendfile was as fast or faster than the buffered copy even to a loopback peer
/// (1 GiB: 5.2 against 4.2 GB/s, iperf3 5.8 GB/s, same run), and on a real network it saves the
/// server a copy per byte; so sendfile wherever it is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// sendfile(2): page cache to socket inside the kernel, no copy through user space. Needs
    /// the plain TCP socket (not TLS) and no rate limit.
    Sendfile,
    /// [`file_to_stream`]: 1 MiB reads on the blocking pool overlapped with the socket writes.
    /// For TLS, for rate-limited transfers, and for writers that hide their socket (libunftp's).
    Buffered,
}

/// A socket that [`send_range`] can write a file range to: any async stream, and, when it is
/// a plain TCP socket, that socket, so that sendfile(2) can be used.
pub trait DataSocket: AsyncWrite + Unpin {
    /// The plain TCP socket underneath, if the stream is one (not TLS, not a wrapper).
    fn tcp(&self) -> Option<&tokio::net::TcpStream>;
}

impl DataSocket for tokio::net::TcpStream {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }
}

/// Any async stream as a [`DataSocket`] without a TCP socket underneath (a TLS stream, the
/// writer libunftp hands to a storage back-end): [`send_range`] then always copies.
#[derive(Debug)]
pub struct Opaque<'a, W: ?Sized>(pub &'a mut W);

impl<W: AsyncWrite + Unpin + ?Sized> AsyncWrite for Opaque<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

impl<W: AsyncWrite + Unpin + ?Sized> DataSocket for Opaque<'_, W> {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }
}

/// The strategy [`send_range`] uses for `out` at `pace`: [`Strategy::Sendfile`] when possible
/// (a plain TCP socket, no rate limit, Linux), else [`Strategy::Buffered`].
pub fn strategy_for<S: DataSocket + ?Sized>(out: &S, pace: &Pace) -> Strategy {
    if cfg!(target_os = "linux") && out.tcp().is_some() && pace.rate.is_none() {
        Strategy::Sendfile
    } else {
        Strategy::Buffered
    }
}

/// The one way the suite's servers send a file: bytes `offset ..` of `file` (`length` of them,
/// or to the end when `None`) to `out`, with the [`strategy_for`] this socket and pace.
/// Fails when `out` accepts nothing for `stall`; moves no faster than `pace`; a file that turns
/// out shorter than `offset + length` (it shrank since it was opened) is a
/// [`CopyError::Local`] of kind [`io::ErrorKind::UnexpectedEof`]. Returns the bytes sent.
pub async fn send_range<S: DataSocket + ?Sized>(
    file: std::fs::File,
    offset: u64,
    length: Option<u64>,
    out: &mut S,
    stall: Duration,
    pace: Pace,
) -> Result<u64, CopyError> {
    let strategy = strategy_for(out, &pace);
    send_range_with(strategy, file, offset, length, out, stall, pace).await
}

/// [`send_range`] with the strategy given (for measurements; [`Strategy::Sendfile`] falls back
/// to a copy where it is not possible).
pub async fn send_range_with<S: DataSocket + ?Sized>(
    strategy: Strategy,
    file: std::fs::File,
    offset: u64,
    length: Option<u64>,
    out: &mut S,
    stall: Duration,
    pace: Pace,
) -> Result<u64, CopyError> {
    let local = |source| CopyError::Local { moved: 0, source };
    #[cfg(target_os = "linux")]
    if let (Strategy::Sendfile, Some(sock)) = (strategy, out.tcp()) {
        let length = match length {
            Some(n) => n,
            None => file.metadata().map_err(local)?.len().saturating_sub(offset),
        };
        return send_file_range(sock, &file, offset, length, stall)
            .await
            .map(|()| length)
            .map_err(|source| {
                // send_file_range does not count what it moved before a failure.
                if source.kind() == io::ErrorKind::UnexpectedEof {
                    CopyError::Local { moved: 0, source }
                } else {
                    CopyError::Network { moved: 0, source }
                }
            });
    }
    let _ = strategy;
    let mut file = file;
    if offset > 0 {
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(offset)).map_err(local)?;
    }
    let sent = match length {
        Some(n) => file_to_stream(file.take(n), out, stall, pace).await?,
        None => file_to_stream(file, out, stall, pace).await?,
    };
    match length {
        Some(n) if sent < n => Err(CopyError::Local {
            moved: sent,
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "file ended at byte {}, {} bytes short: it shrank while being sent",
                    offset + sent,
                    n - sent
                ),
            ),
        }),
        _ => Ok(sent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A writer that takes a few bytes at a time, slowly, like a peer on a slow link.
    struct Trickle {
        per_write: usize,
        pause: Duration,
        got: Vec<u8>,
        sleep: Option<Pin<Box<Sleep>>>,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let pause = self.pause;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            let n = buf.len().min(self.per_write);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The old bug: the timeout wrapped a whole 1 MiB write, so a peer slower than 1 MiB per
    /// timeout was cut although bytes kept moving. Here 64 KiB move every 10 s of (paused)
    /// time against a 30 s stall timeout: the 1 MiB chunk takes 160 s and must get through.
    #[tokio::test(start_paused = true)]
    async fn slow_but_moving_transfers_are_not_cut() {
        let data: Vec<u8> = (0..CHUNK + 10).map(|i| (i % 251) as u8).collect();
        let mut out = Trickle {
            per_write: 64 << 10,
            pause: Duration::from_secs(10),
            got: Vec::new(),
            sleep: None,
        };
        let n = file_to_stream(
            io::Cursor::new(data.clone()),
            &mut out,
            Duration::from_secs(30),
            Pace::unlimited(),
        )
        .await
        .expect("a live peer is never cut");
        assert_eq!(n, data.len() as u64);
        assert_eq!(out.got, data);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_cut_after_the_stall() {
        let mut out = Trickle {
            per_write: 1,
            pause: Duration::from_secs(31),
            got: Vec::new(),
            sleep: None,
        };
        let start = Instant::now();
        let e = file_to_stream(
            io::Cursor::new(vec![1u8; 10]),
            &mut out,
            Duration::from_secs(30),
            Pace::unlimited(),
        )
        .await
        .expect_err("31 s without a byte");
        assert!(
            matches!(&e, CopyError::Network { moved: 0, source } if source.kind() == io::ErrorKind::TimedOut),
            "{e}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[test]
    fn large_buffers_until_the_budget_is_spent_then_small_ones() {
        let budget = Budget::new(4 * CHUNK);
        let a = budget.lease();
        let b = budget.lease();
        let c = budget.lease();
        assert_eq!((a.size(), b.size(), c.size()), (CHUNK, CHUNK, SMALL_CHUNK));
        drop(a);
        let d = budget.lease();
        assert_eq!(d.size(), CHUNK, "a returned share is reused");
        drop((b, c, d));
        assert_eq!(budget.in_use.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_copy_moves_at_the_rate_in_both_directions() {
        // 1 MiB at 256 KiB/s: about 4 s of (paused) time, whichever way the bytes go.
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 249) as u8).collect();
        let start = Instant::now();
        let mut out = Vec::new();
        let n = file_to_stream(
            io::Cursor::new(data.clone()),
            &mut out,
            Duration::from_secs(5),
            Pace::per_second(256 << 10),
        )
        .await
        .unwrap();
        let took = start.elapsed();
        assert_eq!((n, out == data), (data.len() as u64, true));
        assert!(
            took >= Duration::from_millis(3800) && took <= Duration::from_millis(4200),
            "{took:?}"
        );

        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("in")).unwrap();
        let n = stream_to_writer(
            &data[..],
            file,
            Duration::from_secs(5),
            Pace::per_second(256 << 10),
            |_| {},
        )
        .await
        .unwrap();
        let took = start.elapsed();
        assert_eq!(n, data.len() as u64);
        assert!(
            took >= Duration::from_millis(3800) && took <= Duration::from_millis(4200),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn stream_to_writer_keeps_every_byte_read_before_a_failure() {
        let (mut tx, rx) = tokio::io::duplex(64 << 10);
        let data: Vec<u8> = (0..(3 * CHUNK / 2)).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let feeder = tokio::spawn(async move {
            tx.write_all(&sent).await.unwrap();
            // Dropping `tx` ends the stream: a clean end here.
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).unwrap();
        let mut seen = 0u64;
        let n = stream_to_writer(rx, file, Duration::from_secs(5), Pace::unlimited(), |k| {
            seen += k
        })
        .await
        .unwrap();
        feeder.await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen, n);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[tokio::test(start_paused = true)]
    async fn stream_to_writer_writes_what_arrived_before_a_stall() {
        let (mut tx, rx) = tokio::io::duplex(64 << 10);
        tx.write_all(b"first bytes").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).unwrap();
        let e = stream_to_writer(rx, file, Duration::from_secs(5), Pace::unlimited(), |_| {})
            .await
            .expect_err("the sender went quiet with the stream open");
        drop(tx);
        assert!(
            matches!(&e, CopyError::Network { moved: 11, source } if source.kind() == io::ErrorKind::TimedOut),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"first bytes");
    }

    #[test]
    fn copy_errors_name_their_cause_once() {
        use std::error::Error;
        let e = CopyError::Network {
            moved: 7,
            source: io::Error::new(io::ErrorKind::TimedOut, "THE-CAUSE"),
        };
        assert!(!e.to_string().contains("THE-CAUSE"), "{e}");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("THE-CAUSE")
        );
    }

    #[tokio::test]
    async fn local_write_errors_are_told_apart() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = stream_to_writer(
            &b"abc"[..],
            Full,
            Duration::from_secs(5),
            Pace::unlimited(),
            |_| {},
        )
        .await
        .expect_err("disk full");
        assert!(matches!(e, CopyError::Local { moved: 0, .. }), "{e}");
    }

    /// Both strategies of the one data path send the same range, and both notice a file that is
    /// shorter than the range asked for.
    #[tokio::test]
    async fn send_range_sends_the_same_bytes_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 239) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        for strategy in [Strategy::Sendfile, Strategy::Buffered] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                got
            });
            let (mut sock, _) = listener.accept().await.unwrap();
            let stall = Duration::from_secs(5);
            let open = || std::fs::File::open(&path).unwrap();
            let n = send_range_with(
                strategy,
                open(),
                7,
                Some(2_000_000),
                &mut sock,
                stall,
                Pace::unlimited(),
            )
            .await
            .unwrap();
            assert_eq!(n, 2_000_000, "{strategy:?}");
            let n = send_range_with(
                strategy,
                open(),
                2_999_000,
                None,
                &mut sock,
                stall,
                Pace::unlimited(),
            )
            .await
            .unwrap();
            assert_eq!(n, 1000, "{strategy:?}: to the end");
            let e = send_range_with(
                strategy,
                open(),
                2_999_990,
                Some(100),
                &mut sock,
                stall,
                Pace::unlimited(),
            )
            .await
            .expect_err("only 10 bytes are left");
            assert!(
                matches!(&e, CopyError::Local { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof),
                "{strategy:?}: {e}"
            );
            drop(sock);
            let got = reader.await.unwrap();
            assert_eq!(&got[..2_000_000], &data[7..2_000_007], "{strategy:?}");
            assert_eq!(
                &got[2_000_000..2_001_000],
                &data[2_999_000..],
                "{strategy:?}"
            );
            assert_eq!(&got[2_001_000..], &data[2_999_990..], "{strategy:?}");
        }
    }

    #[tokio::test]
    async fn sendfile_only_for_a_plain_unpaced_tcp_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sock = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let want = if cfg!(target_os = "linux") {
            Strategy::Sendfile
        } else {
            Strategy::Buffered
        };
        assert_eq!(strategy_for(&sock, &Pace::unlimited()), want);
        assert_eq!(
            strategy_for(&sock, &Pace::per_second(1 << 20)),
            Strategy::Buffered
        );
        assert_eq!(
            strategy_for(&Opaque(&mut sock), &Pace::unlimited()),
            Strategy::Buffered
        );
    }

    #[tokio::test]
    async fn sendfile_sends_the_range_and_notices_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let (sock, _) = listener.accept().await.unwrap();
        let file = std::fs::File::open(&path).unwrap();
        send_file_range(&sock, &file, 1000, 200_000, Duration::from_secs(5))
            .await
            .unwrap();
        let e = send_file_range(&sock, &file, 299_990, 100, Duration::from_secs(5))
            .await
            .expect_err("only 10 bytes are left");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        drop(sock);
        let got = reader.await.unwrap();
        assert_eq!(&got[..200_000], &data[1000..201_000]);
        assert_eq!(&got[200_000..], &data[299_990..]);
    }
}
