//! The data path of RETR, STOR and APPE, below the libunftp adapter ([`crate::storage`]): the
//! bytes move through `filexfer::datapath`, the same copy the other tools use, and uploads are
//! published atomically.
//!
//! - RETR: [`send`] goes through `filexfer::datapath::send_range`, tcp-fileserv's path too: 1 MiB
//!   chunks read on the blocking pool while the previous chunk is written to the socket
//!   (libunftp's default is an 8 KiB copy over a 4 KiB `BufReader`, 10x slower).
//! - STOR: [`receive_new`] writes a temporary file in the target directory and renames it over
//!   the target only when the transfer completed; a failed, stalled or aborted upload removes
//!   it, leaving any old file untouched. Classes that may not overwrite publish with `link()`,
//!   which fails atomically if the name appeared meanwhile.
//! - APPE, or STOR after REST: [`receive_append`] writes in place at the offset, as the client
//!   asked to modify the file.
//! - Uploads reach the disk in 64 KiB `write(2)` calls (filexfer's `WRITE_SLICE`, measured in
//!   docs/benchmarks.md).
//!
//! Every copy moves no faster than the user's class allows (`max_rate`, a [`Pace`]), and takes
//! the data timeout as a *stall* timeout: it ends a transfer on which no byte
//! moved for that long, in either direction; a slow transfer that keeps moving is never cut
//! (libunftp has no data timeout of its own and pauses its idle timeout during transfers).

use std::io::{self, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cap_std::fs::{Dir, OpenOptionsExt};
use filexfer::datapath::{CopyError, Opaque, Pace, send_range, stream_to_writer};
use tokio::io::{AsyncRead, AsyncWrite};
use unftp_core::storage::{Error, ErrorKind};

use crate::path::as_fs_path;

/// A transfer that failed, with the bytes it had moved (for the logs and the xferlog).
#[derive(Debug)]
pub struct Failed {
    /// Bytes moved before the failure.
    pub moved: u64,
    /// The error libunftp turns into a reply (`451` for I/O errors and stalls, `550`, `553`).
    pub error: Error,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Self { moved: 0, error }
    }
}

impl From<io::Error> for Failed {
    fn from(e: io::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<CopyError> for Failed {
    fn from(e: CopyError) -> Self {
        let moved = e.moved();
        let (CopyError::Network { source, .. } | CopyError::Local { source, .. }) = e;
        Self {
            moved,
            error: source.into(),
        }
    }
}

/// Bytes moved, or why not.
pub type Outcome = Result<u64, Failed>;

/// Runs blocking file-system work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}

/// Opens `rel` below `home` for reading from `start_pos` (RFC 959 REST). Only a regular file
/// (or a symlink to one inside the home) is opened: a directory, FIFO, socket or device is
/// refused here, before any byte is sent and without blocking (`550`).
///
/// A FIFO's `open()` for reading blocks until a writer appears, holding a blocking-pool thread
/// and, through the transfer tracker, the server's shutdown; a device's `open()` can have side
/// effects. So the path is described first and anything but a regular file is refused without
/// being opened; and since it could be swapped for a FIFO between that look and the open, the
/// open itself is non-blocking (`O_NONBLOCK`, which makes `open()` of a FIFO return at once),
/// the opened file is checked again with `fstat`, and only then is `O_NONBLOCK` cleared.
pub async fn open_read(home: Arc<Dir>, rel: &Path, start_pos: u64) -> io::Result<std::fs::File> {
    let p = as_fs_path(rel).to_path_buf();
    blocking(move || {
        regular(&home.metadata(&p)?)?;
        let mut oo = cap_std::fs::OpenOptions::new();
        oo.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let f = home.open_with(&p, &oo)?;
        regular(&f.metadata()?)?;
        let mut f = f.into_std();
        clear_nonblocking(&f)?;
        if start_pos > 0 {
            f.seek(io::SeekFrom::Start(start_pos))?;
        }
        Ok(f)
    })
    .await
}

/// Refuses anything but a regular file: `EISDIR` for a directory, `ENODEV` for the rest (both
/// `550`, "File not found", in libunftp's reply table).
fn regular(m: &cap_std::fs::Metadata) -> io::Result<()> {
    if m.is_file() {
        Ok(())
    } else if m.is_dir() {
        Err(io::Error::from_raw_os_error(libc::EISDIR))
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file (a FIFO, socket or device)",
        ))
    }
}

/// Clears `O_NONBLOCK` on an opened regular file, so reads behave as usual.
fn clear_nonblocking(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL take and return plain ints.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// RETR: sends `rel` from `start_pos` to `output`.
pub async fn send<W>(
    home: Arc<Dir>,
    rel: &Path,
    start_pos: u64,
    output: &mut W,
    stall: Duration,
    pace: Pace,
) -> Outcome
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let file = open_read(home, rel, start_pos).await?;
    // libunftp hands us its writer, not the socket: send_range copies (as it would to any
    // loopback peer); sendfile would need the data socket itself.
    Ok(send_range(file, start_pos, None, &mut Opaque(output), stall, pace).await?)
}

/// Numbers the temporary files of this process's uploads.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Removes a temporary upload file unless defused: covers errors, stalls and a session task
/// that is dropped mid-transfer.
struct TempGuard {
    dir: Arc<Dir>,
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = self.dir.remove_file(&p);
        }
    }
}

/// STOR: receives `input` into a temporary file next to `rel`, then publishes it as `rel`:
/// replacing an existing file when `may_replace`, else only if the name is still free (`553`
/// otherwise).
pub async fn receive_new<R>(
    home: Arc<Dir>,
    rel: &Path,
    input: R,
    may_replace: bool,
    stall: Duration,
    pace: Pace,
) -> Outcome
where
    R: AsyncRead + Unpin,
{
    let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    // Short, so that a 255-byte target name still leaves room; hidden, so it does not clutter
    // listings while the upload runs.
    let tmp = parent.join(format!(".ftp-upload.{}.{n}.tmp", std::process::id()));
    let (h, t) = (home.clone(), tmp.clone());
    let file = blocking(move || {
        let mut oo = cap_std::fs::OpenOptions::new();
        oo.write(true).create_new(true);
        Ok(h.open_with(&t, &oo)?.into_std())
    })
    .await?;
    let mut guard = TempGuard {
        dir: home.clone(),
        path: Some(tmp.clone()),
    };
    let moved = stream_to_writer(input, file, stall, pace, |_| {}).await?;
    let target = rel.to_path_buf();
    let published = blocking(move || {
        if may_replace {
            home.rename(&tmp, &home, &target)
        } else {
            // link() refuses an existing name atomically, unlike a check then rename().
            match home.hard_link(&tmp, &home, &target) {
                Ok(()) => home.remove_file(&tmp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
                // File systems without hard links: check, then rename (a small race).
                Err(_) if home.symlink_metadata(&target).is_err() => {
                    home.rename(&tmp, &home, &target)
                }
                Err(e) => Err(e),
            }
        }
    })
    .await;
    match published {
        Ok(()) => {
            guard.path = None;
            Ok(moved)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Failed {
            moved,
            error: Error::new(ErrorKind::FileNameNotAllowedError, e),
        }),
        Err(e) => Err(Failed {
            moved,
            error: e.into(),
        }),
    }
}

/// APPE, or STOR after REST: writes `input` into `rel` from `start_pos`, in place (the file is
/// cut to `start_pos` first, so a resumed upload does not keep a stale tail).
pub async fn receive_append<R>(
    home: Arc<Dir>,
    rel: &Path,
    input: R,
    start_pos: u64,
    stall: Duration,
    pace: Pace,
) -> Outcome
where
    R: AsyncRead + Unpin,
{
    let p = rel.to_path_buf();
    let file = blocking(move || {
        let mut oo = cap_std::fs::OpenOptions::new();
        oo.write(true).create(true);
        let mut f = home.open_with(&p, &oo)?.into_std();
        f.set_len(start_pos)?;
        f.seek(io::SeekFrom::Start(start_pos))?;
        Ok(f)
    })
    .await?;
    Ok(stream_to_writer(input, file, stall, pace, |_| {}).await?)
}
