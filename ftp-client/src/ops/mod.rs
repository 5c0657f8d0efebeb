//! The operations, one module each, over the same control session
//! ([`crate::session`]) and the same data-connection helper ([`crate::data`]):
//!
//! - [`get`]: download one file into a [`filexfer::download::Download`];
//! - [`get_glob`]: every file of a directory matching a glob, each through [`get`];
//! - [`ls`]: list a directory (MLSD or LIST);
//! - [`mirror`]: a remote tree into a local directory, fetching only what changed;
//! - [`put`]: upload one file (STOR, or APPE to resume);
//! - [`get_segments`]: one file over several sessions at once, a byte range each.

mod get;
mod glob_get;
mod ls;
mod mirror;
mod put;
mod reverse;
mod segments;

use std::time::Duration;

use filexfer::progress::{Progress, Summary};

pub use get::get;
pub use glob_get::get_glob;
pub use ls::ls;
pub use mirror::{MAX_DEPTH, MAX_TOTAL_ENTRIES, listed_time, mirror, unchanged};
pub use put::put;
pub use segments::get_segments;

use crate::config::Config;
use crate::error::ClientError;
use crate::session::{Session, Tracer};

/// Connects, logs in, changes into `dirs`.
async fn connect(
    cfg: &Config,
    trace: &Option<Tracer>,
    dirs: &[String],
) -> Result<Session, ClientError> {
    let mut s = Session::connect(
        &cfg.host,
        cfg.port,
        cfg.timeout,
        trace.clone(),
        cfg.trust_pasv_ip,
        (cfg.tls, &cfg.trust),
    )
    .await?;
    let pass = cfg.password.clone().unwrap_or_default();
    s.login(&cfg.user, &pass).await?;
    s.cwd_all(dirs).await?;
    Ok(s)
}

/// The bar of one transfer: under the run's bars when it has some (mirror), else its own
/// (shown when `cfg.progress`).
fn file_progress(cfg: &Config, label: &str, size: Option<u64>, start: u64) -> Progress {
    match &cfg.bars {
        Some(bars) => bars.add(label, size, start),
        None => Progress::new(cfg.progress, label, size, start),
    }
}

/// The summary of a `-C` run that found nothing left to send or fetch.
fn already_complete(resumed_from: u64, saved_to: Option<String>) -> Summary {
    Summary {
        verb: "already complete:",
        bytes: 0,
        resumed_from,
        elapsed: Duration::ZERO,
        saved_to,
    }
}
