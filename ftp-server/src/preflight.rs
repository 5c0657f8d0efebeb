//! Preflight checks of the transfer commands: what [`crate::storage`] answers when libunftp asks,
//! before its `150` reply, whether a `RETR`, `STOR`, `APPE` or listing would be refused
//! (`StorageBackend::check_get`, `check_put`, `check_list`; libunftp patch 23).
//!
//! A refusal known before the transfer is then the reply to the command itself, as vsftpd gives
//! it (RFC 959 §5.4 lists `550` and `553` as replies to these commands), instead of a `550` after
//! `150` that wget retries for minutes and curl reports as a partial transfer. The checks apply
//! the same rules as the operations in [`crate::storage`] and [`crate::transfer`]: the account
//! class's permission table first, then what the file system says. They only look (metadata,
//! and for `RETR` a non-blocking open of a file already known to be regular); the operations
//! still check everything, since the tree can change in between.
//!
//! - `RETR`: the path must name a regular file (a symlink is followed while it stays inside the
//!   home, as the transfer's cap-std open does); a directory, a FIFO or a device is refused,
//!   so a FIFO is never opened for a blocking read. The `REST` offset may not lie beyond its end
//!   (`554`, RFC 3659 §5).
//! - `STOR`/`APPE`: the account class decides with the operation the upload would be ([`store_op`]:
//!   a name already taken in a drop box gets `553`); the parent must be a directory and the
//!   target must not be one; the `REST` offset may not lie beyond the current end of the file,
//!   where the upload would leave a hole of zeros.
//! - `LIST`/`NLST`/`MLSD`: the permission table, and the path must exist.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptionsExt};
use unftp_core::storage::{Error, ErrorKind, Result};

use crate::account::Op;
use crate::path::as_fs_path;
use crate::transfer::blocking;

/// The operation an upload is for the permission table, as [`crate::storage`]'s `put` picks it:
/// writing from an offset modifies the file in place ([`Op::Append`]); from the start it
/// replaces an existing file ([`Op::Overwrite`]) or creates a new one ([`Op::StoreNew`]).
///
/// `offset` is where the data will go: the `REST` offset for `STOR`; for `APPE`, the length
/// libunftp's data channel reads from `metadata()` (0 when that fails).
pub fn store_op(offset: u64, exists: bool) -> Op {
    match (offset > 0, exists) {
        (true, _) => Op::Append,
        (false, true) => Op::Overwrite,
        (false, false) => Op::StoreNew,
    }
}

/// `REST` offsets end at the end of the file: one beyond it has nothing to resume.
fn rest_within(start_pos: u64, len: u64) -> Result<()> {
    if start_pos > len {
        return Err(Error::new(
            ErrorKind::InvalidRestOffset,
            format!("REST offset {start_pos} is beyond the end of the file ({len} bytes)"),
        ));
    }
    Ok(())
}

fn not_regular() -> Error {
    Error::new(
        ErrorKind::PermanentFileNotAvailable,
        "not a regular file: only regular files are sent",
    )
}

/// `RETR` of `rel` (confined to `home`) from `start_pos`: a regular file the server can read,
/// with `start_pos` within it.
pub async fn retrievable(home: Arc<Dir>, rel: &Path, start_pos: u64) -> Result<()> {
    let p = as_fs_path(rel).to_path_buf();
    blocking(move || {
        // Follows a symlink, refusing one that leaves the home, as the transfer's open does.
        let meta = home.metadata(&p)?;
        if meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if !meta.is_file() {
            return Ok(Err(not_regular()));
        }
        if let Err(e) = rest_within(start_pos, meta.len()) {
            return Ok(Err(e));
        }
        // The permission bits, ACLs and read-only mounts are the kernel's to judge: ask by
        // opening. O_NONBLOCK: if the name became a FIFO since the line above, the open still
        // returns at once.
        let mut oo = cap_std::fs::OpenOptions::new();
        oo.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = home.open_with(&p, &oo)?;
        if !file.metadata()?.is_file() {
            return Ok(Err(not_regular()));
        }
        Ok(Ok(()))
    })
    .await?
}

/// `STOR` (`append` false) or `APPE` of `rel` with the `REST` offset `start_pos`: its directory
/// exists, the name is not a directory, and `start_pos` is within the current file.
pub async fn storable(home: Arc<Dir>, rel: &Path, start_pos: u64) -> Result<()> {
    let target = rel.to_path_buf();
    blocking(move || {
        let parent = target.parent().unwrap_or(Path::new(""));
        if !home.metadata(as_fs_path(parent))?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let len = match home.metadata(&target) {
            Ok(meta) if meta.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
            Ok(meta) => meta.len(),
            // A new name (or one the upload will replace rather than follow): nothing to resume.
            Err(_) => 0,
        };
        Ok(rest_within(start_pos, len))
    })
    .await?
}

/// `LIST`/`NLST`/`MLSD` of `rel`: a file, a directory, or a glob in an existing directory, as
/// [`crate::listing::listable`] decides for the listing itself.
pub async fn listable(home: Arc<Dir>, rel: &Path) -> Result<()> {
    let p = rel.to_path_buf();
    blocking(move || {
        crate::listing::listable(&home, &p).map_err(|e| match e {
            crate::listing::ListError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        })
    })
    .await
    .map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidInput {
            Error::new(ErrorKind::PermanentFileNotAvailable, e)
        } else {
            e.into()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A home with a 6-byte file, a directory, a FIFO and two symlinks (one staying in it, one
    /// leading out), inside a temporary directory that holds the symlink's target.
    fn home() -> (tempfile::TempDir, Arc<Dir>) {
        let outside = tempfile::tempdir().unwrap();
        let t = outside.path().join("home");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("six bytes ü.txt"), b"hello\n").unwrap();
        std::fs::create_dir(t.join("-dir")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(t.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        std::os::unix::fs::symlink("six bytes ü.txt", t.join("link in")).unwrap();
        std::fs::write(outside.path().join("secret"), b"outside\n").unwrap();
        std::os::unix::fs::symlink("../secret", t.join("link out")).unwrap();
        let dir = Dir::open_ambient_dir(&t, cap_std::ambient_authority()).unwrap();
        (outside, Arc::new(dir))
    }

    fn kind(r: Result<()>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    #[test]
    fn store_op_table() {
        assert_eq!(store_op(0, false), Op::StoreNew);
        assert_eq!(store_op(0, true), Op::Overwrite);
        assert_eq!(store_op(5, true), Op::Append);
        assert_eq!(store_op(5, false), Op::Append);
    }

    #[tokio::test]
    async fn retr_needs_a_regular_file_and_an_offset_within_it() {
        use ErrorKind::{
            InvalidRestOffset, PermanentFileNotAvailable as NotAvail, PermissionDenied,
        };
        let (_t, h) = home();
        let cases: &[(&str, u64, Option<ErrorKind>)] = &[
            ("six bytes ü.txt", 0, None),
            ("six bytes ü.txt", 6, None),
            ("six bytes ü.txt", 7, Some(InvalidRestOffset)),
            ("link in", 0, None),
            ("link out", 0, Some(PermissionDenied)),
            ("missing", 0, Some(NotAvail)),
            ("-dir", 0, Some(NotAvail)),
            // Refused without being opened: with a blocking open this test would hang.
            ("fifo", 0, Some(NotAvail)),
        ];
        for (name, rest, want) in cases {
            let got = kind(retrievable(h.clone(), Path::new(name), *rest).await);
            assert_eq!(got, *want, "RETR {name:?} after REST {rest}");
        }
    }

    #[tokio::test]
    async fn stor_needs_a_directory_to_write_in_and_an_offset_within_the_file() {
        use ErrorKind::{
            InvalidRestOffset, PermanentDirectoryNotAvailable, PermanentFileNotAvailable,
        };
        let (_t, h) = home();
        let cases: &[(&str, u64, Option<ErrorKind>)] = &[
            ("new name", 0, None),
            ("-dir/new name", 0, None),
            ("six bytes ü.txt", 0, None),
            ("six bytes ü.txt", 6, None),
            ("six bytes ü.txt", 7, Some(InvalidRestOffset)),
            ("new name", 1, Some(InvalidRestOffset)),
            ("-dir", 0, Some(PermanentFileNotAvailable)),
            ("no such dir/x", 0, Some(PermanentFileNotAvailable)),
            ("six bytes ü.txt/x", 0, Some(PermanentDirectoryNotAvailable)),
        ];
        for (name, rest, want) in cases {
            let got = kind(storable(h.clone(), Path::new(name), *rest).await);
            assert_eq!(got, *want, "STOR {name:?} after REST {rest}");
        }
    }

    #[tokio::test]
    async fn a_listing_needs_a_path_or_a_glob_the_listing_would_answer() {
        let (_t, h) = home();
        assert_eq!(kind(listable(h.clone(), Path::new("")).await), None);
        assert_eq!(kind(listable(h.clone(), Path::new("-dir")).await), None);
        assert_eq!(
            kind(listable(h.clone(), Path::new("six bytes ü.txt")).await),
            None
        );
        assert_eq!(
            kind(listable(h.clone(), Path::new("missing")).await),
            Some(ErrorKind::PermanentFileNotAvailable)
        );
        // A glob in an existing directory is the listing's to match (an empty match is an
        // empty listing); in a missing one, or naming a FIFO, it is refused.
        assert_eq!(kind(listable(h.clone(), Path::new("*.txt")).await), None);
        assert_eq!(kind(listable(h.clone(), Path::new("-dir/?")).await), None);
        assert_eq!(
            kind(listable(h.clone(), Path::new("six bytes ü.txt/*")).await),
            Some(ErrorKind::PermanentDirectoryNotAvailable)
        );
        for refused in ["missing/*.txt", "fifo"] {
            assert_eq!(
                kind(listable(h.clone(), Path::new(refused)).await),
                Some(ErrorKind::PermanentFileNotAvailable),
                "{refused}"
            );
        }
    }
}
