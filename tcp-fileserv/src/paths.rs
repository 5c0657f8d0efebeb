//! Turning a requested name into a path relative to the served root, as a pure function.
//!
//! We refuse rather than rewrite: `..`, absolute paths and NUL bytes are errors, never silently
//! stripped, so a client learns its request was wrong. The lexical check here is the first line;
//! the second is cap-std's `Dir`, which opens every path beneath the root with `openat`-style
//! resolution and refuses symlinks that lead outside it (see `crate::store`).

use std::path::PathBuf;

use thiserror::Error;

/// Why a requested name is refused before touching the file system.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    /// An empty name.
    #[error("empty name")]
    Empty,
    /// A NUL byte, which no Unix path can hold and which truncates C strings.
    #[error("name contains a NUL byte")]
    Nul,
    /// A name starting with `/`.
    #[error("absolute paths are not allowed")]
    Absolute,
    /// A `..` component.
    #[error("`..` components are not allowed")]
    ParentDir,
}

/// Checks `name` and returns it as a relative path below the root (`.` for the root itself).
/// `.` components and repeated slashes are dropped; everything else is kept byte for byte.
pub fn relative_path(name: &str) -> Result<PathBuf, PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.contains('\0') {
        return Err(PathError::Nul);
    }
    if name.starts_with('/') {
        return Err(PathError::Absolute);
    }
    let mut out = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::ParentDir),
            p => out.push(p),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_cases() {
        let ok = |p: &str| Ok(PathBuf::from(p));
        let cases: &[(&str, Result<PathBuf, PathError>)] = &[
            ("file.txt", ok("file.txt")),
            ("dir/file.txt", ok("dir/file.txt")),
            ("./dir//file.txt", ok("dir/file.txt")),
            ("with space.txt", ok("with space.txt")),
            ("percent%20name", ok("percent%20name")),
            ("-leading-dash", ok("-leading-dash")),
            (".dotfile", ok(".dotfile")),
            ("..hidden", ok("..hidden")),
            ("a..b", ok("a..b")),
            ("back\\slash", ok("back\\slash")),
            ("ünïcödé/文件", ok("ünïcödé/文件")),
            (".", ok(".")),
            ("dir/", ok("dir")),
            ("", Err(PathError::Empty)),
            ("/etc/passwd", Err(PathError::Absolute)),
            ("//etc/passwd", Err(PathError::Absolute)),
            ("..", Err(PathError::ParentDir)),
            ("../secret", Err(PathError::ParentDir)),
            ("dir/../../secret", Err(PathError::ParentDir)),
            ("dir/..", Err(PathError::ParentDir)),
            ("a\0b", Err(PathError::Nul)),
            ("file.txt\0.jpg", Err(PathError::Nul)),
        ];
        for (name, want) in cases {
            assert_eq!(&relative_path(name), want, "name {name:?}");
        }
    }
}
