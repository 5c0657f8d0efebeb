//! The served directory: every open and listing goes through a cap-std [`Dir`] opened once at
//! start, so names resolve beneath the root only (`openat`-style), and symlinks that lead out of
//! it are refused by the kernel-facing layer rather than by string checks alone.
//!
//! Dotfiles and everything inside dot-directories (`.git`, `.env`, `.ssh`) are neither listed
//! nor served unless the root is opened with [`Root::hidden`], as miniserve does: a directory
//! shared in a hurry often holds a repository's history or a secret. Asking for one gets the
//! same "not found" as a name that does not exist. Names on disk that are not UTF-8 are listed
//! escaped ([`crate::paths::escape_name`]) and served when asked for with the escaped flag.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use crate::paths::{escape_name, is_hidden, relative_path, relative_path_bytes, unescape_name};
use crate::protocol::{Entry, EntryKind, Status};

/// Most entries a listing returns; a directory with more is cut (and says so in the log).
pub const MAX_LISTING_ENTRIES: usize = 100_000;

/// A request the store refuses, with the status and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reply status.
    pub status: Status,
    /// What went wrong, naming the file.
    pub message: String,
}

impl Refusal {
    fn new(status: Status, message: String) -> Self {
        Self { status, message }
    }
}

/// The read-only root every request is confined to.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    path: PathBuf,
    hidden: bool,
}

fn refuse_io(name: &str, e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            Refusal::new(Status::NotFound, format!("no such file: {name:?}"))
        }
        io::ErrorKind::PermissionDenied => Refusal::new(
            Status::AccessDenied,
            format!(
                "access denied: {name:?} leads outside the served directory or is not readable"
            ),
        ),
        _ if e.raw_os_error() == Some(libc::ELOOP) => Refusal::new(
            Status::AccessDenied,
            format!("access denied: {name:?} is a symlink loop"),
        ),
        _ => Refusal::new(
            Status::ServerError,
            format!("server error reading {name:?}: {e}"),
        ),
    }
}

impl Root {
    /// Opens `path` as the root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = path.canonicalize()?;
        let dir = Dir::open_ambient_dir(&path, ambient_authority())?;
        Ok(Self {
            dir,
            path,
            hidden: false,
        })
    }

    /// Serves dotfiles too (`--hidden`): they are hidden and refused by default.
    pub fn hidden(self, serve_them: bool) -> Self {
        Self {
            hidden: serve_them,
            ..self
        }
    }

    /// The path below the root that the wire name `name` stands for (`escaped`: it is the
    /// escaped form of a name that is not UTF-8); a hidden one is "not found" unless served.
    fn resolve(&self, name: &str, escaped: bool) -> Result<PathBuf, Refusal> {
        let bad = |e: crate::paths::PathError| Refusal::new(Status::BadRequest, e.to_string());
        let rel = if escaped {
            relative_path_bytes(&unescape_name(name).map_err(bad)?)
        } else {
            relative_path(name)
        }
        .map_err(bad)?;
        if !self.hidden && is_hidden(&rel) {
            return Err(Refusal::new(
                Status::NotFound,
                format!("no such file: {name:?}"),
            ));
        }
        Ok(rel)
    }

    /// The root's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` for reading if it is a regular file inside the root; returns the file and its
    /// size. Blocking: call from a blocking context.
    pub fn open_file(&self, name: &str, escaped: bool) -> Result<(std::fs::File, u64), Refusal> {
        let rel = self.resolve(name, escaped)?;
        let not_regular = || {
            Refusal::new(
                Status::NotRegularFile,
                format!("{name:?} is not a regular file"),
            )
        };
        // Look before opening: opening a FIFO or a device can block or have side effects.
        let meta = self.dir.metadata(&rel).map_err(|e| refuse_io(name, &e))?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        // O_NONBLOCK so that a FIFO swapped in since the check cannot hang us; O_NOCTTY so a
        // terminal device never becomes our controlling terminal.
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = self
            .dir
            .open_with(&rel, &opts)
            .map_err(|e| refuse_io(name, &e))?
            .into_std();
        let meta = file.metadata().map_err(|e| refuse_io(name, &e))?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        Ok((file, meta.len()))
    }

    /// Lists the regular files and directories of directory `name` (`.` for the root), sorted by
    /// name. Entries that lead outside the root, that are neither files nor directories, and
    /// (unless [`hidden`](Root::hidden)) dotfiles are left out; a name that is not UTF-8 is
    /// listed escaped. Blocking.
    pub fn list(&self, name: &str, escaped: bool) -> Result<Vec<Entry>, Refusal> {
        let rel = self.resolve(name, escaped)?;
        let dir = self.dir.open_dir(&rel).map_err(|e| match e.kind() {
            io::ErrorKind::NotADirectory => {
                Refusal::new(Status::NotFound, format!("{name:?} is not a directory"))
            }
            _ => refuse_io(name, &e),
        })?;
        let mut out = Vec::new();
        for item in dir.entries().map_err(|e| refuse_io(name, &e))? {
            let Ok(item) = item else { continue };
            let os_name: OsString = item.file_name();
            if !self.hidden && os_name.as_bytes().starts_with(b".") {
                continue;
            }
            // Follows symlinks, but only within the root: an escaping link errors and is skipped.
            let Ok(meta) = dir.metadata(&os_name) else {
                continue;
            };
            let (fname, escaped) = match os_name.into_string() {
                Ok(s) => (s, false),
                Err(raw) => (escape_name(raw.as_bytes()), true),
            };
            let kind = if meta.is_file() {
                EntryKind::File
            } else if meta.is_dir() {
                EntryKind::Dir
            } else {
                continue;
            };
            let size = if kind == EntryKind::File {
                meta.len()
            } else {
                0
            };
            // Only an entry beyond the limit cuts the listing (and is worth a warning).
            if out.len() >= MAX_LISTING_ENTRIES {
                tracing::warn!(dir = name, "listing cut at {MAX_LISTING_ENTRIES} entries");
                break;
            }
            out.push(Entry {
                kind,
                size,
                name: fname,
                escaped,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn confinement_and_file_kinds() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path();
        std::fs::write(root_path.join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(root_path.join("sub")).unwrap();
        std::fs::write(root_path.join("sub/b"), b"bb").unwrap();
        symlink(outside.path().join("secret"), root_path.join("escape")).unwrap();
        symlink("../../../../../../etc/passwd", root_path.join("rel-escape")).unwrap();
        symlink("sub/b", root_path.join("inside-link")).unwrap();
        symlink("loop", root_path.join("loop")).unwrap();
        let fifo =
            std::ffi::CString::new(root_path.join("fifo").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: fifo is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

        let root = Root::open(root_path).unwrap();
        assert_eq!(root.open_file("a.txt", false).unwrap().1, 5);
        assert_eq!(root.open_file("inside-link", false).unwrap().1, 2);
        let status = |n: &str| root.open_file(n, false).unwrap_err().status;
        assert_eq!(status("escape"), Status::AccessDenied);
        assert_eq!(status("rel-escape"), Status::AccessDenied);
        assert_eq!(status("loop"), Status::AccessDenied);
        assert_eq!(status("fifo"), Status::NotRegularFile);
        assert_eq!(status("sub"), Status::NotRegularFile);
        assert_eq!(status("."), Status::NotRegularFile);
        assert_eq!(status("missing"), Status::NotFound);
        assert_eq!(status("a.txt/x"), Status::NotFound);
        assert_eq!(status("../x"), Status::BadRequest);
        assert_eq!(status("/etc/passwd"), Status::BadRequest);

        let names: Vec<_> = root
            .list(".", false)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a.txt", "inside-link", "sub"]);
        assert_eq!(root.list("sub", false).unwrap()[0].size, 2);
        assert_eq!(
            root.list("a.txt", false).unwrap_err().status,
            Status::NotFound
        );
        assert_eq!(
            root.list("escape", false).unwrap_err().status,
            Status::AccessDenied
        );
    }
}
