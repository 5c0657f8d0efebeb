//! The tcp-fileserv wire protocol, as a pure codec: bytes in, typed values (or "need more bytes")
//! out. No sockets here, so every malformed input can be unit-tested.
//!
//! Every message starts with a fixed 16-byte header, all integers big-endian (network order), as
//! Python's `struct.pack("!3sBBBHQ", ...)` writes them. See `docs/tcp-protocol.md` for the byte
//! diagram.
//!
//! ```text
//! request:  "TFS" | version u8 | kind u8 | flags u8 | name_len u16 | offset u64 | name bytes
//! reply:    "TFS" | version u8 | status u8 | 0 u8       | msg_len u16  | length u64 | body
//! ```
//!
//! A reply with status 0 is followed by exactly `length` body bytes; any other status is followed
//! by `msg_len` bytes of UTF-8 text for a person, and `length` is 0.

use thiserror::Error;

/// The three magic bytes that open every request and reply.
pub const MAGIC: [u8; 3] = *b"TFS";
/// The protocol version this implementation speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed request and reply headers.
pub const HEADER_LEN: usize = 16;
/// Longest file name (in bytes) a request may carry. Longer names are refused from the header
/// alone, before any of the name is read or allocated.
pub const MAX_NAME_LEN: usize = 4096;
/// Longest error message a reply may carry.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Request flag: the name is escaped ([`crate::paths::escape_name`]): it stands for a file name
/// that is not UTF-8. The other flag bits are reserved and must be 0.
pub const FLAG_ESCAPED_NAME: u8 = 0x01;
/// Largest listing body a client accepts (a listing is held in memory).
pub const MAX_LISTING_LEN: u64 = 64 << 20;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send the bytes of a regular file, from `offset` on.
    Get = 1,
    /// Send the entries of a directory (see [`encode_listing`]).
    List = 2,
}

/// A request header, decoded; the name follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// What is asked for.
    pub kind: Kind,
    /// Length of the name that follows, in bytes (at most [`MAX_NAME_LEN`]).
    pub name_len: u16,
    /// Where to start in the file (for resuming); 0 for a whole file.
    pub offset: u64,
    /// The name is escaped ([`FLAG_ESCAPED_NAME`]).
    pub escaped: bool,
}

/// A whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What is asked for.
    pub kind: Kind,
    /// The file or directory name, relative to the server's root, `/`-separated.
    pub name: String,
    /// Start offset for [`Kind::Get`].
    pub offset: u64,
    /// `name` is escaped: it stands for a name that is not UTF-8 ([`FLAG_ESCAPED_NAME`]).
    pub escaped: bool,
}

/// The outcome a reply announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success: `length` body bytes follow.
    Ok = 0,
    /// No such file or directory.
    NotFound = 1,
    /// The name is refused: it leads outside the root, or the server may not read it.
    AccessDenied = 2,
    /// The name exists but is not a regular file (a directory, FIFO, device, ...).
    NotRegularFile = 3,
    /// The request is malformed (bad magic, unknown kind, bad name encoding, ...).
    BadRequest = 4,
    /// The server is at its connection limit; try again later.
    Busy = 5,
    /// The request's protocol version is not supported.
    UnsupportedVersion = 6,
    /// The resume offset lies beyond the end of the file.
    BadOffset = 7,
    /// The server failed for a reason of its own (an I/O error).
    ServerError = 8,
}

impl Status {
    /// Decodes a status byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::NotFound,
            2 => Self::AccessDenied,
            3 => Self::NotRegularFile,
            4 => Self::BadRequest,
            5 => Self::Busy,
            6 => Self::UnsupportedVersion,
            7 => Self::BadOffset,
            8 => Self::ServerError,
            _ => return None,
        })
    }
}

/// A reply header, decoded; `msg_len` message bytes or `length` body bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The outcome.
    pub status: Status,
    /// Length of the error message that follows (0 on success).
    pub msg_len: u16,
    /// Number of body bytes that follow (0 on error).
    pub length: u64,
}

/// Why bytes could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The first three bytes are not `TFS`: this is not our protocol.
    #[error("not a tcp-fileserv message (bad magic bytes {0:02x?})")]
    BadMagic([u8; 3]),
    /// A version we do not speak.
    #[error("unsupported protocol version {0} (this build speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// A request kind we do not know.
    #[error("unknown request kind {0}")]
    UnknownKind(u8),
    /// A reserved byte that must be zero is not.
    #[error("reserved header byte is {0}, expected 0")]
    Reserved(u8),
    /// The announced name is longer than [`MAX_NAME_LEN`].
    #[error("name of {0} bytes is longer than the maximum of {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// The name is empty.
    #[error("empty name")]
    EmptyName,
    /// The name is not valid UTF-8.
    #[error("name is not valid UTF-8")]
    NameNotUtf8,
    /// A status byte we do not know.
    #[error("unknown reply status {0}")]
    UnknownStatus(u8),
    /// An error reply that claims a body, or a message longer than [`MAX_MESSAGE_LEN`].
    #[error("malformed reply: {0}")]
    BadReply(&'static str),
    /// A listing body that does not parse.
    #[error("malformed listing: {0}")]
    BadListing(&'static str),
}

fn check_magic_version(buf: &[u8]) -> Result<(), DecodeError> {
    let magic = [buf[0], buf[1], buf[2]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    if buf[3] != VERSION {
        return Err(DecodeError::UnsupportedVersion(buf[3]));
    }
    Ok(())
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Decodes a request header from the start of `buf`; `Ok(None)` when fewer than
/// [`HEADER_LEN`] bytes are there yet.
pub fn decode_request_header(buf: &[u8]) -> Result<Option<RequestHeader>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    check_magic_version(buf)?;
    let kind = match buf[4] {
        1 => Kind::Get,
        2 => Kind::List,
        k => return Err(DecodeError::UnknownKind(k)),
    };
    if buf[5] & !FLAG_ESCAPED_NAME != 0 {
        return Err(DecodeError::Reserved(buf[5]));
    }
    let name_len = u16_at(buf, 6);
    if name_len as usize > MAX_NAME_LEN {
        return Err(DecodeError::NameTooLong(name_len as usize));
    }
    if name_len == 0 {
        return Err(DecodeError::EmptyName);
    }
    Ok(Some(RequestHeader {
        kind,
        name_len,
        offset: u64_at(buf, 8),
        escaped: buf[5] & FLAG_ESCAPED_NAME != 0,
    }))
}

/// Decodes a request name (the bytes after the header).
pub fn decode_name(bytes: &[u8]) -> Result<String, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::EmptyName);
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| DecodeError::NameNotUtf8)
}

/// Cuts one request frame from the start of `buf`: its decoded header and its raw name bytes
/// (the frame is `HEADER_LEN + name.len()` bytes long), or `Ok(None)` when more bytes are
/// needed. An error here is about the header: the framing of whatever follows cannot be trusted.
/// The name is left undecoded so that a reader can skip a frame whose name is bad
/// ([`decode_name`]) and go on with the next one.
pub fn split_request(buf: &[u8]) -> Result<Option<(RequestHeader, &[u8])>, DecodeError> {
    let Some(h) = decode_request_header(buf)? else {
        return Ok(None);
    };
    let end = HEADER_LEN + h.name_len as usize;
    Ok(buf.get(HEADER_LEN..end).map(|name| (h, name)))
}

/// Decodes a whole request from the start of `buf`: `Ok(Some((request, bytes_used)))`, or
/// `Ok(None)` when more bytes are needed.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, DecodeError> {
    let Some((h, name)) = split_request(buf)? else {
        return Ok(None);
    };
    Ok(Some((
        Request {
            kind: h.kind,
            name: decode_name(name)?,
            offset: h.offset,
            escaped: h.escaped,
        },
        HEADER_LEN + name.len(),
    )))
}

/// Encodes a request. Fails on names that are empty or longer than [`MAX_NAME_LEN`], so a client
/// never sends what the server must refuse for its size.
pub fn encode_request(req: &Request) -> Result<Vec<u8>, DecodeError> {
    let name = req.name.as_bytes();
    if name.is_empty() {
        return Err(DecodeError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(DecodeError::NameTooLong(name.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + name.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(req.kind as u8);
    out.push(if req.escaped { FLAG_ESCAPED_NAME } else { 0 });
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(&req.offset.to_be_bytes());
    out.extend_from_slice(name);
    Ok(out)
}

/// Encodes a success reply header announcing `length` body bytes.
pub fn encode_ok(length: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..3].copy_from_slice(&MAGIC);
    out[3] = VERSION;
    out[4] = Status::Ok as u8;
    out[8..16].copy_from_slice(&length.to_be_bytes());
    out
}

/// Encodes an error reply: header plus message (cut to [`MAX_MESSAGE_LEN`] bytes on a character
/// boundary). `status` must not be [`Status::Ok`]; if it is, [`Status::ServerError`] is sent.
pub fn encode_error(status: Status, message: &str) -> Vec<u8> {
    let status = if status == Status::Ok {
        Status::ServerError
    } else {
        status
    };
    let mut cut = message.len().min(MAX_MESSAGE_LEN);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let msg = &message.as_bytes()[..cut];
    let mut out = Vec::with_capacity(HEADER_LEN + msg.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(status as u8);
    out.push(0);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// Decodes a reply header; `Ok(None)` when fewer than [`HEADER_LEN`] bytes are there.
pub fn decode_reply_header(buf: &[u8]) -> Result<Option<ReplyHeader>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    check_magic_version(buf)?;
    let status = Status::from_u8(buf[4]).ok_or(DecodeError::UnknownStatus(buf[4]))?;
    if buf[5] != 0 {
        return Err(DecodeError::Reserved(buf[5]));
    }
    let msg_len = u16_at(buf, 6);
    let length = u64_at(buf, 8);
    if msg_len as usize > MAX_MESSAGE_LEN {
        return Err(DecodeError::BadReply(
            "error message longer than the maximum",
        ));
    }
    match status {
        Status::Ok if msg_len != 0 => Err(DecodeError::BadReply("success reply with a message")),
        s if s != Status::Ok && length != 0 => {
            Err(DecodeError::BadReply("error reply announcing a body"))
        }
        _ => Ok(Some(ReplyHeader {
            status,
            msg_len,
            length,
        })),
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (downloadable).
    File,
    /// A directory (listable).
    Dir,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// The entry's name (one path component).
    pub name: String,
    /// `name` is escaped ([`crate::paths::escape_name`]): the name on disk is not UTF-8.
    /// Send it back with [`FLAG_ESCAPED_NAME`] to fetch it.
    pub escaped: bool,
}

/// Encodes a listing body: per entry `kind u8 ('f' | 'd') | size u64 | name_len u16 | name`;
/// the kind is upper case (`'F'`, `'D'`) when the name is escaped.
/// Entries whose name exceeds [`MAX_NAME_LEN`] are left out (nobody could request them).
pub fn encode_listing(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_listing_into(&mut out, entries);
    out
}

/// The whole success reply to a LIST of `entries`, header and body in one buffer of exactly
/// the size it needs: the server holds it until the client has read it, so no second copy and
/// no spare capacity.
pub fn encode_listing_reply(entries: &[Entry]) -> Vec<u8> {
    let body_len: usize = sendable(entries).map(|e| 11 + e.name.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(&encode_ok(body_len as u64));
    encode_listing_into(&mut out, entries);
    debug_assert_eq!(out.len(), HEADER_LEN + body_len);
    out
}

/// The entries a listing carries: a name over [`MAX_NAME_LEN`] could never be requested.
fn sendable(entries: &[Entry]) -> impl Iterator<Item = &Entry> {
    entries.iter().filter(|e| e.name.len() <= MAX_NAME_LEN)
}

fn encode_listing_into(out: &mut Vec<u8>, entries: &[Entry]) {
    for e in sendable(entries) {
        let kind = match e.kind {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
        };
        out.push(if e.escaped {
            kind.to_ascii_uppercase()
        } else {
            kind
        });
        out.extend_from_slice(&e.size.to_be_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_be_bytes());
        out.extend_from_slice(e.name.as_bytes());
    }
}

/// Decodes a whole listing body (see [`encode_listing`]).
pub fn decode_listing(mut buf: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 11 {
            return Err(DecodeError::BadListing("truncated entry header"));
        }
        let kind = match buf[0].to_ascii_lowercase() {
            b'f' => EntryKind::File,
            b'd' => EntryKind::Dir,
            _ => return Err(DecodeError::BadListing("unknown entry kind")),
        };
        let escaped = buf[0].is_ascii_uppercase();
        let size = u64_at(buf, 1);
        let len = u16_at(buf, 9) as usize;
        if len > MAX_NAME_LEN {
            return Err(DecodeError::BadListing("entry name too long"));
        }
        let rest = &buf[11..];
        if rest.len() < len {
            return Err(DecodeError::BadListing("truncated entry name"));
        }
        let name = std::str::from_utf8(&rest[..len])
            .map_err(|_| DecodeError::BadListing("entry name is not UTF-8"))?
            .to_owned();
        out.push(Entry {
            kind,
            size,
            name,
            escaped,
        });
        buf = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(name: &str, offset: u64) -> Request {
        Request {
            kind: Kind::Get,
            name: name.into(),
            offset,
            escaped: false,
        }
    }

    #[test]
    fn request_round_trips() {
        let req = get("dir/ünï code.bin", 12345);
        let bytes = encode_request(&req).unwrap();
        assert_eq!(&bytes[..3], b"TFS");
        assert_eq!(bytes.len(), HEADER_LEN + req.name.len());
        assert_eq!(decode_request(&bytes).unwrap(), Some((req, bytes.len())));
    }

    #[test]
    fn header_layout_is_the_documented_struct() {
        // struct.pack("!3sBBBHQ", b"TFS", 1, 1, 0, 3, 7) + b"a.b"
        let expect: Vec<u8> = [
            b"TFS".as_slice(),
            &[1, 1, 0],
            &[0, 3],
            &[0, 0, 0, 0, 0, 0, 0, 7],
            b"a.b",
        ]
        .concat();
        assert_eq!(encode_request(&get("a.b", 7)).unwrap(), expect);
    }

    #[test]
    fn every_truncation_asks_for_more() {
        let bytes = encode_request(&get("some/file.txt", 0)).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode_request(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_name_is_refused_from_the_header_alone() {
        let mut h = encode_request(&get("x", 0)).unwrap();
        h.truncate(HEADER_LEN);
        h[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            decode_request_header(&h),
            Err(DecodeError::NameTooLong(65535))
        );
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            encode_request(&get(&long, 0)),
            Err(DecodeError::NameTooLong(MAX_NAME_LEN + 1))
        );
        assert!(encode_request(&get(&"a".repeat(MAX_NAME_LEN), 0)).is_ok());
    }

    #[test]
    fn unknown_version_kind_and_reserved_are_refused() {
        let good = encode_request(&get("f", 0)).unwrap();
        let mut v = good.clone();
        v[3] = 9;
        assert_eq!(decode_request(&v), Err(DecodeError::UnsupportedVersion(9)));
        let mut k = good.clone();
        k[4] = 77;
        assert_eq!(decode_request(&k), Err(DecodeError::UnknownKind(77)));
        let mut r = good.clone();
        r[5] = 2;
        assert_eq!(decode_request(&r), Err(DecodeError::Reserved(2)));
        // Bit 0 is the escaped-name flag, not a reserved bit.
        r[5] = FLAG_ESCAPED_NAME;
        assert!(decode_request(&r).unwrap().unwrap().0.escaped);
        let mut z = good;
        z[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(decode_request(&z), Err(DecodeError::EmptyName));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            decode_request(b"GET /etc/passwd HTTP/1.1\r\n\r\n"),
            Err(DecodeError::BadMagic(*b"GET"))
        );
        assert!(matches!(
            decode_request(&[0xff; 64]),
            Err(DecodeError::BadMagic(_))
        ));
        let mut bad_utf8 = encode_request(&get("ab", 0)).unwrap();
        bad_utf8[HEADER_LEN] = 0xff;
        assert_eq!(decode_request(&bad_utf8), Err(DecodeError::NameNotUtf8));
    }

    #[test]
    fn replies_round_trip_and_are_checked() {
        let ok = encode_ok(1 << 40);
        assert_eq!(
            decode_reply_header(&ok).unwrap(),
            Some(ReplyHeader {
                status: Status::Ok,
                msg_len: 0,
                length: 1 << 40
            })
        );
        let err = encode_error(Status::NotFound, "no such file: a b");
        let h = decode_reply_header(&err).unwrap().unwrap();
        assert_eq!(h.status, Status::NotFound);
        assert_eq!(&err[HEADER_LEN..], b"no such file: a b");
        assert_eq!(decode_reply_header(&ok[..15]), Ok(None));
        let mut unknown = ok;
        unknown[4] = 200;
        assert_eq!(
            decode_reply_header(&unknown),
            Err(DecodeError::UnknownStatus(200))
        );
        let mut body_on_error = encode_error(Status::Busy, "busy");
        body_on_error[15] = 1;
        assert!(matches!(
            decode_reply_header(&body_on_error),
            Err(DecodeError::BadReply(_))
        ));
        let mut huge_msg = encode_error(Status::Busy, "busy");
        huge_msg[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            decode_reply_header(&huge_msg),
            Err(DecodeError::BadReply(_))
        ));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_MESSAGE_LEN);
        let bytes = encode_error(Status::ServerError, &msg);
        let h = decode_reply_header(&bytes).unwrap().unwrap();
        assert!(h.msg_len as usize <= MAX_MESSAGE_LEN);
        assert!(std::str::from_utf8(&bytes[HEADER_LEN..]).is_ok());
        assert_eq!(
            decode_reply_header(&encode_error(Status::Ok, "x"))
                .unwrap()
                .unwrap()
                .status,
            Status::ServerError
        );
    }

    #[test]
    fn listing_round_trips_and_rejects_truncation() {
        let entries = vec![
            Entry {
                kind: EntryKind::File,
                size: 42,
                name: "-dash .txt".into(),
                escaped: false,
            },
            Entry {
                kind: EntryKind::Dir,
                size: 0,
                name: "文件".into(),
                escaped: false,
            },
            Entry {
                kind: EntryKind::File,
                size: 3,
                name: "bad\\xffname".into(),
                escaped: true,
            },
        ];
        let bytes = encode_listing(&entries);
        assert_eq!(bytes[11 + "-dash .txt".len() + 11 + "文件".len()], b'F');
        assert_eq!(decode_listing(&bytes).unwrap(), entries);
        for cut in 1..bytes.len() {
            let r = decode_listing(&bytes[..cut]);
            // A cut exactly between two entries is a valid shorter listing.
            let first = 11 + "-dash .txt".len();
            if cut != first && cut != first + 11 + "文件".len() {
                assert!(r.is_err(), "cut at {cut} accepted");
            }
        }
        assert!(decode_listing(b"x\0\0\0\0\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn a_listing_reply_is_the_ok_header_then_the_listing() {
        let entries = vec![
            Entry {
                kind: EntryKind::File,
                size: 7,
                name: "a".into(),
                escaped: false,
            },
            Entry {
                kind: EntryKind::File,
                size: 1,
                name: "x".repeat(MAX_NAME_LEN + 1),
                escaped: false,
            },
        ];
        let body = encode_listing(&entries);
        let reply = encode_listing_reply(&entries);
        assert_eq!(&reply[..HEADER_LEN], &encode_ok(body.len() as u64));
        assert_eq!(&reply[HEADER_LEN..], &body[..]);
        assert_eq!(reply.capacity(), reply.len());
    }
}

/// Properties of the request decoder over inputs no table of cases would think of: the server
/// feeds it whatever a peer sends.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = Request> {
        (
            prop_oneof![Just(Kind::Get), Just(Kind::List)],
            // Any UTF-8 (control characters, NUL and all), 1 to 4096 bytes once encoded.
            proptest::collection::vec(any::<char>(), 1..1024)
                .prop_map(|cs| cs.into_iter().collect::<String>())
                .prop_filter("fits the name limit", |n| n.len() <= MAX_NAME_LEN),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(kind, name, offset, escaped)| Request {
                kind,
                name,
                offset,
                escaped,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
            if let Ok(Some((_, used))) = decode_request(&bytes) {
                prop_assert!(used > HEADER_LEN && used <= bytes.len());
            }
            let _ = split_request(&bytes);
            let _ = decode_reply_header(&bytes);
            let _ = decode_listing(&bytes);
        }

        #[test]
        fn arbitrary_bytes_behind_a_valid_magic_never_panic(
            kind in any::<u8>(),
            flags in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            // Random bytes rarely start with "TFS", so this reaches the checks behind it.
            let bytes = [&MAGIC[..], &[VERSION, kind, flags], &rest].concat();
            let _ = decode_request(&bytes);
        }

        #[test]
        fn every_encoded_request_round_trips(req in request(), trailer in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = encode_request(&req).unwrap();
            let len = bytes.len();
            // Whatever follows (the next pipelined request) is left alone.
            bytes.extend_from_slice(&trailer);
            prop_assert_eq!(decode_request(&bytes), Ok(Some((req, len))));
        }

        #[test]
        fn every_strict_prefix_of_a_valid_frame_is_incomplete(req in request()) {
            let bytes = encode_request(&req).unwrap();
            for cut in 0..bytes.len() {
                prop_assert_eq!(decode_request(&bytes[..cut]), Ok(None), "cut at {}", cut);
            }
        }
    }
}
