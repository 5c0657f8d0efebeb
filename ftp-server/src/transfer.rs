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
//!   which fails atomically if the name appeared meanwhile. Temporary files are created
//!   exclusively (`O_EXCL`) under a random name starting with [`TEMP_PREFIX`]: no client can
//!   predict one, so none can plant a file that blocks another's upload, and the storage layer
//!   hides and refuses every name with that prefix. Once the data has all arrived, an upload
//!   whose client has closed its control connection (killed, rather than finished: see
//!   [`crate::control`]) is not published and counts as failed.
//! - APPE, or STOR after REST: [`receive_append`] writes in place, as the client asked to modify
//!   the file: `O_APPEND`, under an exclusive lock, so concurrent appends land one after the
//!   other, each whole.
//! - Uploads reach the disk in 64 KiB `write(2)` calls (filexfer's `WRITE_SLICE`, measured in
//!   docs/benchmarks.md).
//!
//! Every copy moves no faster than the user's class allows (`max_rate`, a [`Pace`]), and takes
//! the data timeout as a *stall* timeout: it ends a transfer on which no byte
//! moved for that long, in either direction; a slow transfer that keeps moving is never cut
//! (libunftp has no data timeout of its own and pauses its idle timeout during transfers).

use std::ffi::OsStr;
use std::io::{self, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// The start of every temporary upload file's name. Names with it are reserved: listings leave
/// them out and no command may name one (see [`is_reserved`]).
pub const TEMP_PREFIX: &str = ".ftp-upload.";

/// Random bytes in a temporary file's name: 128 bits, so that no client can guess a name that a
/// coming upload will use (and plant a file there to make it fail).
const TEMP_RANDOM_BYTES: usize = 16;

/// Whether `name` (one path component) is reserved for the server's temporary upload files.
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

/// A fresh temporary file name: [`TEMP_PREFIX`], then 32 random hex digits. Short, so that the
/// name fits wherever the target's does, and hidden (a dot file) from local `ls` too.
fn temp_name() -> io::Result<String> {
    let mut random = [0u8; TEMP_RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    let mut name = String::with_capacity(TEMP_PREFIX.len() + 2 * TEMP_RANDOM_BYTES);
    name.push_str(TEMP_PREFIX);
    for b in random {
        name.push_str(&format!("{b:02x}"));
    }
    Ok(name)
}

/// Creates a temporary upload file in `parent` (the target's directory, so that the final
/// rename stays on one file system), exclusively: an existing file of that name is never
/// opened, a new random name is drawn instead.
fn create_temp(home: &Dir, parent: &Path) -> io::Result<(PathBuf, std::fs::File)> {
    let mut oo = cap_std::fs::OpenOptions::new();
    oo.write(true).create_new(true);
    let mut last = None;
    // A clash needs a guessed 128-bit name: a few draws are plenty.
    for _ in 0..4 {
        let tmp = parent.join(temp_name()?);
        match home.open_with(&tmp, &oo) {
            Ok(f) => return Ok((tmp, f.into_std())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

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
/// otherwise). Nothing is published when `client_gone` finds, once all the data is in, that
/// the client has closed its control connection (see [`client_left`]).
pub async fn receive_new<R>(
    home: Arc<Dir>,
    rel: &Path,
    input: R,
    may_replace: bool,
    stall: Duration,
    pace: Pace,
    client_gone: impl std::future::Future<Output = bool>,
) -> Outcome
where
    R: AsyncRead + Unpin,
{
    let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let h = home.clone();
    let (tmp, file) = blocking(move || create_temp(&h, &parent)).await?;
    let mut guard = TempGuard {
        dir: home.clone(),
        path: Some(tmp.clone()),
    };
    let moved = stream_to_writer(input, file, stall, pace, |_| {}).await?;
    if client_gone.await {
        // The guard removes the temporary file; any old file stays.
        return Err(client_left(moved));
    }
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

/// Where an in-place upload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlace {
    /// APPE: at the end of the file as it is when each byte is written (created if missing).
    End,
    /// STOR after `REST n` (RFC 959 §4.1.3): from byte `n`, replacing what followed it. `n`
    /// beyond the end is refused rather than leaving a hole.
    At(u64),
}

/// How long a waiting in-place upload sleeps between two tries of the file's lock.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// APPE, or STOR after REST: writes `input` into `rel` in place (this cannot be atomic: the
/// client asked to change the file, and what arrived before a failure stays).
///
/// The file is opened with `O_APPEND`, so every write lands at the end of the file as it is
/// then: nothing is written at an offset read earlier (two appends at once used to write at
/// the same offset, and one was lost), and through a symlink inside the home the target grows
/// (cap-std follows links that stay inside it). An exclusive `flock` is held for the whole
/// upload, so that in-place uploads to one file by several sessions land one after the other,
/// each whole, rather than interleaved (vsftpd's `lock_upload_files` does the same); a second
/// one waits for the first to end (bounded by the first one's stall timeout), and can be
/// aborted meanwhile.
///
/// When `client_gone` finds, once all the data is in, that the client has left, the bytes stay
/// (they are in the file already) but the upload counts as failed, and is logged so.
pub async fn receive_append<R>(
    home: Arc<Dir>,
    rel: &Path,
    input: R,
    at: InPlace,
    stall: Duration,
    pace: Pace,
    client_gone: impl std::future::Future<Output = bool>,
) -> Outcome
where
    R: AsyncRead + Unpin,
{
    let p = rel.to_path_buf();
    let file = blocking(move || {
        let mut oo = cap_std::fs::OpenOptions::new();
        oo.append(true).create(at == InPlace::End);
        Ok(home.open_with(&p, &oo)?.into_std())
    })
    .await?;
    let file = lock_exclusive(file).await?;
    let file = blocking(move || {
        if let InPlace::At(pos) = at {
            let len = file.metadata()?.len();
            if pos > len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("restart offset {pos} is beyond the end of the file ({len} bytes)"),
                ));
            }
            // With O_APPEND the writes then go on from `pos`.
            file.set_len(pos)?;
        }
        Ok(file)
    })
    .await
    .map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => Error::new(ErrorKind::PermanentFileNotAvailable, e),
        _ => e.into(),
    })?;
    let moved = stream_to_writer(input, file, stall, pace, |_| {}).await?;
    if client_gone.await {
        return Err(client_left(moved));
    }
    Ok(moved)
}

/// An upload whose data all arrived (the data connection ended normally) from a client that
/// has closed its control connection before the final reply: it was cut off (killed, or
/// interrupted) rather than finished, since in stream mode (RFC 959 §3.4.1) the data's end is
/// only the data connection's close. It counts as incomplete.
pub fn client_left(moved: u64) -> Failed {
    Failed {
        moved,
        error: Error::new(
            ErrorKind::ConnectionClosed,
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client closed its control connection before the final reply",
            ),
        ),
    }
}

/// Takes an exclusive `flock` on `file`, waiting (cancellably: the future can be dropped, by
/// ABOR for one) while another in-place upload holds it.
async fn lock_exclusive(file: std::fs::File) -> io::Result<std::fs::File> {
    use rustix::fs::{FlockOperation, flock};
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Arc<Dir>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).expect("open");
        (dir, Arc::new(home))
    }

    async fn write_in_place(home: &Arc<Dir>, name: &str, body: &[u8], at: InPlace) -> Outcome {
        let stall = Duration::from_secs(10);
        let present = async { false };
        receive_append(
            home.clone(),
            Path::new(name),
            body,
            at,
            stall,
            Pace::unlimited(),
            present,
        )
        .await
    }

    #[tokio::test]
    async fn in_place_uploads_append_resume_and_never_leave_a_hole() {
        let (dir, home) = home();
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").expect("write");
        // REST 4 + STOR: from byte 4, replacing the rest.
        assert_eq!(
            write_in_place(&home, "f", b"ab", InPlace::At(4)).await.ok(),
            Some(2)
        );
        assert_eq!(std::fs::read(&file).expect("read"), b"0123ab");
        // APPE: at the end, whatever was read before.
        assert_eq!(
            write_in_place(&home, "f", b"Z", InPlace::End).await.ok(),
            Some(1)
        );
        assert_eq!(std::fs::read(&file).expect("read"), b"0123abZ");
        // REST at the end resumes there; beyond it is refused and changes nothing.
        assert!(
            write_in_place(&home, "f", b"!", InPlace::At(7))
                .await
                .is_ok()
        );
        let beyond = write_in_place(&home, "f", b"x", InPlace::At(100)).await;
        assert_eq!(
            beyond.err().map(|f| f.error.kind()),
            Some(ErrorKind::PermanentFileNotAvailable)
        );
        assert_eq!(std::fs::read(&file).expect("read"), b"0123abZ!");
        // APPE creates a missing file; REST + STOR does not.
        assert!(
            write_in_place(&home, "new", b"n", InPlace::End)
                .await
                .is_ok()
        );
        assert_eq!(std::fs::read(dir.path().join("new")).expect("read"), b"n");
        assert!(
            write_in_place(&home, "other", b"n", InPlace::At(1))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_upload_whose_client_left_is_not_published_and_leaves_no_temporary_file() {
        let (dir, home) = home();
        std::fs::write(dir.path().join("f"), b"old").expect("write");
        let stall = Duration::from_secs(10);
        let gone = async { true };
        let r = receive_new(
            home.clone(),
            Path::new("f"),
            &b"new"[..],
            true,
            stall,
            Pace::unlimited(),
            gone,
        )
        .await;
        let failed = r.expect_err("not published");
        assert_eq!(
            (failed.moved, failed.error.kind()),
            (3, ErrorKind::ConnectionClosed)
        );
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["f"]);
        let present = async { false };
        let r = receive_new(
            home,
            Path::new("f"),
            &b"new"[..],
            true,
            stall,
            Pace::unlimited(),
            present,
        )
        .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"new");
    }
}
