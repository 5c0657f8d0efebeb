//! `get` with a glob (`get HOST DIR '*.iso'`, `get ftp://HOST/DIR/*.iso`): the directory is
//! listed once (MLSD when FEAT names MLST, else LIST), the pattern is matched here against the
//! names (servers differ in whether NLST globs, and some glob with `/` in the result), every
//! match passes the [`crate::names`] rules, and each file is fetched, over one session kept
//! from file to file, through the one-file path of [`get`](super::get): `.part`, `-C` resume,
//! and "a failure never replaces an existing file" hold for each, and one failure does not stop
//! the others.

use std::path::{Path, PathBuf};
use std::time::Instant;

use filexfer::download::part_path;
use filexfer::progress::Summary;
use filexfer::text::printable;

use crate::config::Config;
use crate::error::ClientError;
use crate::names::{self, Glob, Refusal};
use crate::session::Tracer;
use crate::target::Remote;

/// Why a local path must not be written: it is a symbolic link (which could point out of the
/// directory), for the file or its `.part`. `None` when writing is fine.
pub(crate) fn local_link(path: &Path) -> Option<PathBuf> {
    [path.to_path_buf(), part_path(path)]
        .into_iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
}

/// Downloads every file of `remote.dirs` matching `glob` into `dest`.
pub async fn get_glob(
    cfg: &Config,
    remote: &Remote,
    pattern: &str,
    glob: &Glob,
    dest: &Path,
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    let path = remote.dir_display();
    let started = Instant::now();
    let mut s = super::connect(cfg, trace, &remote.dirs).await?;
    s.set_type(false).await?;
    let mlsd = super::ls::uses_mlsd(&mut s).await?;
    let entries = super::ls::entries(&mut s, mlsd, &path).await?;
    s.quit().await;

    // A name that could never be a local file is reported whether or not it matches: it is
    // the mark of a hostile or broken server, worth a warning.
    let (matching, other): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|e| glob.matches(&e.name));
    for e in &other {
        if let Err(why @ (Refusal::Separator | Refusal::Control)) = names::check_name(&e.name) {
            let s = names::Skipped {
                name: e.name.clone(),
                why,
            };
            tracing::warn!("{s}");
        }
    }
    let fold_case = if matching.is_empty() {
        false
    } else {
        names::folds_case(dest).map_err(|source| ClientError::LocalWrite {
            path: dest.to_path_buf(),
            source,
        })?
    };
    let plan = names::plan_dir(matching, fold_case);
    for s in &plan.skipped {
        tracing::warn!("{s}");
    }
    if plan.files.is_empty() {
        return Err(ClientError::NotFound {
            host: cfg.host.clone(),
            path: format!("{path}/{pattern}"),
            reply: format!(
                "no file matches ({} matching entries skipped)",
                plan.skipped.len()
            ),
        });
    }

    let total = plan.files.len();
    let mut failed = Vec::new();
    let mut jobs = std::collections::VecDeque::new();
    for e in &plan.files {
        let local = dest.join(&e.name);
        let shown = printable(&e.name);
        if let Some(link) = local_link(&local) {
            let why = format!("{shown}: the local {} is a symbolic link", link.display());
            tracing::warn!("{why}");
            failed.push(why);
            continue;
        }
        jobs.push_back(super::mirror::Job {
            shown,
            dir: None,
            name: e.name.clone(),
            local,
            modified: None,
            tries_421: 0,
        });
    }
    // One session for all the files, in order (the progress bar shows one file at a time).
    let mut tally = super::mirror::fetch_all(cfg, trace, &remote.dirs, jobs, 1, false).await;
    failed.append(&mut tally.failed);
    let bytes = tally.bytes;
    if !failed.is_empty() {
        return Err(ClientError::SomeFailed { failed, total });
    }
    Ok(Summary {
        verb: "downloaded",
        bytes,
        resumed_from: 0,
        elapsed: started.elapsed(),
        saved_to: Some(format!(
            "{} ({total} files, {} skipped)",
            printable(&dest.display().to_string()),
            plan.skipped.len()
        )),
    })
}
