//! Where a download's bytes land, and the promise every client of the suite keeps: an existing
//! file is never destroyed by a failed transfer.
//!
//! A download to a regular file is written as `<file>.part` and renamed to `<file>` only once
//! the caller has checked that every byte arrived ([`Download::commit`]). Resuming
//! (`--continue`) appends to that `.part`, or adopts a shorter file found under the final name
//! (left by another tool): it is moved to `.part` only once the server is sending, and moved
//! back, with whatever arrived appended, if the transfer fails. Standard output and devices
//! (`-o /dev/null`, a FIFO) are written in place: there is nothing to rename. Nothing touches
//! the local file system before [`Download::open`], which the caller calls only once the server
//! has accepted the request, so a refusal leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest file name most Linux file systems accept (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// A remote name that is safe to use as a local file name as it is: one plain path component.
/// `None` for an empty name, `.`, `..`, or a name with `/`, `\` or NUL in it, so that a name
/// from a URL (`..%2F..%2F.bashrc`) or a server cannot steer a download out of the directory
/// the user chose.
pub fn safe_file_name(name: &str) -> Option<&str> {
    match name {
        "" | "." | ".." => None,
        n if n.contains(['/', '\\', '\0']) => None,
        n => Some(n),
    }
}

/// `<file>.part` for `target`. When that name would exceed NAME_MAX (a 255-byte target), the
/// name is cut and a hash of the whole name added, so the part name stays distinct and the same
/// on every run (resume finds it again).
pub fn part_path(target: &Path) -> PathBuf {
    let Some(name) = target.file_name() else {
        let mut s = target.as_os_str().to_os_string();
        s.push(".part");
        return PathBuf::from(s);
    };
    let bytes = name.as_encoded_bytes();
    if bytes.len() + ".part".len() <= NAME_MAX {
        let mut s = name.to_os_string();
        s.push(".part");
        return target.with_file_name(s);
    }
    // FNV-1a 64: stable across builds and Rust versions, unlike DefaultHasher.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let lossy = name.to_string_lossy();
    let mut cut = lossy.len().min(200);
    while !lossy.is_char_boundary(cut) {
        cut -= 1;
    }
    target.with_file_name(format!("{}~{hash:016x}.part", &lossy[..cut]))
}

/// The state file of a segmented download (`ftp-client get --segments`) next to its `part`:
/// `<file>.part.segments`, or a hashed name when that would exceed NAME_MAX. While it exists,
/// the `.part` has holes and is not a prefix of the file, so [`Download::plan`] does not resume
/// from it (only the segmented download, which reads the state, may).
pub fn segments_path(part: &Path) -> PathBuf {
    let name = part.file_name().map(|n| n.as_encoded_bytes().to_vec());
    match name {
        Some(n) if n.len() + ".segments".len() <= NAME_MAX => {
            let mut s = part.as_os_str().to_os_string();
            s.push(".segments");
            PathBuf::from(s)
        }
        _ => {
            // Only for a name already cut by part_path (at most 222 bytes, so this branch is
            // for a part name between 247 and 255 bytes): cut it further.
            let p = part_path(part);
            let mut s = p.as_os_str().to_os_string();
            s.push(".segments");
            PathBuf::from(s)
        }
    }
}

/// What a download could not do locally.
#[derive(Debug, Error)]
pub enum DownloadError {
    /// The output names a directory.
    #[error("{} is a directory: name a file to save to", .0.display())]
    IsDirectory(PathBuf),
    /// Resuming is impossible: the local copy is longer than the remote file.
    #[error("the local copy has {local} bytes, more than the server's {remote}")]
    LocalLonger {
        /// Bytes already here.
        local: u64,
        /// The remote file's size.
        remote: u64,
    },
    /// A local file could not be read, written or renamed.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Where the bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output: no file is ever created.
    Stdout,
    /// A file (or an existing device or FIFO) at this path.
    Path(PathBuf),
}

#[derive(Debug)]
enum Dest {
    Stdout,
    Device(PathBuf),
    File { target: PathBuf, part: PathBuf },
}

/// One download's local side; see the module docs for what it guarantees. Dropped before
/// [`commit`](Download::commit), it undoes what [`open`](Download::open) did to an adopted file
/// and removes an empty `.part`; a non-empty `.part` stays for a later resume.
#[derive(Debug)]
pub struct Download {
    dest: Dest,
    offset: u64,
    adopt_target: bool,
    opened: bool,
    done: bool,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Write {
        path: path.to_path_buf(),
        source,
    }
}

impl Download {
    /// Plans a download to `output`. With `resume`, the transfer continues from the length of
    /// `<file>.part`, or else of a shorter file under the final name. Reads metadata only.
    pub fn plan(output: Output, resume: bool) -> Result<Self, DownloadError> {
        let dest = match output {
            Output::Stdout => Dest::Stdout,
            Output::Path(p) => match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => return Err(DownloadError::IsDirectory(p)),
                Ok(m) if !m.is_file() => Dest::Device(p),
                _ => Dest::File {
                    part: part_path(&p),
                    target: p,
                },
            },
        };
        let (mut offset, mut adopt_target) = (0, false);
        if let (true, Dest::File { target, part }) = (resume, &dest) {
            let len_of = |p: &Path| match std::fs::metadata(p) {
                Ok(m) if m.is_file() => Ok(Some(m.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(write_err(p)(e)),
            };
            // A `.part` with a segments state has holes: its length is not a prefix.
            let holes = std::fs::symlink_metadata(segments_path(part)).is_ok();
            (offset, adopt_target) = match (len_of(part)?, len_of(target)?) {
                (Some(_), _) if holes => (0, false),
                (Some(n), _) => (n, false),
                (None, Some(n)) => (n, n > 0),
                (None, None) => (0, false),
            };
        }
        Ok(Self {
            dest,
            offset,
            adopt_target,
            opened: false,
            done: false,
        })
    }

    /// The byte to ask the server to start from (0 unless resuming).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether nothing is left to fetch of a remote file of `remote` bytes; an error when the
    /// local copy is longer than that (it is not a prefix of this file).
    pub fn is_complete(&self, remote: u64) -> Result<bool, DownloadError> {
        if self.offset > remote {
            return Err(DownloadError::LocalLonger {
                local: self.offset,
                remote,
            });
        }
        Ok(self.offset > 0 && self.offset == remote)
    }

    /// How the destination is named in messages (`-` for standard output).
    pub fn display(&self) -> String {
        match &self.dest {
            Dest::Stdout => "-".into(),
            Dest::Device(p) | Dest::File { target: p, .. } => p.display().to_string(),
        }
    }

    /// The file bytes are written to while the transfer runs (`<file>.part` for a regular
    /// file), for error messages.
    pub fn writing_to(&self) -> PathBuf {
        match &self.dest {
            Dest::Stdout => PathBuf::from("-"),
            Dest::Device(p) => p.clone(),
            Dest::File { part, .. } => part.clone(),
        }
    }

    /// Opens the destination for writing, positioned at [`offset`](Download::offset). Call it
    /// once the server has accepted the request.
    pub fn open(&mut self) -> Result<Sink, DownloadError> {
        let sink = match &self.dest {
            Dest::Stdout => {
                // A descriptor of our own for fd 1, written unbuffered: `io::Stdout` is
                // line-buffered, which splits binary data at every newline byte.
                let mut out = io::stdout();
                out.flush().map_err(write_err(Path::new("-")))?;
                let fd = std::os::fd::AsFd::as_fd(&out)
                    .try_clone_to_owned()
                    .map_err(write_err(Path::new("-")))?;
                Sink::Stdout(File::from(fd))
            }
            Dest::Device(p) => Sink::File(
                OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map_err(write_err(p))?,
            ),
            Dest::File { target, part } => {
                if self.adopt_target {
                    std::fs::rename(target, part).map_err(write_err(part))?;
                }
                self.opened = true;
                if self.offset == 0 {
                    // Starting over: an old segments state no longer describes the part.
                    let _ = std::fs::remove_file(segments_path(part));
                }
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(self.offset > 0)
                    .truncate(self.offset == 0)
                    .open(part)
                    .map_err(write_err(part))?;
                Sink::File(file)
            }
        };
        self.opened = true;
        Ok(sink)
    }

    /// The transfer is complete and checked: gives the file its final name (replacing an older
    /// file of that name, as curl -o and wget -O do). Also finishes a download that
    /// [`is_complete`](Download::is_complete) found already done.
    pub fn commit(mut self) -> Result<String, DownloadError> {
        if let Dest::File { target, part } = &self.dest {
            if self.opened || !self.adopt_target {
                std::fs::rename(part, target).map_err(write_err(target))?;
            }
        }
        self.done = true;
        Ok(self.display())
    }
}

impl Download {
    /// Length of the file being written (`<file>.part`, or a device's reported length), for a
    /// check of the final length before [`commit`](Download::commit); `None` for standard
    /// output and devices, whose length means nothing.
    pub fn local_len(&self) -> Result<Option<u64>, DownloadError> {
        match &self.dest {
            Dest::File { part, .. } if self.opened => std::fs::metadata(part)
                .map(|m| Some(m.len()))
                .map_err(write_err(part)),
            _ => Ok(None),
        }
    }

    /// Gives up on this transfer *and* on what it wrote: the destination is cut back to the
    /// [`offset`](Download::offset) it had before [`open`](Download::open), then dropped as any
    /// failure is (an empty `.part` removed, an adopted file given its name back). For bytes
    /// that cannot be trusted, e.g. more than the server announced, or a server that accepted a
    /// resume offset and then sent from byte 0: kept, they would make the next resume produce a
    /// corrupt file. Standard output and devices cannot be cut back.
    pub fn discard_new_bytes(self) -> Result<(), DownloadError> {
        if let (true, Dest::File { part, .. }) = (self.opened, &self.dest) {
            let file = OpenOptions::new()
                .write(true)
                .open(part)
                .map_err(write_err(part))?;
            file.set_len(self.offset).map_err(write_err(part))?;
        }
        Ok(())
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if self.done || !self.opened {
            return;
        }
        if let Dest::File { target, part } = &self.dest {
            if self.adopt_target {
                // Give the file its name back: it holds what it had plus what arrived.
                let _ = std::fs::rename(part, target);
            } else if std::fs::metadata(part).is_ok_and(|m| m.len() == 0) {
                // Nothing to resume from.
                let _ = std::fs::remove_file(part);
            }
        }
    }
}

/// The writer [`Download::open`] returns.
#[derive(Debug)]
pub enum Sink {
    /// The process's standard output.
    Stdout(File),
    /// A file or device.
    File(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(s) => s.write(buf),
            Self::File(f) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout(s) => s.write_all(buf),
            Self::File(f) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(s) => s.flush(),
            Self::File(f) => f.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &Path) -> Output {
        Output::Path(p.to_path_buf())
    }

    #[test]
    fn safe_names_table() {
        for ok in ["a.txt", "a b.txt", "-dash", ".dotfile", "ünï", "x..y"] {
            assert_eq!(safe_file_name(ok), Some(ok));
        }
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\\b", "n\0ul"] {
            assert_eq!(safe_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn part_names_fit_name_max_and_stay_distinct() {
        assert_eq!(
            part_path(Path::new("d/a b.txt")),
            Path::new("d/a b.txt.part")
        );
        let long_a = format!("{}a.dat", "L".repeat(250));
        let long_b = format!("{}b.dat", "L".repeat(250));
        let (pa, pb) = (part_path(Path::new(&long_a)), part_path(Path::new(&long_b)));
        assert_ne!(pa, pb);
        assert_eq!(pa, part_path(Path::new(&long_a)), "stable across calls");
        for p in [&pa, &pb] {
            assert!(p.file_name().unwrap().len() <= NAME_MAX, "{p:?}");
            assert!(p.to_str().unwrap().ends_with(".part"), "{p:?}");
        }
        let uni = "é".repeat(127); // 254 bytes: the cut must fall on a char boundary
        assert!(part_path(Path::new(&uni)).file_name().unwrap().len() <= NAME_MAX);
    }

    #[test]
    fn complete_download_replaces_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, b"old").unwrap();
        let mut d = Download::plan(out(&target), false).unwrap();
        assert_eq!(d.offset(), 0);
        let mut w = d.open().unwrap();
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"old",
            "untouched while running"
        );
        w.write_all(b"new bytes").unwrap();
        drop(w);
        assert_eq!(d.commit().unwrap(), target.display().to_string());
        assert_eq!(std::fs::read(&target).unwrap(), b"new bytes");
        assert!(!part_path(&target).exists());
    }

    #[test]
    fn failed_download_keeps_the_old_file_and_the_partial_part() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, b"old").unwrap();
        let mut d = Download::plan(out(&target), false).unwrap();
        d.open().unwrap().write_all(b"half").unwrap();
        drop(d);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read(part_path(&target)).unwrap(), b"half");

        // An empty .part is not worth keeping.
        let mut d = Download::plan(out(&target), false).unwrap();
        drop(d.open().unwrap());
        drop(d);
        assert!(!part_path(&target).exists());
        // Refused before open: nothing created at all.
        let other = dir.path().join("g");
        drop(Download::plan(out(&other), false).unwrap());
        assert!(!other.exists() && !part_path(&other).exists());
    }

    #[test]
    fn resume_from_part_then_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(part_path(&target), b"01234").unwrap();
        let mut d = Download::plan(out(&target), true).unwrap();
        assert_eq!(d.offset(), 5);
        assert!(!d.is_complete(9).unwrap());
        d.open().unwrap().write_all(b"5678").unwrap();
        d.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"012345678");
    }

    #[test]
    fn resume_adopts_a_shorter_final_file_and_gives_it_back_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, b"abc").unwrap();
        let mut d = Download::plan(out(&target), true).unwrap();
        assert_eq!(d.offset(), 3);
        assert!(target.exists(), "not moved before open");
        d.open().unwrap().write_all(b"de").unwrap();
        drop(d);
        assert_eq!(std::fs::read(&target).unwrap(), b"abcde");
        assert!(!part_path(&target).exists());
    }

    #[test]
    fn discarded_bytes_leave_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        // A fresh download: nothing left at all.
        let mut d = Download::plan(out(&target), false).unwrap();
        d.open().unwrap().write_all(b"too many").unwrap();
        assert_eq!(d.local_len().unwrap(), Some(8));
        d.discard_new_bytes().unwrap();
        assert!(!target.exists() && !part_path(&target).exists());
        // A resumed .part: cut back to its old prefix.
        std::fs::write(part_path(&target), b"0123").unwrap();
        let mut d = Download::plan(out(&target), true).unwrap();
        d.open().unwrap().write_all(b"0123456789").unwrap();
        d.discard_new_bytes().unwrap();
        assert_eq!(std::fs::read(part_path(&target)).unwrap(), b"0123");
        std::fs::remove_file(part_path(&target)).unwrap();
        // An adopted final file: its old bytes, under its own name.
        std::fs::write(&target, b"abc").unwrap();
        let mut d = Download::plan(out(&target), true).unwrap();
        d.open().unwrap().write_all(b"abcdef").unwrap();
        d.discard_new_bytes().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"abc");
        assert!(!part_path(&target).exists());
    }

    #[test]
    fn resume_checks_the_remote_size() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(part_path(&target), b"0123456789").unwrap();
        let d = Download::plan(out(&target), true).unwrap();
        assert!(matches!(
            d.is_complete(4),
            Err(DownloadError::LocalLonger {
                local: 10,
                remote: 4
            })
        ));
        assert!(d.is_complete(10).unwrap());
        d.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"0123456789");

        // A complete file under the final name stays where it is.
        let d = Download::plan(out(&target), true).unwrap();
        assert!(d.is_complete(10).unwrap());
        d.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"0123456789");
    }

    #[test]
    fn a_part_with_a_segments_state_is_not_resumed_as_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let part = part_path(&target);
        std::fs::write(&part, b"01\x00\x00\x00567").unwrap();
        let state = segments_path(&part);
        assert_eq!(state, dir.path().join("f.part.segments"));
        std::fs::write(&state, b"state").unwrap();
        let mut d = Download::plan(out(&target), true).unwrap();
        assert_eq!(d.offset(), 0, "holes: start over");
        d.open().unwrap().write_all(b"0123").unwrap();
        assert!(
            !state.exists(),
            "the stale state goes when the part is rewritten"
        );
        d.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"0123");
        let long = dir.path().join("L".repeat(250));
        let long_state = segments_path(&part_path(&long));
        assert!(long_state.file_name().unwrap().len() <= NAME_MAX);
    }

    #[test]
    fn directories_are_refused_devices_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Download::plan(out(dir.path()), false),
            Err(DownloadError::IsDirectory(_))
        ));
        let mut d = Download::plan(out(Path::new("/dev/null")), true).unwrap();
        assert_eq!(d.offset(), 0, "a device is never resumed");
        d.open().unwrap().write_all(b"x").unwrap();
        d.commit().unwrap();
        assert!(Path::new("/dev/null").exists());
    }
}
