//! The libunftp `StorageBackend` adapter: unftp-sbe-fs's `Filesystem` with the account
//! classes' rules in front of it and our data path ([`crate::transfer`]) for RETR, STOR and APPE.
//!
//! - `enter()` is forwarded, so every user is chrooted to its home (unftp-sbe-rooter and
//!   -restrict do not forward it). Our own cap-std handle on the home is opened in `enter()` too.
//! - Every path goes through [`crate::path::confine`]; `..` above the home is refused, and
//!   cap-std refuses symlinks that lead out of it when a file is opened.
//! - Every operation is checked against [`crate::account::permits`] first.
//! - Names starting with [`transfer::TEMP_PREFIX`] belong to uploads in progress: listings leave
//!   them out and every command naming one is refused (`553`), so no client can see, take or
//!   plant a temporary upload file.
//! - Each transfer is logged (tracing and the optional xferlog) and holds a token of the
//!   server's transfer tracker, which graceful shutdown waits for.

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cap_std::fs::Dir;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

use crate::account::{FtpUser, Op, permits};
use crate::control::{ControlLink, UPLOAD_SETTLE};
use crate::path::{as_fs_path, confine};
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
}

impl StorageShared {
    /// Shared state for a server rooted at `root`.
    pub fn new(root: PathBuf, data_timeout: Duration, xferlog: Option<XferLog>) -> Self {
        Self {
            root,
            data_timeout,
            xferlog,
            transfers: TaskTracker::new(),
        }
    }
}

/// The per-session storage backend handed to libunftp.
#[derive(Debug)]
pub struct FtpStorage {
    inner: Option<Filesystem>,
    home: Option<Arc<Dir>>,
    shared: Arc<StorageShared>,
    peer: SocketAddr,
    control: ControlLink,
}

fn denied() -> Error {
    Error::from(ErrorKind::PermissionDenied)
}

impl FtpStorage {
    /// Storage for one session from `peer`, whose control connection `control` watches.
    /// Nothing is reachable until `enter()`.
    pub fn new(shared: Arc<StorageShared>, peer: SocketAddr, control: ControlLink) -> Self {
        let inner = match Filesystem::new(shared.root.clone()) {
            Ok(fs) => Some(fs),
            Err(e) => {
                tracing::error!(root = %shared.root.display(), error = %e, "cannot open the root");
                None
            }
        };
        Self {
            inner,
            home: None,
            shared,
            peer,
            control,
        }
    }

    fn inner(&self) -> Result<&Filesystem> {
        self.inner
            .as_ref()
            .ok_or_else(|| Error::from(ErrorKind::LocalError))
    }

    fn home(&self) -> Result<Arc<Dir>> {
        self.home.clone().ok_or_else(denied)
    }

    /// Confines `path` and checks `op` on it; returns the path relative to the home.
    fn check(&self, user: &FtpUser, op: Op, path: &Path) -> Result<PathBuf> {
        let rel = confine(path).ok_or_else(|| {
            tracing::info!(peer = %self.peer, user = %user.name, path = %path.display(), "refused: path leaves the home");
            denied()
        })?;
        if rel
            .components()
            .any(|c| transfer::is_reserved(c.as_os_str()))
        {
            tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), ?op, "refused: a name reserved for uploads in progress");
            return Err(Error::from(ErrorKind::FileNameNotAllowedError));
        }
        permits(&user.access, op, &rel).map_err(|kind| {
            tracing::info!(peer = %self.peer, user = %user.name, path = %rel.display(), ?op, "refused by the account class");
            Error::from(kind)
        })?;
        Ok(rel)
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
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::other("the root could not be opened"))?;
        inner.enter(user)?;
        let root = Dir::open_ambient_dir(&self.shared.root, cap_std::ambient_authority())?;
        let home = if user.home_rel.as_os_str().is_empty() {
            root
        } else {
            root.open_dir(&user.home_rel)?
        };
        self.home = Some(Arc::new(home));
        Ok(())
    }

    fn supported_features(&self) -> u32 {
        // FEATURE_APPEND: APPE reaches `put` as an append, not as a length looked up earlier.
        unftp_core::storage::FEATURE_RESTART | libunftp::storage::FEATURE_APPEND
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Meta> {
        let rel = self.check(user, Op::Stat, path.as_ref())?;
        self.inner()?.metadata(user, as_fs_path(&rel)).await
    }

    async fn list<P>(&self, user: &FtpUser, path: P) -> Result<Vec<Fileinfo<PathBuf, Meta>>>
    where
        P: AsRef<Path> + Send + Debug,
    {
        let rel = self.check(user, Op::List, path.as_ref())?;
        let mut entries = self.inner()?.list(user, as_fs_path(&rel)).await?;
        // A name with CR or LF cannot be written in a line-based listing (LIST, NLST, MLSD):
        // sent raw it would forge extra lines. No FTP command can name such a file either (a
        // command ends at LF), so it is left out, with a log line saying so. Temporary upload
        // files are left out silently: they are the server's own, and never a client's.
        entries.retain(|e| {
            if e.path.file_name().is_some_and(transfer::is_reserved) {
                return false;
            }
            let name = e.path.as_os_str().as_encoded_bytes();
            let clean = !name.contains(&b'\r') && !name.contains(&b'\n');
            if !clean {
                tracing::info!(
                    peer = %self.peer,
                    dir = %rel.display(),
                    name = %filexfer::text::printable(&e.path.to_string_lossy()),
                    "left a name with CR or LF out of a listing"
                );
            }
            clean
        });
        Ok(entries)
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
        let rel = confine(path.as_ref()).ok_or_else(denied)?;
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
        let rel = self.check(user, op, &rel)?;
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
        self.inner()?.del(user, as_fs_path(&rel)).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Mkdir, path.as_ref())?;
        self.inner()?.mkd(user, as_fs_path(&rel)).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let from = self.check(user, Op::Rename, from.as_ref())?;
        let to = self.check(user, Op::Rename, to.as_ref())?;
        self.inner()?
            .rename(user, as_fs_path(&from), as_fs_path(&to))
            .await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Rmdir, path.as_ref())?;
        if rel.as_os_str().is_empty() {
            return Err(denied());
        }
        self.inner()?.rmd(user, as_fs_path(&rel)).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = self.check(user, Op::Cwd, path.as_ref())?;
        self.inner()?.cwd(user, as_fs_path(&rel)).await
    }
}
