//! The account model: the three classic classes (anonymous, real, guest), what each may do
//! ([`Access`]), the operations a client asks for ([`Op`]) and the permission table that decides
//! ([`permits`], a pure function with a table of cases), and the logged-in user handed to
//! libunftp ([`FtpUser`]). Who may log in is [`crate::auth`]'s job; enforcing the table on every
//! path is [`crate::storage`]'s.

use std::fmt;
use std::path::{Path, PathBuf};

use unftp_core::auth::UserDetail;
use unftp_core::storage::ErrorKind;

use crate::path::is_within;

/// The classic FTP account classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `anonymous` / `ftp` with any non-empty password (traditionally an e-mail address).
    Anonymous,
    /// A named account with its own home.
    Real,
    /// A temporary login confined to the shared guest area.
    Guest,
}

impl Class {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Anonymous => "anonymous",
            Class::Real => "real",
            Class::Guest => "guest",
        }
    }
}

/// What a logged-in user may do; the storage layer enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Read anywhere in the home; if `upload_dir` is set, upload new names there, and neither
    /// list nor download anything inside it.
    Anonymous {
        /// The drop box, relative to the home.
        upload_dir: Option<PathBuf>,
    },
    /// Read; upload new names when `upload`; never delete, rename, overwrite or make directories.
    Guest {
        /// Whether new names may be uploaded.
        upload: bool,
    },
    /// Everything when `write`, read-only otherwise.
    Real {
        /// Whether the account may modify its home.
        write: bool,
    },
}

/// A logged-in user as libunftp's `UserDetail`.
#[derive(Debug, Clone)]
pub struct FtpUser {
    /// The login name (`anonymous` for both anonymous spellings).
    pub name: String,
    /// The account class.
    pub class: Class,
    /// What the user may do.
    pub access: Access,
    /// The home relative to the server root (empty: the root).
    pub home_rel: PathBuf,
    /// The home as an absolute path below the root; `None` when it is the root itself.
    home_abs: Option<PathBuf>,
    /// For anonymous users: the password given, traditionally an e-mail address.
    pub anon_email: Option<String>,
    /// Most bytes per second each transfer of this user moves (0: no limit).
    pub max_rate: u64,
}

impl FtpUser {
    /// A user of `class` whose home is `home` below the server `root`.
    pub fn new(name: &str, class: Class, access: Access, root: &Path, home: &Path) -> Self {
        Self {
            name: name.to_string(),
            class,
            access,
            home_rel: home.to_path_buf(),
            home_abs: if home.as_os_str().is_empty() {
                None
            } else {
                Some(root.join(home))
            },
            anon_email: None,
            max_rate: 0,
        }
    }
}

impl UserDetail for FtpUser {
    fn home(&self) -> Option<&Path> {
        self.home_abs.as_deref()
    }
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.class.as_str())
    }
}

/// An operation the permission table decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// LIST / NLST / MLSD of a directory.
    List,
    /// SIZE / MDTM / MLST of a path.
    Stat,
    /// CWD into a directory.
    Cwd,
    /// RETR.
    Read,
    /// STOR of a name that does not exist yet.
    StoreNew,
    /// STOR over an existing file.
    Overwrite,
    /// APPE, or STOR after REST.
    Append,
    /// DELE.
    Delete,
    /// MKD.
    Mkdir,
    /// RMD.
    Rmdir,
    /// RNFR / RNTO.
    Rename,
}

/// The permission table: may a user with `access` do `op` on `rel` (a path already confined to
/// the home)? `Err` is the error kind to reply with: 550 for a refusal, 553 for an existing name
/// that may not be overwritten.
pub fn permits(access: &Access, op: Op, rel: &Path) -> std::result::Result<(), ErrorKind> {
    use ErrorKind::{FileNameNotAllowedError as NameTaken, PermissionDenied as Denied};
    match access {
        Access::Anonymous { upload_dir } => {
            let in_drop = upload_dir.as_deref().is_some_and(|u| is_within(rel, u));
            let below_drop = upload_dir
                .as_deref()
                .is_some_and(|u| is_within(rel, u) && rel != u);
            match op {
                // Dropped files stay private: no listing, no download, no SIZE/MDTM.
                Op::List | Op::Read if in_drop => Err(Denied),
                Op::Stat if below_drop => Err(Denied),
                Op::List | Op::Read | Op::Stat | Op::Cwd => Ok(()),
                Op::StoreNew if below_drop => Ok(()),
                Op::Overwrite if below_drop => Err(NameTaken),
                _ => Err(Denied),
            }
        }
        Access::Guest { upload } => match op {
            Op::List | Op::Read | Op::Stat | Op::Cwd => Ok(()),
            Op::StoreNew if *upload => Ok(()),
            Op::Overwrite if *upload => Err(NameTaken),
            _ => Err(Denied),
        },
        Access::Real { write } => match op {
            Op::List | Op::Read | Op::Stat | Op::Cwd => Ok(()),
            _ if *write => Ok(()),
            _ => Err(Denied),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn permission_table() {
        let anon = Access::Anonymous {
            upload_dir: Some(PathBuf::from("incoming")),
        };
        let anon_ro = Access::Anonymous { upload_dir: None };
        let guest = Access::Guest { upload: true };
        let guest_ro = Access::Guest { upload: false };
        let rw = Access::Real { write: true };
        let ro = Access::Real { write: false };
        use ErrorKind::{FileNameNotAllowedError as Taken, PermissionDenied as No};
        let cases: &[(&Access, Op, &str, std::result::Result<(), ErrorKind>)] = &[
            (&anon, Op::List, "", Ok(())),
            (&anon, Op::Read, "pub.txt", Ok(())),
            (&anon, Op::Cwd, "incoming", Ok(())),
            (&anon, Op::List, "incoming", Err(No)),
            (&anon, Op::Read, "incoming/x", Err(No)),
            (&anon, Op::Stat, "incoming/x", Err(No)),
            (&anon, Op::StoreNew, "incoming/x", Ok(())),
            (&anon, Op::StoreNew, "incoming2/x", Err(No)),
            (&anon, Op::StoreNew, "x", Err(No)),
            (&anon, Op::Overwrite, "incoming/x", Err(Taken)),
            (&anon, Op::Append, "incoming/x", Err(No)),
            (&anon, Op::Delete, "incoming/x", Err(No)),
            (&anon, Op::Rename, "incoming/x", Err(No)),
            (&anon, Op::Mkdir, "incoming/d", Err(No)),
            (&anon_ro, Op::StoreNew, "incoming/x", Err(No)),
            (&anon_ro, Op::Read, "incoming/x", Ok(())),
            (&guest, Op::Read, "x", Ok(())),
            (&guest, Op::StoreNew, "new", Ok(())),
            (&guest, Op::Overwrite, "old", Err(Taken)),
            (&guest, Op::Delete, "old", Err(No)),
            (&guest, Op::Rename, "old", Err(No)),
            (&guest, Op::Append, "old", Err(No)),
            (&guest, Op::Mkdir, "d", Err(No)),
            (&guest_ro, Op::StoreNew, "new", Err(No)),
            (&guest_ro, Op::Overwrite, "old", Err(No)),
            (&rw, Op::Overwrite, "old", Ok(())),
            (&rw, Op::Delete, "old", Ok(())),
            (&rw, Op::Rmdir, "d", Ok(())),
            (&rw, Op::Append, "old", Ok(())),
            (&ro, Op::Read, "old", Ok(())),
            (&ro, Op::StoreNew, "new", Err(No)),
            (&ro, Op::Delete, "old", Err(No)),
        ];
        for (access, op, path, want) in cases {
            assert_eq!(
                permits(access, *op, p(path)),
                *want,
                "{access:?} {op:?} {path}"
            );
        }
    }
}
