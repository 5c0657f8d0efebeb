//! ftp-client: retrieve files by HOST, DIR and FILE (or an RFC 1738 `ftp://` URL) from any
//! RFC 959 server, list directories, upload files; on suppaftp's control connection, with the
//! timeouts, checks and exit codes it lacks added here (see `docs/ftp-client.md`).
//!
//! The binary is a thin layer: parse a [`Cli`], check it into a [`Config`], call [`run`], map
//! a [`ClientError`] to its curl-compatible exit code.

pub mod config;
pub mod error;
pub mod listing;
pub mod netrc;
pub mod reply;
pub mod session;
pub mod target;
pub mod transfer;

use std::io::Write;
use std::time::Duration;

pub use config::{Cli, Config, Operation, Output};
pub use error::ClientError;
pub use session::Tracer;
pub use transfer::Report;

/// Runs the configured operation, retrying transient failures `config.retries` times with a
/// growing pause (0.5 s, 1 s, 2 s ... capped at 8 s). Listings are written to `out`; a download
/// to `-o -` goes to the process's stdout; `trace` receives the protocol dialog.
pub async fn run(
    config: &Config,
    out: &mut (dyn Write + Send),
    trace: Option<Tracer>,
) -> Result<Report, ClientError> {
    let mut attempt = 0u32;
    loop {
        let result = match &config.op {
            Operation::Get { remote, output } => {
                transfer::get(config, remote, output, &trace).await
            }
            Operation::Ls { remote, raw } => transfer::ls(config, remote, *raw, out, &trace).await,
            Operation::Put {
                local,
                remote,
                name,
            } => transfer::put(config, local, remote, name, &trace).await,
        };
        match result {
            Err(e) if e.is_transient() && attempt < config.retries => {
                attempt += 1;
                let pause =
                    Duration::from_millis(500u64 << attempt.min(5)).min(Duration::from_secs(8));
                tracing::warn!(
                    attempt,
                    retries = config.retries,
                    "{e}; retrying in {pause:?}"
                );
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}
