//! What each subcommand does once its flags are validated: `serve` (bind, print the banner, run
//! until Ctrl-C or SIGTERM), `get` (download, then the summary line) and `ls` (the listing, its
//! names made safe for a terminal). Results go to stdout, the summary and logs to stderr.

use std::io::{self, IsTerminal, Write};

use filexfer::banner::reachable_addresses;
use filexfer::text::printable;
use thiserror::Error;

use crate::client::{self, Client, ClientError, GetOptions, Name};
use crate::config::{ConfigError, GetConfig, LsConfig, ServeConfig};
use crate::exit_codes::ExitCode;
use crate::protocol::{Entry, EntryKind};
use crate::server::{self, ServerError};

/// Everything that can end a `tcp-fileserv` command, each mapped to its [`ExitCode`].
#[derive(Debug, Error)]
pub enum Error {
    /// A flag's value cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not start, or stopped on an error.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A download or listing failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::Usage,
            Self::Server(_) => ExitCode::Other,
            Self::Client(e) => e.exit_code(),
        }
    }
}

/// `tcp-fileserv serve`: binds, prints where peers can reach the server, and serves until
/// Ctrl-C or SIGTERM (then lets running transfers finish for the grace period).
pub fn serve(cfg: ServeConfig) -> Result<(), Error> {
    // A connection holds its socket and, during a GET, the file.
    filexfer::fdlimit::ensure_for(cfg.server.max_connections, 2);
    let rt = tokio::runtime::Runtime::new().map_err(ServerError::Runtime)?;
    rt.block_on(async {
        let bind_err = |source| ServerError::Bind {
            addr: cfg.bind,
            source,
        };
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(bind_err)?;
        let bound = listener.local_addr().map_err(bind_err)?;
        // The banner is for a person (and tests learn the port from it); a closed stdout must
        // not stop the server, so write errors are ignored.
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "tcp-fileserv: serving {} (read-only)",
            cfg.server.root.display()
        );
        for a in reachable_addresses(bound) {
            let _ = writeln!(out, "  tcp-fileserv get {a} NAME");
        }
        let _ = out.flush();
        drop(out);
        server::run(listener, cfg.server, filexfer::shutdown::signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// `tcp-fileserv get`: downloads one file; prints the summary line on stderr unless quiet.
pub fn get(cfg: GetConfig) -> Result<(), Error> {
    let mut conn = Client::connect(&cfg.remote.addr, cfg.remote.timeout)?;
    let opts = GetOptions {
        output: cfg.output,
        resume: cfg.resume,
        progress: !cfg.quiet && io::stderr().is_terminal(),
    };
    let name = Name {
        text: &cfg.name,
        escaped: cfg.escaped,
    };
    let summary = client::download(&mut conn, name, &opts)?;
    if !cfg.quiet {
        eprintln!("{}", summary.line());
    }
    Ok(())
}

/// `tcp-fileserv ls`: one line per entry on stdout (see [`listing_line`]).
pub fn ls(cfg: LsConfig) -> Result<(), Error> {
    let mut conn = Client::connect(&cfg.remote.addr, cfg.remote.timeout)?;
    let entries = conn.list(Name {
        text: &cfg.dir,
        escaped: cfg.escaped,
    })?;
    let mut out = io::stdout().lock();
    for e in &entries {
        // A closed pipe (`| head`) just ends the listing.
        if writeln!(out, "{}", listing_line(e)).is_err() {
            break;
        }
    }
    Ok(())
}

/// One line of `ls`: the size right-aligned (`-` for a directory), two spaces, the name
/// (directories end in `/`). The name comes from the server, so its control characters are
/// escaped: a hostile name cannot move the cursor, recolour the terminal or fake extra lines.
/// A name that is not UTF-8 arrives escaped already (its other bytes as `\xNN`, backslashes
/// doubled), which is how bash's `$'...'` quoting writes the same bytes for `get`.
pub fn listing_line(e: &Entry) -> String {
    let name = printable(&e.name);
    match e.kind {
        EntryKind::Dir => format!("{:>14}  {name}/", "-"),
        EntryKind::File => format!("{:>14}  {name}", e.size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, size: u64, name: &str) -> Entry {
        Entry {
            kind,
            size,
            name: name.into(),
            escaped: false,
        }
    }

    #[test]
    fn listing_lines_escape_what_the_server_sent() {
        assert_eq!(
            listing_line(&entry(EntryKind::File, 42, "a b.txt")),
            format!("{:>14}  a b.txt", 42)
        );
        assert_eq!(
            listing_line(&entry(EntryKind::Dir, 0, "文件")),
            format!("{:>14}  文件/", "-")
        );
        let hostile = listing_line(&entry(
            EntryKind::File,
            1,
            "x\u{1b}[2J\r\n           9  fake.txt\u{7}",
        ));
        assert!(
            !hostile.chars().any(char::is_control),
            "a control character reaches the terminal: {hostile:?}"
        );
        assert!(hostile.ends_with("x\\x1b[2J\\x0d\\x0a           9  fake.txt\\x07"));
    }

    #[test]
    fn errors_map_to_their_exit_codes() {
        let config: Error = ConfigError::Invalid {
            flag: "--timeout",
            value: "0".into(),
            reason: "r".into(),
        }
        .into();
        assert_eq!(config.exit_code(), ExitCode::Usage);
        let server: Error = ServerError::Runtime(io::Error::other("x")).into();
        assert_eq!(server.exit_code(), ExitCode::Other);
        let client: Error = ClientError::Timeout {
            addr: "h".into(),
            what: "w".into(),
        }
        .into();
        assert_eq!(client.exit_code(), ExitCode::Timeout);
    }
}
