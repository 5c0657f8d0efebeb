//! The client: one connection that can carry several requests, blocking I/O with a timeout on
//! every wait, large reads, and downloads that land atomically (`<file>.part`, then rename).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::protocol::{self, Entry, HEADER_LEN, Kind, Request, Status};

/// Size of the receive buffer (capped at the body length). On loopback one read(2) returns all
/// that is queued, which with receive-buffer autotuning is several MiB: reading 8 MiB at a time
/// took a 1 GiB download from ~2.7 GB/s (1 MiB reads) to ~4.6 GB/s on a 2-core machine, level
/// with iperf3 (see docs/benchmarks.md).
const RECV_BUF: usize = 8 << 20;

/// Process exit codes of the `tcp-fileserv` client commands (documented in the README and
/// `docs/tcp-protocol.md`).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Anything not listed below (a server-side I/O error, ...).
    pub const OTHER: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// Cannot resolve or connect to the server.
    pub const CONNECT: i32 = 3;
    /// The file or directory does not exist (or is not a regular file).
    pub const NOT_FOUND: i32 = 4;
    /// The server refused the name (outside its root, unreadable, malformed).
    pub const ACCESS_DENIED: i32 = 5;
    /// The server broke the protocol, or the transfer ended short.
    pub const PROTOCOL: i32 = 6;
    /// The local file could not be written.
    pub const LOCAL_WRITE: i32 = 7;
    /// The server did not answer or stalled beyond `--timeout`.
    pub const TIMEOUT: i32 = 8;
    /// The server is at its connection limit.
    pub const BUSY: i32 = 9;
    /// A resume (`--continue`) was impossible: the local part is longer than the remote file.
    pub const RESUME: i32 = 10;
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
        /// The server's message.
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
    /// The local output could not be written.
    #[error("cannot write {path}")]
    LocalWrite {
        /// The local file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A local problem before any transfer (no name to save under, ...).
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Connect { .. } => exit::CONNECT,
            Self::Timeout { .. } => exit::TIMEOUT,
            Self::Refused { status, .. } => match status {
                Status::NotFound | Status::NotRegularFile => exit::NOT_FOUND,
                Status::AccessDenied | Status::BadRequest => exit::ACCESS_DENIED,
                Status::Busy => exit::BUSY,
                Status::BadOffset => exit::RESUME,
                Status::UnsupportedVersion => exit::PROTOCOL,
                Status::Ok | Status::ServerError => exit::OTHER,
            },
            Self::Protocol { .. } => exit::PROTOCOL,
            Self::LocalWrite { .. } => exit::LOCAL_WRITE,
            Self::Local(_) => exit::USAGE,
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
    /// Resolves `addr` (`HOST:PORT`) and connects, trying each resolved address in turn; every
    /// later read and write waits at most `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        let conn_err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(conn_err)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(conn_err)?;
                    stream.set_read_timeout(Some(timeout)).map_err(conn_err)?;
                    stream.set_write_timeout(Some(timeout)).map_err(conn_err)?;
                    return Ok(Self {
                        stream,
                        addr: addr.to_owned(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(ClientError::Timeout {
                        addr: addr.to_owned(),
                        what: "connecting".into(),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(conn_err(last))
    }

    fn net_err(&self, e: io::Error, what: &str) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                addr: self.addr.clone(),
                what: what.to_owned(),
            },
            _ => ClientError::Protocol {
                addr: self.addr.clone(),
                detail: format!("{what}: {e}"),
            },
        }
    }

    /// Sends a request and reads the reply header. On success returns the announced body length
    /// (the body is still to be read); an error reply becomes [`ClientError::Refused`].
    pub fn request(&mut self, kind: Kind, name: &str, offset: u64) -> Result<u64, ClientError> {
        let req = Request {
            kind,
            name: name.to_owned(),
            offset,
        };
        let bytes = protocol::encode_request(&req)
            .map_err(|e| ClientError::Local(format!("cannot request {name:?}: {e}")))?;
        self.stream
            .write_all(&bytes)
            .map_err(|e| self.net_err(e, "sending request"))?;
        let mut head = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| self.net_err(e, "waiting for the reply"))?;
        let reply = protocol::decode_reply_header(&head)
            .map_err(|e| ClientError::Protocol {
                addr: self.addr.clone(),
                detail: e.to_string(),
            })?
            .expect("a full header was read");
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
            message: String::from_utf8_lossy(&msg).into_owned(),
        })
    }

    /// Reads exactly `length` body bytes into `sink` (named `sink_name` in errors), calling
    /// `progress` with the running count. A connection that ends early is an error.
    pub fn read_body(
        &mut self,
        name: &str,
        length: u64,
        sink: &mut dyn Write,
        sink_name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        let mut buf = vec![0u8; RECV_BUF.min(length.max(1) as usize)];
        let mut got = 0u64;
        while got < length {
            let want = ((length - got) as usize).min(buf.len());
            let n = match self.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(ClientError::Protocol {
                        addr: self.addr.clone(),
                        detail: format!(
                            "connection closed after {got} of {length} bytes of {name:?}"
                        ),
                    });
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
            progress(got);
        }
        Ok(got)
    }

    /// Lists directory `dir` on the server (`.` for its root).
    pub fn list(&mut self, dir: &str) -> Result<Vec<Entry>, ClientError> {
        let length = self.request(Kind::List, dir, 0)?;
        if length > protocol::MAX_LISTING_LEN {
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                detail: format!("listing of {length} bytes is larger than the maximum accepted"),
            });
        }
        let mut body = Vec::with_capacity(length as usize);
        self.read_body(dir, length, &mut body, "listing", &mut |_| {})?;
        protocol::decode_listing(&body).map_err(|e| ClientError::Protocol {
            addr: self.addr.clone(),
            detail: e.to_string(),
        })
    }
}

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `./<basename of NAME>`.
    Default,
    /// A path the user named.
    Path(PathBuf),
    /// Standard output.
    Stdout,
}

/// How a download behaves.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// Where the bytes go.
    pub output: Output,
    /// Resume from the length of an existing `<file>.part`.
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What a finished download did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Where the bytes went (`-` for stdout).
    pub saved_to: String,
    /// Bytes received in this run (not counting a resumed prefix).
    pub bytes: u64,
    /// Bytes that were already there from an earlier run.
    pub resumed_from: u64,
    /// Wall time of the transfer.
    pub elapsed: Duration,
}

impl Summary {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        self.bytes as f64 / secs / 1e6
    }
}

/// The local file name a remote NAME is saved under by default: its last component, if that is
/// a usable file name. Never a path: a server-supplied or user-supplied `a/../../x` cannot make
/// us write outside the current directory.
pub fn default_file_name(name: &str) -> Option<&str> {
    let base = name.trim_end_matches('/').rsplit('/').next()?;
    match base {
        "" | "." | ".." => None,
        b if b.contains('\0') => None,
        b => Some(b),
    }
}

/// Longest file name most Linux file systems accept (NAME_MAX).
const NAME_MAX: usize = 255;

/// Where a download to `target` is written until it is complete: `<target>.part`. When that name
/// would exceed NAME_MAX (a 255-byte target), the target's name is shortened and a hash of the
/// whole name is added, so the part name stays unique and the same on every run (for
/// `--continue`).
pub fn part_path(target: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let name = target.file_name().unwrap_or_default();
    let bytes = name.as_bytes();
    if bytes.len() + ".part".len() <= NAME_MAX {
        let mut s = target.as_os_str().to_owned();
        s.push(".part");
        return PathBuf::from(s);
    }
    // FNV-1a: tiny, stable across builds and platforms.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("-{hash:016x}.part");
    let lossy = String::from_utf8_lossy(bytes);
    let mut cut = (NAME_MAX - suffix.len()).min(lossy.len());
    while !lossy.is_char_boundary(cut) {
        cut -= 1;
    }
    target.with_file_name(format!("{}{suffix}", &lossy[..cut]))
}

fn progress_bar(enabled: bool, total: u64, name: &str) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(name.to_owned());
    Some(pb)
}

/// Downloads `name` over `client` as `opts` says. Files land as `<target>.part` and are renamed
/// to `<target>` only once every announced byte has arrived, so an interrupted download never
/// replaces an existing file; the `.part` stays for `--continue`.
pub fn download(
    client: &mut Client,
    name: &str,
    opts: &GetOptions,
) -> Result<Summary, ClientError> {
    let target = match &opts.output {
        Output::Stdout => None,
        Output::Path(p) => Some(p.clone()),
        Output::Default => Some(PathBuf::from(default_file_name(name).ok_or_else(|| {
            ClientError::Local(format!(
                "cannot derive a local file name from {name:?}: name one with -o"
            ))
        })?)),
    };
    let Some(target) = target else {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        let start = Instant::now();
        let length = client.request(Kind::Get, name, 0)?;
        let pb = progress_bar(opts.progress, length, name);
        let bytes = client.read_body(name, length, &mut lock, "standard output", &mut |n| {
            if let Some(pb) = &pb {
                pb.set_position(n);
            }
        })?;
        lock.flush().map_err(|source| ClientError::LocalWrite {
            path: "standard output".into(),
            source,
        })?;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        return Ok(Summary {
            saved_to: "-".into(),
            bytes,
            resumed_from: 0,
            elapsed: start.elapsed(),
        });
    };
    let shown = target.display().to_string();
    let write_err = |source| ClientError::LocalWrite {
        path: shown.clone(),
        source,
    };

    // Devices and FIFOs (`-o /dev/null`) are written in place: there is nothing to rename.
    let special = std::fs::metadata(&target).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if target.is_dir() {
        return Err(ClientError::Local(format!(
            "{shown} is a directory: name a file with -o"
        )));
    }
    let part = if special {
        target.clone()
    } else {
        part_path(&target)
    };
    let offset = if opts.resume && !special {
        match std::fs::metadata(&part) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(write_err(e)),
        }
    } else {
        0
    };

    let start = Instant::now();
    // Ask first: a refusal must not leave an empty .part behind.
    let length = client.request(Kind::Get, name, offset)?;
    let mut file: File = if offset > 0 {
        OpenOptions::new().append(true).open(&part)
    } else if special {
        OpenOptions::new().write(true).open(&part)
    } else {
        File::create(&part)
    }
    .map_err(write_err)?;
    let pb = progress_bar(opts.progress, offset + length, name);
    let bytes = client.read_body(
        name,
        length,
        &mut file,
        &part.display().to_string(),
        &mut |n| {
            if let Some(pb) = &pb {
                pb.set_position(offset + n);
            }
        },
    )?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    file.flush().map_err(write_err)?;
    drop(file);
    if !special {
        std::fs::rename(&part, &target).map_err(write_err)?;
    }
    Ok(Summary {
        saved_to: shown,
        bytes,
        resumed_from: offset,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_never_leave_the_current_directory() {
        assert_eq!(default_file_name("a.txt"), Some("a.txt"));
        assert_eq!(default_file_name("dir/sub/a b.txt"), Some("a b.txt"));
        assert_eq!(default_file_name("dir/"), Some("dir"));
        assert_eq!(default_file_name("../../etc/passwd"), Some("passwd"));
        assert_eq!(default_file_name("-dash"), Some("-dash"));
        assert_eq!(default_file_name("dir/.."), None);
        assert_eq!(default_file_name("."), None);
        assert_eq!(default_file_name("/"), None);
        assert_eq!(default_file_name(""), None);
    }

    #[test]
    fn part_names_fit_name_max_and_stay_distinct() {
        assert_eq!(
            part_path(Path::new("d/a b.txt")),
            Path::new("d/a b.txt.part")
        );
        let long_a = format!("{}a.dat", "L".repeat(250));
        let long_b = format!("{}b.dat", "L".repeat(250));
        let (pa, pb) = (part_path(Path::new(&long_a)), part_path(Path::new(&long_b)));
        assert_ne!(pa, pb);
        assert_eq!(pa, part_path(Path::new(&long_a)), "stable across calls");
        for p in [&pa, &pb] {
            let n = p.file_name().unwrap().len();
            assert!(
                n <= NAME_MAX && p.to_str().unwrap().ends_with(".part"),
                "{p:?}"
            );
        }
        let uni = "é".repeat(127); // 254 bytes
        let p = part_path(Path::new(&uni));
        assert!(p.file_name().unwrap().len() <= NAME_MAX);
    }

    #[test]
    fn refusals_map_to_distinct_exit_codes() {
        let refused = |status| ClientError::Refused {
            addr: "h:1".into(),
            name: "n".into(),
            status,
            message: "m".into(),
        };
        let codes = [
            refused(Status::NotFound).exit_code(),
            refused(Status::AccessDenied).exit_code(),
            refused(Status::Busy).exit_code(),
            refused(Status::BadOffset).exit_code(),
            ClientError::Timeout {
                addr: "h".into(),
                what: "w".into(),
            }
            .exit_code(),
            ClientError::Protocol {
                addr: "h".into(),
                detail: "d".into(),
            }
            .exit_code(),
            ClientError::Connect {
                addr: "h".into(),
                source: io::Error::other("x"),
            }
            .exit_code(),
            ClientError::LocalWrite {
                path: "p".into(),
                source: io::Error::other("x"),
            }
            .exit_code(),
        ];
        let mut unique = codes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
        assert!(codes.iter().all(|&c| c != 0));
    }
}
