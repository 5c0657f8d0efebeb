//! Directory listings: MLSD lines (RFC 3659 §7, machine-readable facts) and LIST lines (no
//! standard; Unix `ls -l` and DOS/IIS styles in practice), parsed into one [`Entry`] shape and
//! printed as a readable table. Pure functions: lines in, entries out.
//!
//! Unlike suppaftp's parsers these accept ACL markers (`-rw-r--r--+`, `@`, `.`), symlink facts
//! in MLSD, names with spaces or leading spaces, and they never fail a whole listing for one odd
//! line: an unknown line is shown as-is.

use std::fmt::Write as _;

use filexfer::text::printable;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// Anything else, or a line we could not parse.
    Other,
}

/// One listed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name, exactly as the server sent it.
    pub name: String,
    /// File, directory, link...
    pub kind: Kind,
    /// Size in bytes, when given.
    pub size: Option<u64>,
    /// Modification time as `YYYY-MM-DD HH:MM` (or `YYYY-MM-DD` when the server gave no time).
    /// MLSD times are UTC (RFC 3659 §2.3); LIST times are the server's local time.
    pub modified: Option<String>,
    /// A symlink's target, when LIST shows it (`name -> target`).
    pub target: Option<String>,
}

/// Parses one MLSD line: `fact=value;fact=value; name` (RFC 3659 §7.2: facts, one space, name).
/// Returns `None` for the `cdir`/`pdir` entries (`.` and `..`) and for lines without the space.
pub fn parse_mlsd_line(line: &str) -> Option<Entry> {
    let (facts, name) = line.split_once(' ')?;
    if name.is_empty() {
        return None;
    }
    let mut kind = Kind::Other;
    let mut size = None;
    let mut modified = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let Some((k, v)) = fact.split_once('=') else {
            continue;
        };
        match k.to_ascii_lowercase().as_str() {
            "type" => {
                let v = v.to_ascii_lowercase();
                kind = match v.as_str() {
                    "file" => Kind::File,
                    "dir" => Kind::Dir,
                    "cdir" | "pdir" => return None,
                    // vsftpd-like and ProFTPD `OS.unix=symlink`, `OS.unix=slink:/target`.
                    v if v.contains("symlink") || v.contains("slink") => Kind::Link,
                    _ => Kind::Other,
                };
            }
            "size" | "sizd" => size = v.parse().ok(),
            "modify" => modified = mlsd_time(v),
            _ => {}
        }
    }
    if kind == Kind::Dir {
        size = None;
    }
    Some(Entry {
        name: name.to_string(),
        kind,
        size,
        modified,
        target: None,
    })
}

/// `YYYYMMDDHHMMSS[.sss]` → `YYYY-MM-DD HH:MM`.
fn mlsd_time(v: &str) -> Option<String> {
    let d = v.get(..14)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{} {}:{}",
        &d[..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12]
    ))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month_number(s: &str) -> Option<u32> {
    let l = s.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == l).map(|i| i as u32 + 1)
}

/// Whitespace-separated fields with their byte offsets, so the name can be cut out of the
/// original line with its inner spaces intact.
fn fields(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// Parses one LIST line. `today` is `(year, month, day)`, used to give a year to Unix dates
/// that show a time instead (`ls` does that for the last six months): a date after today is
/// taken to be last year's. Returns `None` for `total N` lines; an unknown format gives an
/// entry of kind [`Kind::Other`] holding the whole line as its name.
pub fn parse_list_line(line: &str, today: (i32, u32, u32)) -> Option<Entry> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return None;
    }
    let f = fields(line);
    if f.len() == 2 && f[0].1.eq_ignore_ascii_case("total") {
        return None;
    }
    parse_unix(line, &f, today)
        .or_else(|| parse_dos(line, &f))
        .or_else(|| {
            Some(Entry {
                name: line.to_string(),
                kind: Kind::Other,
                size: None,
                modified: None,
                target: None,
            })
        })
}

fn parse_unix(line: &str, f: &[(usize, &str)], today: (i32, u32, u32)) -> Option<Entry> {
    let perms = f.first()?.1;
    let kind = match perms.chars().next()? {
        '-' => Kind::File,
        'd' => Kind::Dir,
        'l' => Kind::Link,
        'b' | 'c' | 'p' | 's' | 'D' => Kind::Other,
        _ => return None,
    };
    // Mode bits, then optional ACL / xattr marker (+ @ .).
    let bits = &perms[1..];
    // Bytes, not a str slice: a multi-byte character at this point must not panic.
    if !bits
        .as_bytes()
        .get(..9)
        .is_some_and(|b| b.iter().all(|c| b"rwxsStTl-".contains(c)))
    {
        return None;
    }
    // Find "<size> <Mon> <day> <HH:MM|YYYY> <name>": the month field after a numeric size.
    let mi = (2..f.len().saturating_sub(3)).find(|&i| {
        month_number(f[i].1).is_some()
            && f[i - 1].1.bytes().all(|b| b.is_ascii_digit())
            && f[i + 1]
                .1
                .parse::<u32>()
                .is_ok_and(|d| (1..=31).contains(&d))
    })?;
    let size = f[mi - 1].1.parse().ok();
    let month = month_number(f[mi].1)?;
    let day: u32 = f[mi + 1].1.parse().ok()?;
    let ty = f[mi + 2].1;
    let modified = if let Some((h, m)) = ty.split_once(':') {
        if !is_clock(h, m) {
            return None;
        }
        let (y, tm, td) = today;
        let year = if (month, day) > (tm, td) { y - 1 } else { y };
        format!("{year:04}-{month:02}-{day:02} {h:0>2}:{m}")
    } else {
        let year: i32 = ty.parse().ok()?;
        format!("{year:04}-{month:02}-{day:02}")
    };
    // The name starts one space after the year/time field (ls pads before, not after).
    let name_start = f[mi + 2].0 + ty.len() + 1;
    let mut name = line.get(name_start..)?.to_string();
    let mut target = None;
    if kind == Kind::Link {
        if let Some((n, t)) = name.split_once(" -> ") {
            target = Some(t.to_string());
            name = n.to_string();
        }
    }
    if name.is_empty() {
        return None;
    }
    Some(Entry {
        name,
        kind,
        size: if kind == Kind::Dir { None } else { size },
        modified: Some(modified),
        target,
    })
}

/// Whether `h` and `m` read as the hour and minute of a listing's time: 1 or 2 digits, then 2.
/// The two are copied into [`Entry::modified`], which is printed as it is: before this check a
/// server could put a terminal escape there (`10:\x1b[2J`; found by fuzzing, docs/fuzzing.md).
fn is_clock(h: &str, m: &str) -> bool {
    (1..=2).contains(&h.len())
        && m.len() == 2
        && h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
}

/// DOS / IIS style: `01-02-24  10:00AM       <DIR>          name` or `... 1234 name`.
fn parse_dos(line: &str, f: &[(usize, &str)]) -> Option<Entry> {
    if f.len() < 4 {
        return None;
    }
    let date: Vec<&str> = f[0].1.split('-').collect();
    if date.len() != 3 || !date.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mo: u32 = date[0].parse().ok().filter(|m| (1..=12).contains(m))?;
    let d: u32 = date[1].parse().ok().filter(|d| (1..=31).contains(d))?;
    let y: i32 = date[2].parse().ok()?;
    let y = if y < 70 {
        2000 + y
    } else if y < 100 {
        1900 + y
    } else {
        y
    };
    let t = f[1].1.to_ascii_uppercase();
    let (hm, pm) = if let Some(x) = t.strip_suffix("PM") {
        (x, true)
    } else if let Some(x) = t.strip_suffix("AM") {
        (x, false)
    } else {
        (t.as_str(), false)
    };
    let (h, m) = hm.split_once(':')?;
    if !is_clock(h, m) {
        return None;
    }
    let mut h: u32 = h.parse().ok()?;
    if pm && h < 12 {
        h += 12;
    } else if !pm && t.ends_with("AM") && h == 12 {
        h = 0;
    }
    let (kind, size) = if f[2].1.eq_ignore_ascii_case("<DIR>") {
        (Kind::Dir, None)
    } else {
        (Kind::File, Some(f[2].1.parse::<u64>().ok()?))
    };
    let name = line.get(f[3].0..)?.to_string();
    Some(Entry {
        name,
        kind,
        size,
        modified: Some(format!("{y:04}-{mo:02}-{d:02} {h:02}:{m}")),
        target: None,
    })
}

/// One table row: kind letter, size, modification time, name (`-> target` for links).
pub fn format_entry(e: &Entry) -> String {
    let k = match e.kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Link => 'l',
        Kind::Other => '?',
    };
    let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let time = e.modified.as_deref().unwrap_or("-");
    let mut line = format!("{k} {size:>14}  {time:<16}  {}", printable(&e.name));
    if e.kind == Kind::Dir {
        line.push('/');
    }
    if let Some(t) = &e.target {
        let _ = write!(line, " -> {}", printable(t));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (i32, u32, u32) = (2025, 3, 10);

    #[test]
    fn mlsd_lines() {
        let e = parse_mlsd_line("type=file;size=1234;modify=20240102030405.123; with space.txt")
            .unwrap();
        assert_eq!(e.name, "with space.txt");
        assert_eq!(e.kind, Kind::File);
        assert_eq!(e.size, Some(1234));
        assert_eq!(e.modified.as_deref(), Some("2024-01-02 03:04"));
        let e = parse_mlsd_line("Type=dir;Modify=20240102030405;UNIX.mode=0755; sub").unwrap();
        assert_eq!(e.kind, Kind::Dir);
        assert_eq!(e.size, None);
        let e = parse_mlsd_line("type=OS.unix=slink:/etc;size=4; link").unwrap();
        assert_eq!(e.kind, Kind::Link);
        // Name with semicolons, equals and leading space survive: only the first space splits.
        let e = parse_mlsd_line("type=file;size=1;  semi;colon=x.txt").unwrap();
        assert_eq!(e.name, " semi;colon=x.txt");
        assert!(parse_mlsd_line("type=cdir;modify=20240102030405; .").is_none());
        assert!(parse_mlsd_line("type=pdir; ..").is_none());
        assert!(parse_mlsd_line("garbage-without-space").is_none());
        assert!(parse_mlsd_line("type=file; ").is_none());
        let e = parse_mlsd_line("type=file;size=abc;modify=2024; x").unwrap();
        assert_eq!((e.size, e.modified), (None, None));
    }

    #[test]
    fn unix_lines() {
        let e = parse_list_line(
            "-rw-r--r--    1 1000     1000         4096 Jan 02  2024 with space.txt",
            TODAY,
        )
        .unwrap();
        assert_eq!(e.name, "with space.txt");
        assert_eq!(e.size, Some(4096));
        assert_eq!(e.modified.as_deref(), Some("2024-01-02"));
        // ACL marker, time instead of year (in the future → last year), leading dash name.
        let e = parse_list_line(
            "-rw-r--r--+ 1 ftp ftp 10 Dec 24 18:05 -leading-dash.txt",
            TODAY,
        )
        .unwrap();
        assert_eq!(e.name, "-leading-dash.txt");
        assert_eq!(e.modified.as_deref(), Some("2024-12-24 18:05"));
        let e = parse_list_line("-rw-r--r-- 1 ftp ftp 10 Mar  1 08:05 x", TODAY).unwrap();
        assert_eq!(e.modified.as_deref(), Some("2025-03-01 08:05"));
        // No group column, a unicode name, trailing spaces kept inside the name.
        let e = parse_list_line("-rw-r--r-- 1 owner 77 Feb 3 2023 ünïcödé 文件 ", TODAY).unwrap();
        assert_eq!(e.name, "ünïcödé 文件 ");
        assert_eq!(e.size, Some(77));
        let e = parse_list_line(
            "lrwxrwxrwx 1 0 0 7 Jan 1 2020 link name -> target dir",
            TODAY,
        )
        .unwrap();
        assert_eq!(
            (e.name.as_str(), e.target.as_deref()),
            ("link name", Some("target dir"))
        );
        assert_eq!(e.kind, Kind::Link);
        let e = parse_list_line("drwxr-xr-x 2 0 0 4096 Jan 1 2020 sub", TODAY).unwrap();
        assert_eq!((e.kind, e.size), (Kind::Dir, None));
        // A name that itself looks like a date is still taken whole.
        let e = parse_list_line("-rw-r--r-- 1 0 0 5 Jan 1 2020 Jan 1 2020 x", TODAY).unwrap();
        assert_eq!(e.name, "Jan 1 2020 x");
        assert!(parse_list_line("total 12", TODAY).is_none());
        assert!(parse_list_line("", TODAY).is_none());
    }

    #[test]
    fn dos_and_unknown_lines() {
        let e = parse_list_line("01-02-24  01:05PM       <DIR>          Sub Dir", TODAY).unwrap();
        assert_eq!((e.kind, e.name.as_str()), (Kind::Dir, "Sub Dir"));
        assert_eq!(e.modified.as_deref(), Some("2024-01-02 13:05"));
        let e = parse_list_line("12-31-99  12:00AM  1234 f.txt", TODAY).unwrap();
        assert_eq!(
            (e.size, e.modified.as_deref()),
            (Some(1234), Some("1999-12-31 00:00"))
        );
        let e = parse_list_line("something odd", TODAY).unwrap();
        assert_eq!((e.kind, e.name.as_str()), (Kind::Other, "something odd"));
        // Truncated unix line: no month found → shown as-is.
        let e = parse_list_line("-rw-r--r-- 1 0 0 5 Jan", TODAY).unwrap();
        assert_eq!(e.kind, Kind::Other);
    }

    #[test]
    fn truncated_oversized_and_hostile_lines() {
        // Multi-byte characters where the mode bits are expected: an odd line, not a panic.
        for l in [
            "-rwxrwxr文 1 0 0 5 Jan 1 2020 x",
            "-文文文 1 0 0 5 Jan 1 2020 x",
            "d",
            "-rw-r--r--",
            "-rw-r--r-- 1 0 0 5 Jan 1 20",
            "-rw-r--r-- 1 0 0 5 Jan 1 2020",
            "-rw-r--r-- 1 0 0 5 Jan 1 2020 ",
            "01-02-24  01:05PM",
            "01-02-24  文:05PM  5 x",
            "99999999999-1-1 1:1 1 x",
        ] {
            let e = parse_list_line(l, TODAY).unwrap();
            assert_eq!(e.kind, Kind::Other, "{l:?} → {e:?}");
        }
        // A size too large for u64 is unknown, not an error.
        let e = parse_list_line(
            "-rw-r--r-- 1 0 0 99999999999999999999999 Jan 1 2020 x",
            TODAY,
        )
        .unwrap();
        assert_eq!((e.name.as_str(), e.size), ("x", None));
        // A very long line (the reader bounds lines at 64 KiB) is parsed, name intact.
        let long = "n".repeat(60_000);
        let e = parse_list_line(&format!("-rw-r--r-- 1 0 0 5 Jan 1 2020 {long}"), TODAY).unwrap();
        assert_eq!(e.name, long);
        let e = parse_mlsd_line(&format!("{}; x", "a=b;".repeat(15_000))).unwrap();
        assert_eq!((e.name.as_str(), e.kind), ("x", Kind::Other));
        // MLSD: truncated facts and multi-byte values.
        for l in [
            "type=file;modify=2024文0102030405; x",
            "=;=;; x",
            "; x",
            " x",
        ] {
            let e = parse_mlsd_line(l).unwrap();
            assert_eq!(e.name, "x", "{l:?}");
            assert_eq!(e.modified, None, "{l:?}");
        }
        assert!(parse_mlsd_line("").is_none());
        assert!(parse_mlsd_line("type=file;size=1;").is_none());
    }

    #[test]
    fn a_time_that_is_not_digits_is_not_a_date() {
        // Fuzzing regressions (ftp_listing, minimised): the hour and minute were copied into
        // `modified` unchecked, and `format_entry` printed a control character from them raw.
        for line in [
            &b"-rw-r--r-- 0 Jul 4 \x0f: 0"[..],
            b"1-2-0 0:\0 <DIR> 0",
            b"-rw-r--r-- 1 ftp ftp 1234 Mar 02 10:\x1b[2J f",
            b"01-02-24  10:\x1b[2JAM       <DIR>          d",
        ] {
            let line = std::str::from_utf8(line).unwrap();
            let e = parse_list_line(line, TODAY).unwrap();
            assert_eq!(
                (e.kind, e.modified.as_deref()),
                (Kind::Other, None),
                "{line:?}"
            );
            let row = format_entry(&e);
            assert!(!row.chars().any(char::is_control), "{row:?}");
        }
        // Real times still parse, one-digit hours included.
        let e = parse_list_line("-rw-r--r-- 1 ftp ftp 5 Mar 02 9:05 f", TODAY).unwrap();
        assert_eq!(e.modified.as_deref(), Some("2025-03-02 09:05"));
    }

    #[test]
    fn formatting_escapes_controls() {
        let e = Entry {
            name: "evil\x1b[2Jname\n".into(),
            kind: Kind::File,
            size: Some(5),
            modified: None,
            target: None,
        };
        let s = format_entry(&e);
        assert!(!s.contains('\x1b') && !s.contains('\n'), "{s}");
        assert!(s.ends_with("evil\\x1b[2Jname\\x0a"), "{s}");
    }
}
