//! File names on the wire, as pure functions: how a name that is not UTF-8 is written in
//! listings and read back from commands, and which names are hidden.
//!
//! RFC 959 names are bytes, and RFC 2640 §2.2 leaves a server free to send bytes that are not
//! UTF-8 as they are; but libunftp parses every command into a Rust `String`, so a name must be
//! UTF-8 both ways. The mapping chosen here is reversible:
//!
//! - every byte that is not part of valid UTF-8 (0x80..=0xFF) is written as one character of
//!   the Private Use Area, U+F780 + (byte − 0x80), i.e. U+F780..=U+F7FF (0xFF is U+F7FF);
//! - a name that genuinely holds a character of that range has each byte of that character
//!   escaped the same way (U+F7FF, bytes EF 9F BF, is written U+F7EF U+F79F U+F7BF), so that no
//!   two names are written alike;
//! - a command's path is read back by turning every character of the range into its byte. A
//!   path that is not written as a listing would write it (the escapes of a valid UTF-8
//!   sequence, say) is refused: every file has exactly one name on the wire.
//!
//! ASCII never takes part in the mapping, so `/`, `.`, CR and LF cannot be smuggled through it.
//! Dotfiles: a path with any component starting with `.` is *hidden* ([`is_hidden`]); `.` and
//! `..` are navigation, resolved by [`crate::path::confine`] before this is asked.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// The first character of the escape range: byte `b` (0x80..=0xFF) is `ESCAPE_BASE + b - 0x80`.
const ESCAPE_BASE: u32 = 0xF780;

fn escape(b: u8) -> char {
    // 0xF780..=0xF7FF are all valid scalar values (not surrogates).
    char::from_u32(ESCAPE_BASE + u32::from(b) - 0x80).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn unescape(c: char) -> Option<u8> {
    let v = u32::from(c);
    (ESCAPE_BASE..ESCAPE_BASE + 0x80)
        .contains(&v)
        .then(|| (v - ESCAPE_BASE + 0x80) as u8)
}

/// Writes the bytes of a name (or a path) as the UTF-8 string shown to clients.
pub fn encode(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(|c| unescape(c).is_some()) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() * 3);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if unescape(c).is_some() {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(escape));
    }
    Cow::Owned(out)
}

/// [`encode`] for an `OsStr`.
pub fn encode_os(name: &OsStr) -> Cow<'_, str> {
    encode(name.as_bytes())
}

/// Reads a name (or a path) as a client wrote it back into its bytes. `None` when it is not
/// how [`encode`] writes any name.
pub fn decode(s: &str) -> Option<OsString> {
    if !s.chars().any(|c| unescape(c).is_some()) {
        return Some(OsString::from(s));
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match unescape(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    (encode(&out) == s).then(|| OsString::from_vec(out))
}

/// [`decode`] for a path as libunftp hands it over (always built from UTF-8 strings).
pub fn decode_path(p: &Path) -> Option<PathBuf> {
    decode(p.to_str()?).map(PathBuf::from)
}

/// Whether a confined path names a dotfile or something inside a dot-directory.
pub fn is_hidden(rel: &Path) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(n) => n.as_bytes().first() == Some(&b'.'),
        _ => false,
    })
}

/// Whether a name asks for globbing: it holds `*`, `?` or `[` (RFC 959 leaves the "file group
/// descriptor" of NLST to the server; these are the shell's).
pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain.txt", "plain.txt"),
            ("ünï 文件".as_bytes(), "ünï 文件"),
            (b"\xff", "\u{F7FF}"),
            (b"a\x80b", "a\u{F780}b"),
            // A truncated sequence: each byte on its own.
            (b"\xc3", "\u{F7C3}"),
            (b"x\xe6\x96", "x\u{F7E6}\u{F796}"),
            // Latin-1 é, then UTF-8 é.
            (b"\xe9-\xc3\xa9", "\u{F7E9}-é"),
            // A name that really holds U+F7FF is escaped byte by byte.
            ("\u{F7FF}".as_bytes(), "\u{F7EF}\u{F79F}\u{F7BF}"),
            ("a\u{F780}".as_bytes(), "a\u{F7EF}\u{F79E}\u{F780}"),
            // Just outside the range: left alone.
            ("\u{F77F}\u{F800}".as_bytes(), "\u{F77F}\u{F800}"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(encode(bytes), *shown, "encode({bytes:?})");
            assert_eq!(
                decode(shown).map(OsString::into_vec).as_deref(),
                Some(*bytes),
                "decode({shown:?})"
            );
        }
    }

    #[test]
    fn only_the_written_form_is_read_back() {
        // The escapes of valid UTF-8 would be a second name for "é": refused.
        assert_eq!(decode("\u{F7C3}\u{F7A9}"), None);
        // An escape range character a listing would never show on its own.
        assert_eq!(
            decode("\u{F7EF}\u{F79F}\u{F7BF}x").map(|o| o.len()),
            Some(4)
        );
    }

    #[test]
    fn every_byte_string_round_trips() {
        // All one- and two-byte names, and some three-byte ones around the escape range.
        let mut names: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for a in 0x60..=0xFFu8 {
            for b in 0x60..=0xFFu8 {
                names.push(vec![a, b]);
                names.push(vec![0xEF, a, b]);
            }
        }
        for n in names {
            let shown = encode(&n);
            assert_eq!(
                decode(&shown).map(OsString::into_vec).as_ref(),
                Some(&n),
                "{n:?}"
            );
            assert!(!shown.contains(['\u{FFFD}']) || n.ends_with("\u{FFFD}".as_bytes()));
        }
    }

    #[test]
    fn hidden_table() {
        for (p, hidden) in [
            (".git", true),
            (".env", true),
            ("a/.ssh/id", true),
            ("pub/x.txt", false),
            ("...", true),
            ("a.b/c", false),
            ("", false),
        ] {
            assert_eq!(is_hidden(Path::new(p)), hidden, "{p:?}");
        }
    }

    #[test]
    fn glob_detection() {
        assert!(is_glob("*.txt"));
        assert!(is_glob("a?"));
        assert!(is_glob("[ab]"));
        assert!(!is_glob("plain name.txt"));
    }
}
