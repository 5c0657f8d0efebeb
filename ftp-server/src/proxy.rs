//! The PROXY protocol (HAProxy's specification, versions 1 and 2) on the control connection: a
//! TCP load balancer (HAProxy's `send-proxy` / `send-proxy-v2`) sends one header with the
//! client's address before the client's own bytes, so that the server can see who the client
//! is although the connection comes from the balancer.
//!
//! [`frame`] is pure: it finds where the header ends without reading past it (FTP's client
//! speaks only after the `220` greeting, but the header must still be taken exactly, so the
//! first command is never eaten). [`parse`] hands the framed header to the `ppp` crate.
//! [`read_header`] is the only I/O: bounded reads under a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The version 2 signature (specification §2.2): `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A version 2 header's fixed part: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;
/// The most address and TLV bytes a version 2 header may carry here. The specification allows
/// 65,535; it asks receivers to read at least 536 bytes in all (§2.2), which fits HAProxy's
/// addresses (at most 216 bytes, for UNIX sockets) and its usual TLVs.
const V2_MAX_PAYLOAD: usize = 536 - V2_FIXED;
/// A version 1 header's prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest version 1 line, CRLF included (specification §2.1: 107 bytes).
const V1_MAX: usize = 107;
/// The shortest header of either version (`PROXY UNKNOWN\r\n` is 15 bytes, a v2 header 16):
/// this many bytes can always be read first without reading past a header.
pub const MIN_HEADER: usize = 15;

/// Why a PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start neither version's header.
    #[error("no PROXY protocol header")]
    Missing,
    /// A version 1 line longer than 107 bytes, or a version 2 header announcing more than we take.
    #[error("PROXY header too long")]
    TooLong,
    /// The header is framed but does not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// The connection ended or failed before the header was complete.
    #[error("connection ended before the PROXY header was complete")]
    Truncated,
    /// The header did not arrive in time.
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
}

/// Where the header stands in the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// At least this many bytes (in all) are needed before anything can be said.
    Need(usize),
    /// The header is the first this many bytes.
    Complete(usize),
}

/// Frames the header at the start of `buf`, never asking for more than the header's own bytes.
pub fn frame(buf: &[u8]) -> Result<Frame, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < V2_FIXED {
            return Ok(Frame::Need(V2_FIXED));
        }
        let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if payload > V2_MAX_PAYLOAD {
            return Err(ProxyError::TooLong);
        }
        let total = V2_FIXED + payload;
        return Ok(if buf.len() >= total {
            Frame::Complete(total)
        } else {
            Frame::Need(total)
        });
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::Missing);
    }
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i + 2 <= V1_MAX => Ok(Frame::Complete(i + 2)),
        Some(_) => Err(ProxyError::TooLong),
        // One byte at a time: the line's end is not known before it is read.
        None if buf.len() >= V1_MAX => Err(ProxyError::TooLong),
        None => Ok(Frame::Need(buf.len().max(MIN_HEADER - 1) + 1)),
    }
}

/// Parses a framed header: `Some(client)` for a proxied TCP connection, `None` for a
/// connection the balancer made itself (v2 `LOCAL`, v1 `UNKNOWN`: its health checks), which
/// is then treated as coming from the balancer.
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if header.starts_with(V2_SIGNATURE) {
        let h =
            ppp::v2::Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        if h.len() != header.len() {
            return Err(ProxyError::Malformed("length mismatch".into()));
        }
        return Ok(match (h.command, h.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            // A PROXY command must name a TCP client: anything else would leave the session
            // with the balancer's address, so every client would share one lockout.
            (ppp::v2::Command::Proxy, _) => {
                return Err(ProxyError::Malformed("not a TCP/IP client address".into()));
            }
        });
    }
    let h = ppp::v1::Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if h.header.len() != header.len() {
        return Err(ProxyError::Malformed("length mismatch".into()));
    }
    Ok(match h.addresses {
        ppp::v1::Addresses::Unknown => None,
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
    })
}

/// Reads the PROXY header at the start of `stream`, within `timeout`, taking exactly its
/// bytes; at most 536 bytes are read.
pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    let read = async {
        let mut buf = vec![0u8; MIN_HEADER];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|_| ProxyError::Truncated)?;
        loop {
            match frame(&buf)? {
                Frame::Complete(n) => return parse(&buf[..n]),
                Frame::Need(n) => {
                    let have = buf.len();
                    buf.resize(n, 0);
                    stream
                        .read_exact(&mut buf[have..])
                        .await
                        .map_err(|_| ProxyError::Truncated)?;
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (client, server),
        )
        .build()
        .expect("v2 header")
    }

    fn read(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
        let mut r = bytes;
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt")
            .block_on(read_header(&mut r, Duration::from_secs(5)))
    }

    #[test]
    fn v1_and_v2_give_the_client_and_leave_what_follows_unread() {
        let mut bytes = b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 21\r\nUSER x\r\n".to_vec();
        let mut r = bytes.as_slice();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        let got = rt.block_on(read_header(&mut r, Duration::from_secs(5)));
        assert_eq!(got, Ok(Some("192.0.2.7:40001".parse().expect("addr"))));
        assert_eq!(r, b"USER x\r\n", "the first command is not eaten");

        let c: SocketAddr = "[2001:db8::5]:50000".parse().expect("addr");
        bytes = v2(c, "[2001:db8::1]:21".parse().expect("addr"));
        bytes.extend_from_slice(b"USER x\r\n");
        let mut r = bytes.as_slice();
        assert_eq!(
            rt.block_on(read_header(&mut r, Duration::from_secs(5))),
            Ok(Some(c))
        );
        assert_eq!(r, b"USER x\r\n");
    }

    #[test]
    fn local_and_unknown_are_the_balancer_itself() {
        assert_eq!(read(b"PROXY UNKNOWN\r\n"), Ok(None));
        let local = ppp::v2::Builder::new(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
        )
        .build()
        .expect("local");
        assert_eq!(read(&local), Ok(None));
    }

    #[test]
    fn truncated_oversized_and_malicious_headers_are_refused() {
        let cases: &[(&[u8], ProxyError)] = &[
            (b"", ProxyError::Truncated),
            (b"PROXY TCP4 1.2.3.4", ProxyError::Truncated),
            (b"USER anonymous\r\n", ProxyError::Missing),
            (b"GET / HTTP/1.1\r\n\r\n", ProxyError::Missing),
            (b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00", ProxyError::Truncated),
        ];
        for (bytes, want) in cases {
            assert_eq!(&read(bytes).expect_err("refused"), want, "{bytes:?}");
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(read(long.as_bytes()), Err(ProxyError::TooLong));
        // A v2 header announcing 64 KiB is refused before anything beyond 16 bytes is read.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(frame(&big), Err(ProxyError::TooLong));
        for bad in [
            &b"PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n"[..],
            b"PROXY TCP4 1.1.1.1 1.1.1.1 99999 2\r\n",
            b"PROXY TCP6 1.1.1.1 1.1.1.1 1 2\r\n",
            b"PROXY TCP4 1.1.1.1 1.1.1.1 1 2 extra\r\n",
            b"PROXY TCP4 1.1.1.1\r1.1.1.1 1 2\r\n",
            b"PROXY TCP4 \xff.1.1.1 1.1.1.1 1 2\r\n",
        ] {
            assert!(
                matches!(read(bad), Err(ProxyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // v2 with a bad version nibble, and a PROXY command over a UNIX socket.
        let mut h = v2(
            "10.0.0.1:1000".parse().expect("a"),
            "10.0.0.2:21".parse().expect("a"),
        );
        h[12] = 0x31;
        assert!(matches!(read(&h), Err(ProxyError::Malformed(_))));
        let unix = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            ppp::v2::Unix::new([1; 108], [2; 108]),
        )
        .build()
        .expect("unix");
        assert!(matches!(read(&unix), Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn a_silent_balancer_times_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        let (mut a, _b) = tokio::io::duplex(64);
        let got = rt.block_on(read_header(&mut a, Duration::from_millis(10)));
        assert_eq!(got, Err(ProxyError::Timeout(Duration::from_millis(10))));
    }

    proptest! {
        /// Whatever the bytes, framing never panics, never asks for more than 536 bytes, and
        /// never frames a header longer than the bytes it was given.
        #[test]
        fn framing_and_parsing_any_bytes_is_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            match frame(&bytes) {
                Ok(Frame::Need(n)) => prop_assert!(n > bytes.len() && n <= 536, "{}", n),
                Ok(Frame::Complete(n)) => {
                    prop_assert!(n <= bytes.len() && n <= 536);
                    let _ = parse(&bytes[..n]);
                }
                Err(_) => {}
            }
        }

        /// Any TCP client address survives a v1 or v2 round trip.
        #[test]
        fn any_client_address_round_trips(a in any::<[u8; 4]>(), p in 1u16.., six in any::<[u16; 8]>()) {
            let c4 = SocketAddr::from((a, p));
            let v1 = format!("PROXY TCP4 {} 10.0.0.1 {} 21\r\n", c4.ip(), p);
            prop_assert_eq!(read(v1.as_bytes()), Ok(Some(c4)));
            prop_assert_eq!(read(&v2(c4, "10.0.0.1:21".parse().expect("a"))), Ok(Some(c4)));
            let c6 = SocketAddr::from((six, p));
            prop_assert_eq!(read(&v2(c6, "[::1]:21".parse().expect("a"))), Ok(Some(c6)));
        }
    }
}
