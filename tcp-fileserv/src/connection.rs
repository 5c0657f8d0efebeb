//! The server's one adapter between a TCP socket and the protocol: a [`Connection`] owns the
//! stream and its read buffer, cuts requests out of the buffer with the pure decoder in
//! [`crate::protocol`], writes replies, and applies the timeouts. The server above it never
//! touches bytes; the codec below it never touches sockets (mini-redis's `connection.rs` over
//! `frame.rs` is the model).
//!
//! Timeouts: between requests a connection may stay silent for the idle timeout; once a request
//! has begun, or while a reply is written, the I/O timeout bounds how long **no byte** may move.
//! A slow peer that keeps moving is never cut (the write is watched by
//! [`filexfer::datapath::Watchdog`], not wrapped in one deadline).

use std::fs::File;
use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use filexfer::datapath::{CopyError, Pace, Watchdog, send_range};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, DecodeError, HEADER_LEN, MAX_NAME_LEN, Request, Status};

/// What [`Connection::read_request`] found.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed request.
    Request(Request),
    /// A whole request whose name does not decode (not UTF-8). The frame was consumed, so the
    /// connection can answer and go on with the next request.
    BadName {
        /// The name as received, lossily decoded, for the log.
        shown: String,
        /// Why it was refused.
        error: DecodeError,
    },
}

/// Why no further request can be read from a connection.
#[derive(Debug, Error)]
pub enum ConnectionError {
    /// Nothing arrived between requests for the idle timeout.
    #[error("idle timeout")]
    Idle,
    /// A request began but did not complete within the I/O timeout.
    #[error("timed out reading a request")]
    Stalled,
    /// The peer closed in the middle of a request.
    #[error("closed in the middle of a request")]
    Truncated,
    /// The header cannot be decoded, so nothing after it can be framed. The caller should answer
    /// with [`Connection::refuse_and_close`].
    #[error("bad header: {0}")]
    BadHeader(#[source] DecodeError),
    /// The socket failed.
    #[error("reading a request: {0}")]
    Io(#[source] io::Error),
}

/// One client's connection, as the server sees it.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    idle_timeout: Duration,
    io_timeout: Duration,
}

impl Connection {
    /// Wraps an accepted stream.
    pub fn new(stream: TcpStream, idle_timeout: Duration, io_timeout: Duration) -> Self {
        // Nagle would hold back the last segment of a reply until the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            // Room for the largest request, so reading one never reallocates.
            buffer: BytesMut::with_capacity(HEADER_LEN + MAX_NAME_LEN),
            idle_timeout,
            io_timeout,
        }
    }

    /// Reads the next request. `Ok(None)` when the peer closed cleanly between requests, or
    /// `cancel` fired while no request had begun (a request under way is read to its end).
    /// Requests sent ahead (pipelined) stay in the buffer for the next call.
    pub async fn read_request(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<Incoming>, ConnectionError> {
        loop {
            if let Some((header, name)) =
                protocol::split_request(&self.buffer).map_err(ConnectionError::BadHeader)?
            {
                let used = HEADER_LEN + name.len();
                let incoming = match protocol::decode_name(name) {
                    Ok(name) => Incoming::Request(Request {
                        kind: header.kind,
                        name,
                        offset: header.offset,
                        escaped: header.escaped,
                    }),
                    Err(error) => Incoming::BadName {
                        shown: String::from_utf8_lossy(name).into_owned(),
                        error,
                    },
                };
                self.buffer.advance(used);
                return Ok(Some(incoming));
            }
            let between_requests = self.buffer.is_empty();
            let limit = if between_requests {
                self.idle_timeout
            } else {
                self.io_timeout
            };
            let read = timeout(limit, self.stream.read_buf(&mut self.buffer));
            let read = if between_requests {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(None),
                    r = read => r,
                }
            } else {
                read.await
            };
            match read {
                Ok(Ok(0)) if between_requests => return Ok(None),
                Ok(Ok(0)) => return Err(ConnectionError::Truncated),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ConnectionError::Io(e)),
                Err(_) if between_requests => return Err(ConnectionError::Idle),
                Err(_) => return Err(ConnectionError::Stalled),
            }
        }
    }

    /// Writes an encoded reply (header and body). Fails when the peer accepts no byte for the
    /// I/O timeout.
    pub async fn write_reply(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = Watchdog::new(&mut self.stream, self.io_timeout)
            .write_all(bytes)
            .await;
        self.reset_if_stalled(written)
    }

    /// Writes an error reply.
    pub async fn send_error(&mut self, status: Status, message: &str) -> io::Result<()> {
        self.write_reply(&protocol::encode_error(status, message))
            .await
    }

    /// Writes a success header for `length` bytes, then bytes `offset..offset + length` of
    /// `file` through the suite's one data path, [`send_range`] (ftp-server's too): here
    /// sendfile(2), as the socket is a plain TCP socket (see [`filexfer::datapath::Strategy`]).
    pub async fn send_file(&mut self, file: File, offset: u64, length: u64) -> io::Result<()> {
        self.write_reply(&protocol::encode_ok(length)).await?;
        let sent = send_range(
            file,
            offset,
            Some(length),
            &mut self.stream,
            self.io_timeout,
            Pace::unlimited(),
        )
        .await
        .map(drop)
        .map_err(|(CopyError::Network { source, .. } | CopyError::Local { source, .. })| source);
        self.reset_if_stalled(sent)
    }

    /// Answers a request whose header broke the framing, then closes our side: nothing that
    /// follows on this connection can be trusted to be a request.
    pub async fn refuse_and_close(mut self, error: &DecodeError) {
        let status = match error {
            DecodeError::UnsupportedVersion(_) => Status::UnsupportedVersion,
            _ => Status::BadRequest,
        };
        if self
            .send_error(status, &format!("bad request: {error}"))
            .await
            .is_ok()
        {
            let _ = self.stream.shutdown().await;
        }
    }

    /// Turns away a connection the server has no room for: a "busy" reply, then a close, all
    /// within `linger`.
    pub async fn turn_away(mut stream: TcpStream, linger: Duration) {
        let msg = protocol::encode_error(
            Status::Busy,
            "server busy: too many connections, try again later",
        );
        let _ = timeout(linger, async {
            let _ = stream.write_all(&msg).await;
            let _ = stream.shutdown().await;
            // Drain what the client sent so closing does not turn into a reset that could
            // destroy the reply before the client reads it.
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    /// A peer that stopped reading is dropped with a reset rather than a FIN: the kernel then
    /// frees the unsent bytes at once instead of holding them (and retrying a zero window) for
    /// minutes after we closed, which a crowd of stalled peers could use to pin server memory.
    fn reset_if_stalled<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::TimedOut) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Kind, encode_request};
    use tokio::net::TcpListener;

    async fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let conn = Connection::new(server, Duration::from_secs(5), Duration::from_secs(5));
        (conn, client)
    }

    fn get(name: &str) -> Request {
        Request {
            kind: Kind::Get,
            name: name.into(),
            offset: 3,
            escaped: false,
        }
    }

    async fn next(c: &mut Connection) -> Option<Incoming> {
        c.read_request(&CancellationToken::new()).await.unwrap()
    }

    #[tokio::test]
    async fn requests_split_across_writes_or_pipelined_are_read_one_by_one() {
        let (mut conn, mut client) = pair().await;
        let mut bad = encode_request(&get("xy")).unwrap();
        bad[HEADER_LEN] = 0xff;
        let bytes = [
            encode_request(&get("a b")).unwrap(),
            bad,
            encode_request(&get("ünï")).unwrap(),
        ]
        .concat();
        // One byte at a time: every partial frame must wait for more.
        let writer = tokio::spawn(async move {
            for b in bytes {
                client.write_all(&[b]).await.unwrap();
            }
            client
        });
        assert!(matches!(next(&mut conn).await, Some(Incoming::Request(r)) if r == get("a b")));
        assert!(matches!(
            next(&mut conn).await,
            Some(Incoming::BadName {
                error: DecodeError::NameNotUtf8,
                ..
            })
        ));
        assert!(matches!(next(&mut conn).await, Some(Incoming::Request(r)) if r == get("ünï")));
        drop(writer.await.unwrap());
        assert!(next(&mut conn).await.is_none(), "a clean close");
    }

    #[tokio::test]
    async fn a_bad_header_and_a_close_mid_request_are_errors() {
        let (mut conn, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let e = conn.read_request(&CancellationToken::new()).await;
        assert!(
            matches!(e, Err(ConnectionError::BadHeader(DecodeError::BadMagic(_)))),
            "{e:?}"
        );

        let (mut conn, mut client) = pair().await;
        client
            .write_all(&encode_request(&get("f")).unwrap()[..7])
            .await
            .unwrap();
        drop(client);
        let e = conn.read_request(&CancellationToken::new()).await;
        assert!(matches!(e, Err(ConnectionError::Truncated)), "{e:?}");
    }

    #[tokio::test]
    async fn shutdown_ends_an_idle_connection() {
        let (mut conn, _client) = pair().await;
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(conn.read_request(&cancel).await.unwrap().is_none());
    }
}
