//! A small `.netrc` reader (the format of ftp(1), curl and Python's `netrc` module).
//!
//! No well-kept netrc crate was at hand in the registry lists we may use, so this is a pure
//! tokenizer of the file's text: `machine NAME`, `default`, `login`, `password`, `account`, and
//! `macdef NAME` (whose body runs to the next empty line and is skipped). Tokens may be quoted
//! with `"` and use `\` escapes, as curl and Python accept.

/// Largest netrc file read (real ones are a few hundred bytes; this bounds memory when the
/// path points somewhere unexpected).
pub const MAX_NETRC: u64 = 1 << 20;

/// Reads and parses the netrc file at `path`, refusing one larger than [`MAX_NETRC`].
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<Entry>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_NETRC + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_NETRC {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB, not a netrc file",
            MAX_NETRC >> 10
        )));
    }
    Ok(parse(&text))
}

/// One `machine` (or `default`) entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The machine name; `None` for `default`.
    pub machine: Option<String>,
    /// The login, if given.
    pub login: Option<String>,
    /// The password, if given.
    pub password: Option<String>,
}

/// Splits netrc text into tokens, honouring quotes and backslash escapes; `macdef` bodies are
/// returned as a single token `\0macdef` so the parser can skip them.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let mut chars = line.chars().peekable();
        let mut line_tokens = Vec::new();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&c) = chars.peek() else { break };
            if c == '#' && line_tokens.is_empty() {
                // A comment line (curl and Python treat '#' at a token start as a comment).
                break;
            }
            let mut tok = String::new();
            if c == '"' {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => tok.extend(chars.next()),
                        c => tok.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        tok.extend(chars.next());
                    } else {
                        tok.push(c);
                    }
                }
            }
            line_tokens.push(tok);
        }
        let is_macdef = line_tokens.first().is_some_and(|t| t == "macdef");
        out.extend(line_tokens);
        if is_macdef {
            // The macro body runs to the first empty line.
            for body in lines.by_ref() {
                if body.trim().is_empty() {
                    break;
                }
            }
        }
    }
    out
}

/// Parses netrc text into its entries, in file order. Unknown keywords are skipped with their
/// value, as curl does.
pub fn parse(text: &str) -> Vec<Entry> {
    let toks = tokens(text);
    let mut entries = Vec::new();
    let mut cur: Option<Entry> = None;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].as_str();
        let val = toks.get(i + 1).cloned();
        match t {
            "machine" => {
                entries.extend(cur.take());
                cur = Some(Entry {
                    machine: val,
                    ..Entry::default()
                });
                i += 2;
            }
            "default" => {
                entries.extend(cur.take());
                cur = Some(Entry::default());
                i += 1;
            }
            "login" | "password" | "account" | "macdef" => {
                if let Some(e) = cur.as_mut() {
                    match t {
                        "login" => e.login = val,
                        "password" => e.password = val,
                        _ => {}
                    }
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    entries.extend(cur);
    entries
}

/// The entry for `host` (first matching `machine`, else `default`). When `user` is given, only
/// an entry with that login (or none) matches, as curl does.
pub fn lookup<'a>(entries: &'a [Entry], host: &str, user: Option<&str>) -> Option<&'a Entry> {
    let user_ok = |e: &&Entry| match (user, e.login.as_deref()) {
        (Some(u), Some(l)) => u == l,
        _ => true,
    };
    entries
        .iter()
        .filter(|e| {
            e.machine
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host))
        })
        .find(user_ok)
        .or_else(|| entries.iter().filter(|e| e.machine.is_none()).find(user_ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# comment line
machine ftp.example.org login alice password "s3cret with space"
machine 127.0.0.1
  login bob
  password p\"w
  account ignored

macdef init
cd /pub
binary

machine other login carol password c
default login anonymous password me@example.org
"#;

    #[test]
    fn parses_entries() {
        let e = parse(SAMPLE);
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].machine.as_deref(), Some("ftp.example.org"));
        assert_eq!(e[0].password.as_deref(), Some("s3cret with space"));
        assert_eq!(e[1].login.as_deref(), Some("bob"));
        assert_eq!(e[1].password.as_deref(), Some("p\"w"));
        // The macdef body ("cd /pub", "binary") is not read as tokens.
        assert_eq!(e[2].machine.as_deref(), Some("other"));
        assert_eq!(e[3].machine, None);
    }

    #[test]
    fn lookup_rules() {
        let e = parse(SAMPLE);
        assert_eq!(
            lookup(&e, "127.0.0.1", None).unwrap().login.as_deref(),
            Some("bob")
        );
        assert_eq!(
            lookup(&e, "FTP.example.org", None)
                .unwrap()
                .login
                .as_deref(),
            Some("alice")
        );
        // Another host falls back to default.
        assert_eq!(
            lookup(&e, "nowhere", None).unwrap().login.as_deref(),
            Some("anonymous")
        );
        // A user that does not match the machine's login skips it.
        assert_eq!(
            lookup(&e, "127.0.0.1", Some("anonymous"))
                .unwrap()
                .password
                .as_deref(),
            Some("me@example.org")
        );
        assert!(lookup(&parse("machine a login x"), "b", None).is_none());
    }

    #[test]
    fn truncated_and_odd_input() {
        assert!(parse("").is_empty());
        let e = parse("machine");
        assert_eq!(e, vec![Entry::default()]);
        let e = parse("machine h login");
        assert_eq!(e[0].login, None);
        let e = parse("login x password y");
        assert!(e.is_empty(), "keys before any machine are ignored");
        let e = parse("machine h password \"unterminated");
        assert_eq!(e[0].password.as_deref(), Some("unterminated"));
        let e = parse("machine h login u\nmacdef m\nmachine fake login evil\n");
        assert_eq!(
            e.len(),
            1,
            "a macdef body without empty line swallows the rest"
        );
        // Trailing backslash, lone quote, CRLF line ends.
        let e = parse("machine h password a\\");
        assert_eq!(e[0].password.as_deref(), Some("a"));
        let e = parse("machine h password \"");
        assert_eq!(e[0].password.as_deref(), Some(""));
        let e = parse("machine h\r\nlogin u\r\npassword p\r\n");
        assert_eq!(
            (e[0].login.as_deref(), e[0].password.as_deref()),
            (Some("u"), Some("p"))
        );
    }

    #[test]
    fn oversized_and_hostile_input() {
        // A huge token and many entries parse without trouble (the file itself is capped).
        let big = "p".repeat(500_000);
        let e = parse(&format!("machine h login u password {big}"));
        assert_eq!(e[0].password.as_deref(), Some(big.as_str()));
        let many = "machine m login l password p\n".repeat(20_000);
        assert_eq!(parse(&many).len(), 20_000);
        // Control characters survive parsing; config refuses CR/LF/NUL before they are sent.
        let e = parse("machine h password \"a\rPASS x\"");
        assert_eq!(e[0].password.as_deref(), Some("a\rPASS x"));
        // Binary junk: no panic.
        let _ = parse("\u{0}\u{7f}machine\u{0} \"\\");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("netrc");
        std::fs::write(&p, "machine h login u password p\n").unwrap();
        assert_eq!(read(&p).unwrap().len(), 1);
        std::fs::write(&p, vec![b' '; MAX_NETRC as usize + 1]).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("not a netrc file"), "{err}");
        std::fs::write(&p, b"machine h password \xff\xfe").unwrap();
        assert!(read(&p).is_err(), "not UTF-8");
    }
}
