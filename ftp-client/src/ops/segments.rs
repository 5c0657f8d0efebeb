//! `get --segments N`: one file over up to N sessions at once, each fetching a byte range with
//! `REST` (RFC 3659 §5) into `<file>.part` at its offset, so that a server that throttles each
//! session (vsftpd's `anon_max_rate`) delivers N times the rate (lftp's `pget -n`, aria2's
//! `-x`).
//!
//! How it stays safe (docs/ftp-client.md, "Segmented download", says the same for users):
//!
//! - **One stream when segments cannot work**: no `SIZE`, a size under 2 bytes, ASCII mode, a
//!   device or FIFO as output, or `REST` refused: the file goes through [`super::get`]'s path.
//!   Sessions the server refuses (`421`, `530`, any failure to log in) are left out: the ranges
//!   are shared among those that did connect, the first one at least.
//! - **A server that ignores `REST`** (answers 350, then sends from byte 0) is caught before any
//!   local file is touched: the first session asks `REST size-1` and `RETR`, which must deliver
//!   exactly one byte. The last range is also read to the end of the data, not just to its
//!   length, and must be exactly its length (a second check, for a server that honours REST
//!   for one offset and not another, or a file that grew). Either failure removes the `.part`
//!   and ends with exit 36: nothing is renamed, so no corrupt file is ever produced.
//! - **Ranges other than the last** are read to their length exactly; then the data connection
//!   is closed and the transfer's reply (`426`, or `226` when the server had sent it all
//!   already) is read and ignored: that works against vsftpd, pyftpdlib and libunftp alike,
//!   where `ABOR` replies differ (RFC 959 §4.1.3 allows one or two replies).
//! - **The whole file is checked before the rename**: every range complete, the `.part` exactly
//!   SIZE bytes long, and SIZE asked again at the end, unchanged; only then is `.part` renamed
//!   (an existing file of that name is never touched before).
//! - **Resumable**: the state file `<file>.part.segments` ([`State`]) records each range's
//!   start, end and bytes done, rewritten (atomically, by rename) at most once a second while
//!   the ranges move and when each ends; `-C` continues every unfinished range from there (and
//!   splits what is left among N sessions again). The state is written after the bytes it
//!   counts, so it never claims more than the `.part` holds (it is not fsync'ed: it survives a
//!   killed process, not a power cut). Without `-C` a run starts over. A `.part` without a
//!   state (a one-stream get's) is a prefix and is resumed as one; a `.part` with a state is
//!   never taken for a prefix by a plain `get -C` ([`filexfer::download::Download::plan`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filexfer::download::{Download, DownloadError, Output, part_path, segments_path};
use filexfer::progress::{Bars, Summary};
use filexfer::text::printable;
use tokio::io::AsyncReadExt;

use crate::config::Config;
use crate::data::{Transfer, settle};
use crate::error::ClientError;
use crate::session::{Session, Tracer};
use crate::target::{Remote, TypeCode};

use super::get::{get_on, local_error};

/// A byte range `start..end` of the file and how much of it is in the `.part`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Bytes from `start` already written.
    pub done: u64,
}

impl Range {
    fn len(&self) -> u64 {
        self.end - self.start
    }

    fn complete(&self) -> bool {
        self.done >= self.len()
    }
}

/// What `<file>.part.segments` holds: the file's size and ranges that cover `0..size` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The remote file's SIZE when the download began.
    pub size: u64,
    /// The ranges, contiguous from 0 to `size`.
    pub ranges: Vec<Range>,
}

const STATE_HEADER: &str = "ftp-client segments 1";

impl State {
    /// The text of the state file: a header, `size N`, then `start end done` per range.
    pub fn to_text(&self) -> String {
        let mut s = format!("{STATE_HEADER}\nsize {}\n", self.size);
        for r in &self.ranges {
            s.push_str(&format!("{} {} {}\n", r.start, r.end, r.done));
        }
        s
    }

    /// Parses [`to_text`](State::to_text)'s output; `None` for anything else (a state that is
    /// not exactly right is not trusted: the download starts over).
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != STATE_HEADER {
            return None;
        }
        let size = lines.next()?.strip_prefix("size ")?.parse().ok()?;
        let mut ranges = Vec::new();
        let mut at = 0u64;
        for l in lines {
            let mut f = l.split(' ').map(str::parse::<u64>);
            let (start, end, done) = (f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?);
            if f.next().is_some() || start != at || end <= start || done > end - start {
                return None;
            }
            at = end;
            ranges.push(Range { start, end, done });
        }
        (at == size && !ranges.is_empty()).then_some(Self { size, ranges })
    }

    /// Bytes already in the `.part`.
    pub fn done(&self) -> u64 {
        self.ranges.iter().map(|r| r.done).sum()
    }

    /// A fresh state for a file of `size` bytes of which the first `prefix` are there, the rest
    /// split into `n` ranges.
    pub fn fresh(size: u64, prefix: u64, n: usize) -> Self {
        let mut ranges = Vec::new();
        if prefix > 0 {
            ranges.push(Range {
                start: 0,
                end: prefix,
                done: prefix,
            });
        }
        ranges.extend(split(&[(prefix, size)], n));
        Self { size, ranges }
    }

    /// The same coverage with what is missing split again into `n` ranges: each unfinished
    /// range becomes its done part (complete) plus new ranges for the rest.
    pub fn resplit(&self, n: usize) -> Self {
        let mut ranges = Vec::new();
        let mut holes = Vec::new();
        for r in &self.ranges {
            if r.done > 0 {
                ranges.push(Range {
                    start: r.start,
                    end: r.start + r.done,
                    done: r.done,
                });
            }
            if !r.complete() {
                holes.push((r.start + r.done, r.end));
            }
        }
        ranges.extend(split(&holes, n));
        ranges.sort_by_key(|r| r.start);
        Self {
            size: self.size,
            ranges,
        }
    }
}

/// Splits the holes `(start, end)` into `n` ranges in all (or one per hole when there are more
/// holes than `n`; never a range of 0 bytes): each further range goes to the hole whose pieces
/// are largest, then each hole is cut into equal pieces.
pub fn split(holes: &[(u64, u64)], n: usize) -> Vec<Range> {
    let holes: Vec<(u64, u64)> = holes.iter().copied().filter(|(s, e)| e > s).collect();
    let mut pieces = vec![1u64; holes.len()];
    for _ in holes.len()..n {
        let best = (0..holes.len())
            .filter(|&i| holes[i].1 - holes[i].0 > pieces[i])
            .max_by_key(|&i| (holes[i].1 - holes[i].0) / pieces[i]);
        match best {
            Some(i) => pieces[i] += 1,
            None => break,
        }
    }
    let mut out = Vec::new();
    for (&(s, e), &k) in holes.iter().zip(&pieces) {
        let len = e - s;
        for j in 0..k {
            out.push(Range {
                start: s + len * j / k,
                end: s + len * (j + 1) / k,
                done: 0,
            });
        }
    }
    out
}

/// What the workers share.
struct Shared {
    cfg: Config,
    trace: Option<Tracer>,
    dirs: Vec<String>,
    name: String,
    path: String,
    size: u64,
    file: Arc<File>,
    part: PathBuf,
    state_path: PathBuf,
    state: Mutex<(State, Instant)>,
    /// Indexes into the state's ranges, still to fetch.
    queue: Mutex<VecDeque<usize>>,
    bars: Bars,
    /// Set when a range got more data than it asked for: REST was not honoured, and nothing
    /// in the part can be trusted.
    untrusted: AtomicBool,
}

impl Shared {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, (State, Instant)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that range `i` has `done` bytes; writes the state file when `flush` or a second
    /// has passed since the last write.
    fn record(&self, i: usize, done: u64, flush: bool) {
        let mut g = self.lock_state();
        g.0.ranges[i].done = done;
        if flush || g.1.elapsed() >= Duration::from_secs(1) {
            g.1 = Instant::now();
            if let Err(e) = write_state(&self.state_path, &g.0) {
                tracing::warn!("cannot write {}: {e}", self.state_path.display());
            }
        }
    }

    fn save(&self) {
        let g = self.lock_state();
        if let Err(e) = write_state(&self.state_path, &g.0) {
            tracing::warn!("cannot write {}: {e}", self.state_path.display());
        }
    }

    fn next(&self) -> Option<usize> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn is_empty(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Writes the state next to the `.part`, atomically (a temporary file, then a rename).
fn write_state(path: &Path, st: &State) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, st.to_text())?;
    std::fs::rename(&tmp, path)
}

fn read_state(path: &Path) -> Option<State> {
    State::parse(&std::fs::read_to_string(path).ok()?)
}

/// Downloads `remote.file` to `output` over up to `n` sessions; see the module docs.
pub async fn get_segments(
    cfg: &Config,
    remote: &Remote,
    output: &Output,
    n: usize,
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    let name = remote.file.clone().unwrap_or_default();
    let path = remote.path_display();
    let ascii = remote.type_code == Some(TypeCode::Ascii);
    let target = match output {
        Output::Path(p) => p.clone(),
        Output::Stdout => return super::get(cfg, remote, output, trace).await,
    };
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => {
            return Err(local_error(
                &cfg.host,
                &path,
                DownloadError::IsDirectory(target),
            ));
        }
        // A device or FIFO is written in place, as a stream.
        Ok(m) if !m.is_file() => return super::get(cfg, remote, output, trace).await,
        _ => {}
    }
    if ascii {
        tracing::info!("--segments: ASCII transfers change the byte count; one stream");
        return super::get(cfg, remote, output, trace).await;
    }

    let mut s = super::connect(cfg, trace, &remote.dirs).await?;
    s.set_type(false).await?;
    let size = match s.size(&name).await? {
        Some(z) if z >= 2 => z,
        other => {
            s.trace(|| format!("* no segments: SIZE gave {other:?}; one stream"));
            return one_stream(s, cfg, &name, &path, output).await;
        }
    };
    // REST must work, and be honoured: ask for the last byte only.
    let r = s.command(&format!("REST {}", size - 1)).await?;
    if r.code != 350 {
        s.trace(|| "* no segments: REST refused; one stream".into());
        return one_stream(s, cfg, &name, &path, output).await;
    }
    probe_rest(&mut s, &name, &path, size).await?;

    let part = part_path(&target);
    let state_path = segments_path(&part);
    let previous = if cfg.resume {
        resume_point(&part, &state_path, size).map_err(|e| local_error(&cfg.host, &path, e))?
    } else {
        None
    };
    let state = match &previous {
        Some(Resume::State(st)) => st.resplit(n),
        Some(Resume::Prefix(p)) => State::fresh(size, *p, n),
        None => State::fresh(size, 0, n),
    };
    let resumed_from = state.done();
    let saved_to = Some(printable(&target.display().to_string()));
    if resumed_from == size {
        finish_local(&part, &target, &state_path, size)
            .map_err(|e| local_error(&cfg.host, &path, e))?;
        s.quit().await;
        return Ok(super::already_complete(resumed_from, saved_to));
    }

    // Only now, with the server known to send, touch the local file system.
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(previous.is_none())
        // Never write through a link planted where the part goes.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part)
        .map_err(|source| ClientError::LocalWrite {
            path: part.clone(),
            source,
        })?;
    if previous.is_none() {
        // An old state belongs to a part that was just emptied.
        let _ = std::fs::remove_file(&state_path);
    }
    let todo: VecDeque<usize> = (0..state.ranges.len())
        .filter(|&i| !state.ranges[i].complete())
        .collect();
    let sessions = todo.len().min(n);
    let started = Instant::now();
    let bars = Bars::new(cfg.progress, &printable(&name), Some(size), resumed_from);
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        trace: trace.clone(),
        dirs: remote.dirs.clone(),
        name: name.clone(),
        path: path.clone(),
        size,
        file: Arc::new(file),
        part: part.clone(),
        state_path: state_path.clone(),
        state: Mutex::new((state, Instant::now())),
        queue: Mutex::new(todo),
        bars: bars.clone(),
        untrusted: AtomicBool::new(false),
    });
    shared.save();

    let mut set = tokio::task::JoinSet::new();
    set.spawn(worker(shared.clone(), Some(s), 1));
    for k in 2..=sessions {
        set.spawn(worker(shared.clone(), None, k));
    }
    let mut live = Vec::new();
    let mut failure = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(Some(s))) => live.push(s),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                if failure.is_none() {
                    failure = Some(e);
                    // One range failed: the others stop too (their progress is in the state).
                    set.abort_all();
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                failure = failure.or(Some(ClientError::Network {
                    host: cfg.host.clone(),
                    what: "in a segment's task".into(),
                    source: io::Error::other(e),
                }))
            }
        }
    }
    bars.finish();
    let state = shared.lock_state().0.clone();
    shared.save();
    if let Some(e) = failure {
        for s in live {
            s.quit().await;
        }
        if shared.untrusted.load(Ordering::SeqCst) {
            // REST was not honoured: what the part holds cannot be trusted. (A REST refused
            // by a later session is also a Resume error, but the part is good: it stays.)
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&state_path);
        } else if state.done() == 0 {
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&state_path);
        }
        return Err(e);
    }
    if let Some(i) = state.ranges.iter().position(|r| !r.complete()) {
        // Every session was refused or lost before the queue emptied.
        let r = state.ranges[i];
        for s in live {
            s.quit().await;
        }
        return Err(ClientError::partial(
            &cfg.host,
            &path,
            state.done(),
            Some(size),
            format!(
                "no session left for bytes {}..{}; run again with -C to continue",
                r.start + r.done,
                r.end
            ),
        ));
    }
    // SIZE again: a file replaced on the server while we read it would mix two versions.
    if let Some(s) = live.first_mut() {
        match s.size(&name).await {
            Ok(Some(z)) if z != size => {
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_file(&state_path);
                return Err(ClientError::partial(
                    &cfg.host,
                    &path,
                    state.done(),
                    Some(size),
                    format!("the file changed on the server during the download (SIZE now {z})"),
                ));
            }
            _ => {}
        }
    }
    for s in live {
        s.quit().await;
    }
    drop(shared);
    finish_local(&part, &target, &state_path, size)
        .map_err(|e| local_error(&cfg.host, &path, e))?;
    Ok(Summary {
        verb: "downloaded",
        bytes: size - resumed_from,
        resumed_from,
        elapsed: started.elapsed(),
        saved_to,
    })
}

/// The file through one stream, on the session already open: `get`'s own path.
async fn one_stream(
    mut s: Session,
    cfg: &Config,
    name: &str,
    path: &str,
    output: &Output,
) -> Result<Summary, ClientError> {
    let dl =
        Download::plan(output.clone(), cfg.resume).map_err(|e| local_error(&cfg.host, path, e))?;
    let r = get_on(&mut s, cfg, name, path, false, dl, false).await;
    s.quit().await;
    r
}

/// `REST size-1` was accepted: `RETR` must now send exactly one byte. A server that sends more
/// ignored REST (it sends from 0); segments from it would be garbage.
async fn probe_rest(s: &mut Session, name: &str, path: &str, size: u64) -> Result<(), ClientError> {
    let t = Transfer::new("RETR", Some(name), path).resume_at(size - 1);
    let mut data = t.start(s).await?;
    let mut buf = [0u8; 2];
    let mut got = 0u64;
    loop {
        let n = match tokio::time::timeout(s.timeout(), data.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                return Err(ClientError::partial(
                    &s.host,
                    path,
                    got,
                    Some(1),
                    e.to_string(),
                ));
            }
            Err(_) => return Err(s.timeout_err(format!("waiting for data of {path:?}"))),
        };
        if n == 0 {
            break;
        }
        got += n as u64;
        if got > 1 {
            drop(data);
            let _ = tokio::time::timeout(reply_wait(s), s.read_reply_untimed("RETR")).await;
            return Err(rest_ignored(&s.host, path, size - 1, got, 1));
        }
    }
    // The end of the data was seen: close with a FIN, not the reset of an abort.
    settle(&data);
    drop(data);
    t.finish(s, got, Some(1), None).await
}

/// The server answered 350 to `REST offset` but sent `got` bytes where only `left` remained
/// from there: it started elsewhere (from 0), or the file grew.
fn rest_ignored(host: &str, path: &str, offset: u64, got: u64, left: u64) -> ClientError {
    ClientError::Resume {
        host: host.to_string(),
        path: path.to_string(),
        reason: format!(
            "the server accepted REST {offset}, then sent {got} bytes or more where {left} \
             were left: it does not honour REST (or the file changed), so the segments \
             cannot be trusted; the .part was removed"
        ),
    }
}

/// Bytes read from the socket at once.
const CHUNK: usize = 256 << 10;

/// A write of a chunk at its offset, on the blocking pool; gives the buffer back.
type Write = tokio::task::JoinHandle<(Vec<u8>, io::Result<()>)>;

/// Waits for a write; returns its buffer for the next read.
async fn landed(w: Write, part: &Path) -> Result<Vec<u8>, ClientError> {
    let err = |source| ClientError::LocalWrite {
        path: part.to_path_buf(),
        source,
    };
    let (buf, r) = w.await.map_err(|e| err(io::Error::other(e)))?;
    r.map_err(err)?;
    Ok(buf)
}

/// How long to wait for the reply after closing a range's data connection early.
fn reply_wait(s: &Session) -> Duration {
    s.timeout().min(Duration::from_secs(5))
}

enum Resume {
    /// A state file that matches the remote size.
    State(State),
    /// A `.part` without a state: a prefix of this many bytes.
    Prefix(u64),
}

/// What `-C` continues from: the state file when it matches `size`, else the `.part` as a
/// prefix (as `get -C` would), else nothing.
fn resume_point(part: &Path, state: &Path, size: u64) -> Result<Option<Resume>, DownloadError> {
    let part_len = match std::fs::symlink_metadata(part) {
        Ok(m) if m.is_file() => m.len(),
        _ => return Ok(None),
    };
    if state.exists() {
        return Ok(match read_state(state) {
            // Every byte the state counts must be in the part (not cut short since).
            Some(st)
                if st.size == size
                    && part_len <= size
                    && st.ranges.iter().all(|r| r.start + r.done <= part_len) =>
            {
                Some(Resume::State(st))
            }
            _ => {
                tracing::warn!(
                    "{}: does not match the remote file; starting over",
                    state.display()
                );
                None
            }
        });
    }
    if part_len > size {
        return Err(DownloadError::LocalLonger {
            local: part_len,
            remote: size,
        });
    }
    Ok((part_len > 0).then_some(Resume::Prefix(part_len)))
}

/// The `.part` is complete: check its length, give it the final name, drop the state.
fn finish_local(part: &Path, target: &Path, state: &Path, size: u64) -> Result<(), DownloadError> {
    let err = |source| DownloadError::Write {
        path: part.to_path_buf(),
        source,
    };
    let len = std::fs::symlink_metadata(part).map_err(err)?.len();
    if len != size {
        return Err(err(io::Error::other(format!(
            "holds {len} bytes after every range arrived, not {size}"
        ))));
    }
    std::fs::rename(part, target).map_err(|source| DownloadError::Write {
        path: target.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(state);
    Ok(())
}

/// One session: connects (unless given the first one), then fetches ranges from the queue until
/// it is empty, reconnecting when a closed range left the session unusable. A session the
/// server refuses retires quietly: the others take the ranges. Returns the session, if still
/// open, for a last SIZE and QUIT.
async fn worker(
    sh: Arc<Shared>,
    mut held: Option<Session>,
    k: usize,
) -> Result<Option<Session>, ClientError> {
    let trace = sh.trace.clone().map(|t| {
        let tag = format!("[{k}] ");
        Arc::new(move |l: &str| t(&format!("{tag}{l}"))) as Tracer
    });
    loop {
        // Connected before a range is taken, so that a refused session holds none.
        let mut s = match held.take() {
            Some(s) => s,
            None if sh.is_empty() => return Ok(None),
            None => match open(&sh, &trace).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        "segment session {k}: {}; continuing with the others",
                        e.with_causes()
                    );
                    return Ok(None);
                }
            },
        };
        let Some(i) = sh.next() else {
            return Ok(Some(s));
        };
        if fetch_range(&sh, &mut s, i).await? {
            held = Some(s);
        }
    }
}

async fn open(sh: &Shared, trace: &Option<Tracer>) -> Result<Session, ClientError> {
    let mut s = super::connect(&sh.cfg, trace, &sh.dirs).await?;
    s.set_type(false).await?;
    Ok(s)
}

/// Fetches what is missing of range `i` on `s`; returns whether `s` is still usable.
async fn fetch_range(sh: &Shared, s: &mut Session, i: usize) -> Result<bool, ClientError> {
    let r = sh.lock_state().0.ranges[i];
    let from = r.start + r.done;
    let last = r.end == sh.size;
    let path = sh.path.as_str();
    let t = Transfer::new("RETR", Some(&sh.name), path).resume_at(from);
    let mut data = t.start(s).await?;
    let label = format!("  {}..{}", r.start, r.end);
    let bar = sh.bars.add(&label, Some(r.len()), r.done);
    // `got`: bytes of the range read from the socket; `done`: of those, written to the part.
    // One write is in flight while the next chunk is read: a socket left unread while the disk
    // works stalls the sender.
    let (mut got, mut done) = (r.done, r.done);
    let mut spare: Vec<u8> = Vec::new();
    let mut pending: Option<(Write, u64)> = None;
    let outcome = loop {
        let want = r.len() - got;
        if want == 0 && !last {
            break Ok(());
        }
        let mut buf = std::mem::take(&mut spare);
        buf.resize(CHUNK, 0);
        // The last range reads on to the end of the data: more than its length means REST was
        // not honoured (or the file grew).
        let cap = if last {
            CHUNK
        } else {
            CHUNK.min(usize::try_from(want).unwrap_or(usize::MAX))
        };
        let n = match tokio::time::timeout(s.timeout(), data.read(&mut buf[..cap])).await {
            Ok(Ok(0)) => break Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                break Err(ClientError::partial(
                    &s.host,
                    path,
                    r.start + got,
                    Some(r.end),
                    e.to_string(),
                ));
            }
            Err(_) => {
                break Err(s.timeout_err(format!(
                    "waiting for data of {path:?} after byte {}",
                    r.start + got
                )));
            }
        };
        if n as u64 > want {
            sh.untrusted.store(true, Ordering::SeqCst);
            break Err(rest_ignored(
                &s.host,
                path,
                from,
                got - r.done + n as u64,
                r.end - from,
            ));
        }
        if let Some((w, m)) = pending.take() {
            match landed(w, &sh.part).await {
                Ok(b) => {
                    spare = b;
                    done += m;
                    bar.inc(m);
                    sh.record(i, done, false);
                }
                Err(e) => break Err(e),
            }
        }
        let f = sh.file.clone();
        let at = r.start + got;
        pending = Some((
            tokio::task::spawn_blocking(move || {
                let w = f.write_all_at(&buf[..n], at);
                (buf, w)
            }),
            n as u64,
        ));
        got += n as u64;
    };
    // The write in flight lands before anything is recorded or reported.
    if let Some((w, m)) = pending.take() {
        match landed(w, &sh.part).await {
            Ok(_) => {
                done += m;
                bar.inc(m);
            }
            Err(e) => {
                sh.record(i, done, true);
                return Err(e);
            }
        }
    }
    sh.record(i, done, true);
    outcome?;
    if last {
        // Read to its end: an ordinary close. A range cut short on purpose is dropped armed,
        // so its close is a reset, which tells the server the transfer was aborted.
        settle(&data);
    }
    drop(data);
    if last {
        // Read to the end: the transfer's own reply says whether it completed.
        t.finish(s, done, Some(r.len()), None).await?;
        return Ok(true);
    }
    // Closed early on purpose: the server answers 426 (or 226 if it had sent everything).
    let reply = tokio::time::timeout(reply_wait(s), s.read_reply_untimed("RETR")).await;
    if done < r.len() {
        // The data ended before the range did.
        let said = match &reply {
            Ok(Ok(reply)) => format!("the server said {:?}", reply.one_line()),
            _ => "the server said nothing".into(),
        };
        return Err(ClientError::partial(
            &s.host,
            path,
            r.start + done,
            Some(r.end),
            format!(
                "the data of the range ending at {} stopped early; {said}",
                r.end
            ),
        ));
    }
    Ok(matches!(reply, Ok(Ok(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(ranges: &[Range], from: u64, to: u64) -> bool {
        let mut at = from;
        for r in ranges {
            if r.start != at || r.end <= r.start {
                return false;
            }
            at = r.end;
        }
        at == to
    }

    #[test]
    fn split_cuts_equal_ranges_and_never_empty_ones() {
        let r = split(&[(0, 10)], 4);
        assert_eq!(
            r.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(),
            [(0, 2), (2, 5), (5, 7), (7, 10)]
        );
        // More sessions than bytes: one byte each.
        let r = split(&[(0, 3)], 8);
        assert_eq!(r.len(), 3);
        assert!(covers(&r, 0, 3));
        // Two holes: the larger gets more ranges.
        let r = split(&[(0, 100), (200, 1000)], 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().filter(|r| r.start >= 200).count(), 3);
        // More holes than sessions: one range per hole.
        assert_eq!(split(&[(0, 5), (6, 9), (10, 12)], 2).len(), 3);
        assert!(split(&[(5, 5)], 3).is_empty());
    }

    #[test]
    fn state_round_trips_and_rejects_anything_else() {
        let st = State::fresh(1001, 1, 3);
        assert!(covers(&st.ranges, 0, 1001));
        assert_eq!(st.done(), 1);
        assert_eq!(State::parse(&st.to_text()), Some(st.clone()));
        let text = st.to_text();
        for bad in [
            text.replace("size 1001", "size 1002"),
            text.replace(STATE_HEADER, "something else"),
            text.replacen("0 1 1", "0 1 2", 1),
            text.replacen("0 1 1", "1 1 0", 1),
            format!("{text}1001 1002 0\n"),
            String::new(),
            format!("{STATE_HEADER}\nsize 0\n"),
        ] {
            assert_eq!(State::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resplit_keeps_what_is_done_and_shares_the_rest() {
        let mut st = State::fresh(1000, 0, 2);
        st.ranges[0].done = 100;
        st.ranges[1].done = 500;
        let again = st.resplit(4);
        assert!(covers(&again.ranges, 0, 1000), "{again:?}");
        assert_eq!(again.done(), 600);
        let todo: u64 = again
            .ranges
            .iter()
            .filter(|r| !r.complete())
            .map(|r| r.len())
            .sum();
        assert_eq!(todo, 400);
        assert_eq!(
            again.ranges.iter().filter(|r| !r.complete()).count(),
            4,
            "{again:?}"
        );
    }
}
