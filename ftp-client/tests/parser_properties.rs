//! Property tests of the parsers that read what a server sends: the reply reader, the EPSV and
//! PASV address parsers (RFC 2428, RFC 959) and the listing parsers (MLSD, RFC 3659 §7; Unix
//! LIST). Arbitrary input never panics; well-formed generated lines parse back to their fields.

use std::net::{Ipv4Addr, SocketAddrV4};

use ftp_client::listing::{Kind, parse_list_line, parse_mlsd_line};
use ftp_client::reply::{Reply, parse_epsv, parse_feat, parse_pasv, parse_size};
use proptest::prelude::*;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A file name as a server may list it: not blank, no CR or LF (which end a listing line).
fn name() -> impl Strategy<Value = String> {
    "[^\\s][^\r\n]{0,40}"
}

proptest! {
    #[test]
    fn replies_never_panic_and_keep_their_code(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let r = Reply::from_bytes(&body);
        let shown = r.one_line();
        prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        let _ = (r.is_ok(), r.is_transient(), r.is_preliminary(), parse_size(&r));
        let _ = parse_feat(&r.text);
        if body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit) {
            let want: u16 = std::str::from_utf8(&body[..3]).unwrap().parse().unwrap();
            prop_assert_eq!(r.code, want);
        }
    }

    #[test]
    fn well_formed_replies_parse_back(code in 100u16..600, text in "[^\r\n]{0,60}", size in any::<u64>()) {
        let r = Reply::from_bytes(format!("{code} {text}\r\n").as_bytes());
        prop_assert_eq!(r.code, code);
        let r = Reply::from_bytes(format!("213 {size}\r\n").as_bytes());
        prop_assert_eq!(parse_size(&r), Some(size));
    }

    #[test]
    fn address_parsers_never_panic(text in "\\PC{0,80}", raw in ".{0,80}") {
        let _ = parse_epsv(&text);
        let _ = parse_pasv(&text);
        let _ = parse_epsv(&raw);
        let _ = parse_pasv(&raw);
    }

    #[test]
    fn epsv_replies_parse_back(
        port in 1u16..,
        delim in proptest::sample::select(&['|', '!', '#', '$', '%', '&', '+', '/', ':', '~'][..]),
        text in "[^()0-9]{0,30}",
    ) {
        let d = delim;
        let reply = format!("229 {text}({d}{d}{d}{port}{d})");
        prop_assert_eq!(parse_epsv(&reply), Some(port));
    }

    #[test]
    fn pasv_replies_parse_back(
        ip in any::<[u8; 4]>(),
        port in 1u16..,
        text in "[^0-9]{0,30}",
        parens in any::<bool>(),
    ) {
        let [a, b, c, d] = ip;
        let nums = format!("{a},{b},{c},{d},{},{}", port >> 8, port & 255);
        let reply = if parens {
            format!("227 {text}({nums}).")
        } else {
            format!("227 {text}{nums}")
        };
        prop_assert_eq!(
            parse_pasv(&reply),
            Some(SocketAddrV4::new(Ipv4Addr::from(ip), port))
        );
    }

    #[test]
    fn listing_parsers_never_panic(line in "\\PC{0,120}", raw in ".{0,120}") {
        for l in [&line, &raw] {
            let _ = parse_list_line(l, (2025, 6, 15));
            let _ = parse_mlsd_line(l);
        }
    }

    #[test]
    fn unix_list_lines_parse_back(
        dir in any::<bool>(),
        perms in "[rwx-]{9}",
        owner in "[a-z]{1,8}",
        size in any::<u64>(),
        month in 0usize..12,
        day in 1u32..=28,
        when in prop_oneof![
            (1970i32..2100).prop_map(|y| (y, None)),
            (0u32..24, 0u32..60).prop_map(|(h, m)| (2025, Some((h, m)))),
        ],
        name in name(),
    ) {
        let (year, time) = when;
        let stamp = match time {
            Some((h, m)) => format!("{h:02}:{m:02}"),
            None => year.to_string(),
        };
        let kind = if dir { 'd' } else { '-' };
        let line = format!(
            "{kind}{perms} 1 {owner} {owner} {size:>8} {} {day:>2} {stamp:>5} {name}",
            MONTHS[month]
        );
        // The last day of the year as "today": a date shown with a time is this year's.
        let e = parse_list_line(&line, (2025, 12, 31)).expect("an entry");
        prop_assert_eq!(&e.name, &name);
        prop_assert_eq!(e.kind, if dir { Kind::Dir } else { Kind::File });
        prop_assert_eq!(e.size, (!dir).then_some(size));
        let date = format!("{year:04}-{:02}-{day:02}", month + 1);
        let want = match time {
            Some((h, m)) => format!("{date} {h:02}:{m:02}"),
            None => date,
        };
        prop_assert_eq!(e.modified, Some(want));
    }

    #[test]
    fn mlsd_lines_parse_back(
        dir in any::<bool>(),
        size in any::<u64>(),
        stamp in (1970u32..2100, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60),
        name in name(),
        upper in any::<bool>(),
    ) {
        let (y, mo, d, h, mi, s) = stamp;
        let kind = if dir { "dir" } else { "file" };
        let facts = format!("type={kind};size={size};modify={y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02};");
        // Fact names are case-insensitive (RFC 3659 §7.5).
        let facts = if upper { facts.to_uppercase() } else { facts };
        let e = parse_mlsd_line(&format!("{facts} {name}")).expect("an entry");
        prop_assert_eq!(&e.name, &name);
        prop_assert_eq!(e.kind, if dir { Kind::Dir } else { Kind::File });
        prop_assert_eq!(e.size, (!dir).then_some(size));
        let want = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}");
        prop_assert_eq!(e.modified, Some(want));
    }
}
