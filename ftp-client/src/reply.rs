//! Pure helpers for the control connection: a reply as code + text, the EPSV/PASV/SIZE/FEAT
//! reply parsers, and the masking of `PASS` in the protocol trace. No sockets here.

use std::net::{Ipv4Addr, SocketAddrV4};

use filexfer::text::printable;

/// One (possibly multi-line) reply: its three-digit code and its full text, CRLFs trimmed at
/// the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, e.g. 226 (0 if the server sent no digits, which the reader rejects).
    pub code: u16,
    /// All the reply's lines, as sent (lossy UTF-8).
    pub text: String,
}

impl Reply {
    /// Builds a reply from the raw bytes of the whole reply.
    pub fn from_bytes(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        // Three ASCII digits or no code: `parse` alone also takes a sign, so "+11 x" had code 11
        // (found by fuzzing, docs/fuzzing.md).
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Self { code, text }
    }

    /// The reply on one line, for error messages (multi-line replies joined with ` | `).
    pub fn one_line(&self) -> String {
        printable(
            &self
                .text
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" | "),
        )
    }

    /// 1xx: positive preliminary (RFC 959 §4.2).
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2xx: positive completion.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: transient negative completion, worth a retry.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

/// The port of a `229 Entering Extended Passive Mode (|||6446|)` reply (RFC 2428 §3): the
/// delimiter is whatever character follows `(`, repeated three times before the port.
pub fn parse_epsv(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    // "|||port|" splits into ["", "", "", "port", ""].
    if parts.len() != 5
        || parts
            .iter()
            .enumerate()
            .any(|(i, p)| i != 3 && !p.is_empty())
    {
        return None;
    }
    parts[3].parse().ok().filter(|p| *p != 0)
}

/// The address of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply (RFC 959 §4.1.2).
/// The parentheses are optional in practice, so the first run of six comma-separated numbers
/// is taken.
pub fn parse_pasv(text: &str) -> Option<SocketAddrV4> {
    let body = text.get(3..)?;
    let start = body.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u8> = body[start..]
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .next()?
        .split(',')
        .map(|n| n.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() != 6 {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    (port != 0).then_some(SocketAddrV4::new(ip, port))
}

/// The size of a `213 <size>` reply (RFC 3659 §4.2).
pub fn parse_size(r: &Reply) -> Option<u64> {
    if r.code != 213 {
        return None;
    }
    r.text.get(4..)?.trim().parse().ok()
}

/// The directory of a `257 "PATH" ...` reply to PWD (RFC 959 §7: a `"` inside the name is
/// doubled). `None` for another code or a reply without the quoted name.
pub fn parse_pwd(r: &Reply) -> Option<String> {
    if r.code != 257 {
        return None;
    }
    let rest = r.text.get(4..)?.lines().next()?;
    let mut chars = rest.strip_prefix('"')?.chars().peekable();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
            } else {
                return (!out.is_empty()).then_some(out);
            }
        }
        out.push(c);
    }
    None
}

/// Parses a FEAT reply (RFC 2389 §3.2): the feature names (first word, upper-cased) of the
/// lines between the first and the last.
pub fn parse_feat(reply: &str) -> Vec<String> {
    let lines: Vec<&str> = reply.lines().collect();
    if lines.len() < 3 {
        return Vec::new();
    }
    lines[1..lines.len() - 1]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The command as the trace shows it: the `PASS` argument replaced by `****`.
pub fn mask_command(line: &str) -> String {
    let b = line.as_bytes();
    let is_pass = b.get(..4).is_some_and(|v| v.eq_ignore_ascii_case(b"PASS"));
    if is_pass && matches!(b.get(4), None | Some(b' ')) {
        "PASS ****".to_string()
    } else {
        printable(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwd_replies() {
        let r = |t: &str| Reply::from_bytes(t.as_bytes());
        assert_eq!(
            parse_pwd(&r("257 \"/pub\" is current\r\n")).as_deref(),
            Some("/pub")
        );
        assert_eq!(
            parse_pwd(&r("257 \"/a \"\"q\"\" b\"\r\n")).as_deref(),
            Some("/a \"q\" b")
        );
        assert_eq!(parse_pwd(&r("257 /pub\r\n")), None);
        assert_eq!(parse_pwd(&r("257 \"/unterminated\r\n")), None);
        assert_eq!(parse_pwd(&r("550 no\r\n")), None);
    }

    #[test]
    fn reply_parsing() {
        let r = Reply::from_bytes(b"211-Features:\r\n EPSV\r\n211 End\r\n");
        assert_eq!(r.code, 211);
        assert_eq!(r.one_line(), "211-Features: | EPSV | 211 End");
        assert_eq!(Reply::from_bytes(b"xx").code, 0);
        assert!(Reply::from_bytes(b"150 ok").is_preliminary());
        assert!(Reply::from_bytes(b"421 bye").is_transient());
        // Truncated, binary and multi-byte input never panics.
        assert_eq!(Reply::from_bytes(b"").code, 0);
        assert_eq!(Reply::from_bytes(b"2").code, 0);
        assert_eq!(Reply::from_bytes("2文0 x".as_bytes()).code, 0);
        assert_eq!(Reply::from_bytes(b"\xff\xfe\x00 x").code, 0);
        let r = Reply::from_bytes(b"550 evil\x1b[2J\r\n");
        assert_eq!(r.one_line(), "550 evil\\x1b[2J");
        let long = Reply::from_bytes(format!("200 {}", "a".repeat(300_000)).as_bytes());
        assert_eq!(long.code, 200);
    }

    #[test]
    fn a_reply_code_is_three_digits_or_none() {
        // Fuzzing regression (ftp_reply): a sign before two digits was taken as a code.
        assert_eq!(Reply::from_bytes(b"+11-Features:\r\n MDTM\r\n").code, 0);
        assert_eq!(Reply::from_bytes(b"+99 x").code, 0);
        assert_eq!(Reply::from_bytes(b"-99 x").code, 0);
        assert_eq!(Reply::from_bytes(b"011-Features:\r\n").code, 11);
    }

    #[test]
    fn epsv() {
        assert_eq!(
            parse_epsv("229 Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(parse_epsv("229 ok (!!!2121!)"), Some(2121));
        assert_eq!(parse_epsv("229 (|||0|)"), None);
        assert_eq!(parse_epsv("229 (|||70000|)"), None);
        assert_eq!(parse_epsv("229 (||1|2|)"), None);
        assert_eq!(parse_epsv("229 nothing"), None);
        assert_eq!(parse_epsv("229 (|||12"), None);
        // Truncated, oversized and hostile input: None, never a panic.
        assert_eq!(parse_epsv("229 ("), None);
        assert_eq!(parse_epsv("229 ()"), None);
        assert_eq!(parse_epsv("229 (文文文2121文)"), Some(2121));
        assert_eq!(parse_epsv("229 (|||99999999999999999999999|)"), None);
        assert_eq!(parse_epsv("229 (|||-1|)"), None);
        assert_eq!(
            parse_epsv(&format!("229 (|||{}|)", "1".repeat(100_000))),
            None
        );
        assert_eq!(parse_epsv(&format!("229 ({})", "|".repeat(100_000))), None);
    }

    #[test]
    fn pasv() {
        let a = parse_pasv("227 Entering Passive Mode (10,1,2,3,19,137).").unwrap();
        assert_eq!(a.to_string(), "10.1.2.3:5001");
        let a = parse_pasv("227 =127,0,0,1,4,1").unwrap();
        assert_eq!(a.port(), 1025);
        assert_eq!(parse_pasv("227 (1,2,3,4,5)"), None);
        assert_eq!(parse_pasv("227 (1,2,3,4,5,6,7)"), None);
        assert_eq!(parse_pasv("227 (1,2,3,400,5,6)"), None);
        assert_eq!(parse_pasv("227 (1,2,3,4,0,0)"), None);
        assert_eq!(parse_pasv("22"), None);
        // Truncated, oversized and hostile input: None, never a panic.
        assert_eq!(parse_pasv("227 (127,0,0,1,4,"), None);
        assert_eq!(
            parse_pasv("227 文(1,2,3,4,5,6)"),
            parse_pasv("227 (1,2,3,4,5,6)")
        );
        assert_eq!(parse_pasv("227 (1,2,3,4,5,-6)"), None);
        let many = vec!["1"; 100_000].join(",");
        assert_eq!(parse_pasv(&format!("227 ({many})")), None);
        let huge = "9".repeat(100_000);
        assert_eq!(parse_pasv(&format!("227 ({huge},0,0,1,4,1)")), None);
    }

    #[test]
    fn size() {
        assert_eq!(
            parse_size(&Reply::from_bytes(b"213 1073741824\r\n")),
            Some(1 << 30)
        );
        assert_eq!(parse_size(&Reply::from_bytes(b"550 nope")), None);
        assert_eq!(parse_size(&Reply::from_bytes(b"213 -1")), None);
        assert_eq!(parse_size(&Reply::from_bytes(b"213")), None);
        assert_eq!(parse_size(&Reply::from_bytes(b"213 ")), None);
        assert_eq!(
            parse_size(&Reply::from_bytes(b"213 99999999999999999999999")),
            None
        );
        assert_eq!(parse_size(&Reply::from_bytes("213文1".as_bytes())), None);
    }

    #[test]
    fn feat_reply() {
        let f = parse_feat("211-Features:\r\n MLST type*;size*;\r\n EPSV\r\n SIZE\r\n211 End\r\n");
        assert_eq!(f, vec!["MLST", "EPSV", "SIZE"]);
        assert!(parse_feat("211 no features").is_empty());
        // Truncated or hostile.
        assert!(parse_feat("").is_empty());
        assert!(parse_feat("211-x\r\n").is_empty());
        assert_eq!(parse_feat("211-x\r\n mlst\r\n \r\n211 e"), vec!["MLST"]);
    }

    #[test]
    fn masking() {
        assert_eq!(mask_command("PASS hunter2"), "PASS ****");
        assert_eq!(mask_command("pass x y"), "PASS ****");
        assert_eq!(mask_command("PASS"), "PASS ****");
        assert_eq!(mask_command("PASSIVE"), "PASSIVE");
        assert_eq!(mask_command("USER bob"), "USER bob");
        assert_eq!(mask_command("RETR a\x1bb"), "RETR a\\x1bb");
        assert_eq!(mask_command("ab文"), "ab文");
        assert_eq!(mask_command("PAS"), "PAS");
        assert_eq!(mask_command(""), "");
    }
}
