//! Errors of the client, each mapped to the exit code curl uses for the same failure, so scripts
//! written against `curl ftp://...` can switch without changing their error handling.

use std::io;
use std::path::PathBuf;

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
            Self::Partial { .. } => 18,
            Self::Refused { .. } => 19,
            Self::LocalWrite { .. } => 23,
            Self::Upload { .. } => 25,
            Self::LocalRead { .. } => 26,
            Self::Timeout { .. } => 28,
            Self::Resume { .. } => 36,
            Self::Network { .. } => 56,
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
            | Self::Network { .. } => true,
            Self::Protocol { transient, .. } => *transient,
            _ => false,
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
