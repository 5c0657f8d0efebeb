//! The process exit codes of `tcp-fileserv`, as one type. Scripts branch on these numbers
//! (`--help` and docs/tcp-fileserv.md list them), so each variant's number is fixed: a new
//! failure gets a new number, an old number is never reused.

/// How the process ends. Every library error maps to one of these with its `exit_code()`
/// method; `main` turns the result into the process status once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Success = 0,
    /// Anything not listed below (a server-side I/O error, the server failing to start, ...).
    Other = 1,
    /// A bad command line: clap's own code for unknown flags, and ours for values that do not
    /// validate.
    Usage = 2,
    /// The server's name does not resolve, or nothing accepts the connection.
    Connect = 3,
    /// The file or directory does not exist (or is not a regular file).
    NotFound = 4,
    /// The server refused the name (outside its root, unreadable, malformed).
    AccessDenied = 5,
    /// The server broke the protocol, or the transfer ended short.
    Protocol = 6,
    /// The local file could not be written.
    LocalWrite = 7,
    /// The server did not answer, or stalled, beyond `--timeout`.
    Timeout = 8,
    /// The server is at its connection limit.
    Busy = 9,
    /// A resume (`--continue`) is impossible: the local part is longer than the remote file.
    Resume = 10,
}

impl ExitCode {
    /// Every exit code, in numeric order.
    pub const ALL: [Self; 11] = [
        Self::Success,
        Self::Other,
        Self::Usage,
        Self::Connect,
        Self::NotFound,
        Self::AccessDenied,
        Self::Protocol,
        Self::LocalWrite,
        Self::Timeout,
        Self::Busy,
        Self::Resume,
    ];

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the code means, in a few words (for `--help`).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::Other => "other error",
            Self::Usage => "usage",
            Self::Connect => "cannot connect",
            Self::NotFound => "not found",
            Self::AccessDenied => "access denied",
            Self::Protocol => "protocol error",
            Self::LocalWrite => "local write error",
            Self::Timeout => "timeout",
            Self::Busy => "server busy",
            Self::Resume => "resume impossible",
        }
    }

    /// One sentence listing every code, for `--help`: `Exit codes: 0 ok, 1 other error, ...`.
    pub fn summary() -> String {
        let list: Vec<String> = Self::ALL
            .iter()
            .map(|c| format!("{} {}", c.code(), c.meaning()))
            .collect();
        format!("Exit codes: {}.", list.join(", "))
    }

    /// Whether this is success.
    pub fn is_success(self) -> bool {
        self == Self::Success
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        Self::from(code as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers are an interface: this table is the one in docs/tcp-fileserv.md.
    #[test]
    fn documented_numbers_stay() {
        let numbers: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, (0..=10).collect::<Vec<_>>());
        assert_eq!(
            ExitCode::Usage.code(),
            2,
            "clap exits with 2 on usage errors"
        );
        assert!(ExitCode::ALL.iter().filter(|c| c.is_success()).count() == 1);
        assert!(
            ExitCode::summary().starts_with("Exit codes: 0 ok, 1 other error, 2 usage,"),
            "{}",
            ExitCode::summary()
        );
    }

    #[test]
    fn the_documentation_lists_every_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tcp-fileserv.md");
        let doc = std::fs::read_to_string(path).expect("docs/tcp-fileserv.md");
        for code in ExitCode::ALL {
            let row = format!("\n| {} |", code.code());
            assert!(
                doc.contains(&row),
                "docs/tcp-fileserv.md has no row for {code:?}"
            );
        }
    }
}
