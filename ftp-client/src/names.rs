//! Which listed names may become local files, and where. Pure functions, no sockets and no
//! file system: a listing in, a plan out (what to fetch, what to descend into, what to skip and
//! why), so every rule has a table of cases.
//!
//! Names in a listing come from the server and are hostile until proven otherwise (issue 14,
//! "Safety"). A name is written below the local directory only when it is one plain path
//! component: never empty, `.` or `..`, never containing `/`, `\`, NUL, CR or LF, never
//! absolute (`/x`, `\x`, `C:x`). When the local file system folds case, two names that differ
//! only by case would land on one file, so both are skipped. Symbolic links are skipped: a link
//! may point anywhere on the server, including out of the tree or at its own parent (a loop),
//! and skipping them is the one rule that needs no knowledge of the server's layout. Listings
//! are bounded (entries per directory), so a listing that never ends cannot exhaust memory.
//!
//! The glob matcher ([`Glob`]) is here too: `*`, `?` and `[...]` against one name, matched on
//! our side so it works on servers that do not glob NLST arguments.

use std::collections::HashMap;
use std::fmt;

use filexfer::text::printable;

use crate::listing::{Entry, Kind};

/// Most entries kept from one directory listing; the rest are dropped with a warning. A real
/// directory with more is rare, and an endless listing must stop somewhere.
pub const MAX_ENTRIES_PER_DIR: usize = 100_000;

/// Why a listed entry is not written locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Empty, `.` or `..`.
    Special,
    /// Contains `/` or `\`, or starts like an absolute path (`C:`).
    Separator,
    /// Contains NUL, CR or LF.
    Control,
    /// Differs only by case from another entry, and the local file system folds case.
    CaseCollision,
    /// A symbolic link (never followed: it may leave the tree or loop).
    Link,
    /// Neither a file nor a directory (a device, an unparsed LIST line).
    NotAFile,
    /// Beyond [`MAX_ENTRIES_PER_DIR`].
    TooMany,
    /// `X.part` listed next to `X`: it would be taken for the partial download of `X`.
    PartClash,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Special => "an empty, `.` or `..` name",
            Self::Separator => "a path separator or drive prefix in the name",
            Self::Control => "NUL, CR or LF in the name",
            Self::CaseCollision => {
                "differs only by case from another name, on a case-insensitive disk"
            }
            Self::Link => "a symbolic link (links are not followed)",
            Self::NotAFile => "neither a file nor a directory",
            Self::TooMany => "the listing has too many entries",
            Self::PartClash => "named like the partial download (.part) of another listed file",
        })
    }
}

/// One skipped entry, for the warning that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The name as the server sent it.
    pub name: String,
    /// Why it is skipped.
    pub why: Refusal,
}

impl fmt::Display for Skipped {
    /// The warning line: the name escaped (it came from the network), then the reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not `{:?}`: that would escape the escapes again (`\\x0d`).
        write!(f, "skipping \"{}\": {}", printable(&self.name), self.why)
    }
}

/// Whether `name` can be a local path component as it is.
pub fn check_name(name: &str) -> Result<&str, Refusal> {
    if matches!(name, "" | "." | "..") {
        return Err(Refusal::Special);
    }
    if name.contains(['\0', '\r', '\n']) {
        return Err(Refusal::Control);
    }
    if name.contains(['/', '\\']) {
        return Err(Refusal::Separator);
    }
    // `C:x` is relative to drive C's current directory on Windows: not below LOCALDIR.
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(Refusal::Separator);
    }
    Ok(name)
}

/// A directory listing sorted into what may be written locally.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirPlan {
    /// Regular files with safe names, in listing order.
    pub files: Vec<Entry>,
    /// Directories with safe names, in listing order.
    pub dirs: Vec<Entry>,
    /// Everything else, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Sorts `entries` (one directory's listing) into files, directories and refusals.
/// `fold_case`: the local file system treats `A` and `a` as one name.
pub fn plan_dir(entries: Vec<Entry>, fold_case: bool) -> DirPlan {
    let mut plan = DirPlan::default();
    let mut kept = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        if i >= MAX_ENTRIES_PER_DIR {
            plan.skipped.push(Skipped {
                name: e.name,
                why: Refusal::TooMany,
            });
            continue;
        }
        let why = match (check_name(&e.name), e.kind) {
            (Err(why), _) => Some(why),
            (Ok(_), Kind::Link) => Some(Refusal::Link),
            (Ok(_), Kind::Other) => Some(Refusal::NotAFile),
            (Ok(_), Kind::File | Kind::Dir) => None,
        };
        match why {
            Some(why) => plan.skipped.push(Skipped { name: e.name, why }),
            None => kept.push(e),
        }
    }
    // A name listed twice is a collision whatever the disk: the second would overwrite the
    // first. With a case-folding disk, names equal once lower-cased collide too.
    let key = |n: &str| {
        if fold_case {
            n.to_lowercase()
        } else {
            n.to_string()
        }
    };
    let mut count: HashMap<String, usize> = HashMap::new();
    for e in &kept {
        *count.entry(key(&e.name)).or_default() += 1;
    }
    for e in kept {
        let clash = e
            .name
            .strip_suffix(".part")
            .is_some_and(|stem| count.contains_key(&key(stem)));
        if clash {
            plan.skipped.push(Skipped {
                name: e.name,
                why: Refusal::PartClash,
            });
        } else if count[&key(&e.name)] > 1 {
            plan.skipped.push(Skipped {
                name: e.name,
                why: Refusal::CaseCollision,
            });
        } else if e.kind == Kind::Dir {
            plan.dirs.push(e);
        } else {
            plan.files.push(e);
        }
    }
    plan
}

/// Whether the file system holding `dir` folds case: a probe file with a mixed-case name is
/// created in `dir` and looked up by its upper-case name, then removed.
pub fn folds_case(dir: &std::path::Path) -> std::io::Result<bool> {
    let probe = dir.join(format!(".ftp-client-case-Probe-{}", std::process::id()));
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
    };
    if let Err(e) = create() {
        // A probe left by a run that was killed in between (same process id, much later):
        // ours to remove. create_new never opens through a link planted under that name.
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        std::fs::remove_file(&probe)?;
        create()?;
    }
    let upper = dir.join(
        probe
            .file_name()
            .map(|n| n.to_string_lossy().to_uppercase())
            .unwrap_or_default(),
    );
    let folded = std::fs::symlink_metadata(&upper).is_ok();
    std::fs::remove_file(&probe)?;
    Ok(folded)
}

/// Whether a name asks for globbing: it holds `*`, `?` or `[`.
pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// A bad glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad glob {pattern:?}: {why}")]
pub struct GlobError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong.
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    Any,
    AnyOne,
    /// `[...]`: ranges (single chars as `(c, c)`), negated with a leading `!` or `^`.
    Class(bool, Vec<(char, char)>),
}

/// A shell-style pattern for one name: `*` any run of characters, `?` one character, `[abc]`,
/// `[a-z]`, `[!a]` one character of (or not of) a set. `/` is never matched (one segment only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Parses `pattern`; an unclosed `[` or a `/` in it is an error.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let err = |why| GlobError {
            pattern: pattern.to_string(),
            why,
        };
        if pattern.contains('/') {
            return Err(err("globs match within one directory: no `/`"));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::Any) {
                        tokens.push(Token::Any);
                    }
                }
                '?' => tokens.push(Token::AnyOne),
                '[' => {
                    let mut j = i + 1;
                    let negated = matches!(chars.get(j), Some('!' | '^'));
                    if negated {
                        j += 1;
                    }
                    let mut set = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(j) else {
                            return Err(err("`[` without its `]`"));
                        };
                        // A `]` first in the set is a literal, as in the shell.
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.get(j + 1) == Some(&'-')
                            && chars.get(j + 2).is_some_and(|&e| e != ']')
                        {
                            set.push((c, chars[j + 2]));
                            j += 3;
                        } else {
                            set.push((c, c));
                            j += 1;
                        }
                    }
                    tokens.push(Token::Class(negated, set));
                    i = j;
                }
                c => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        Ok(Self { tokens })
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        // Iterative matching with one backtrack point for the last `*`: linear in practice,
        // never exponential, whatever a hostile name looks like.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < s.len() {
            let step = match self.tokens.get(p) {
                Some(Token::Any) => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                Some(Token::AnyOne) => s[n] != '/',
                Some(Token::Literal(c)) => *c == s[n],
                Some(Token::Class(neg, set)) => {
                    s[n] != '/' && (set.iter().any(|&(a, b)| a <= s[n] && s[n] <= b) != *neg)
                }
                None => false,
            };
            if step {
                p += 1;
                n += 1;
            } else if let Some((sp, sn)) = star {
                if s[sn] == '/' {
                    return false;
                }
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(name: &str, kind: Kind) -> Entry {
        Entry {
            name: name.to_string(),
            kind,
            size: Some(1),
            modified: None,
            target: None,
        }
    }

    #[test]
    fn name_table() {
        use Refusal::*;
        let cases: &[(&str, Result<(), Refusal>)] = &[
            ("a.txt", Ok(())),
            ("-leading dash", Ok(())),
            (".dotfile", Ok(())),
            ("with space", Ok(())),
            ("ünïcödé 文件", Ok(())),
            ("%2F", Ok(())),
            ("...", Ok(())),
            ("", Err(Special)),
            (".", Err(Special)),
            ("..", Err(Special)),
            ("../evil", Err(Separator)),
            ("a/b", Err(Separator)),
            ("/etc/passwd", Err(Separator)),
            ("a\\b", Err(Separator)),
            ("\\\\host\\share", Err(Separator)),
            ("..\\..\\x", Err(Separator)),
            ("C:x", Err(Separator)),
            ("c:", Err(Separator)),
            ("a\0b", Err(Control)),
            ("a\rb", Err(Control)),
            ("a\nb", Err(Control)),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name).map(|_| ()), *want, "{:?}", printable(name));
        }
    }

    #[test]
    fn plan_sorts_and_refuses() {
        let entries = vec![
            entry("ok.txt", Kind::File),
            entry("sub", Kind::Dir),
            entry("../up", Kind::File),
            entry("link", Kind::Link),
            entry("dev", Kind::Other),
            entry("Same", Kind::File),
            entry("same", Kind::File),
            entry("twice", Kind::File),
            entry("twice", Kind::Dir),
            entry("ok.txt.part", Kind::File),
            entry("alone.part", Kind::File),
        ];
        let p = plan_dir(entries.clone(), false);
        let names = |v: &[Entry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p.files), ["ok.txt", "Same", "same", "alone.part"]);
        assert_eq!(names(&p.dirs), ["sub"]);
        let why: Vec<_> = p
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.why.clone()))
            .collect();
        assert_eq!(
            why,
            [
                ("../up", Refusal::Separator),
                ("link", Refusal::Link),
                ("dev", Refusal::NotAFile),
                ("twice", Refusal::CaseCollision),
                ("twice", Refusal::CaseCollision),
                ("ok.txt.part", Refusal::PartClash),
            ]
        );
        let p = plan_dir(entries, true);
        assert_eq!(names(&p.files), ["ok.txt", "alone.part"]);
        assert!(
            p.skipped
                .iter()
                .any(|s| s.name == "Same" && s.why == Refusal::CaseCollision)
        );
        assert!(
            p.skipped
                .iter()
                .any(|s| s.name == "same" && s.why == Refusal::CaseCollision)
        );
    }

    #[test]
    fn endless_listing_is_cut() {
        let entries: Vec<_> = (0..MAX_ENTRIES_PER_DIR + 3)
            .map(|i| entry(&format!("f{i}"), Kind::File))
            .collect();
        let p = plan_dir(entries, false);
        assert_eq!(p.files.len(), MAX_ENTRIES_PER_DIR);
        assert_eq!(p.skipped.len(), 3);
        assert!(p.skipped.iter().all(|s| s.why == Refusal::TooMany));
    }

    #[test]
    fn warning_escapes_the_name() {
        let s = Skipped {
            name: "evil\r\n226 ok\u{1b}[2J".into(),
            why: Refusal::Control,
        };
        let line = s.to_string();
        assert!(!line.contains(['\r', '\n', '\u{1b}']), "{line}");
        assert!(line.contains("evil"));
    }

    #[test]
    fn folds_case_probe_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let _ = folds_case(d.path()).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // A leftover probe of a killed run does not make the next one fail.
        let left = d
            .path()
            .join(format!(".ftp-client-case-Probe-{}", std::process::id()));
        std::fs::write(&left, b"").unwrap();
        let _ = folds_case(d.path()).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn glob_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", ".txt", true),
            ("*.txt", "a.txt.bak", false),
            ("*", "", true),
            ("*", "anything at all", true),
            ("?", "é", true),
            ("?", "ab", false),
            ("a?c", "abc", true),
            ("[ab]x", "bx", true),
            ("[ab]x", "cx", false),
            ("[!ab]x", "cx", true),
            ("[^ab]x", "ax", false),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[]]", "]", true),
            ("[a-]", "-", true),
            ("*a*b*c", "xxaxxbxxc", true),
            ("*a*b*c", "xxaxxbxx", false),
            ("file[0-9].bin", "file7.bin", true),
            ("-*", "-leading dash", true),
        ];
        for (pat, name, want) in cases {
            assert_eq!(
                Glob::new(pat).unwrap().matches(name),
                *want,
                "{pat:?} vs {name:?}"
            );
        }
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("a/*").is_err());
        assert!(is_glob("*.txt") && is_glob("a?") && is_glob("[x]") && !is_glob("plain"));
    }

    proptest! {
        #[test]
        fn safe_names_are_single_components(name in "\\PC{0,20}|[./\\\\a-z\r\n\0]{0,8}") {
            if check_name(&name).is_ok() {
                let p = std::path::Path::new("base").join(&name);
                prop_assert_eq!(p.parent(), Some(std::path::Path::new("base")));
                prop_assert_eq!(p.components().count(), 2);
                prop_assert!(!name.contains(['/', '\\', '\0', '\r', '\n']));
            }
        }

        #[test]
        fn plan_keeps_only_safe_unique_names(
            names in proptest::collection::vec("[a-cA-C./\\\\]{0,4}", 0..30),
            fold in any::<bool>(),
        ) {
            let entries: Vec<_> = names.iter().map(|n| entry(n, Kind::File)).collect();
            let p = plan_dir(entries, fold);
            prop_assert_eq!(p.files.len() + p.dirs.len() + p.skipped.len(), names.len());
            let mut seen = std::collections::HashSet::new();
            for e in &p.files {
                prop_assert!(check_name(&e.name).is_ok());
                let k = if fold { e.name.to_lowercase() } else { e.name.clone() };
                prop_assert!(seen.insert(k), "two kept names collide");
            }
        }

        #[test]
        fn star_matches_everything_literal_only_itself(name in "[a-z. -]{0,12}") {
            prop_assert!(Glob::new("*").unwrap().matches(&name));
            prop_assert!(Glob::new(&name).unwrap().matches(&name));
            let prefix = format!("{}*", name.get(..name.len().min(3)).unwrap_or(""));
            prop_assert!(Glob::new(&prefix).unwrap().matches(&name));
        }
    }
}
