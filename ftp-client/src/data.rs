//! The one data-connection helper every operation goes through (RFC 959 §3.2-§3.3): open a
//! passive data connection, send the command that uses it (after `REST` when resuming, RFC 3659
//! §5), hand the stream to the operation, then read the completion reply and check the byte
//! count, which suppaftp's `TransferStream::finish` does not (it reports success after a short
//! read).
//!
//! The data timeout means what docs/ftp-client.md says: a transfer fails when **no byte moved**
//! for `--timeout`, in either direction; a slow transfer that keeps moving is never cut. The
//! copies run under [`filexfer::datapath::Watchdog`]; after an upload, the wait for the
//! completion reply does not count while the kernel is still sending what was written.
//!
//! Every data connection is opened *armed* to be reset: `SO_LINGER` 0 from the moment it
//! connects, so that closing it sends an RST, not a FIN, until the transfer is known to be
//! complete ([`settle`]). In stream mode the close of the data connection *is* the end of file
//! (RFC 959 §3.4.1): a FIN after an upload cut by a stall, a local error, a dropped future
//! (Ctrl-C drops the operation) or a killed process (the kernel closes its sockets with the
//! same option) would tell the server the file is complete. With an RST the server reads ECONNRESET and knows it is not.

use std::future::Future;
use std::io;
use std::time::Duration;

use filexfer::datapath::CopyError;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::error::{ClientError, Step};
use crate::session::Session;
use crate::tls::DataConn;

/// One transfer over a data connection: its command, its argument and the remote path that
/// messages name.
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    command: &'static str,
    arg: Option<&'a str>,
    path: &'a str,
    rest: Option<u64>,
}

impl<'a> Transfer<'a> {
    /// `command` (RETR, LIST, MLSD, STOR, APPE) with `arg`, about `path` in messages.
    pub fn new(command: &'static str, arg: Option<&'a str>, path: &'a str) -> Self {
        Self {
            command,
            arg,
            path,
            rest: None,
        }
    }

    /// Sends `REST offset` before the command when `offset` is not 0 (a resumed RETR).
    pub fn resume_at(self, offset: u64) -> Self {
        Self {
            rest: (offset > 0).then_some(offset),
            ..self
        }
    }

    fn is_upload(&self) -> bool {
        matches!(self.command, "STOR" | "APPE")
    }

    /// Opens the data connection, then sends the command; returns the data stream once the
    /// server answered 1xx (RFC 959 §5.4: 125 or 150). The connection is opened before the
    /// command, as curl does, so that a data port nobody can reach fails as a connect error
    /// (7) before the server starts a transfer.
    pub async fn start(&self, s: &mut Session) -> Result<DataConn, ClientError> {
        let addr = s.passive_address().await?;
        s.trace(|| format!("* data connection to {addr}"));
        let data = match tokio::time::timeout(s.timeout(), TcpStream::connect(addr)).await {
            Ok(Ok(d)) => d,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    what: "data port",
                    addr: addr.to_string(),
                    source,
                });
            }
            Err(_) => return Err(s.timeout_err(format!("connecting to the data port {addr}"))),
        };
        // Armed: any close from now until `settle` is a reset (see the module docs).
        let _ = data.set_zero_linger();
        if let Some(offset) = self.rest {
            let r = s.command(&format!("REST {offset}")).await?;
            if r.code != 350 {
                let step = Step::Rest {
                    path: self.path,
                    offset,
                };
                return Err(s.refused(step, &r));
            }
        }
        let line = match self.arg {
            Some(a) => format!("{} {a}", self.command),
            None => self.command.to_string(),
        };
        let r = s.command(&line).await?;
        if r.is_preliminary() {
            // PROT P: the TLS handshake once the server has answered 1xx (RFC 4217 §9).
            return s.secure_data(data).await;
        }
        let step = if self.is_upload() {
            Step::Store { path: self.path }
        } else {
            Step::Read {
                command: self.command,
                path: self.path,
            }
        };
        Err(s.refused(step, &r))
    }

    /// The error for a copy that stopped after `before` (a resumed prefix) plus what it moved,
    /// of `expected` bytes; `local` names a local-side failure.
    pub fn copy_failed(
        &self,
        s: &Session,
        e: CopyError,
        before: u64,
        expected: Option<u64>,
        local: impl FnOnce(io::Error) -> ClientError,
    ) -> ClientError {
        match e {
            CopyError::Local { source, .. } => local(source),
            CopyError::Network { moved, source } if source.kind() == io::ErrorKind::TimedOut => {
                let doing = if self.is_upload() {
                    "sending data of"
                } else {
                    "waiting for data of"
                };
                s.timeout_err(format!(
                    "{doing} {:?} after {} bytes",
                    self.path,
                    before + moved
                ))
            }
            CopyError::Network { moved, source } => ClientError::partial(
                &s.host,
                self.path,
                before + moved,
                expected,
                source.to_string(),
            ),
        }
    }

    /// Reads the completion reply once the data connection is done, and checks that `got`
    /// bytes (a resumed prefix included) reached `expected`. `sending` is an upload's data
    /// socket, shut down but not yet closed: while its send queue still shrinks, bytes are
    /// moving and the wait is not a stall.
    pub async fn finish(
        &self,
        s: &mut Session,
        got: u64,
        expected: Option<u64>,
        sending: Option<&TcpStream>,
    ) -> Result<(), ClientError> {
        let stall = s.timeout();
        let reply = unless_stalled(s.read_reply_untimed(self.command), stall, sending).await;
        let reply = match reply {
            Some(Ok(r)) => r,
            // The control connection broke after the data: the transfer may not be complete.
            Some(Err(e)) => {
                return Err(ClientError::partial(
                    &s.host,
                    self.path,
                    got,
                    expected,
                    e.with_causes(),
                ));
            }
            None => return Err(s.timeout_err(format!("waiting for the end of {}", self.command))),
        };
        if !reply.is_ok() {
            let step = Step::Completion {
                command: self.command,
                path: self.path,
                got,
                expected,
            };
            return Err(s.refused(step, &reply));
        }
        match expected {
            Some(n) if got < n => Err(ClientError::partial(
                &s.host,
                self.path,
                got,
                expected,
                format!(
                    "the server said {:?} but the data stopped short",
                    reply.one_line()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The transfer on `data` is complete (its end of file seen, or the server's 2xx read after an
/// upload): a close from now on is an ordinary FIN, no longer the reset that marks an abort.
pub fn settle(data: &DataConn) {
    let _ = socket2::SockRef::from(data.tcp()).set_linger(None);
}

/// After all the bytes SIZE announced have arrived, whether the data connection ends there:
/// `Ok(false)` when the server sends more. One byte is read, so an endless stream is never
/// buffered; nothing moving for `stall` is a [`io::ErrorKind::TimedOut`] error.
pub async fn ends_here(data: &mut (impl AsyncRead + Unpin), stall: Duration) -> io::Result<bool> {
    let mut one = [0u8; 1];
    match tokio::time::timeout(stall, data.read(&mut one)).await {
        Ok(r) => r.map(|n| n == 0),
        Err(_) => Err(filexfer::datapath::stalled(stall)),
    }
}

/// Runs `fut` to its end, or gives up (`None`) once `stall` passes in which nothing moved:
/// with `sending`, a socket whose send queue shrank during the last `stall` counts as moving.
async fn unless_stalled<T>(
    fut: impl Future<Output = T>,
    stall: Duration,
    sending: Option<&TcpStream>,
) -> Option<T> {
    tokio::pin!(fut);
    let mut queued = sending.and_then(unsent);
    loop {
        tokio::select! {
            r = &mut fut => return Some(r),
            () = tokio::time::sleep(stall) => {
                let now = sending.and_then(unsent);
                match (queued, now) {
                    (Some(before), Some(n)) if n < before => queued = now,
                    _ => return None,
                }
            }
        }
    }
}

/// Bytes written to `sock` that the peer has not acknowledged yet (Linux `SIOCOUTQ`).
#[cfg(target_os = "linux")]
fn unsent(sock: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: the descriptor stays open for the call (we borrow its owner), and TIOCOUTQ (the
    // same request as SIOCOUTQ on sockets) writes one c_int through the pointer, which is valid
    // and exclusively borrowed.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (rc == 0).then(|| u64::try_from(n).unwrap_or(0))
}

/// Elsewhere the send queue is not observed: the reply wait is a plain timeout.
#[cfg(not(target_os = "linux"))]
fn unsent(_: &TcpStream) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback connection: our end and the peer's.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        (sock, peer)
    }

    #[tokio::test]
    async fn a_wait_with_nothing_moving_gives_up_after_the_stall() {
        let stall = Duration::from_millis(50);
        assert_eq!(unless_stalled(async { 7 }, stall, None).await, Some(7));
        let start = std::time::Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(unless_stalled(never, stall, None).await, None);
        assert!(start.elapsed() >= stall);
    }

    #[tokio::test]
    async fn a_socket_that_sent_everything_is_not_moving() {
        let (sock, _peer) = connected().await;
        assert_eq!(unsent(&sock).unwrap_or(0), 0);
        let never = std::future::pending::<()>();
        let stall = Duration::from_millis(50);
        assert_eq!(unless_stalled(never, stall, Some(&sock)).await, None);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_send_queue_is_seen_while_the_peer_does_not_read() {
        let (sock, _peer) = connected().await;
        let chunk = vec![0u8; 64 << 10];
        // Bounded: the peer never reads, so the buffers fill within some MiB.
        for _ in 0..4096 {
            if sock.try_write(&chunk).is_err() {
                break;
            }
        }
        assert!(unsent(&sock).is_some_and(|n| n > 0), "{:?}", unsent(&sock));
    }
}
