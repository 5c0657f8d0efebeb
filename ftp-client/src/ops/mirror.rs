//! `mirror`: a remote tree into LOCALDIR, fetching only what changed.
//!
//! Three phases. **Walk**: one session lists every directory (MLSD when FEAT names MLST, else
//! LIST), each listing sorted by [`crate::names::plan_dir`], so a hostile name never becomes a
//! path; links are skipped (never followed, so no loop through them), a directory whose PWD was
//! seen before is skipped (a loop the server presents as a directory), and depth and the total
//! number of entries are bounded. **Fetch**: `--parallel` workers, each keeping one session
//! from file to file (CWD to the file's directory, then the one-file path of
//! [`get`](super::get): `.part`, resume of a `.part` left by an interrupted run, never replacing
//! a file on failure); a 421 reply at connect (too many connections) retires a worker instead
//! of failing the file, and a session the server closed is replaced once at once. **Delete** (`--delete` only): local files under LOCALDIR that
//! the server no longer lists, walking LOCALDIR without following links; skipped entirely
//! when any listing failed, since a missing listing is not an empty directory.
//!
//! The change rule: a file is fetched when it is missing locally, when the listed size differs
//! from the local size, or when the listed modification time (to the minute) differs from the
//! local one. After a fetch the local file gets the listed time, so the next run compares like
//! with like. A listing with neither size nor time means "fetch".

use std::collections::{HashSet, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use filexfer::download::{Download, Output, part_path};
use filexfer::progress::{Bars, Summary};
use filexfer::text::printable;

use crate::config::{Config, MirrorOptions};
use crate::error::ClientError;
use crate::names::{self, Skipped};
use crate::reply::parse_pwd;
use crate::session::{Session, Tracer};
use crate::target::Remote;

/// Deepest directory nesting followed below the mirrored directory.
pub const MAX_DEPTH: usize = 64;
/// Most entries in the whole tree: a server that invents directories forever stops here.
pub const MAX_TOTAL_ENTRIES: usize = 1_000_000;
/// How often a file may meet a 421 on the last remaining session before it counts as failed.
const MAX_421: u32 = 5;

/// A listed modification time (`YYYY-MM-DD HH:MM` or `YYYY-MM-DD`, see
/// [`crate::listing::Entry::modified`]) as a time, read as UTC.
pub fn listed_time(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi) = if s.len() >= 16 {
        (num(11..13)?, num(14..16)?)
    } else {
        (0, 0)
    };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, d as u8).ok()?;
    let t = time::Time::from_hms(h as u8, mi as u8, 0).ok()?;
    let secs = date.with_time(t).assume_utc().unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

pub(crate) fn minute(t: SystemTime) -> Option<u64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() / 60)
}

/// The change rule (module docs): whether a local file of `local_len` bytes modified at
/// `local_mtime` is the listed file, so fetching it again can be skipped.
pub fn unchanged(
    local_len: u64,
    local_mtime: Option<SystemTime>,
    size: Option<u64>,
    modified: Option<SystemTime>,
) -> bool {
    if size.is_none() && modified.is_none() {
        return false;
    }
    if size.is_some_and(|s| s != local_len) {
        return false;
    }
    match modified {
        Some(m) => local_mtime
            .and_then(minute)
            .is_some_and(|l| Some(l) == minute(m)),
        None => true,
    }
}

/// A remote file to mirror.
#[derive(Debug, Clone)]
pub(crate) struct RemoteFile {
    pub rel: Vec<String>,
    pub size: Option<u64>,
    pub modified: Option<SystemTime>,
}

/// What the walk found.
#[derive(Default)]
pub(crate) struct Tree {
    pub dirs: Vec<Vec<String>>,
    pub files: Vec<RemoteFile>,
    /// Paths (relative, case-folded when the disk folds case) `--delete` must keep: skipped and
    /// excluded entries.
    pub keep: HashSet<String>,
    pub skipped: usize,
    /// A listing failed or the walk stopped early: `--delete` must not run.
    pub incomplete: bool,
    /// The mirrored directory's absolute path, as PWD gave it.
    pub root: String,
    /// Directories whose listing failed.
    pub failed_dirs: usize,
}

/// `root/rel...`: the absolute remote directory (`/` when both are empty).
pub(crate) fn abs_dir(root: &str, rel: &[String]) -> String {
    let mut dir = root.trim_end_matches('/').to_string();
    for seg in rel {
        dir.push('/');
        dir.push_str(seg);
    }
    if dir.is_empty() {
        dir.push('/');
    }
    dir
}

/// Whether `rel` or one of its parents is in `dirs`.
fn under(dirs: &HashSet<Vec<String>>, rel: &[String]) -> bool {
    (0..=rel.len()).any(|i| dirs.contains(&rel[..i]))
}

pub(crate) fn rel_display(rel: &[String]) -> String {
    printable(&rel.join("/"))
}

pub(crate) fn local_path(root: &Path, rel: &[String]) -> PathBuf {
    rel.iter().fold(root.to_path_buf(), |p, s| p.join(s))
}

/// The results the workers add to.
#[derive(Default)]
pub(crate) struct Tally {
    /// Files fetched (or found complete).
    pub fetched: usize,
    /// Bytes moved.
    pub bytes: u64,
    /// One line per failure, naming it.
    pub failed: Vec<String>,
}

/// Mirrors `remote.dirs` into `local`; the dry-run plan goes to `out`.
pub async fn mirror(
    cfg: &Config,
    remote: &Remote,
    local: &Path,
    opts: &MirrorOptions,
    out: &mut (dyn Write + Send),
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    if opts.reverse {
        return super::reverse::mirror_up(cfg, remote, local, opts, out, trace).await;
    }
    let started = Instant::now();
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClientError::LocalWrite { path, source }
    };
    let say = |out: &mut (dyn Write + Send), line: String| {
        writeln!(out, "{line}").map_err(write_err(Path::new("-")))
    };
    if !opts.dry_run {
        std::fs::create_dir_all(local).map_err(write_err(local))?;
    }
    let fold_case = if local.is_dir() {
        names::folds_case(local).map_err(write_err(local))?
    } else {
        false
    };
    let key = |rel: &[String]| {
        let k = rel.join("/");
        if fold_case { k.to_lowercase() } else { k }
    };

    let mut tally = Tally::default();
    let tree = walk(cfg, remote, opts, fold_case, trace, &mut tally).await?;

    // Local directories, parents first (the walk is breadth-first), never through a link.
    let mut bad_dirs: HashSet<Vec<String>> = HashSet::new();
    for rel in tree.dirs.iter().filter(|r| !r.is_empty()) {
        if under(&bad_dirs, &rel[..rel.len().saturating_sub(1)]) {
            bad_dirs.insert(rel.clone());
            continue;
        }
        let p = local_path(local, rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                let why = if m.file_type().is_symlink() {
                    "is a symbolic link"
                } else {
                    "is a file, not a directory"
                };
                let line = format!("{}/: the local {} {why}", rel_display(rel), p.display());
                tracing::warn!("{line}");
                tally.failed.push(line);
                bad_dirs.insert(rel.clone());
            }
            Err(_) if opts.dry_run => say(out, format!("mkdir {}/", rel_display(rel)))?,
            Err(_) => std::fs::create_dir(&p).map_err(write_err(&p))?,
        }
    }

    // What to fetch.
    let mut jobs = VecDeque::new();
    let mut up_to_date = 0usize;
    let mut planned_bytes = 0u64;
    for f in &tree.files {
        if under(&bad_dirs, &f.rel[..f.rel.len() - 1]) {
            continue;
        }
        let p = local_path(local, &f.rel);
        let shown = rel_display(&f.rel);
        if let Some(link) = super::glob_get::local_link(&p) {
            let line = format!("{shown}: the local {} is a symbolic link", link.display());
            tracing::warn!("{line}");
            tally.failed.push(line);
            continue;
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let line = format!("{shown}: a local directory is in the way");
                tracing::warn!("{line}");
                tally.failed.push(line);
                continue;
            }
            Ok(m) if unchanged(m.len(), m.modified().ok(), f.size, f.modified) => {
                up_to_date += 1;
                continue;
            }
            _ => {}
        }
        planned_bytes += f.size.unwrap_or(0);
        if opts.dry_run {
            let size = f.size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
            say(out, format!("get {shown}{size}"))?;
            continue;
        }
        let (dirs, name) = f.rel.split_at(f.rel.len() - 1);
        jobs.push_back(Job {
            shown,
            dir: Some(abs_dir(&tree.root, dirs)),
            name: name.concat(),
            local: p,
            modified: f.modified,
            tries_421: 0,
        });
    }

    if !opts.dry_run && !jobs.is_empty() {
        // One bar per file being fetched, under one for the whole run (indicatif's
        // MultiProgress keeps the workers' bars from overwriting each other).
        let mut wcfg = cfg.clone();
        let bars = Bars::new(cfg.progress, "mirror", Some(planned_bytes), 0);
        wcfg.bars = Some(bars.clone());
        let mut t = fetch_all(&wcfg, trace, &remote.dirs, jobs, opts.parallel, true).await;
        bars.finish();
        tally.fetched += t.fetched;
        tally.bytes += t.bytes;
        tally.failed.append(&mut t.failed);
    }

    let mut deleted = 0usize;
    if opts.delete {
        if tree.incomplete {
            tracing::warn!("not deleting anything: the remote listing is incomplete");
        } else {
            let mut wanted: HashSet<String> = HashSet::new();
            for d in &tree.dirs {
                wanted.insert(key(d));
            }
            for f in &tree.files {
                wanted.insert(key(&f.rel));
                // The .part of a listed file is a download to resume, not a stray file.
                let part = part_path(&local_path(Path::new(""), &f.rel));
                wanted.insert(key(&part
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()));
            }
            let mut del = Deleter {
                wanted: &wanted,
                keep: &tree.keep,
                opts,
                fold_case,
                deleted: 0,
                lines: Vec::new(),
            };
            if local.is_dir() {
                del.walk(local, &mut Vec::new()).map_err(write_err(local))?;
            }
            deleted = del.deleted;
            for l in del.lines {
                say(out, l)?;
            }
        }
    }

    let stats = format!(
        "{} fetched, {} up to date, {} skipped, {} deleted, {} failed",
        tally.fetched,
        up_to_date,
        tree.skipped,
        deleted,
        tally.failed.len()
    );
    if !tally.failed.is_empty() {
        tracing::warn!("mirror of {}: {stats}", printable(&remote.dir_display()));
        // Everything the mirror had to bring over: each listed file and directory, and each
        // directory whose listing failed.
        let total = tree.files.len() + tree.dirs.len().saturating_sub(1) + tree.failed_dirs;
        return Err(ClientError::SomeFailed {
            failed: tally.failed,
            total,
        });
    }
    Ok(Summary {
        verb: if opts.dry_run {
            "dry run: would download"
        } else {
            "mirrored, downloaded"
        },
        bytes: if opts.dry_run {
            planned_bytes
        } else {
            tally.bytes
        },
        resumed_from: 0,
        elapsed: started.elapsed(),
        saved_to: Some(format!(
            "{} ({stats})",
            printable(&local.display().to_string())
        )),
    })
}

/// Fetches `jobs` with up to `parallel` sessions, each logged in and CWD'd into `login_dirs`
/// first; see [`worker`]. `resume_parts`: continue any `.part` found (mirror), rather than
/// only with `-C` (glob get, like get).
pub(crate) async fn fetch_all(
    cfg: &Config,
    trace: &Option<Tracer>,
    login_dirs: &[String],
    jobs: VecDeque<Job>,
    parallel: usize,
    resume_parts: bool,
) -> Tally {
    let workers = parallel.clamp(1, jobs.len().max(1));
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        login_dirs: login_dirs.to_vec(),
        resume_parts,
        trace: trace.clone(),
        queue: Mutex::new(jobs),
        active: AtomicUsize::new(workers),
        tally: Mutex::new(Tally::default()),
    });
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        set.spawn(worker(ctx.clone()));
    }
    while set.join_next().await.is_some() {}
    std::mem::take(&mut *ctx.tally.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One file for the workers.
pub(crate) struct Job {
    /// The name or relative path, escaped, for messages.
    pub shown: String,
    /// The absolute remote directory to CWD into; `None`: the login directory.
    pub dir: Option<String>,
    /// The remote name.
    pub name: String,
    /// Where it goes.
    pub local: PathBuf,
    /// The listed time to give the local file once complete.
    pub modified: Option<SystemTime>,
    /// How often it met a 421.
    pub tries_421: u32,
}

/// What the workers share.
struct Ctx {
    cfg: Config,
    /// The CWDs after login that reach the mirrored directory (as the walk's session did).
    login_dirs: Vec<String>,
    /// Resume every `.part` found (mirror), not only with `-C`.
    resume_parts: bool,
    trace: Option<Tracer>,
    queue: Mutex<VecDeque<Job>>,
    /// Workers still running: the last one never retires on a 421, it waits and tries again.
    active: AtomicUsize,
    tally: Mutex<Tally>,
}

fn too_many_connections(e: &ClientError) -> bool {
    matches!(e, ClientError::Protocol { reply, .. } if reply.starts_with("421"))
}

/// A worker's session and the directory it is in.
type Held = Option<(Session, Option<String>)>;

/// Takes files from the queue until it is empty, over one session kept from file to file (a
/// login per file would cost more than a small file's transfer); see the module docs for 421.
/// Logs a file that could not be fetched and counts it for the summary.
fn record_failure(ctx: &Ctx, shown: &str, e: &ClientError) {
    let line = format!("{shown}: {}", e.with_causes());
    tracing::warn!("{line}");
    ctx.tally
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .failed
        .push(line);
}

async fn worker(ctx: Arc<Ctx>) {
    let lock = |m: &Mutex<VecDeque<Job>>| m.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
    let mut held: Held = None;
    while let Some(mut job) = lock(&ctx.queue) {
        let r = fetch_retrying(&ctx, &mut held, &job).await;
        match r {
            Err(e) if too_many_connections(&e) => {
                job.tries_421 += 1;
                let last = ctx.active.load(Ordering::SeqCst) == 1;
                if last && job.tries_421 > MAX_421 {
                    record_failure(&ctx, &job.shown, &e);
                    continue;
                }
                ctx.queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_front(job);
                if !last {
                    // The server allows fewer sessions than we opened: this one retires.
                    let left = ctx.active.fetch_sub(1, Ordering::SeqCst) - 1;
                    tracing::warn!(
                        "the server refuses more sessions (421): continuing with {left}"
                    );
                    return;
                }
                tokio::time::sleep(crate::retry_pause(job_tries(&ctx))).await;
            }
            Err(e) => record_failure(&ctx, &job.shown, &e),
            Ok(sum) => {
                if let Some(t) = job.modified {
                    // The listed time, so the next run finds the file unchanged.
                    let _ = std::fs::File::options()
                        .write(true)
                        .open(&job.local)
                        .and_then(|f| f.set_modified(t));
                }
                let mut t = ctx.tally.lock().unwrap_or_else(|e| e.into_inner());
                t.fetched += 1;
                t.bytes += sum.bytes;
            }
        }
    }
    if let Some((s, _)) = held {
        s.quit().await;
    }
    ctx.active.fetch_sub(1, Ordering::SeqCst);
}

/// One file with `--retries` applied to it. After any failure the session is dropped (its
/// state is unknown); when a session that had served earlier files turns out closed (connection
/// lost, or a 421), the file is tried once more on a fresh one at once, since servers close
/// idle or long-lived sessions.
async fn fetch_retrying(ctx: &Ctx, held: &mut Held, job: &Job) -> Result<Summary, ClientError> {
    let mut attempt = 0;
    loop {
        let reused = held.is_some();
        let r = fetch_on(ctx, held, job).await;
        let Err(e) = r else { return r };
        *held = None;
        if too_many_connections(&e) && !reused {
            return Err(e);
        }
        // The control connection closed under us (a server's idle or session limit): that is
        // the session's end, not the file's failure. A cut transfer is the file's (--retries).
        let session_gone = matches!(e, ClientError::Network { .. }) || too_many_connections(&e);
        if reused && session_gone {
            continue;
        }
        if e.is_transient() && attempt < ctx.cfg.retries {
            attempt += 1;
            let pause = crate::retry_pause(attempt);
            tracing::warn!("{}: {}; retrying in {pause:?}", job.shown, e.with_causes());
            tokio::time::sleep(pause).await;
            continue;
        }
        return Err(e);
    }
}

/// One file on the held session (connecting first when there is none).
async fn fetch_on(ctx: &Ctx, held: &mut Held, job: &Job) -> Result<Summary, ClientError> {
    let mut cfg = ctx.cfg.clone();
    if ctx.resume_parts {
        // Resume only a `.part` of ours: an older complete file under the final name may
        // differ from the new one in any byte, so it is replaced, not continued.
        cfg.resume = std::fs::symlink_metadata(part_path(&job.local)).is_ok_and(|m| m.is_file());
    }
    let path = match &job.dir {
        Some(d) => format!("{}/{}", d.trim_end_matches('/'), job.name),
        None => format!("{}/{}", ctx.login_dirs.join("/"), job.name),
    };
    let dl = Download::plan(Output::Path(job.local.clone()), cfg.resume)
        .map_err(|e| super::get::local_error(&cfg.host, &path, e))?;
    if held.is_none() {
        let s = super::connect(&cfg, &ctx.trace, &ctx.login_dirs).await?;
        *held = Some((s, None));
    }
    let Some((s, cwd)) = held.as_mut() else {
        return Err(ClientError::Usage("no session".into()));
    };
    if let Some(dir) = job.dir.as_ref().filter(|d| cwd.as_ref() != Some(*d)) {
        let r = s.command(&format!("CWD {dir}")).await?;
        if !r.is_ok() {
            return Err(s.refused(crate::error::Step::Cwd { dir }, &r));
        }
        *cwd = Some(dir.clone());
    }
    super::get::get_on(s, &cfg, &job.name, &path, false, dl, false).await
}

/// The 421 count of the job at the queue's head (just put back), for the pause.
fn job_tries(ctx: &Ctx) -> u32 {
    ctx.queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .front()
        .map_or(1, |j| j.tries_421)
}

/// Lists the tree breadth-first over one session (reconnecting after a failed listing).
pub(crate) async fn walk(
    cfg: &Config,
    remote: &Remote,
    opts: &MirrorOptions,
    fold_case: bool,
    trace: &Option<Tracer>,
    tally: &mut Tally,
) -> Result<Tree, ClientError> {
    let mut s = super::connect(cfg, trace, &remote.dirs).await?;
    s.set_type(false).await?;
    let mlsd = super::ls::uses_mlsd(&mut s).await?;
    let r = s.command("PWD").await?;
    let Some(root) = parse_pwd(&r) else {
        return Err(s.refused(crate::error::Step::Command("PWD"), &r));
    };
    let mut session = Some(s);
    let mut tree = Tree {
        root: root.clone(),
        ..Tree::default()
    };
    let mut seen = HashSet::new();
    let mut queue: VecDeque<Vec<String>> = VecDeque::from([Vec::new()]);
    let mut total = 0usize;
    let key = |rel: &[String]| {
        let k = rel.join("/");
        if fold_case { k.to_lowercase() } else { k }
    };
    let mut fail = |tree: &mut Tree, line: String| {
        tracing::warn!("{line}");
        tally.failed.push(line);
        tree.incomplete = true;
        tree.failed_dirs += 1;
    };
    while let Some(rel) = queue.pop_front() {
        if session.is_none() {
            let mut s = super::connect(cfg, trace, &remote.dirs).await?;
            s.set_type(false).await?;
            session = Some(s);
        }
        let Some(s) = session.as_mut() else {
            continue;
        };
        let shown = format!("{}/", rel_display(&rel));
        let listed = list_one(s, mlsd, &root, &rel, &mut seen).await;
        let entries = match listed {
            Ok(Some(v)) => v,
            Ok(None) => {
                tracing::warn!("skipping {shown}: a directory loop (its path was listed before)");
                tree.skipped += 1;
                tree.keep.insert(key(&rel));
                continue;
            }
            Err(e) => {
                fail(&mut tree, format!("{shown}: {}", e.with_causes()));
                // The session may be mid-transfer or gone: start a fresh one for the rest.
                if let Some(s) = session.take() {
                    drop(s);
                }
                continue;
            }
        };
        tree.dirs.push(rel.clone());
        total += entries.len();
        if total > MAX_TOTAL_ENTRIES {
            fail(
                &mut tree,
                format!("{shown}: the tree has more than {MAX_TOTAL_ENTRIES} entries; stopped"),
            );
            break;
        }
        let plan = names::plan_dir(entries, fold_case);
        for Skipped { name, why } in plan.skipped {
            let sk = Skipped { name, why };
            tracing::warn!("{shown}: {sk}");
            tree.skipped += 1;
            if names::check_name(&sk.name).is_ok() {
                let mut p = rel.clone();
                p.push(sk.name);
                tree.keep.insert(key(&p));
            }
        }
        for e in plan.files {
            let mut p = rel.clone();
            p.push(e.name.clone());
            if !opts.wants(&e.name) {
                tree.keep.insert(key(&p));
                continue;
            }
            tree.files.push(RemoteFile {
                rel: p,
                size: e.size,
                modified: e.modified.as_deref().and_then(listed_time),
            });
        }
        for d in plan.dirs {
            let mut p = rel.clone();
            p.push(d.name.clone());
            if p.len() > MAX_DEPTH {
                tracing::warn!(
                    "skipping {}/: deeper than {MAX_DEPTH} directories",
                    rel_display(&p)
                );
                tree.skipped += 1;
                tree.keep.insert(key(&p));
                continue;
            }
            queue.push_back(p);
        }
    }
    if let Some(s) = session {
        s.quit().await;
    }
    Ok(tree)
}

/// CWD into `root/rel` in one command, then PWD: `None` when the server says we are in a
/// directory listed before (a loop), else the listing.
async fn list_one(
    s: &mut Session,
    mlsd: bool,
    root: &str,
    rel: &[String],
    seen: &mut HashSet<String>,
) -> Result<Option<Vec<crate::listing::Entry>>, ClientError> {
    let dir = abs_dir(root, rel);
    let r = s.command(&format!("CWD {dir}")).await?;
    if !r.is_ok() {
        return Err(s.refused(crate::error::Step::Cwd { dir: &dir }, &r));
    }
    let r = s.command("PWD").await?;
    if let Some(pwd) = parse_pwd(&r) {
        if !seen.insert(pwd) {
            return Ok(None);
        }
    }
    super::ls::entries(s, mlsd, &dir).await.map(Some)
}

/// `--delete`: walks LOCALDIR without following links and removes what the server no
/// longer has.
struct Deleter<'a> {
    wanted: &'a HashSet<String>,
    /// Skipped and excluded remote entries: left alone, contents and all.
    keep: &'a HashSet<String>,
    opts: &'a MirrorOptions,
    fold_case: bool,
    deleted: usize,
    lines: Vec<String>,
}

impl Deleter<'_> {
    fn walk(&mut self, dir: &Path, rel: &mut Vec<String>) -> io::Result<()> {
        let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        for e in children {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                // Not a name the server could have sent us: not ours to delete.
                continue;
            };
            rel.push(name.clone());
            let k = rel.join("/");
            let k = if self.fold_case { k.to_lowercase() } else { k };
            if self.keep.contains(&k) {
                rel.pop();
                continue;
            }
            let path = e.path();
            let m = std::fs::symlink_metadata(&path)?;
            if m.is_dir() {
                // Recurse even into a wanted directory: files inside may be gone.
                self.walk(&path, rel)?;
                if !self.wanted.contains(&k) {
                    if self.opts.dry_run {
                        self.lines.push(format!("rmdir {}/", rel_display(rel)));
                    } else if std::fs::remove_dir(&path).is_ok() {
                        self.deleted += 1;
                    }
                }
            } else if !self.wanted.contains(&k) && self.opts.wants(&name) {
                // A file or a link (remove_file removes the link, never its target).
                if self.opts.dry_run {
                    self.lines.push(format!("delete {}", rel_display(rel)));
                } else {
                    std::fs::remove_file(&path)?;
                    self.deleted += 1;
                }
            }
            rel.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_times() {
        let t = |s| listed_time(s).and_then(minute);
        assert_eq!(t("1970-01-01 00:01"), Some(1));
        assert_eq!(t("2026-01-01"), t("2026-01-01 00:00"));
        assert!(t("2026-01-01 10:30").is_some());
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-30 00:00",
            "20x6-01-01",
            "1969-12-31",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn change_rule() {
        let at = |s| listed_time(s);
        let noon = at("2026-05-01 12:00");
        let noon_30s = noon.map(|t| t + Duration::from_secs(30));
        let later = at("2026-05-01 12:01");
        // (local len, local mtime, listed size, listed time, unchanged)
        let cases = [
            (5, noon, Some(5), noon, true),
            (5, noon_30s, Some(5), noon, true),
            (5, later, Some(5), noon, false),
            (6, noon, Some(5), noon, false),
            (5, noon, Some(5), None, true),
            (5, noon, None, noon, true),
            (5, None, Some(5), noon, false),
            (5, noon, None, None, false),
        ];
        for (i, (len, mt, size, modified, want)) in cases.into_iter().enumerate() {
            assert_eq!(unchanged(len, mt, size, modified), want, "case {i}");
        }
    }
}
