//! Naming a remote file: the lessons' HOST / DIR / FILE triple, or an RFC 1738 `ftp://` URL.
//!
//! Pure functions, no sockets. The URL is parsed by hand rather than with the WHATWG `url`
//! crate on purpose: WHATWG resolves `..` and `.` segments and turns `\` into `/` for `ftp:`,
//! which would change which directories we CWD into. RFC 1738 §3.2.2 says instead: split the
//! path on `/`, percent-decode each segment, and send each directory segment as its own CWD.

use std::fmt;

/// Transfer type from the URL's `;type=` suffix (RFC 1738 §3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeCode {
    /// `;type=a`: ASCII (TYPE A).
    Ascii,
    /// `;type=i`: image/binary (TYPE I), the default.
    Image,
}

/// A remote location: server, optional credentials from the URL, directories and file name.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// Port from the URL, if any.
    pub port: Option<u16>,
    /// User from the URL, percent-decoded.
    pub user: Option<String>,
    /// Password from the URL, percent-decoded.
    pub password: Option<String>,
    /// CWD arguments, in order; `/` first for an absolute path.
    pub dirs: Vec<String>,
    /// The file name (last URL segment), when there is one.
    pub file: Option<String>,
    /// The `;type=` code, if given.
    pub type_code: Option<TypeCode>,
    /// An `ftps://` URL: implicit TLS, from the first byte.
    pub implicit_tls: bool,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL's password never reaches a log or a panic message.
        f.debug_struct("Remote")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("dirs", &self.dirs)
            .field("file", &self.file)
            .field("type_code", &self.type_code)
            .finish()
    }
}

impl Remote {
    /// The directories joined with `/`, for messages.
    pub fn dir_display(&self) -> String {
        let mut s = String::new();
        for d in &self.dirs {
            if !s.is_empty() && !s.ends_with('/') {
                s.push('/');
            }
            s.push_str(d);
        }
        s
    }

    /// DIR/FILE, for messages.
    pub fn path_display(&self) -> String {
        let dir = self.dir_display();
        match (&self.file, dir.is_empty()) {
            (Some(f), true) => f.clone(),
            (Some(f), false) if dir.ends_with('/') => format!("{dir}{f}"),
            (Some(f), false) => format!("{dir}/{f}"),
            (None, _) => dir,
        }
    }
}

/// Why a target could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(pub String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

fn err<T>(msg: impl Into<String>) -> Result<T, TargetError> {
    Err(TargetError(msg.into()))
}

/// Whether `s` looks like a URL (has a scheme) rather than a bare host.
pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is an error (RFC 1738 §2.2).
pub fn percent_decode(s: &str) -> Result<String, TargetError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return err(format!("bad percent-escape in {s:?}")),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TargetError(format!("{s:?} does not decode to UTF-8")))
}

/// A name we can send as one FTP command argument: no CR, LF or NUL (RFC 959 §4.1.3 ends a
/// command at CRLF, so such a name would split into two commands).
fn check_arg(what: &str, s: &str) -> Result<(), TargetError> {
    if s.contains(['\r', '\n', '\0']) {
        return err(format!(
            "{what} {s:?} contains CR, LF or NUL, which FTP cannot send"
        ));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), TargetError> {
    if host.is_empty() {
        return err("the host is empty");
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return err(format!("{host:?} is not a host name or IP address"));
    }
    Ok(())
}

/// Splits `host[:port]` / `[v6][:port]`.
fn split_host_port(hp: &str) -> Result<(String, Option<u16>), TargetError> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return err(format!("unclosed [ in host {hp:?}"));
        };
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return err(format!("junk after ] in host {hp:?}")),
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return err(format!("{host:?} is not an IPv6 address"));
        }
        (host.to_string(), port)
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            Some(_) if hp.parse::<std::net::Ipv6Addr>().is_ok() => (hp.to_string(), None),
            Some(_) => return err(format!("put IPv6 addresses in brackets: {hp:?}")),
            None => (hp.to_string(), None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return err(format!("bad port {p:?}")),
        },
    };
    check_host(&host)?;
    Ok((host, port))
}

/// Parses `ftp://[USER[:PASS]@]HOST[:PORT]/DIR/.../FILE[;type=a|i]`.
///
/// Every path segment but the last is a CWD argument; the last is the file name (empty when
/// the URL ends with `/`). A leading empty segment (`ftp://h//etc/x`) means an absolute path
/// and becomes `CWD /`; other empty segments are skipped.
pub fn parse_url(s: &str) -> Result<Remote, TargetError> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return err(format!("{s:?} is not a URL"));
    };
    let implicit_tls = scheme.eq_ignore_ascii_case("ftps");
    if !scheme.eq_ignore_ascii_case("ftp") && !implicit_tls {
        return err(format!(
            "only ftp:// and ftps:// URLs are supported, not {scheme}://"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if authority.contains(['?', '#']) || path.contains(['?', '#']) {
        return err(format!(
            "{s:?}: ? and # must be percent-encoded in an ftp URL"
        ));
    }
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => match ui.split_once(':') {
            Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
            None => (Some(percent_decode(ui)?), None),
        },
    };
    for v in user.iter().chain(password.iter()) {
        check_arg("the user or password", v)?;
    }
    let (host, port) = split_host_port(hostport)?;

    let mut segments: Vec<&str> = path.split('/').collect();
    let last = segments.pop().unwrap_or("");
    let (last, type_code) = match last.rfind(';') {
        Some(i)
            if last
                .as_bytes()
                .get(i + 1..i + 6)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"type=")) =>
        {
            let code = match &last[i + 6..] {
                "a" | "A" => TypeCode::Ascii,
                "i" | "I" => TypeCode::Image,
                "d" | "D" => return err("`;type=d` (a directory listing) is what `ls` does"),
                other => return err(format!("unknown ;type={other} (use a or i)")),
            };
            (&last[..i], Some(code))
        }
        _ => (last, None),
    };
    let mut dirs = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            if i == 0 {
                dirs.push("/".to_string());
            }
            continue;
        }
        let d = percent_decode(seg)?;
        check_arg("the directory", &d)?;
        dirs.push(d);
    }
    let file = if last.is_empty() {
        None
    } else {
        let f = percent_decode(last)?;
        check_arg("the file name", &f)?;
        Some(f)
    };
    Ok(Remote {
        host,
        port,
        user,
        password,
        dirs,
        file,
        type_code,
        implicit_tls,
    })
}

/// Builds a [`Remote`] from the lessons' three parts. Nothing is percent-decoded here: the
/// names are taken literally. DIR is split on `/` (each part its own CWD, a leading `/` first
/// as `CWD /`); empty parts and `.` are skipped.
pub fn from_parts(host: &str, dir: &str, file: Option<&str>) -> Result<Remote, TargetError> {
    let (host, port) = split_host_port(host)?;
    let mut dirs = Vec::new();
    if dir.starts_with('/') {
        dirs.push("/".to_string());
    }
    for seg in dir.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        check_arg("the directory", seg)?;
        dirs.push(seg.to_string());
    }
    let file = match file {
        None => None,
        Some("") => return err("the file name is empty"),
        Some(f) if f.contains('/') => {
            return err(format!(
                "the file name {f:?} contains /: put the directories in DIR"
            ));
        }
        Some(f) => {
            check_arg("the file name", f)?;
            Some(f.to_string())
        }
    };
    Ok(Remote {
        host,
        port,
        user: None,
        password: None,
        dirs,
        file,
        type_code: None,
        implicit_tls: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_basic() {
        let r = parse_url("ftp://ftp.acc.umu.se/Public/EFLIB/README").unwrap();
        assert_eq!(r.host, "ftp.acc.umu.se");
        assert_eq!(r.port, None);
        assert_eq!(r.dirs, vec!["Public", "EFLIB"]);
        assert_eq!(r.file.as_deref(), Some("README"));
        assert_eq!(r.user, None);
    }

    #[test]
    fn url_credentials_port_and_encoding() {
        let r =
            parse_url("FTP://us%40er:p%3Ass@127.0.0.1:2121/a%20b/%2Fetc/with%20space.txt").unwrap();
        assert_eq!(r.user.as_deref(), Some("us@er"));
        assert_eq!(r.password.as_deref(), Some("p:ss"));
        assert_eq!(r.port, Some(2121));
        // %2F stays inside its segment (RFC 1738): one CWD with a slash in it.
        assert_eq!(r.dirs, vec!["a b", "/etc"]);
        assert_eq!(r.file.as_deref(), Some("with space.txt"));
    }

    #[test]
    fn url_hostile_names() {
        let r = parse_url("ftp://h/d/percent%2520name.txt").unwrap();
        assert_eq!(r.file.as_deref(), Some("percent%20name.txt"));
        let r = parse_url("ftp://h/%C3%BCn%C3%AFc%C3%B6d%C3%A9-%E6%96%87%E4%BB%B6.bin").unwrap();
        assert_eq!(r.file.as_deref(), Some("ünïcödé-文件.bin"));
        let r = parse_url("ftp://h/-leading-dash.txt").unwrap();
        assert_eq!(r.file.as_deref(), Some("-leading-dash.txt"));
        let r = parse_url("ftp://h/.dotfile").unwrap();
        assert_eq!(r.file.as_deref(), Some(".dotfile"));
        // Dot segments are NOT resolved: `..` is sent as CWD .. like any other name.
        let r = parse_url("ftp://h/a/../b\\c/x").unwrap();
        assert_eq!(r.dirs, vec!["a", "..", "b\\c"]);
        let long = "L".repeat(251) + ".dat";
        let r = parse_url(&format!("ftp://h/{long}")).unwrap();
        assert_eq!(r.file.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn url_refuses_command_injection() {
        assert!(parse_url("ftp://h/a%0D%0ADELE%20x/f").is_err());
        assert!(parse_url("ftp://h/f%0A").is_err());
        assert!(parse_url("ftp://u%0D%0A:p@h/f").is_err());
        assert!(parse_url("ftp://h/f%00").is_err());
    }

    #[test]
    fn url_type_suffix() {
        let r = parse_url("ftp://h/d/f.txt;type=a").unwrap();
        assert_eq!(r.type_code, Some(TypeCode::Ascii));
        assert_eq!(r.file.as_deref(), Some("f.txt"));
        let r = parse_url("ftp://h/f;TYPE=I").unwrap();
        assert_eq!(r.type_code, Some(TypeCode::Image));
        assert!(parse_url("ftp://h/f;type=x").is_err());
        assert!(parse_url("ftp://h/d/;type=d").is_err());
        // A semicolon that is not a type suffix is part of the name.
        let r = parse_url("ftp://h/semi;colon").unwrap();
        assert_eq!(r.file.as_deref(), Some("semi;colon"));
    }

    #[test]
    fn url_dirs_and_trailing_slash() {
        let r = parse_url("ftp://h/pub/").unwrap();
        assert_eq!(r.dirs, vec!["pub"]);
        assert_eq!(r.file, None);
        let r = parse_url("ftp://h").unwrap();
        assert!(r.dirs.is_empty());
        assert_eq!(r.file, None);
        let r = parse_url("ftp://h//etc/passwd").unwrap();
        assert_eq!(r.dirs, vec!["/", "etc"]);
        let r = parse_url("ftp://h/a//b/f").unwrap();
        assert_eq!(r.dirs, vec!["a", "b"]);
    }

    #[test]
    fn url_truncated_oversized_and_hostile() {
        for bad in [
            "ftp://",
            "ftp:/",
            "ftp://[",
            "ftp://[]/f",
            "ftp://@/f",
            "ftp://h/%",
            "ftp://h/a%2",
            "ftp://h/f;type=",
            "ftp://h/f%C3",
            "ftp://h/文件%0D%0AQUIT",
            "ftp://h\r\n/f",
            "ftp://h文/f",
            "ftp://h/f;type=文",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} should fail");
        }
        // A multi-byte character where `type=` might start is part of the name, not a panic.
        let r = parse_url("ftp://h/f;typ文").unwrap();
        assert_eq!((r.file.as_deref(), r.type_code), (Some("f;typ文"), None));
        // An empty port is the default port (RFC 3986 §3.2.3).
        assert!(parse_url("ftp://h:").is_ok_and(|r| r.port.is_none()));
        assert!(parse_url("ftp://[::1]:/f").is_ok_and(|r| r.port.is_none()));
        // Oversized: a long path of many segments is parsed, each segment its own CWD.
        let url = format!("ftp://h/{}f", "d/".repeat(10_000));
        let r = parse_url(&url).unwrap();
        assert_eq!(r.dirs.len(), 10_000);
        let long = "%41".repeat(100_000);
        let r = parse_url(&format!("ftp://h/{long}")).unwrap();
        assert_eq!(r.file.map(|f| f.len()), Some(100_000));
        assert!(parse_url(&format!("ftp://{}/f", "h".repeat(100_000))).is_ok());
        assert!(parse_url(&format!("ftp://h:{}/f", "9".repeat(1000))).is_err());
    }

    #[test]
    fn url_hosts() {
        let r = parse_url("ftp://[::1]:21/f").unwrap();
        assert_eq!(r.host, "::1");
        assert_eq!(r.port, Some(21));
        assert!(parse_url("ftp://[::1/f").is_err());
        assert!(parse_url("ftp://h:0/f").is_err());
        assert!(parse_url("ftp://h:99999/f").is_err());
        assert!(parse_url("ftp://h:x/f").is_err());
        assert!(parse_url("ftp:///f").is_err());
        assert!(parse_url("http://h/f").is_err());
        assert!(parse_url("ftp://h/f?x").is_err());
        assert!(parse_url("ftp://h/%zz").is_err());
        assert!(parse_url("ftp://h/%4").is_err());
        assert!(parse_url("ftp://h/%FF").is_err());
        assert!(parse_url("ftp://ho st/f").is_err());
    }

    #[test]
    fn parts() {
        let r = from_parts("ftp.acc.umu.se", "Public/EFLIB/", Some("README")).unwrap();
        assert_eq!(r.dirs, vec!["Public", "EFLIB"]);
        assert_eq!(r.file.as_deref(), Some("README"));
        let r = from_parts("127.0.0.1:2121", "/abs/./x", Some("percent%20name.txt")).unwrap();
        assert_eq!(r.port, Some(2121));
        assert_eq!(r.dirs, vec!["/", "abs", "x"]);
        // Literal: no percent-decoding in the three-part form.
        assert_eq!(r.file.as_deref(), Some("percent%20name.txt"));
        assert_eq!(r.path_display(), "/abs/x/percent%20name.txt");
        let r = from_parts("::1", "", Some("f")).unwrap();
        assert_eq!(r.host, "::1");
        assert!(r.dirs.is_empty());
        assert!(from_parts("h", "d", Some("a/b")).is_err());
        assert!(from_parts("h", "d", Some("")).is_err());
        assert!(from_parts("h", "d\r\nDELE x", Some("f")).is_err());
        assert!(from_parts("", "d", Some("f")).is_err());
    }
}
