//! ftp-client: retrieve files by HOST, DIR and FILE (or an RFC 1738 `ftp://` URL) from any
//! RFC 959 server, list directories, upload files; on suppaftp's control connection, with the
//! timeouts, checks and exit codes it lacks added here (see `docs/ftp-client.md`).
//!
//! The binary is a thin layer: parse a [`Cli`], check it into a [`Config`], call [`run`], map
//! a [`ClientError`] to its curl-compatible exit code.

pub mod config;
pub mod data;
pub mod error;
pub mod listing;
pub mod names;
pub mod netrc;
pub mod ops;
pub mod reply;
pub mod session;
pub mod target;
pub mod tls;

use std::io::Write;
use std::time::Duration;

pub use config::{Cli, Config, Operation, Output};
pub use error::ClientError;
/// What a finished operation did; its [`line`](Report::line) is the summary printed at the end
/// (`downloaded N bytes in S s (R MB/s)`).
pub use filexfer::progress::Summary as Report;
pub use session::Tracer;

/// Runs the configured operation, retrying transient failures `config.retries` times after the
/// pauses of [`retry_pause`] (1 s, 2 s, 4 s, then 8 s each). Listings are written to `out`; a download
/// to `-o -` goes to the process's stdout; `trace` receives the protocol dialog.
pub async fn run(
    config: &Config,
    out: &mut (dyn Write + Send),
    trace: Option<Tracer>,
) -> Result<Report, ClientError> {
    let mut attempt = 0u32;
    loop {
        let result = match &config.op {
            Operation::Get { remote, output } => ops::get(config, remote, output, &trace).await,
            Operation::GetSegments {
                remote,
                output,
                segments,
            } => ops::get_segments(config, remote, output, *segments, &trace).await,
            Operation::GetGlob {
                remote,
                pattern,
                glob,
                dest,
            } => ops::get_glob(config, remote, pattern, glob, dest, &trace).await,
            Operation::Mirror {
                remote,
                local,
                opts,
            } => ops::mirror(config, remote, local, opts, out, &trace).await,
            Operation::Ls { remote, raw } => ops::ls(config, remote, *raw, out, &trace).await,
            Operation::Put {
                local,
                remote,
                name,
            } => ops::put(config, local, remote, name, &trace).await,
        };
        match result {
            Err(e) if e.is_transient() && attempt < config.retries => {
                attempt += 1;
                let pause = retry_pause(attempt);
                tracing::warn!(
                    attempt,
                    retries = config.retries,
                    "{}; retrying in {pause:?}",
                    e.with_causes()
                );
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// The pause before retry number `attempt` (1 for the first retry): 1 s, doubling each time, at
/// most 8 s. curl's `--retry` starts at 1 s and doubles in the same way (curl caps at 10 min;
/// an interactive FTP download is better served by a short cap), so a curl user finds the
/// pauses they expect.
pub fn retry_pause(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_double_from_one_second_up_to_eight() {
        let secs: Vec<u64> = (1..=7).map(|a| retry_pause(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(
            retry_pause(0),
            Duration::from_secs(1),
            "never shorter than 1 s"
        );
        assert_eq!(retry_pause(u32::MAX), Duration::from_secs(8));
    }
}
