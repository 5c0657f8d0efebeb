//! `mirror --reverse`: LOCALDIR's tree up into the remote directory, over one session.
//!
//! The local tree is walked without following links (a link is skipped with a warning, so
//! nothing outside LOCALDIR is ever read), names that could not be sent safely (CR, LF, not
//! UTF-8) are skipped, depth is bounded. The remote tree is walked as `mirror` does. A local
//! file is uploaded (STOR, through `put`'s path) when the server lacks it, when the sizes
//! differ, or when the local modification time, to the minute, is later than the listed one
//! (the server stamps an upload with its own clock, so "differs" would upload everything
//! again). Missing directories are made with MKD. `--delete` removes (DELE, then RMD deepest
//! first) what the server has and LOCALDIR has not, and does nothing when a listing failed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Instant, SystemTime};

use filexfer::progress::Summary;
use filexfer::text::printable;

use super::mirror::{MAX_DEPTH, Tally, abs_dir, local_path, minute, rel_display, walk};
use crate::config::{Config, MirrorOptions};
use crate::error::{ClientError, Step};
use crate::names;
use crate::session::{Session, Tracer};
use crate::target::Remote;

/// One local file to consider.
struct LocalFile {
    rel: Vec<String>,
    len: u64,
    mtime: Option<SystemTime>,
}

/// The local tree: directories (parents first) and files, not following links.
#[derive(Default)]
struct LocalTree {
    dirs: Vec<Vec<String>>,
    files: Vec<LocalFile>,
    /// Skipped or excluded paths: their remote counterparts are not deleted.
    keep: HashSet<String>,
    skipped: usize,
}

fn scan(
    dir: &Path,
    rel: &mut Vec<String>,
    opts: &MirrorOptions,
    t: &mut LocalTree,
) -> std::io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|e| e.file_name());
    for e in children {
        let os = e.file_name();
        let Some(name) = os.to_str().filter(|n| names::check_name(n).is_ok()) else {
            tracing::warn!(
                "skipping local {:?}: not a name that can be sent",
                e.path().display()
            );
            t.skipped += 1;
            continue;
        };
        rel.push(name.to_string());
        let m = std::fs::symlink_metadata(e.path())?;
        if m.file_type().is_symlink() {
            tracing::warn!(
                "skipping local {}: a symbolic link (links are not followed)",
                rel_display(rel)
            );
            t.skipped += 1;
            t.keep.insert(rel.join("/"));
        } else if m.is_dir() {
            if rel.len() > MAX_DEPTH {
                tracing::warn!(
                    "skipping local {}/: deeper than {MAX_DEPTH}",
                    rel_display(rel)
                );
                t.skipped += 1;
                t.keep.insert(rel.join("/"));
            } else {
                t.dirs.push(rel.clone());
                scan(&e.path(), rel, opts, t)?;
            }
        } else if m.is_file() && opts.wants(name) {
            t.files.push(LocalFile {
                rel: rel.clone(),
                len: m.len(),
                mtime: m.modified().ok(),
            });
        } else {
            t.keep.insert(rel.join("/"));
        }
        rel.pop();
    }
    Ok(())
}

/// The reverse change rule (module docs): whether the listed file is at least as new as the
/// local one and the same size.
pub fn up_to_date(
    len: u64,
    mtime: Option<SystemTime>,
    size: Option<u64>,
    modified: Option<SystemTime>,
) -> bool {
    if size.is_some_and(|s| s != len) || (size.is_none() && modified.is_none()) {
        return false;
    }
    match (mtime.and_then(minute), modified.and_then(minute)) {
        (Some(l), Some(r)) => l <= r,
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// Uploads `local` into `remote.dirs`; the dry-run plan goes to `out`.
pub async fn mirror_up(
    cfg: &Config,
    remote: &Remote,
    local: &Path,
    opts: &MirrorOptions,
    out: &mut (dyn Write + Send),
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    let started = Instant::now();
    let read_err = |source| ClientError::LocalRead {
        path: local.to_path_buf(),
        source,
    };
    let mut lt = LocalTree::default();
    scan(local, &mut Vec::new(), opts, &mut lt).map_err(read_err)?;
    let mut tally = Tally::default();
    // Remote names are compared exactly: the server's file system decides about case.
    let tree = walk(cfg, remote, opts, false, trace, &mut tally).await?;
    let remote_files: HashMap<String, (Option<u64>, Option<SystemTime>)> = tree
        .files
        .iter()
        .map(|f| (f.rel.join("/"), (f.size, f.modified)))
        .collect();
    let remote_dirs: HashSet<String> = tree.dirs.iter().map(|d| d.join("/")).collect();

    let mut plan: Vec<Action> = Vec::new();
    for d in &lt.dirs {
        if !remote_dirs.contains(&d.join("/")) {
            plan.push(Action::Mkdir(d.clone()));
        }
    }
    let mut up_to = 0usize;
    for f in &lt.files {
        match remote_files.get(&f.rel.join("/")) {
            Some((size, modified)) if up_to_date(f.len, f.mtime, *size, *modified) => up_to += 1,
            _ => plan.push(Action::Put(f.rel.clone())),
        }
    }
    if opts.delete {
        if tree.incomplete {
            tracing::warn!("not deleting anything: the remote listing is incomplete");
        } else {
            let local_files: HashSet<String> = lt.files.iter().map(|f| f.rel.join("/")).collect();
            let local_dirs: HashSet<String> = lt.dirs.iter().map(|d| d.join("/")).collect();
            for f in &tree.files {
                let k = f.rel.join("/");
                if !local_files.contains(&k) && !lt.keep.contains(&k) {
                    plan.push(Action::Delete(f.rel.clone()));
                }
            }
            // Deepest first, so each directory is empty when its RMD comes.
            for d in tree.dirs.iter().rev().filter(|d| !d.is_empty()) {
                let k = d.join("/");
                if !local_dirs.contains(&k) && !lt.keep.contains(&k) {
                    plan.push(Action::Rmdir(d.clone()));
                }
            }
        }
    }

    let (mut uploaded, mut deleted) = (0usize, 0usize);
    let mut s: Option<Session> = None;
    let mut in_dir: Option<String> = None;
    for a in &plan {
        if opts.dry_run {
            writeln!(out, "{}", a.describe()).map_err(|source| ClientError::LocalWrite {
                path: "-".into(),
                source,
            })?;
            continue;
        }
        if s.is_none() {
            let mut new = super::connect(cfg, trace, &remote.dirs).await?;
            new.set_type(false).await?;
            s = Some(new);
            in_dir = None;
        }
        let Some(sess) = s.as_mut() else { continue };
        let r = run(sess, cfg, &tree.root, local, a, &mut in_dir).await;
        match r {
            Ok(bytes) => {
                match a {
                    Action::Put(_) => uploaded += 1,
                    Action::Delete(_) | Action::Rmdir(_) => deleted += 1,
                    Action::Mkdir(_) => {}
                }
                tally.bytes += bytes;
            }
            Err(e) => {
                let line = format!("{}: {}", a.describe(), e.with_causes());
                tracing::warn!("{line}");
                tally.failed.push(line);
                // The session's state is unknown after a failed transfer: start afresh.
                s = None;
            }
        }
    }
    if let Some(sess) = s {
        sess.quit().await;
    }

    let stats = format!(
        "{uploaded} uploaded, {up_to} up to date, {} skipped, {deleted} deleted, {} failed",
        lt.skipped + tree.skipped,
        tally.failed.len()
    );
    if !tally.failed.is_empty() {
        tracing::warn!("mirror --reverse of {}: {stats}", local.display());
        let total = lt.files.len() + lt.dirs.len() + tree.failed_dirs;
        return Err(ClientError::SomeFailed {
            failed: tally.failed,
            total,
        });
    }
    Ok(Summary {
        verb: if opts.dry_run {
            "dry run: would upload"
        } else {
            "mirrored up, uploaded"
        },
        bytes: tally.bytes,
        resumed_from: 0,
        elapsed: started.elapsed(),
        saved_to: Some(format!("{} ({stats})", printable(&remote.dir_display()))),
    })
}

/// One change on the server.
enum Action {
    Mkdir(Vec<String>),
    Put(Vec<String>),
    Delete(Vec<String>),
    Rmdir(Vec<String>),
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Self::Mkdir(r) => format!("mkdir {}/", rel_display(r)),
            Self::Put(r) => format!("put {}", rel_display(r)),
            Self::Delete(r) => format!("delete {}", rel_display(r)),
            Self::Rmdir(r) => format!("rmdir {}/", rel_display(r)),
        }
    }
}

/// `VERB ARG`, any 2xx being success.
async fn simple(s: &mut Session, verb: &'static str, arg: String) -> Result<u64, ClientError> {
    let r = s.command(&format!("{verb} {arg}")).await?;
    if r.is_ok() {
        Ok(0)
    } else {
        Err(s.refused(Step::Command(verb), &r))
    }
}

/// Carries out `a`; returns the bytes uploaded.
async fn run(
    s: &mut Session,
    cfg: &Config,
    root: &str,
    local: &Path,
    a: &Action,
    in_dir: &mut Option<String>,
) -> Result<u64, ClientError> {
    match a {
        Action::Mkdir(rel) => simple(s, "MKD", abs_dir(root, rel)).await,
        Action::Rmdir(rel) => simple(s, "RMD", abs_dir(root, rel)).await,
        Action::Delete(rel) => {
            let (dirs, name) = rel.split_at(rel.len() - 1);
            let path = format!("{}/{}", abs_dir(root, dirs).trim_end_matches('/'), name[0]);
            simple(s, "DELE", path).await
        }
        Action::Put(rel) => {
            let (dirs, name) = rel.split_at(rel.len() - 1);
            let dir = abs_dir(root, dirs);
            if in_dir.as_deref() != Some(dir.as_str()) {
                let r = s.command(&format!("CWD {dir}")).await?;
                if !r.is_ok() {
                    return Err(s.refused(Step::Cwd { dir: &dir }, &r));
                }
                *in_dir = Some(dir.clone());
            }
            // A changed file is replaced whole: appending to what the server has would keep
            // its old bytes.
            let mut c = cfg.clone();
            c.resume = false;
            let path = format!("{}/{}", dir.trim_end_matches('/'), name[0]);
            let sum = super::put::put_on(s, &c, &local_path(local, rel), &name[0], &path).await?;
            Ok(sum.bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reverse_change_rule() {
        let t = |m: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(m * 60));
        // (local len, local mtime, listed size, listed time, up to date)
        let cases = [
            (5, t(10), Some(5), t(10), true),
            (5, t(9), Some(5), t(10), true),
            (5, t(11), Some(5), t(10), false),
            (6, t(9), Some(5), t(10), false),
            (5, t(11), Some(5), None, true),
            (5, t(9), None, t(10), true),
            (5, t(9), None, None, false),
            (5, None, Some(5), t(10), false),
        ];
        for (i, (len, mt, size, modified, want)) in cases.into_iter().enumerate() {
            assert_eq!(up_to_date(len, mt, size, modified), want, "case {i}");
        }
    }
}
