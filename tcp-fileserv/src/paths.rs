//! Turning a requested name into a path relative to the served root, as a pure function.
//!
//! We refuse rather than rewrite: `..`, absolute paths and NUL bytes are errors, never silently
//! stripped, so a client learns its request was wrong. The lexical check here is the first line;
//! the second is cap-std's `Dir`, which opens every path beneath the root with `openat`-style
//! resolution and refuses symlinks that lead outside it (see `crate::store`).
//!
//! Names travel as UTF-8 (docs/tcp-protocol.md), but a Unix file name is any bytes: a name on
//! disk that is not UTF-8 travels *escaped* ([`escape_name`], flagged as such on the wire), so
//! that it is listed rather than dropped and a client can send it back to download it
//! ([`unescape_name`]). Dotfiles (`.git`, `.env`, `.ssh`) are hidden unless the server is told
//! otherwise ([`is_hidden`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
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
    /// An escaped name whose escapes are malformed (see [`unescape_name`]).
    #[error("malformed escape in name: only \\\\ and \\xNN are allowed")]
    BadEscape,
}

/// A name's bytes as UTF-8 text that loses nothing: each byte that is not part of a valid
/// UTF-8 sequence is written `\xNN` (two lowercase hex digits) and every backslash `\\`;
/// everything else is kept. Used only for names that are not UTF-8, and then flagged as escaped.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A name as the user gave it (a command-line argument, any bytes) as it travels: UTF-8 as it
/// is, or else escaped, with `true` for the escaped flag.
pub fn wire_name(name: &OsStr) -> (String, bool) {
    match name.to_str() {
        Some(s) => (s.to_owned(), false),
        None => (escape_name(name.as_bytes()), true),
    }
}

/// The bytes an [`escape_name`] text stands for. `\\` and `\xNN` (either case) are the only
/// escapes; any other backslash is an error, so that one text never means two names.
pub fn unescape_name(text: &str) -> Result<Vec<u8>, PathError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'x') => {
                    let hex = bytes.get(i + 2..i + 4).ok_or(PathError::BadEscape)?;
                    let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEscape)?;
                    if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                        return Err(PathError::BadEscape);
                    }
                    out.push(u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?);
                    i += 4;
                }
                _ => return Err(PathError::BadEscape),
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Whether `rel` (from [`relative_path`]) has a component starting with `.`: a dotfile or
/// something inside a dot-directory (`.git/config`, `.ssh/id_ed25519`), which the server
/// neither lists nor serves unless `--hidden` is given. The root itself (`.`) is not hidden.
pub fn is_hidden(rel: &std::path::Path) -> bool {
    rel.components().any(|c| match c {
        std::path::Component::Normal(n) => n.as_bytes().starts_with(b"."),
        _ => false,
    })
}

/// [`relative_path`] for a name given as bytes (an unescaped name that is not UTF-8).
pub fn relative_path_bytes(name: &[u8]) -> Result<PathBuf, PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.contains(&0) {
        return Err(PathError::Nul);
    }
    if name.starts_with(b"/") {
        return Err(PathError::Absolute);
    }
    let mut out = PathBuf::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(PathError::ParentDir),
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

/// Checks `name` and returns it as a relative path below the root (`.` for the root itself).
/// `.` components and repeated slashes are dropped; everything else is kept byte for byte.
pub fn relative_path(name: &str) -> Result<PathBuf, PathError> {
    relative_path_bytes(name.as_bytes())
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

    #[test]
    fn escaped_names_round_trip_and_bad_escapes_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain.txt", "plain.txt"),
            (b"bad\xffname", "bad\\xffname"),
            (b"\xc3\x28 half", "\\xc3( half"),
            (b"back\\slash\xfe", "back\\\\slash\\xfe"),
            ("ünï\u{1b}".as_bytes(), "ünï\u{1b}"),
            (b"\\x41", "\\\\x41"),
        ];
        for (bytes, text) in cases {
            assert_eq!(escape_name(bytes), *text, "{bytes:?}");
            assert_eq!(unescape_name(text).unwrap(), *bytes, "{text:?}");
        }
        assert_eq!(unescape_name("\\xFF").unwrap(), b"\xff");
        for bad in ["\\", "a\\n", "\\x4", "\\xg0", "\\x\u{e9}0"] {
            assert_eq!(unescape_name(bad), Err(PathError::BadEscape), "{bad:?}");
        }
    }

    #[test]
    fn hidden_means_any_component_starting_with_a_dot() {
        for (name, hidden) in [
            (".env", true),
            (".git/config", true),
            ("a/.ssh/id", true),
            ("..hidden", true),
            ("a.txt", false),
            ("dir/x.y", false),
            (".", false),
            ("./a", false),
        ] {
            let rel = relative_path(name).unwrap();
            assert_eq!(is_hidden(&rel), hidden, "{name:?}");
        }
    }
}

/// The escaping is lossless for any bytes, and what it writes is always accepted back.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn escaping_any_bytes_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = escape_name(&bytes);
            prop_assert_eq!(unescape_name(&text), Ok(bytes));
        }

        #[test]
        fn unescaping_any_text_never_panics(text in ".{0,200}") {
            let _ = unescape_name(&text);
        }
    }
}
