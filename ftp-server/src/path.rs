//! Path confinement as a pure function: what an FTP path names inside a user's home.
//!
//! libunftp joins the client's argument onto the session's working directory without normalising
//! it (`CWD ..` is kept as text), so every path reaching the storage layer goes through
//! [`confine`] first. It resolves `.` and `..` lexically and refuses (rather than silently clamps)
//! a path that climbs above the home: a client that asks for `/../etc/passwd` gets a refusal, not
//! `/etc/passwd` of the FTP root. Symlinks are not resolved here; the storage layer opens
//! everything through a cap-std directory handle, which refuses symlinks that lead outside it.

use std::path::{Component, Path, PathBuf};

/// Resolves an FTP path (absolute from the user's home, or already joined onto the working
/// directory) into a path relative to the home, with no `.` or `..` components.
///
/// Returns `None` when the path would leave the home. The home itself is the empty path.
pub fn confine(path: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for comp in path.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            // A Windows prefix cannot occur on Unix; refuse it rather than guess.
            Component::Prefix(_) => return None,
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Some(out.iter().collect())
}

/// Whether `path` (already [`confine`]d) is `dir` or lies below it. An empty `dir` is the home,
/// which contains everything.
pub fn is_within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// The path to hand to a file system call: the home itself is `.`.
pub fn as_fs_path(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/", Some("")),
            ("", Some("")),
            (".", Some("")),
            ("/a/b", Some("a/b")),
            ("a/./b/", Some("a/b")),
            ("/a/../b", Some("b")),
            ("/a/b/../../c", Some("c")),
            ("..", None),
            ("/..", None),
            ("/../etc/passwd", None),
            ("/a/../../etc", None),
            ("a/b/../../..", None),
            ("//a//b", Some("a/b")),
            ("/with space/ünï", Some("with space/ünï")),
            ("/-leading-dash", Some("-leading-dash")),
            ("/percent%20name", Some("percent%20name")),
            ("/...", Some("...")),
            ("/.dotfile", Some(".dotfile")),
        ];
        for (input, want) in cases {
            let got = confine(Path::new(input));
            assert_eq!(got.as_deref(), want.map(Path::new), "confine({input:?})");
        }
    }

    #[test]
    fn within_table() {
        assert!(is_within(Path::new("incoming/x"), Path::new("incoming")));
        assert!(is_within(Path::new("incoming"), Path::new("incoming")));
        assert!(!is_within(Path::new("incoming2/x"), Path::new("incoming")));
        assert!(!is_within(Path::new("pub"), Path::new("incoming")));
        assert!(is_within(Path::new("anything"), Path::new("")));
    }

    #[test]
    fn fs_path_of_home_is_dot() {
        assert_eq!(as_fs_path(Path::new("")), Path::new("."));
        assert_eq!(as_fs_path(Path::new("a")), Path::new("a"));
    }
}
