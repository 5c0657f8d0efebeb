//! The checks behind each fuzz target, as plain functions: `src/bin/*.rs` hands them AFL's
//! inputs, and `tests/seeds.rs` runs them over the seed corpora in a normal `cargo test`.
//!
//! Each check feeds the bytes to the parser as the network would and then asserts invariants
//! that must hold for any input: a panic (ours or the parser's) is what AFL records as a crash.

use ftp_client::{listing, netrc, reply};
use libunftp::__fuzz as control;
use tcp_fileserv::protocol as tfs;

/// libunftp's control channel: `FtpCodec` splitting lines and `line_parser::parse` reading them.
///
/// - The same bytes give the same items whether they arrive at once, byte by byte, or in uneven
///   reads: a command must not depend on how TCP cut the stream.
/// - The decoder never holds more than the line limit plus one read.
/// - At most one item per line feed, per refused over-long stretch, and one at end of stream.
/// - When no line is over the limit, each item is exactly what `parse` makes of that line.
pub fn ftp_control(data: &[u8]) {
    let whole = control::decode_stream(data, &[]);
    let uneven = [1 + data.len() % 13, control::MAX_LINE_LEN, 2, 700];
    for reads in [&[1][..], &uneven[..]] {
        let cut = control::decode_stream(data, reads);
        assert_eq!(
            cut.items, whole.items,
            "items depend on the reads {reads:?}"
        );
        assert!(
            cut.peak_buffer <= control::MAX_LINE_LEN + cut.largest_read,
            "buffer grew to {} with reads of at most {}",
            cut.peak_buffer,
            cut.largest_read
        );
    }
    let newlines = data.iter().filter(|b| **b == b'\n').count();
    assert!(whole.items.len() <= newlines + data.len() / control::MAX_LINE_LEN + 1);

    let lines: Vec<&[u8]> = data.split_inclusive(|b| *b == b'\n').collect();
    if lines.iter().all(|l| l.len() <= control::MAX_LINE_LEN + 1) {
        for (i, line) in lines.iter().enumerate() {
            if line.ends_with(b"\n") {
                assert_eq!(whole.items[i], control::parse_line(line), "line {i}");
            } else {
                // An unfinished last line: the end-of-stream error, and nothing after it.
                assert!(whole.items[i].is_err() && whole.items.len() == i + 1);
            }
        }
        assert_eq!(whole.items.len(), lines.len());
    }
    // The parser alone, on input that may not end in a line feed.
    let _ = control::parse_line(data);
}

/// tcp-fileserv's framing: requests as the server reads them (one after another from one
/// buffer), a reply header, and a listing body.
///
/// - `split_request` and `decode_request` agree; a frame never claims more than the buffer.
/// - Whatever decodes re-encodes to exactly the bytes it came from (the encoding is canonical).
/// - "Need more bytes" is only said when a frame really is incomplete.
pub fn tcp_frames(data: &[u8]) {
    let mut rest = data;
    loop {
        match tfs::split_request(rest) {
            Ok(Some((h, name))) => {
                let used = tfs::HEADER_LEN + name.len();
                assert_eq!(name.len(), usize::from(h.name_len));
                assert!(used <= rest.len() && name.len() <= tfs::MAX_NAME_LEN);
                match tfs::decode_name(name) {
                    Ok(n) => {
                        let req = tfs::Request {
                            kind: h.kind,
                            name: n,
                            offset: h.offset,
                            escaped: h.escaped,
                        };
                        let enc = tfs::encode_request(&req).expect("a decoded request encodes");
                        assert_eq!(enc, rest[..used], "re-encoding differs");
                        assert_eq!(tfs::decode_request(rest), Ok(Some((req, used))));
                    }
                    Err(e) => assert_eq!(tfs::decode_request(rest), Err(e)),
                }
                rest = &rest[used..];
            }
            Ok(None) => {
                assert_eq!(tfs::decode_request(rest), Ok(None));
                if rest.len() >= tfs::HEADER_LEN {
                    let h = tfs::decode_request_header(rest).unwrap().unwrap();
                    assert!(rest.len() < tfs::HEADER_LEN + usize::from(h.name_len));
                }
                break;
            }
            Err(e) => {
                assert_eq!(tfs::decode_request(rest), Err(e));
                break;
            }
        }
    }

    if let Ok(Some(h)) = tfs::decode_reply_header(data) {
        assert!(usize::from(h.msg_len) <= tfs::MAX_MESSAGE_LEN);
        if h.status == tfs::Status::Ok {
            assert_eq!(h.msg_len, 0);
            assert_eq!(tfs::encode_ok(h.length), data[..tfs::HEADER_LEN]);
        } else {
            assert_eq!(h.length, 0);
            let end = tfs::HEADER_LEN + usize::from(h.msg_len);
            if let Some(msg) = data.get(tfs::HEADER_LEN..end)
                && let Ok(msg) = std::str::from_utf8(msg)
            {
                assert_eq!(tfs::encode_error(h.status, msg), data[..end]);
            }
        }
    } else {
        // A reply header that does not decode is never "need more" once 16 bytes are there.
        assert!(tfs::decode_reply_header(data) != Ok(None) || data.len() < tfs::HEADER_LEN);
    }

    if let Ok(entries) = tfs::decode_listing(data) {
        assert_eq!(
            tfs::encode_listing(&entries),
            data,
            "listing re-encoding differs"
        );
    }
}

/// ftp-client's control replies: `Reply::from_bytes` and the parsers of what a reply carries.
pub fn ftp_reply(data: &[u8]) {
    let r = reply::Reply::from_bytes(data);
    let lossy = String::from_utf8_lossy(data);
    assert!(r.text.len() <= lossy.len());
    assert!(!r.text.ends_with(['\r', '\n']));
    // A code is what its first three bytes say when they are digits, and 0 ("no code") if not.
    let digits = r
        .text
        .as_bytes()
        .get(..3)
        .filter(|d| d.iter().all(u8::is_ascii_digit));
    let want = digits.map_or(0, |d| d.iter().fold(0, |n, b| n * 10 + u16::from(b - b'0')));
    assert_eq!(r.code, want, "code from {:?}", r.text.get(..3));
    assert!(
        !r.one_line().chars().any(char::is_control),
        "one_line keeps a control character"
    );

    let text = r.text.as_str();
    if let Some(port) = reply::parse_epsv(text) {
        assert_ne!(port, 0);
        assert!(text.contains(&port.to_string()));
    }
    if let Some(addr) = reply::parse_pasv(text) {
        assert_ne!(addr.port(), 0);
    }
    if let Some(size) = reply::parse_size(&r) {
        assert_eq!(r.code, 213);
        assert!(text.contains(&size.to_string()));
    }
    let feats = reply::parse_feat(text);
    assert!(feats.len() <= text.lines().count());
    for f in &feats {
        assert!(!f.is_empty() && !f.contains(char::is_whitespace));
        assert_eq!(*f, f.to_ascii_uppercase());
    }
    // The trace of a command line: PASS is masked, nothing raw reaches a terminal.
    let shown = reply::mask_command(&lossy);
    assert!(!shown.chars().any(char::is_control));
    if lossy.len() >= 5 && lossy.as_bytes()[..5].eq_ignore_ascii_case(b"PASS ") {
        assert_eq!(shown, "PASS ****");
    }
}

/// ftp-client's listing lines, LIST (Unix, DOS/IIS) and MLSD, as `ftp-client ls` reads them: one
/// line at a time, lossy UTF-8, line end trimmed.
pub fn ftp_listing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        // Before and after the entry's date (a Unix date after "today" is last year's).
        for today in [(2025, 3, 10), (1, 1, 1)] {
            if let Some(e) = listing::parse_list_line(line, today) {
                check_entry(line, &e);
                if e.kind != listing::Kind::Other {
                    assert!(e.modified.is_some());
                }
            }
        }
        if let Some(e) = listing::parse_mlsd_line(line) {
            check_entry(line, &e);
            assert_eq!(Some(e.name.as_str()), line.split_once(' ').map(|(_, n)| n));
        }
    }
}

fn check_entry(line: &str, e: &listing::Entry) {
    assert!(!e.name.is_empty(), "empty name from {line:?}");
    assert!(line.contains(&e.name), "name {:?} not in {line:?}", e.name);
    if let Some(t) = &e.target {
        assert!(line.contains(t.as_str()));
    }
    if e.kind == listing::Kind::Dir {
        assert_eq!(e.size, None);
    }
    let row = listing::format_entry(e);
    assert!(
        !row.chars().any(char::is_control),
        "a control character in {row:?}"
    );
}

/// ftp-client's `.netrc` reader (the file is local, but a netrc may come from anywhere).
pub fn netrc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries = netrc::parse(&text);
    // Each entry needs its own `machine` or `default` token, 7 bytes at least.
    assert!(entries.len() * 7 <= text.len());
    for e in &entries {
        for v in [&e.machine, &e.login, &e.password].into_iter().flatten() {
            assert!(v.len() <= text.len());
        }
    }
    if let Some(e) = netrc::lookup(&entries, "ftp.example.org", None) {
        assert!(
            e.machine
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case("ftp.example.org"))
        );
    }
    let _ = netrc::lookup(&entries, "ftp.example.org", Some("anonymous"));
}

/// Runs `check` on each file named on the command line (the plain, non-AFL build of a target).
pub fn replay(check: fn(&[u8])) {
    for path in std::env::args_os().skip(1) {
        let data = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", std::path::Path::new(&path).display()));
        eprintln!(
            "{}: {} bytes",
            std::path::Path::new(&path).display(),
            data.len()
        );
        check(&data);
    }
}
