//! What a path *is*, as SIZE, MDTM, LIST, NLST, MLSD, STAT and RETR must agree on it: the
//! blocking file-system half of the storage adapter ([`crate::storage`]), over the session's
//! cap-std handle on its home.
//!
//! - [`describe`] follows a symlink that stays inside the home (cap-std's `Dir::metadata`
//!   resolves it beneath the handle and refuses one that leads out), so a link to a file is
//!   described with its target's length, which is what RETR sends.
//! - [`list`] answers LIST/NLST/MLSD/STAT for a directory, a single file, or a glob in the last
//!   path segment. Left out of every listing: dotfiles unless the server shows them; a link that
//!   leads out of the home or dangles (RETR would refuse it); FIFOs, sockets and devices (RETR
//!   refuses them, and libunftp's listing formats can only say "file" or "directory"); names with
//!   CR or LF, which would forge listing lines. All but the dotfiles are logged by the caller.
//!   [`open`] begins the same listing and reads a directory a batch at a time
//!   ([`DirListing::next_batch`]), so that LIST, NLST and MLSD are written as the client reads
//!   them (libunftp patch 41) and hold one batch in memory, not the directory.
//! - A glob matches only the last segment against one directory's entries: no recursion, no
//!   `**`, a pattern of at most [`MAX_PATTERN`] bytes compiled by globset into a regular
//!   expression whose matching is linear in the name, so the classic glob DoS (`*/../*/../*`
//!   patterns or backtracking stars) cannot happen.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use cap_std::fs::{Dir, MetadataExt};
use unftp_core::storage::{Metadata, Permissions};

use crate::names::{encode_os, is_glob};
use crate::path::as_fs_path;

/// The longest glob pattern accepted, in bytes (a file name's own limit, NAME_MAX).
pub const MAX_PATTERN: usize = 255;

/// What a path is, once symlinks inside the home are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: RETR sends it.
    File,
    /// A directory.
    Dir,
    /// A FIFO, socket or device: never opened, never listed.
    Special,
}

/// Our metadata type for libunftp: what [`describe`] found. A symlink is never reported as
/// one: it is described as its target.
#[derive(Debug, Clone)]
pub struct Meta {
    kind: Kind,
    len: u64,
    modified: Option<SystemTime>,
    uid: u32,
    gid: u32,
    mode: u32,
    nlink: u64,
}

impl Meta {
    fn from_cap(m: &cap_std::fs::Metadata) -> Self {
        let ft = m.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::Special
        };
        Self {
            kind,
            len: m.len(),
            modified: m.modified().ok().map(cap_std::time::SystemTime::into_std),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
            nlink: m.nlink(),
        }
    }

    /// What the path is.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.len
    }

    fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    fn is_symlink(&self) -> bool {
        false
    }

    fn modified(&self) -> unftp_core::storage::Result<SystemTime> {
        self.modified
            .ok_or_else(|| unftp_core::storage::ErrorKind::PermanentFileNotAvailable.into())
    }

    fn gid(&self) -> u32 {
        self.gid
    }

    fn uid(&self) -> u32 {
        self.uid
    }

    fn links(&self) -> u64 {
        self.nlink
    }

    fn permissions(&self) -> Permissions {
        Permissions(self.mode & 0o777)
    }
}

/// Describes `rel` (relative to `home`, already confined) as RETR would find it: a symlink is
/// followed if it stays inside the home; one that leads out fails (cap-std: `PermissionDenied`).
pub fn describe(home: &Dir, rel: &Path) -> io::Result<Meta> {
    home.metadata(as_fs_path(rel)).map(|m| Meta::from_cap(&m))
}

/// Why an entry was left out of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A dotfile, and the server does not show them (not logged: it is the policy).
    Hidden,
    /// A FIFO, socket or device.
    Special,
    /// A symlink that leads out of the home, dangles or loops.
    LeadsOut,
    /// A name with CR or LF.
    LineBreak,
}

impl Skip {
    /// For the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Hidden => "hidden",
            Skip::Special => "a FIFO, socket or device",
            Skip::LeadsOut => "a symlink that leads out of the home or dangles",
            Skip::LineBreak => "a name with CR or LF",
        }
    }
}

/// A listing: the entries shown (the name as written on the wire, see [`crate::names`]) and
/// those left out, with why.
#[derive(Debug, Default)]
pub struct Listing {
    /// Shown, in directory order.
    pub entries: Vec<(String, Meta)>,
    /// Left out.
    pub skipped: Vec<(OsString, Skip)>,
}

/// Why a listing could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The path is a FIFO, socket or device.
    #[error("not a file or directory")]
    Special,
    /// The glob pattern is longer than [`MAX_PATTERN`] or does not parse.
    #[error("bad pattern: {0}")]
    Pattern(String),
    /// The file system said no.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Lists `rel`: a directory's entries, a file's own line, or the entries of its parent whose
/// names match the glob in its last segment. `hidden` says whether dotfiles are shown. The
/// whole listing at once: [`open`] reads it in batches instead.
pub fn list(home: &Dir, rel: &Path, hidden: bool) -> Result<Listing, ListError> {
    match open(home, rel, hidden)? {
        Opened::One(listing) => Ok(listing),
        Opened::Dir(mut dir) => {
            let mut out = Listing::default();
            while let Some(batch) = dir.next_batch(home, usize::MAX)? {
                out.entries.extend(batch.entries);
                out.skipped.extend(batch.skipped);
            }
            Ok(out)
        }
    }
}

/// A listing begun by [`open`].
#[derive(Debug)]
pub enum Opened {
    /// A file's own line: the whole listing.
    One(Listing),
    /// A directory (or a glob's parent) to read with [`DirListing::next_batch`].
    Dir(DirListing),
}

/// A directory being listed: its entries are read a batch at a time, so that a listing of a
/// large directory holds one batch in memory, not the directory.
#[derive(Debug)]
pub struct DirListing {
    rel: std::path::PathBuf,
    hidden: bool,
    /// The glob's matcher, and whether it lists dotfiles; `None` for a directory's own listing.
    glob: Option<(globset::GlobMatcher, bool)>,
    entries: cap_std::fs::ReadDir,
}

impl DirListing {
    /// Reads up to `max` more entries (shown or left out) of the directory, following links
    /// beneath `home`; `None` once all have been read.
    pub fn next_batch(&mut self, home: &Dir, max: usize) -> Result<Option<Listing>, ListError> {
        let mut out = Listing::default();
        let mut read = 0;
        while read < max {
            let Some(entry) = self.entries.next() else {
                break;
            };
            read += 1;
            self.entry(home, entry?, &mut out)?;
        }
        Ok((read > 0).then_some(out))
    }

    fn keep(&self, name: &str) -> bool {
        match &self.glob {
            None => true,
            Some((glob, dots)) => (*dots || !name.starts_with('.')) && glob.is_match(name),
        }
    }

    /// Adds one entry of the directory to `out`, shown or left out (and why).
    fn entry(
        &self,
        home: &Dir,
        entry: cap_std::fs::DirEntry,
        out: &mut Listing,
    ) -> Result<(), ListError> {
        let name = entry.file_name();
        // Temporary upload files are the server's own, never a client's: left out silently,
        // whatever `hidden` says (see transfer::TEMP_PREFIX).
        if crate::transfer::is_reserved(&name) {
            return Ok(());
        }
        let bytes = name.as_bytes();
        let skip = if bytes.first() == Some(&b'.') && !self.hidden {
            Some(Skip::Hidden)
        } else if bytes.contains(&b'\r') || bytes.contains(&b'\n') {
            Some(Skip::LineBreak)
        } else {
            None
        };
        if let Some(why) = skip {
            out.skipped.push((name, why));
            return Ok(());
        }
        let shown = encode_os(&name).into_owned();
        if !self.keep(&shown) {
            return Ok(());
        }
        let meta = if entry.file_type()?.is_symlink() {
            // Followed beneath the home, from the home (not from this directory: a link to
            // `../x` that stays inside the home is fine).
            match describe(home, &self.rel.join(&name)) {
                Ok(m) => m,
                Err(_) => {
                    out.skipped.push((name, Skip::LeadsOut));
                    return Ok(());
                }
            }
        } else {
            Meta::from_cap(&entry.metadata()?)
        };
        if meta.kind == Kind::Special {
            out.skipped.push((name, Skip::Special));
            return Ok(());
        }
        out.entries.push((shown, meta));
        Ok(())
    }
}

/// Begins the listing of `rel`, as [`list`] answers it: a file's own line at once, or a
/// directory (a glob's parent) whose entries are then read in batches. Everything that makes
/// the listing fail (a missing path, a bad pattern, a special file, a directory that cannot
/// be opened) fails here, before any entry is read.
pub fn open(home: &Dir, rel: &Path, hidden: bool) -> Result<Opened, ListError> {
    let dir = |rel: &Path, glob| -> Result<Opened, ListError> {
        Ok(Opened::Dir(DirListing {
            rel: rel.to_path_buf(),
            hidden,
            glob,
            entries: home.read_dir(as_fs_path(rel))?,
        }))
    };
    match describe(home, rel) {
        Ok(m) => match m.kind {
            Kind::Dir => dir(rel, None),
            Kind::File => {
                let name = rel.file_name().map(encode_os).unwrap_or_default();
                Ok(Opened::One(Listing {
                    entries: vec![(name.into_owned(), m)],
                    skipped: Vec::new(),
                }))
            }
            Kind::Special => Err(ListError::Special),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (Some(parent), Some(last)) = (rel.parent(), rel.file_name()) else {
                return Err(e.into());
            };
            let pattern = encode_os(last);
            if !is_glob(&pattern) {
                return Err(e.into());
            }
            if pattern.len() > MAX_PATTERN {
                return Err(ListError::Pattern(format!(
                    "longer than {MAX_PATTERN} bytes"
                )));
            }
            let glob = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| ListError::Pattern(e.kind().to_string()))?
                .compile_matcher();
            // As in the shell, a wildcard does not match a leading dot: only a pattern that
            // starts with `.` lists dotfiles (and only when they are shown at all).
            let dots = pattern.starts_with('.');
            dir(parent, Some((glob, dots)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether [`list`] would answer `rel` at all, without reading a directory: `rel` is a file or
/// a directory, or its last segment is a glob and its parent a directory. The preflight check of
/// `LIST`/`NLST`/`MLSD` ([`crate::preflight::listable`]) asks this, so that it refuses exactly
/// what the listing would.
pub fn listable(home: &Dir, rel: &Path) -> Result<(), ListError> {
    match describe(home, rel) {
        Ok(m) if m.kind == Kind::Special => Err(ListError::Special),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (Some(parent), Some(last)) = (rel.parent(), rel.file_name()) else {
                return Err(e.into());
            };
            if !is_glob(&encode_os(last)) {
                return Err(e.into());
            }
            match describe(home, parent) {
                Ok(m) if m.kind == Kind::Dir => Ok(()),
                Ok(_) => Err(io::Error::from(io::ErrorKind::NotFound).into()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn tree() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path();
        std::fs::create_dir_all(p.join("home/sub")).expect("mkdir");
        std::fs::write(p.join("home/a.txt"), b"hello").expect("write");
        std::fs::write(p.join("home/b.txt"), b"hi").expect("write");
        std::fs::write(p.join("home/c.bin"), b"x").expect("write");
        std::fs::write(p.join("home/.env"), b"SECRET").expect("write");
        std::fs::write(p.join("home/sub/d.txt"), b"dd").expect("write");
        std::fs::write(p.join("outside.txt"), b"0123456789").expect("write");
        std::os::unix::fs::symlink("a.txt", p.join("home/link-in")).expect("symlink");
        std::os::unix::fs::symlink("../a.txt", p.join("home/sub/up-in")).expect("symlink");
        std::os::unix::fs::symlink("../outside.txt", p.join("home/link-out")).expect("symlink");
        std::os::unix::fs::symlink(p.join("outside.txt"), p.join("home/abs-out")).expect("link");
        std::os::unix::fs::symlink("nowhere", p.join("home/dangling")).expect("symlink");
        std::os::unix::fs::symlink("sub", p.join("home/sublink")).expect("symlink");
        let fifo = std::ffi::CString::new(p.join("home/fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
        std::fs::write(
            p.join("home")
                .join(OsString::from_vec(b"bad\xff.txt".to_vec())),
            b"ff",
        )
        .expect("write");
        let home = Dir::open_ambient_dir(p.join("home"), cap_std::ambient_authority()).unwrap();
        (t, home)
    }

    fn names(l: &Listing) -> Vec<&str> {
        let mut v: Vec<&str> = l.entries.iter().map(|(n, _)| n.as_str()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn links_inside_are_their_target_links_out_are_refused() {
        let (_t, home) = tree();
        let m = describe(&home, Path::new("link-in")).expect("link-in");
        assert_eq!((m.kind(), m.len()), (Kind::File, 5));
        let m = describe(&home, Path::new("sub/up-in")).expect("up-in");
        assert_eq!((m.kind(), m.len()), (Kind::File, 5));
        for out in ["link-out", "abs-out", "dangling"] {
            assert!(describe(&home, Path::new(out)).is_err(), "{out}");
        }
        let m = describe(&home, Path::new("fifo")).expect("fifo");
        assert_eq!(m.kind(), Kind::Special);
    }

    #[test]
    fn a_directory_lists_what_can_be_fetched() {
        let (_t, home) = tree();
        let l = list(&home, Path::new(""), false).expect("list");
        assert_eq!(
            names(&l),
            [
                "a.txt",
                "b.txt",
                "bad\u{F7FF}.txt",
                "c.bin",
                "link-in",
                "sub",
                "sublink"
            ]
        );
        let mut skipped: Vec<(String, Skip)> = l
            .skipped
            .iter()
            .map(|(n, s)| (n.to_string_lossy().into_owned(), *s))
            .collect();
        skipped.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            skipped,
            [
                (".env".to_string(), Skip::Hidden),
                ("abs-out".to_string(), Skip::LeadsOut),
                ("dangling".to_string(), Skip::LeadsOut),
                ("fifo".to_string(), Skip::Special),
                ("link-out".to_string(), Skip::LeadsOut),
            ]
        );
        let link = l.entries.iter().find(|(n, _)| n == "link-in").unwrap();
        assert_eq!((link.1.is_file(), link.1.len()), (true, 5));
        let link = l.entries.iter().find(|(n, _)| n == "sublink").unwrap();
        assert!(link.1.is_dir());
        assert_eq!(
            names(&list(&home, Path::new("sublink"), false).unwrap()),
            ["d.txt", "up-in"]
        );
        let shown = list(&home, Path::new(""), true).expect("list");
        assert!(names(&shown).contains(&".env"));
    }

    #[test]
    fn a_file_lists_itself_and_a_glob_its_matches() {
        let (_t, home) = tree();
        assert_eq!(
            names(&list(&home, Path::new("a.txt"), false).unwrap()),
            ["a.txt"]
        );
        let cases: &[(&str, &[&str])] = &[
            ("*.txt", &["a.txt", "b.txt", "bad\u{F7FF}.txt"]),
            ("?.txt", &["a.txt", "b.txt"]),
            ("[ab].*", &["a.txt", "b.txt"]),
            ("[!a]*.txt", &["b.txt", "bad\u{F7FF}.txt"]),
            ("*\u{F7FF}*", &["bad\u{F7FF}.txt"]),
            ("sub/*", &["d.txt", "up-in"]),
            ("*.none", &[]),
            // A wildcard does not match a leading dot.
            ("*env", &[]),
        ];
        for (pattern, want) in cases {
            // As the storage adapter hands it over: read back from its wire form.
            let rel = crate::names::decode(pattern).expect("wire form");
            let l = list(&home, Path::new(&rel), false).expect(pattern);
            assert_eq!(names(&l), *want, "{pattern}");
        }
        assert_eq!(
            names(&list(&home, Path::new(".e*"), true).unwrap()),
            [".env"]
        );
        // Too long: refused (here already by the file system's NAME_MAX).
        assert!(list(&home, Path::new(&"*".repeat(MAX_PATTERN + 1)), false).is_err());
        assert!(matches!(
            list(&home, Path::new("[z-a]"), false),
            Err(ListError::Pattern(_))
        ));
        assert!(matches!(
            list(&home, Path::new("fifo"), false),
            Err(ListError::Special)
        ));
        assert!(matches!(
            list(&home, Path::new("missing"), false),
            Err(ListError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn a_hostile_pattern_is_matched_in_linear_time() {
        // Stars that would make a backtracking matcher take exponential time: with globset's
        // regular expression this is one pass per name.
        let (t, home) = tree();
        let long = "a".repeat(200);
        std::fs::write(t.path().join("home").join(&long), b"").unwrap();
        let pattern = format!("{}b", "*a".repeat(60));
        let l = list(&home, Path::new(&pattern), false).expect("pattern");
        assert!(l.entries.is_empty());
    }

    #[test]
    fn a_listing_read_in_batches_is_the_whole_listing() {
        let (_t, home) = tree();
        for (path, hidden) in [
            ("", false),
            ("", true),
            ("*.txt", false),
            ("sublink", false),
        ] {
            let whole = list(&home, Path::new(path), hidden).expect("list");
            let Opened::Dir(mut dir) = open(&home, Path::new(path), hidden).expect("open") else {
                panic!("{path:?} is a directory listing");
            };
            let mut batched = Listing::default();
            let mut batches = 0;
            while let Some(b) = dir.next_batch(&home, 2).expect("batch") {
                assert!(b.entries.len() + b.skipped.len() <= 2, "{path:?}");
                batched.entries.extend(b.entries);
                batched.skipped.extend(b.skipped);
                batches += 1;
            }
            // At most two entries read a batch: as many batches as that takes, at least.
            let read = whole.entries.len() + whole.skipped.len();
            assert!(batches >= read.div_ceil(2), "{path:?}: {batches} batches");
            assert_eq!(names(&batched), names(&whole), "{path:?}");
            assert_eq!(batched.skipped.len(), whole.skipped.len(), "{path:?}");
        }
        assert!(matches!(
            open(&home, Path::new("a.txt"), false),
            Ok(Opened::One(l)) if names(&l) == ["a.txt"]
        ));
        assert!(matches!(
            open(&home, Path::new("missing"), false),
            Err(ListError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert!(matches!(
            open(&home, Path::new("fifo"), false),
            Err(ListError::Special)
        ));
    }
}
