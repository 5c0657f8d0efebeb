//! The client: one connection that can carry several requests, blocking I/O with a timeout on
//! every wait, large reads, and downloads through [`filexfer::download`], so they land
//! atomically (`<file>.part`, then rename) and never destroy an existing file.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use filexfer::download::{Download, DownloadError, Output};
use filexfer::progress::{Progress, Summary};
use filexfer::text::printable;
use thiserror::Error;

use crate::config::HostPort;
use crate::exit_codes::ExitCode;
use crate::protocol::{self, DecodeError, Entry, HEADER_LEN, Kind, Request, Status};

/// Size of the receive buffer (capped at the body length). On loopback one read(2) returns all
/// that is queued, which with receive-buffer autotuning is several MiB: reading 8 MiB at a time
/// took a 1 GiB download from ~2.7 GB/s (1 MiB reads) to ~4.6 GB/s on a 2-core machine, level
/// with iperf3 (see docs/benchmarks.md).
const RECV_BUF: usize = 8 << 20;

thread_local! {
    /// This thread's receive buffer, kept from one body to the next (and from one connection
    /// to the next). A fresh zeroed buffer per body cost every download the first touch of up
    /// to 8 MiB of new pages (page faults, and zeroing when the allocator reused memory): at
    /// 16 MiB that made raw TCP slower than FTP in ftp-vs-tcp, whose FTP client reads into a
    /// buffer it keeps. Taken out while in use, so a sink that downloads again on this thread
    /// (none does) would only allocate another, never share this one.
    static RECV: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// What can go wrong on the client side.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Name resolution or connecting failed.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A wait exceeded the timeout.
    #[error("timed out {what} ({addr})")]
    Timeout {
        /// The server.
        addr: String,
        /// What we were waiting for.
        what: String,
    },
    /// The server answered with an error reply.
    #[error("{addr} refused {name:?}: {message}")]
    Refused {
        /// The server.
        addr: String,
        /// The requested name.
        name: String,
        /// The reply's status.
        status: Status,
        /// The server's message, its control characters escaped (it is shown on a terminal).
        message: String,
    },
    /// The server sent something that is not our protocol, or the connection broke.
    #[error("protocol error with {addr}: {detail}")]
    Protocol {
        /// The server.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// The name cannot be sent at all (empty, or longer than the protocol allows).
    #[error("cannot request {name:?}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// The local output could not be written while bytes arrived.
    #[error("cannot write {path}")]
    LocalWrite {
        /// The local file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The download's local side could not be prepared or finished.
    #[error(transparent)]
    Download(#[from] DownloadError),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Connect { .. } => ExitCode::Connect,
            Self::Timeout { .. } => ExitCode::Timeout,
            Self::Refused { status, .. } => match status {
                Status::NotFound | Status::NotRegularFile => ExitCode::NotFound,
                Status::AccessDenied | Status::BadRequest => ExitCode::AccessDenied,
                Status::Busy => ExitCode::Busy,
                Status::BadOffset => ExitCode::Resume,
                Status::UnsupportedVersion => ExitCode::Protocol,
                Status::Ok | Status::ServerError => ExitCode::Other,
            },
            Self::Protocol { .. } => ExitCode::Protocol,
            Self::BadName { .. } => ExitCode::Usage,
            Self::LocalWrite { .. } => ExitCode::LocalWrite,
            Self::Download(e) => match e {
                DownloadError::IsDirectory(_) => ExitCode::Usage,
                DownloadError::LocalLonger { .. } => ExitCode::Resume,
                DownloadError::Write { .. } => ExitCode::LocalWrite,
            },
        }
    }
}

/// A remote name as it travels: UTF-8 text, which is the escaped form of the name when the name
/// on the server's disk is not UTF-8 (as [`Entry::escaped`] says of a listed name; see
/// [`crate::paths::escape_name`]). A `&str` is a plain name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    /// The text sent.
    pub text: &'a str,
    /// Whether `text` is escaped.
    pub escaped: bool,
}

impl<'a> From<&'a str> for Name<'a> {
    fn from(text: &'a str) -> Self {
        Self {
            text,
            escaped: false,
        }
    }
}

impl<'a> From<&'a String> for Name<'a> {
    fn from(text: &'a String) -> Self {
        Self::from(text.as_str())
    }
}

impl<'a> From<&'a Entry> for Name<'a> {
    fn from(e: &'a Entry) -> Self {
        Self {
            text: &e.name,
            escaped: e.escaped,
        }
    }
}

/// A connection to a tcp-fileserv server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    addr: String,
}

impl Client {
    /// Resolves `addr` and connects, trying each resolved address in turn; every later read and
    /// write waits at most `timeout`.
    pub fn connect(addr: &HostPort, timeout: Duration) -> Result<Self, ClientError> {
        let shown = addr.to_string();
        let conn_err = |source| ClientError::Connect {
            addr: shown.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = (addr.host.as_str(), addr.port)
            .to_socket_addrs()
            .map_err(conn_err)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(conn_err)?;
                    stream.set_read_timeout(Some(timeout)).map_err(conn_err)?;
                    stream.set_write_timeout(Some(timeout)).map_err(conn_err)?;
                    return Ok(Self {
                        stream,
                        addr: shown,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(ClientError::Timeout {
                        addr: shown,
                        what: "connecting".into(),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(conn_err(last))
    }

    fn protocol_err(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            detail,
        }
    }

    fn net_err(&self, e: io::Error, what: &str) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                addr: self.addr.clone(),
                what: what.to_owned(),
            },
            _ => self.protocol_err(format!("{what}: {e}")),
        }
    }

    /// Sends a request and reads the reply header. On success returns the announced body length
    /// (the body is still to be read); an error reply becomes [`ClientError::Refused`].
    pub fn request<'n>(
        &mut self,
        kind: Kind,
        name: impl Into<Name<'n>>,
        offset: u64,
    ) -> Result<u64, ClientError> {
        let Name {
            text: name,
            escaped,
        } = name.into();
        let req = Request {
            kind,
            name: name.to_owned(),
            offset,
            escaped,
        };
        let bytes = protocol::encode_request(&req).map_err(|source| ClientError::BadName {
            name: name.to_owned(),
            source,
        })?;
        self.stream
            .write_all(&bytes)
            .map_err(|e| self.net_err(e, "sending request"))?;
        let mut head = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| self.net_err(e, "waiting for the reply"))?;
        let reply = match protocol::decode_reply_header(&head) {
            Ok(Some(r)) => r,
            Ok(None) => unreachable!("decode_reply_header has the {HEADER_LEN} bytes it needs"),
            Err(e) => return Err(self.protocol_err(e.to_string())),
        };
        if reply.status == Status::Ok {
            return Ok(reply.length);
        }
        let mut msg = vec![0u8; reply.msg_len as usize];
        self.stream
            .read_exact(&mut msg)
            .map_err(|e| self.net_err(e, "reading the error message"))?;
        Err(ClientError::Refused {
            addr: self.addr.clone(),
            name: name.to_owned(),
            status: reply.status,
            message: printable(&String::from_utf8_lossy(&msg)),
        })
    }

    /// Reads exactly `length` body bytes into `sink` (named `sink_name` in errors), calling
    /// `progress` with the count of each read. A connection that ends early is an error.
    pub fn read_body(
        &mut self,
        name: &str,
        length: u64,
        sink: &mut dyn Write,
        sink_name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        let len = RECV_BUF.min(length.max(1) as usize);
        let mut buf = RECV.take();
        if buf.len() < len {
            // Zeroed once per thread up to its largest body (at most RECV_BUF), then reused.
            buf.resize(len, 0);
        }
        let result = self.read_body_into(&mut buf[..len], name, length, sink, sink_name, progress);
        RECV.set(buf);
        result
    }

    fn read_body_into(
        &mut self,
        buf: &mut [u8],
        name: &str,
        length: u64,
        sink: &mut dyn Write,
        sink_name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        let mut got = 0u64;
        while got < length {
            let want = ((length - got) as usize).min(buf.len());
            let n = match self.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(self.protocol_err(format!(
                        "connection closed after {got} of {length} bytes of {name:?}"
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(self.net_err(
                        e,
                        &format!("receiving {name:?} after {got} of {length} bytes"),
                    ));
                }
            };
            sink.write_all(&buf[..n])
                .map_err(|source| ClientError::LocalWrite {
                    path: sink_name.to_owned(),
                    source,
                })?;
            got += n as u64;
            progress(n as u64);
        }
        Ok(got)
    }

    /// Lists directory `dir` on the server (`.` for its root).
    pub fn list<'n>(&mut self, dir: impl Into<Name<'n>>) -> Result<Vec<Entry>, ClientError> {
        let dir = dir.into();
        let length = self.request(Kind::List, dir, 0)?;
        let dir = dir.text;
        if length > protocol::MAX_LISTING_LEN {
            return Err(self.protocol_err(format!(
                "listing of {length} bytes is larger than the maximum accepted"
            )));
        }
        let mut body = Vec::with_capacity(length as usize);
        self.read_body(dir, length, &mut body, "listing", &mut |_| {})?;
        protocol::decode_listing(&body).map_err(|e| self.protocol_err(e.to_string()))
    }
}

/// How a download behaves.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// Where the bytes go.
    pub output: Output,
    /// Resume from the length of an existing `<file>.part` (or a shorter final file).
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Downloads `name` over `client` as `opts` says, through a [`Download`]: nothing local is
/// touched until the server has accepted the request, the file gets its final name only once
/// every announced byte has arrived, and on any failure the old file stays as it was (a
/// non-empty `.part` stays for `--continue`).
pub fn download<'n>(
    client: &mut Client,
    name: impl Into<Name<'n>>,
    opts: &GetOptions,
) -> Result<Summary, ClientError> {
    let wire = name.into();
    let name = wire.text;
    let mut target = Download::plan(opts.output.clone(), opts.resume)?;
    let offset = target.offset();
    let start = Instant::now();
    let length = client.request(Kind::Get, wire, offset)?;
    let remote = offset
        .checked_add(length)
        .ok_or_else(|| client.protocol_err(format!("announced length {length} overflows")))?;
    // The local name may come from the remote one, control characters and all: the summary
    // line shows it escaped.
    let summary = |verb, bytes, saved_to: String| Summary {
        verb,
        bytes,
        resumed_from: offset,
        elapsed: start.elapsed(),
        saved_to: Some(printable(&saved_to)),
    };
    if target.is_complete(remote)? {
        return Ok(summary("already complete:", 0, target.commit()?));
    }
    let progress = Progress::new(opts.progress, &printable(name), Some(remote), offset);
    let writing = printable(&target.writing_to().display().to_string());
    let mut sink = target.open()?;
    let bytes = client.read_body(name, length, &mut sink, &writing, &mut |n| progress.inc(n))?;
    sink.flush().map_err(|source| ClientError::LocalWrite {
        path: writing,
        source,
    })?;
    drop((sink, progress));
    Ok(summary("downloaded", bytes, target.commit()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_own_non_zero_exit_code() {
        let refused = |status| ClientError::Refused {
            addr: "h:1".into(),
            name: "n".into(),
            status,
            message: "m".into(),
        };
        let io = || io::Error::other("x");
        let table = [
            (refused(Status::NotFound), ExitCode::NotFound),
            (refused(Status::NotRegularFile), ExitCode::NotFound),
            (refused(Status::AccessDenied), ExitCode::AccessDenied),
            (refused(Status::BadRequest), ExitCode::AccessDenied),
            (refused(Status::Busy), ExitCode::Busy),
            (refused(Status::BadOffset), ExitCode::Resume),
            (refused(Status::UnsupportedVersion), ExitCode::Protocol),
            (refused(Status::ServerError), ExitCode::Other),
            (
                ClientError::Timeout {
                    addr: "h".into(),
                    what: "w".into(),
                },
                ExitCode::Timeout,
            ),
            (
                ClientError::Protocol {
                    addr: "h".into(),
                    detail: "d".into(),
                },
                ExitCode::Protocol,
            ),
            (
                ClientError::Connect {
                    addr: "h".into(),
                    source: io(),
                },
                ExitCode::Connect,
            ),
            (
                ClientError::LocalWrite {
                    path: "p".into(),
                    source: io(),
                },
                ExitCode::LocalWrite,
            ),
            (
                DownloadError::IsDirectory(".".into()).into(),
                ExitCode::Usage,
            ),
            (
                DownloadError::LocalLonger {
                    local: 2,
                    remote: 1,
                }
                .into(),
                ExitCode::Resume,
            ),
        ];
        for (err, want) in table {
            assert_eq!(err.exit_code(), want, "{err}");
        }
    }
}
