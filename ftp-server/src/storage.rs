//! The libunftp `StorageBackend` adapter: a cap-std handle on the user's home with the account
//! classes' rules in front of it and our data path ([`crate::transfer`]) for RETR, STOR and APPE.
//!
//! - `enter()` chroots every user to its home: every operation goes through the cap-std handle
//!   on it, which refuses paths that lead out. The handle is shared by the sessions of one home
//!   while any of them is open ([`StorageShared::home`]), so a logged-in session holds no
//!   descriptor of its own but its control connection.
//! - Every path is read back from its wire form ([`crate::names`]: names that are not UTF-8)
//!   and goes through [`crate::path::confine`]; `..` above the home is refused, and cap-std
//!   refuses symlinks that lead out of it when a file is opened. Dotfiles are refused unless the
//!   server shows them (`hidden`).
//! - `metadata` and `list` are ours ([`crate::listing`]): a symlink inside the home is described
//!   as its target, one that leads out is refused and not listed, FIFOs, sockets and devices
//!   are refused and not listed; LIST/NLST/STAT take a file or a glob as well as a directory.
//! - Every operation is checked against [`crate::account::permits`] first.
//! - Names starting with [`transfer::TEMP_PREFIX`] belong to uploads in progress: listings leave
//!   them out and every command naming one is refused (`553`), so no client can see, take or
//!   plant a temporary upload file.
//! - Each transfer is logged (tracing and the optional xferlog) and holds a token of the
//!   server's transfer tracker, which graceful shutdown waits for.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cap_std::fs::Dir;
use futures_util::{StreamExt, stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, ListStream, Result, StorageBackend};

use crate::account::{FtpUser, Op, permits};
use crate::control::{ControlLink, UPLOAD_SETTLE};
use crate::listing::{self, Kind, ListError, Listing, Meta, Opened, Skip};
use crate::names;
use crate::path::{as_fs_path, confine};
use crate::preflight;
use crate::transfer::{self, Failed, InPlace, Outcome};
use crate::xferlog::{Direction, XferLog, XferRecord};
use filexfer::datapath::Pace;

/// State shared by the storage of every session.
#[derive(Debug)]
pub struct StorageShared {
    /// The server root.
    pub root: PathBuf,
    /// Stall timeout of a data transfer.
    pub data_timeout: Duration,
    /// Optional classic xferlog.
    pub xferlog: Option<XferLog>,
    /// Running transfers: graceful shutdown closes it and waits for them.
    pub transfers: TaskTracker,
    /// Whether dotfiles are listed and served (`--hidden`); refused by default.
    pub hidden: bool,
    /// The open homes, by path below the root ([`StorageShared::home`]).
    homes: Mutex<HashMap<PathBuf, Weak<Dir>>>,
}

impl StorageShared {
    /// Shared state for a server rooted at `root`.
    pub fn new(root: PathBuf, data_timeout: Duration, xferlog: Option<XferLog>) -> Self {
        Self {
            root,
            data_timeout,
            xferlog,
            transfers: TaskTracker::new(),
            hidden: false,
            homes: Mutex::default(),
        }
    }

    /// A handle on the home `rel` (below the root): the one the sessions of that home already
    /// share if any is open, else a new one. All operations on it are relative (`openat` and
    /// the like), so sessions can share it; with 10,000 sessions in one home, that is one
    /// descriptor instead of 10,000. A home replaced on disk is seen by the sessions that start
    /// once those holding the old one have ended.
    pub fn home(&self, rel: &Path) -> io::Result<Arc<Dir>> {
        let mut homes = self
            .homes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = homes.get(rel).and_then(Weak::upgrade) {
            return Ok(dir);
        }
        let root = Dir::open_ambient_dir(&self.root, cap_std::ambient_authority())?;
        let dir = Arc::new(if rel.as_os_str().is_empty() {
            root
        } else {
            root.open_dir(rel)?
        });
        homes.retain(|_, d| d.strong_count() > 0);
        homes.insert(rel.to_path_buf(), Arc::downgrade(&dir));
        Ok(dir)
    }
}

/// The per-session storage backend handed to libunftp.
#[derive(Debug)]
pub struct FtpStorage {
    home: Option<Arc<Dir>>,
    shared: Arc<StorageShared>,
    peer: SocketAddr,
    control: ControlLink,
}

/// How many directory entries a listing reads at a time ([`FtpStorage::list_stream`]).
pub const LIST_BATCH: usize = 256;

/// What a listing's log lines name: the session's peer.
#[derive(Debug, Clone, Copy)]
struct Logs {
    peer: SocketAddr,
}

impl Logs {
    /// The entries of `listing` as libunftp takes them; logs those left out (but dotfiles).
    fn shown_named(
        self,
        user: &str,
        rel: &Path,
        listing: Listing,
    ) -> Vec<Result<Fileinfo<PathBuf, Meta>>> {
        for (name, why) in &listing.skipped {
            // A name with CR or LF cannot be written in a line-based listing (LIST, NLST,
            // MLSD): sent raw it would forge extra lines, and no FTP command can name such a
            // file either (a command ends at LF). The others RETR would refuse.
            if *why != Skip::Hidden {
                tracing::info!(
                    peer = %self.peer,
                    user = %user,
                    dir = %rel.display(),
                    name = %filexfer::text::printable(&name.to_string_lossy()),
                    why = why.as_str(),
                    "left out of a listing"
                );
            }
        }
        listing
            .entries
            .into_iter()
            .map(|(name, metadata)| {
                Ok(Fileinfo {
                    path: PathBuf::from(name),
                    metadata,
                })
            })
            .collect()
    }
}

fn denied() -> Error {
    Error::from(ErrorKind::PermissionDenied)
}

impl FtpStorage {
    /// Storage for one session from `peer`, whose control connection `control` watches.
    /// Nothing is reachable until `enter()`.
    pub fn new(shared: Arc<StorageShared>, peer: SocketAddr, control: ControlLink) -> Self {
        Self {
            home: None,
            shared,
            peer,
            control,
        }
    }

    /// [`Logs::shown_named`] for this session.
    fn shown(
        &self,
        user: &FtpUser,
        rel: &Path,
        listing: Listing,
    ) -> Vec<Result<Fileinfo<PathBuf, Meta>>> {
        Logs { peer: self.peer }.shown_named(&user.name, rel, listing)
    }

    fn home(&self) -> Result<Arc<Dir>> {
        self.home.clone().ok_or_else(denied)
    }

    /// Confines `path` and checks `op` on it; returns the path relative to the home.
    fn check(&self, user: &FtpUser, op: Op, path: &Path) -> Result<PathBuf> {
        let rel = self.resolve(user, path)?;
        self.permit(user, op, &rel)?;
        Ok(rel)
    }

    /// Reads `path` back from its wire form ([`names::decode_path`]), confines it to the home
    /// and refuses dotfiles unless they are shown; returns the path relative to the home.
    fn resolve(&self, user: &FtpUser, path: &Path) -> Result<PathBuf> {
        let Some(bytes) = names::decode_path(path) else {
            tracing::info!(peer = %self.peer, user = %user.name, path = %filexfer::text::printable(&path.to_string_lossy()), "refused: not a name as listings write it");
            return Err(Error::from(ErrorKind::PermanentFileNotAvailable));
        };
        let rel = confine(&bytes).ok_or_else(|| {
            tracing::info!(peer = %self.peer, user = %user.name, path = %path.display(), "refused: path leaves the home");
            denied()
        })?;
        // Before the dotfile rule: a reserved name is refused as one (553) even when
        // dotfiles are hidden, so that a client learns why, whatever `hidden` says.
        if rel
            .components()
            .any(|c| transfer::is_reserved(c.as_os_str()))
        {
            tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), "refused: a name reserved for uploads in progress");
            return Err(Error::from(ErrorKind::FileNameNotAllowedError));
        }
        if !self.shared.hidden && names::is_hidden(&rel) {
            tracing::info!(peer = %self.peer, user = %user.name, path = %path.display(), "refused: a dotfile (see --hidden)");
            return Err(Error::from(ErrorKind::PermanentFileNotAvailable));
        }
        Ok(rel)
    }

    /// Checks `op` on an already resolved path.
    fn permit(&self, user: &FtpUser, op: Op, rel: &Path) -> Result<()> {
        permits(&user.access, op, rel).map_err(|kind| {
            tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), ?op, "refused by the account class");
            Error::from(kind)
        })
    }

    fn log_transfer(
        &self,
        user: &FtpUser,
        rel: &Path,
        direction: Direction,
        started: Instant,
        result: &Outcome,
    ) {
        let duration = started.elapsed();
        let shown = Path::new("/").join(&user.home_rel).join(rel);
        let bytes = match result {
            Ok(n) => *n,
            Err(f) => f.moved,
        };
        match result {
            Ok(_) => tracing::info!(
                peer = %self.peer, user = %user.name, path = %shown.display(),
                direction = direction.as_str(), bytes, duration_ms = duration.as_millis() as u64,
                result = "ok", "transfer"
            ),
            Err(Failed { error, .. }) => tracing::warn!(
                peer = %self.peer, user = %user.name, path = %shown.display(),
                direction = direction.as_str(), bytes, duration_ms = duration.as_millis() as u64,
                // The kind's text ("451 Local error"), not the error's ("storage error: 451
                // Local error"): one reply code per line.
                result = "failed", error = %error.kind(),
                cause = error.get_io_error().map(|io| io.to_string()).unwrap_or_default(),
                "transfer"
            ),
        }
        if let Some(x) = &self.shared.xferlog {
            x.write(&XferRecord {
                when: time::OffsetDateTime::now_utc(),
                duration,
                peer: self.peer.ip(),
                bytes,
                path: &shown,
                direction,
                class: user.class,
                user: user.anon_email.as_deref().unwrap_or(&user.name),
                complete: result.is_ok(),
            });
        }
    }

    async fn exists(&self, rel: &Path) -> Result<bool> {
        let home = self.home()?;
        let p = as_fs_path(rel).to_path_buf();
        Ok(transfer::blocking(move || Ok(home.symlink_metadata(&p).is_ok())).await?)
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for FtpStorage {
    type Metadata = Meta;

    fn enter(&mut self, user: &FtpUser) -> io::Result<()> {
        self.home = Some(self.shared.home(&user.home_rel).inspect_err(|e| {
            tracing::error!(root = %self.shared.root.display(), home = %user.home_rel.display(), error = %e, "cannot open the home");
        })?);
        Ok(())
    }

    fn supported_features(&self) -> u32 {
        // FEATURE_APPEND: APPE reaches `put` as an append, not as a length looked up earlier.
        unftp_core::storage::FEATURE_RESTART | libunftp::storage::FEATURE_APPEND
    }

    /// SIZE, MDTM, MLST, RNFR: what RETR would find. A symlink inside the home is its target;
    /// one that leads out, and a FIFO, socket or device, are refused with 550.
    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Meta> {
        let rel = self.check(user, Op::Stat, path.as_ref())?;
        let home = self.home()?;
        let r = rel.clone();
        let meta = transfer::blocking(move || listing::describe(&home, &r))
            .await
            .map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), "refused: a symlink that leads out of the home");
                }
                Error::from(e)
            })?;
        if meta.kind() == Kind::Special {
            tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), "refused: a FIFO, socket or device");
            return Err(Error::from(ErrorKind::PermanentFileNotAvailable));
        }
        Ok(meta)
    }

    /// LIST, NLST, MLSD and STAT: a directory's entries, a file's own line, or the matches of
    /// a glob in the last segment ([`listing::list`]).
    async fn list<P>(&self, user: &FtpUser, path: P) -> Result<Vec<Fileinfo<PathBuf, Meta>>>
    where
        P: AsRef<Path> + Send + Debug,
    {
        let rel = self.check(user, Op::List, path.as_ref())?;
        let home = self.home()?;
        let hidden = self.shared.hidden;
        let r = rel.clone();
        let listed = transfer::blocking(move || {
            listing::list(&home, &r, hidden).map_err(|e| match e {
                ListError::Io(e) => e,
                other => io::Error::new(io::ErrorKind::InvalidInput, other),
            })
        })
        .await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), error = %e, "refused a listing");
                return Err(Error::new(ErrorKind::PermanentFileNotAvailable, e));
            }
            Err(e) => return Err(e.into()),
        };
        self.shown(user, &rel, listed).into_iter().collect()
    }

    async fn list_stream<P>(&self, user: &FtpUser, path: P) -> Result<ListStream<Meta>>
    where
        P: AsRef<Path> + Send + Debug,
    {
        let rel = self.check(user, Op::List, path.as_ref())?;
        let home = self.home()?;
        let hidden = self.shared.hidden;
        let (h, r) = (home.clone(), rel.clone());
        let opened = transfer::blocking(move || {
            listing::open(&h, &r, hidden).map_err(|e| match e {
                ListError::Io(e) => e,
                other => io::Error::new(io::ErrorKind::InvalidInput, other),
            })
        })
        .await;
        let dir = match opened {
            Ok(Opened::One(listing)) => {
                return Ok(Box::pin(stream::iter(self.shown(user, &rel, listing))));
            }
            Ok(Opened::Dir(dir)) => dir,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), error = %e, "refused a listing");
                return Err(Error::new(ErrorKind::PermanentFileNotAvailable, e));
            }
            Err(e) => return Err(e.into()),
        };
        let batches = stream::unfold(Some((dir, home)), |state| async move {
            let (mut dir, home) = state?;
            let read = transfer::blocking(move || {
                let batch = dir.next_batch(&home, LIST_BATCH).map_err(|e| match e {
                    ListError::Io(e) => e,
                    other => io::Error::other(other),
                })?;
                Ok((batch, dir, home))
            })
            .await;
            match read {
                Ok((None, _, _)) => None,
                Ok((Some(batch), dir, home)) => Some((Ok(batch), Some((dir, home)))),
                // A failure mid-way ends the listing (libunftp answers 426).
                Err(e) => Some((Err(Error::from(e)), None)),
            }
        });
        let (this, user) = (Logs { peer: self.peer }, user.name.clone());
        Ok(Box::pin(batches.flat_map(move |batch| {
            stream::iter(match batch {
                Ok(listing) => this.shown_named(&user, &rel, listing),
                Err(e) => vec![Err(e)],
            })
        })))
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let rel = self.check(user, Op::Read, path.as_ref())?;
        let home = self.home()?;
        let _running = self.shared.transfers.token();
        let started = Instant::now();
        let pace = Pace::per_second(user.max_rate);
        let result = transfer::send(
            home,
            &rel,
            start_pos,
            output,
            self.shared.data_timeout,
            pace,
        )
        .await;
        self.log_transfer(user, &rel, Direction::Outgoing, started, &result);
        result.map_err(|f| f.error)
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let rel = self.check(user, Op::Read, path.as_ref())?;
        let file = transfer::open_read(self.home()?, &rel, start_pos).await?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            filexfer::datapath::CHUNK,
            tokio::fs::File::from_std(file),
        )))
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let rel = self.resolve(user, path.as_ref())?;
        if rel.file_name().is_none() {
            return Err(Error::from(ErrorKind::FileNameNotAllowedError));
        }
        let exists = self.exists(&rel).await?;
        // APPE comes as `APPEND` (we advertise FEATURE_APPEND: libunftp patch 32); a REST offset
        // as `start_pos > 0`.
        let in_place = match start_pos {
            libunftp::storage::APPEND => Some(InPlace::End),
            0 => None,
            pos => Some(InPlace::At(pos)),
        };
        let may = |op| permits(&user.access, op, &rel).is_ok();
        let op = match (in_place, exists) {
            // APPE of a new name creates it: for classes that may only store new names (a drop
            // box, guests) that is a new upload, published atomically like STOR.
            (Some(InPlace::End), false) if !may(Op::Append) => Op::StoreNew,
            (Some(_), _) => Op::Append,
            (None, true) => Op::Overwrite,
            (None, false) => Op::StoreNew,
        };
        self.permit(user, op, &rel)?;
        let may_replace = permits(&user.access, Op::Overwrite, &rel).is_ok();
        let home = self.home()?;
        let stall = self.shared.data_timeout;
        let _running = self.shared.transfers.token();
        let started = Instant::now();
        let pace = Pace::per_second(user.max_rate);
        let control = self.control.clone();
        let gone = async move { control.gone_within(UPLOAD_SETTLE).await };
        let result = match in_place {
            Some(at) if op == Op::Append => {
                transfer::receive_append(home, &rel, input, at, stall, pace, gone).await
            }
            _ => transfer::receive_new(home, &rel, input, may_replace, stall, pace, gone).await,
        };
        self.log_transfer(user, &rel, Direction::Incoming, started, &result);
        result.map_err(|f| f.error)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Delete, path.as_ref())?;
        let (home, p) = (self.home()?, as_fs_path(&rel).to_path_buf());
        Ok(transfer::blocking(move || home.remove_file(p)).await?)
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Mkdir, path.as_ref())?;
        let (home, p) = (self.home()?, as_fs_path(&rel).to_path_buf());
        Ok(transfer::blocking(move || home.create_dir(p)).await?)
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let from = self.check(user, Op::Rename, from.as_ref())?;
        let to = self.check(user, Op::Rename, to.as_ref())?;
        let home = self.home()?;
        let (from, to) = (
            as_fs_path(&from).to_path_buf(),
            as_fs_path(&to).to_path_buf(),
        );
        // A file or a directory itself (not a link's target), as unftp-sbe-fs did; every
        // failure is a 550.
        transfer::blocking(move || {
            let m = home.symlink_metadata(&from)?;
            if !(m.is_file() || m.is_dir()) {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
            home.rename(&from, &home, &to)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::PermanentFileNotAvailable, e))
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Rmdir, path.as_ref())?;
        if rel.as_os_str().is_empty() {
            return Err(denied());
        }
        let (home, p) = (self.home()?, as_fs_path(&rel).to_path_buf());
        Ok(transfer::blocking(move || home.remove_dir(p)).await?)
    }

    /// CWD: to a directory, or a symlink to one inside the home, as listings show it (unftp-sbe-fs
    /// would list the whole directory just to answer).
    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Cwd, path.as_ref())?;
        let home = self.home()?;
        let meta = transfer::blocking(move || listing::describe(&home, &rel)).await?;
        if meta.kind() == Kind::Dir {
            Ok(())
        } else {
            Err(Error::from(ErrorKind::PermanentDirectoryNotAvailable))
        }
    }

    // The preflight checks libunftp makes before its 150 reply (crate::preflight): the same
    // rules as get_into, put and list above, so that what they would refuse is refused first.

    async fn check_get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<()> {
        let rel = self.check(user, Op::Read, path.as_ref())?;
        preflight::retrievable(self.home()?, &rel, start_pos)
            .await
            .inspect_err(|e| self.log_refusal(user, "RETR", &rel, e))
    }

    async fn check_put<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        append: bool,
    ) -> Result<()> {
        let rel = confine(path.as_ref()).ok_or_else(denied)?;
        if rel.file_name().is_none() {
            return Err(Error::from(ErrorKind::FileNameNotAllowedError));
        }
        // APPE: libunftp's data channel calls put() at the offset metadata() reports, 0 when
        // that fails; put() picks the operation from that offset.
        let offset = if append {
            self.metadata(user, path.as_ref())
                .await
                .map_or(0, |m| unftp_core::storage::Metadata::len(&m))
        } else {
            start_pos
        };
        let exists = self.exists(&rel).await?;
        let rel = self.check(user, preflight::store_op(offset, exists), &rel)?;
        preflight::storable(self.home()?, &rel, start_pos)
            .await
            .inspect_err(|e| self.log_refusal(user, if append { "APPE" } else { "STOR" }, &rel, e))
    }

    async fn check_list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<()> {
        let rel = self.check(user, Op::List, path.as_ref())?;
        preflight::listable(self.home()?, &rel)
            .await
            .inspect_err(|e| self.log_refusal(user, "listing", &rel, e))
    }
}

impl FtpStorage {
    /// A transfer refused by a preflight check: one log line, as a failed transfer had before
    /// the checks moved the refusal ahead of it (the account class's refusals log their own).
    fn log_refusal(&self, user: &FtpUser, command: &str, rel: &Path, error: &Error) {
        tracing::info!(
            peer = %self.peer, user = %user.name, path = %rel.display(), command,
            error = %error,
            cause = error.get_io_error().map(|io| io.to_string()).unwrap_or_default(),
            "refused before the transfer"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessions_of_a_home_share_one_handle_while_any_is_open() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("pub/sub")).expect("mkdir");
        let shared = StorageShared::new(t.path().to_path_buf(), Duration::from_secs(1), None);
        let a = shared.home(Path::new("pub")).expect("home");
        let b = shared.home(Path::new("pub")).expect("home");
        assert!(Arc::ptr_eq(&a, &b), "one handle for two sessions of a home");
        let root = shared.home(Path::new("")).expect("root");
        assert!(!Arc::ptr_eq(&a, &root), "another home, another handle");
        assert!(root.metadata("pub/sub").expect("below the root").is_dir());
        assert!(a.metadata("sub").expect("below the home").is_dir());
        drop((a, b));
        // Once no session holds it, the next session opens the home again (and sees it as it
        // is now).
        std::fs::rename(t.path().join("pub"), t.path().join("old")).expect("rename");
        std::fs::create_dir_all(t.path().join("pub/new")).expect("mkdir");
        let c = shared.home(Path::new("pub")).expect("home");
        assert!(c.metadata("new").expect("the new home").is_dir());
        assert!(shared.home(Path::new("missing")).is_err());
    }
}
