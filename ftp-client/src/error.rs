//! Errors of the client, each mapped to the exit code curl uses for the same failure, so scripts
//! written against `curl ftp://...` can switch without changing their error handling.

use std::io;
use std::path::PathBuf;

use suppaftp::FtpError;

use crate::reply::{Reply, mask_command};

/// Everything that can go wrong between parsing the command line and the server's last reply.
///
/// Messages are one line that names the host, the remote path and the server's own reply. An
/// underlying error is kept as the `#[source]` and never repeated in the message itself, so a
/// chain printed with `{:#}` (as `main` does) shows each cause once.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A bad flag or target, found before any socket opens (curl: 2, "failed init" / usage).
    #[error("{0}")]
    Usage(String),
    /// The host name does not resolve (curl: 6).
    #[error("cannot resolve host {host}")]
    Resolve {
        /// The host as given.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The control or data connection was refused or unreachable (curl: 7).
    #[error("cannot connect to {what} {addr}")]
    Connect {
        /// "server" or "data port".
        what: &'static str,
        /// The address tried last.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// A wait ran past `--timeout` (curl: 28).
    #[error("{host}: timed out after {secs} s {what}")]
    Timeout {
        /// The server.
        host: String,
        /// What we were waiting for.
        what: String,
        /// The timeout that elapsed.
        secs: f64,
    },
    /// USER/PASS refused (curl: 67).
    #[error("{host}: login as {user:?} refused: {reply}")]
    Login {
        /// The server.
        host: String,
        /// The user name sent.
        user: String,
        /// The server's reply.
        reply: String,
    },
    /// CWD refused (curl: 9, "remote access denied").
    #[error("{host}: cannot change to directory {dir:?}: {reply}")]
    Cwd {
        /// The server.
        host: String,
        /// The directory argument refused.
        dir: String,
        /// The server's reply.
        reply: String,
    },
    /// RETR answered 550 (curl: 78).
    #[error("{host}: {path:?} not found: {reply}")]
    NotFound {
        /// The server.
        host: String,
        /// The remote path.
        path: String,
        /// The server's reply.
        reply: String,
    },
    /// The transfer ended before all bytes arrived, or the server reported it failed (curl: 18).
    #[error("{host}: {path:?}: transfer cut short after {got} bytes{expected}: {detail}")]
    Partial {
        /// The server.
        host: String,
        /// The remote path.
        path: String,
        /// Bytes that did arrive (including a resumed offset).
        got: u64,
        /// " of N" when the size was known, else empty.
        expected: String,
        /// The server's reply or the socket error.
        detail: String,
    },
    /// More bytes arrived than SIZE announced (curl: 18, as a transfer that did not match its
    /// size): the file changed while it was sent, or the server cannot be trusted. The client
    /// stops reading at the first byte too many, and what this transfer wrote is discarded.
    #[error("{host}: {path:?}: the server sent more than the {expected} bytes SIZE announced")]
    TooLong {
        /// The server.
        host: String,
        /// The remote path.
        path: String,
        /// The size SIZE announced.
        expected: u64,
    },
    /// Writing the local file failed (curl: 23).
    #[error("cannot write {}", path.display())]
    LocalWrite {
        /// The local path.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// Reading the local file to upload failed (curl: 26).
    #[error("cannot read {}", path.display())]
    LocalRead {
        /// The local path.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// REST refused, or the local part is larger than the remote file (curl: 36).
    #[error("{host}: cannot resume {path:?}: {reason}")]
    Resume {
        /// The server.
        host: String,
        /// The remote path.
        path: String,
        /// Why.
        reason: String,
    },
    /// STOR/APPE refused (curl: 25, "upload failed").
    #[error("{host}: upload to {path:?} refused: {reply}")]
    Upload {
        /// The server.
        host: String,
        /// The remote path.
        path: String,
        /// The server's reply.
        reply: String,
    },
    /// RETR/LIST/MLSD refused for a reason other than "not found" (curl: 19).
    #[error("{host}: {command} {path:?} refused: {reply}")]
    Refused {
        /// The server.
        host: String,
        /// The command refused.
        command: &'static str,
        /// The remote path.
        path: String,
        /// The server's reply.
        reply: String,
    },
    /// Neither EPSV nor PASV gave a usable data address (curl: 13).
    #[error("{host}: no passive data connection: {reply}")]
    Passive {
        /// The server.
        host: String,
        /// The server's reply.
        reply: String,
    },
    /// A reply that makes no sense here, or one larger than the bound (curl: 8).
    #[error("{host}: unexpected reply to {command}: {reply}")]
    Protocol {
        /// The server.
        host: String,
        /// The command sent (PASS masked).
        command: String,
        /// The server's reply, or what was wrong with it.
        reply: String,
        /// Whether the reply was a 4xx (transient, worth a retry).
        transient: bool,
    },
    /// Some files of a glob get or a mirror failed; the others were fetched (curl: 18, its
    /// "partial file": the run as a whole is incomplete). Each failure is named.
    #[error("{} of {total} failed: {}", failed.len(), failed.join("; "))]
    SomeFailed {
        /// One line per failed file or directory: its escaped name and the error.
        failed: Vec<String>,
        /// How many files (and, for mirror, directories) there were to bring over.
        total: usize,
    },
    /// The TLS handshake failed (curl: 35, "SSL connect error").
    #[error("{host}: TLS handshake failed {what}: {detail}")]
    TlsConnect {
        /// The server.
        host: String,
        /// On which connection ("on the control connection", "on the data connection").
        what: String,
        /// rustls's reason.
        detail: String,
    },
    /// The server's certificate could not be authenticated, or does not match the pin (curl:
    /// 60, "peer certificate cannot be authenticated").
    #[error("{host}: the server's certificate cannot be trusted: {reason}")]
    TlsCertificate {
        /// The server.
        host: String,
        /// Why.
        reason: String,
    },
    /// TLS was required and the server refused it (curl: 64, "requested FTP SSL level
    /// failed").
    #[error("{host}: TLS is required but the server refused {command}: {reply}")]
    TlsRefused {
        /// The server.
        host: String,
        /// `AUTH TLS`, `PBSZ 0` or `PROT P`.
        command: String,
        /// The server's reply.
        reply: String,
    },
    /// The control connection broke (curl: 56, "failure receiving network data").
    #[error("{host}: connection lost {what}")]
    Network {
        /// The server.
        host: String,
        /// What we were doing.
        what: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// The message followed by each underlying cause, `: `-separated, on one line: what
    /// anyhow's `{:#}` prints, for the retry warnings the library logs itself.
    pub fn with_causes(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    /// The process exit code, curl's number for the same failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Resolve { .. } => 6,
            Self::Connect { .. } => 7,
            Self::Protocol { .. } => 8,
            Self::Cwd { .. } => 9,
            Self::Passive { .. } => 13,
            Self::Partial { .. } | Self::TooLong { .. } | Self::SomeFailed { .. } => 18,
            Self::Refused { .. } => 19,
            Self::LocalWrite { .. } => 23,
            Self::Upload { .. } => 25,
            Self::LocalRead { .. } => 26,
            Self::Timeout { .. } => 28,
            Self::Resume { .. } => 36,
            Self::Network { .. } => 56,
            Self::TlsConnect { .. } => 35,
            Self::TlsCertificate { .. } => 60,
            Self::TlsRefused { .. } => 64,
            Self::Login { .. } => 67,
            Self::NotFound { .. } => 78,
        }
    }

    /// Whether `--retries` should try again: network trouble and 4xx replies, never a refusal
    /// that would only repeat (login, CWD, not found, local disk, usage).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::Partial { .. }
            | Self::TooLong { .. }
            | Self::Network { .. } => true,
            Self::Protocol { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// What a reply answered, so that [`ClientError::from_reply`] can turn a refusal into the
/// error (and exit code) that says what failed.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// USER or PASS.
    Login {
        /// The user name sent.
        user: &'a str,
    },
    /// CWD into one directory.
    Cwd {
        /// The directory argument.
        dir: &'a str,
    },
    /// A command only its reply can explain (the greeting, TYPE, SIZE, FEAT, EPSV, ...).
    Command(&'a str),
    /// EPSV or PASV gave no usable data address.
    Passive,
    /// REST before a resumed RETR (RFC 3659 §5).
    Rest {
        /// The remote path, for messages.
        path: &'a str,
        /// The offset asked for.
        offset: u64,
    },
    /// RETR, LIST or MLSD refused before any data moved.
    Read {
        /// The command.
        command: &'static str,
        /// The remote path, for messages.
        path: &'a str,
    },
    /// STOR or APPE refused before any data moved.
    Store {
        /// The remote path, for messages.
        path: &'a str,
    },
    /// The completion reply after a data transfer (RFC 959 §5.4: 226 or 250 when it worked).
    Completion {
        /// The transfer command.
        command: &'static str,
        /// The remote path, for messages.
        path: &'a str,
        /// Bytes there at the end, a resumed prefix included.
        got: u64,
        /// The size the transfer should have reached, when known.
        expected: Option<u64>,
    },
}

impl ClientError {
    /// The one place where a reply that is not what `step` needed becomes an error.
    ///
    /// A 421 (RFC 959 §4.2: the service is closing the control connection) is a transient
    /// protocol error whatever the step, worth a retry. Other 4xx replies are transient too,
    /// except where the step has its own meaning for them (a refused login or CWD).
    pub fn from_reply(host: &str, step: Step<'_>, r: &Reply) -> Self {
        let host = host.to_string();
        let reply = r.one_line();
        let protocol = |command: &str| ClientError::Protocol {
            host: host.clone(),
            command: mask_command(command),
            reply: r.one_line(),
            transient: r.is_transient(),
        };
        match step {
            Step::Login { .. } | Step::Cwd { .. } if r.code == 421 => protocol(match step {
                Step::Login { .. } => "USER",
                _ => "CWD",
            }),
            Step::Login { user } => Self::Login {
                host,
                user: user.to_string(),
                reply,
            },
            Step::Cwd { dir } => Self::Cwd {
                host,
                dir: dir.to_string(),
                reply,
            },
            Step::Command(command) => protocol(command),
            Step::Passive if r.is_transient() => protocol("PASV"),
            Step::Passive => Self::Passive { host, reply },
            Step::Rest { .. } if r.code == 421 => protocol("REST"),
            Step::Rest { path, offset } => Self::Resume {
                host,
                path: path.to_string(),
                reason: format!("REST {offset} refused: {reply}"),
            },
            Step::Read { command, .. } if r.is_transient() => protocol(command),
            Step::Read { command, path } if r.code == 550 && command == "RETR" => Self::NotFound {
                host,
                path: path.to_string(),
                reply,
            },
            Step::Read { command, path } => Self::Refused {
                host,
                command,
                path: path.to_string(),
                reply,
            },
            Step::Store { .. } if r.is_transient() => protocol("STOR"),
            Step::Store { path } => Self::Upload {
                host,
                path: path.to_string(),
                reply,
            },
            // Some servers (libunftp) answer 150 before opening the file and 550 after:
            // nothing arrived, so this is "not found", not a cut transfer.
            Step::Completion {
                command: "RETR",
                path,
                got: 0,
                ..
            } if r.code == 550 => Self::NotFound {
                host,
                path: path.to_string(),
                reply,
            },
            Step::Completion {
                path,
                got,
                expected,
                ..
            } => Self::partial(&host, path, got, expected, reply),
        }
    }

    /// A transfer that ended before all bytes arrived: `got` of `expected`, and why.
    pub fn partial(
        host: &str,
        path: &str,
        got: u64,
        expected: Option<u64>,
        detail: String,
    ) -> Self {
        Self::Partial {
            host: host.to_string(),
            path: path.to_string(),
            got,
            expected: expected.map(|n| format!(" of {n}")).unwrap_or_default(),
            detail,
        }
    }

    /// suppaftp's error while sending `command` or reading its reply. A reply of any code comes
    /// back as `UnexpectedResponse` (we ask for no particular code) and is classified by the
    /// caller; only the greeting, read inside suppaftp's connect, arrives here as one.
    pub fn from_ftp_error(host: &str, command: &str, e: FtpError) -> Self {
        let protocol = |reply: String, transient| Self::Protocol {
            host: host.to_string(),
            command: command.to_string(),
            reply,
            transient,
        };
        match e {
            FtpError::ConnectionError(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<suppaftp::ReplyTooLarge>()) =>
            {
                protocol(
                    "reply longer than 256 KiB (endless line?), giving up".into(),
                    false,
                )
            }
            FtpError::ConnectionError(e) if e.kind() == io::ErrorKind::InvalidInput => {
                Self::Usage(format!("cannot send {command:?}: {e}"))
            }
            FtpError::ConnectionError(source) => Self::Network {
                host: host.to_string(),
                what: format!("waiting for the reply to {command}"),
                source,
            },
            FtpError::UnexpectedResponse(r) => {
                let r = Reply::from_bytes(&r.body);
                protocol(r.one_line(), r.is_transient())
            }
            other => protocol(other.to_string(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every variant that carries a cause, with a cause whose text is easy to count.
    fn with_causes() -> Vec<ClientError> {
        let io = || io::Error::other("THE-CAUSE");
        vec![
            ClientError::Resolve {
                host: "h".into(),
                source: io(),
            },
            ClientError::Connect {
                what: "server",
                addr: "127.0.0.1:21".into(),
                source: io(),
            },
            ClientError::LocalWrite {
                path: "f".into(),
                source: io(),
            },
            ClientError::LocalRead {
                path: "f".into(),
                source: io(),
            },
            ClientError::Network {
                host: "h".into(),
                what: "reading".into(),
                source: io(),
            },
        ]
    }

    #[test]
    fn replies_become_the_error_of_their_step() {
        let r = |t: &[u8]| Reply::from_bytes(t);
        let code = |step, t: &[u8]| ClientError::from_reply("h", step, &r(t)).exit_code();
        let (login, cwd) = (Step::Login { user: "u" }, Step::Cwd { dir: "d" });
        let retr = Step::Read {
            command: "RETR",
            path: "p",
        };
        let list = Step::Read {
            command: "LIST",
            path: "p",
        };
        let done = |got| Step::Completion {
            command: "RETR",
            path: "p",
            got,
            expected: Some(10),
        };
        for (step, reply, want) in [
            (login, &b"530 no"[..], 67),
            (login, b"421 bye", 8),
            (cwd, b"550 no dir", 9),
            (cwd, b"450 busy", 9),
            (cwd, b"421 bye", 8),
            (Step::Command("TYPE I"), b"504 no", 8),
            (Step::Passive, b"500 no", 13),
            (Step::Passive, b"425 later", 8),
            (
                Step::Rest {
                    path: "p",
                    offset: 5,
                },
                b"502 no",
                36,
            ),
            (retr, b"550 missing", 78),
            (retr, b"450 busy", 8),
            (list, b"550 denied", 19),
            (Step::Store { path: "p" }, b"553 denied", 25),
            (done(0), b"550 missing", 78),
            (done(3), b"550 gone", 18),
            (done(0), b"426 aborted", 18),
        ] {
            assert_eq!(code(step, reply), want, "{step:?} {reply:?}");
        }
        assert!(ClientError::from_reply("h", retr, &r(b"450 busy")).is_transient());
        assert!(!ClientError::from_reply("h", login, &r(b"530 no")).is_transient());
        let e = ClientError::from_reply("h", done(3), &r(b"426 x"));
        assert!(e.to_string().contains("after 3 bytes of 10: 426 x"), "{e}");
    }

    #[test]
    fn no_message_repeats_its_cause() {
        for e in with_causes() {
            let full = e.with_causes();
            assert_eq!(
                full.matches("THE-CAUSE").count(),
                1,
                "{e:?} prints {full:?}"
            );
            assert!(e.source().is_some(), "{e:?} keeps its cause as #[source]");
            // anyhow, which main prints the error with, walks the same chain.
            assert_eq!(format!("{:#}", anyhow::Error::from(e)), full);
        }
    }
}
