//! The PROXY protocol on the control port (issue 15, `ftp_server::proxy`): a listed balancer's
//! header names the client, whose address the per-IP limits, the lockout and the passive
//! data-connection check then see (libunftp patch 45); a header from an unlisted address, or a
//! listed balancer's connection without a valid header, is closed before any greeting.
//!
//! 127.0.0.1 plays the balancer; 127.0.0.2 and up (all of 127/8 is loopback on Linux) play
//! clients, binding their sockets before connecting.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use ftp_server::{BackgroundServer, Config};
use test_kit::Fixture;

mod common;
use common::{Ftp, socket_from};

const FILE: &str = "hostile ünï %20 name.txt";
const BODY: &[u8] = b"proxied bytes\n";

/// A v1 header naming `client` as the source of a connection to `server`.
fn v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        server.ip(),
        client.port(),
        server.port()
    )
    .into_bytes()
}

/// The same as a v2 (binary) header, as HAProxy's `send-proxy-v2` sends it.
fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client, server),
    )
    .build()
    .expect("v2 header")
}

/// Opens a session once the client's previous one has been closed (its per-IP slot is given
/// back when the server has seen the close).
fn open_when_free(from: [u8; 4], server: SocketAddr, header: &[u8]) -> Ftp {
    for _ in 0..500 {
        let (c, code) = Ftp::open(from, server, header);
        if code == 220 {
            return c;
        }
        assert_eq!(code, 421, "only the per-IP limit may refuse");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the per-IP slot was never given back");
}

fn start(f: &Fixture, extra: &str) -> BackgroundServer {
    let pw = ftp_server::hash_password_with_cost("pw", 64, 1).expect("hash");
    let text = format!(
        r#"
proxy_protocol = true
proxy_from = ["127.0.0.1/32"]
max_login_failures = 2
{extra}

[anonymous]
home = "pub"

[[users]]
name = "alice"
password = "{pw}"
home = "alice"
"#
    );
    let cfg = Config::from_toml_str(&text, f.path()).expect("valid config");
    BackgroundServer::start(cfg).expect("start server")
}

fn fixture() -> Fixture {
    let f = Fixture::empty();
    f.write(&format!("pub/{FILE}"), BODY);
    f.write("alice/x", b"x");
    f
}

#[test]
fn v1_and_v2_headers_name_the_client_whose_data_connection_is_taken() {
    let f = fixture();
    let srv = start(&f, "");
    for (n, header) in [v1 as fn(_, _) -> _, v2].into_iter().enumerate() {
        let client_ip = [127, 0, 0, 2 + n as u8];
        let client = SocketAddr::from((client_ip, 40000));
        let (mut c, code) = Ftp::open([127, 0, 0, 1], srv.addr(), &header(client, srv.addr()));
        assert_eq!(code, 220, "greeting after header {n}");
        assert_eq!(c.login("anonymous", "a@b"), 230);
        assert_eq!(c.cmd("TYPE I"), 200);
        let data_addr = SocketAddr::new(srv.addr().ip(), c.epsv_port());
        // The balancer's own address is not the client: hung up on (libunftp patch 5 now
        // compares with the client the header named).
        let mut thief = socket_from([127, 0, 0, 1], data_addr);
        let mut stolen = Vec::new();
        let _ = thief.read_to_end(&mut stolen);
        assert!(stolen.is_empty());
        let mut data = socket_from(client_ip, data_addr);
        assert_eq!(c.cmd(&format!("RETR {FILE}")), 150);
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("data");
        assert_eq!(c.reply(), 226);
        assert_eq!(got, BODY);
        let (code, text) = c.cmd_text("STAT");
        assert_eq!(code, 211, "{text}");
        assert!(
            text.contains(&client.ip().to_string()),
            "STAT names the client: {text}"
        );
    }
}

#[test]
fn lockout_and_per_ip_limits_see_the_client_not_the_balancer() {
    let f = fixture();
    let srv = start(&f, "max_connections_per_ip = 1");
    let a = SocketAddr::from(([127, 0, 0, 5], 1025));
    let b = SocketAddr::from(([127, 0, 0, 6], 1025));
    // Per-IP limit: a second session for the same client is refused, another client gets in,
    // although all of them come from the one balancer.
    let (_a1, code) = Ftp::open([127, 0, 0, 1], srv.addr(), &v2(a, srv.addr()));
    assert_eq!(code, 220);
    let (_a2, code) = Ftp::open([127, 0, 0, 1], srv.addr(), &v2(a, srv.addr()));
    assert_eq!(code, 421, "second session of one client");
    let (mut b1, code) = Ftp::open([127, 0, 0, 1], srv.addr(), &v2(b, srv.addr()));
    assert_eq!(code, 220, "another client behind the same balancer");
    drop(_a1);
    drop(_a2);
    // Lockout: two failures lock client a out, client b still logs in.
    for _ in 0..2 {
        let mut c = open_when_free([127, 0, 0, 1], srv.addr(), &v2(a, srv.addr()));
        assert_eq!(c.login("alice", "wrong"), 530);
    }
    let mut c = open_when_free([127, 0, 0, 1], srv.addr(), &v2(a, srv.addr()));
    assert_eq!(c.login("alice", "pw"), 530, "client a is locked out");
    assert_eq!(b1.login("alice", "pw"), 230, "client b is not");
}

#[test]
fn headers_from_unlisted_addresses_and_listed_balancers_without_one_are_refused() {
    let f = fixture();
    let srv = start(&f, "");
    let client = SocketAddr::from(([127, 0, 0, 9], 40000));
    // An unlisted address, with a well-formed header of either version: closed, no greeting.
    for header in [v1(client, srv.addr()), v2(client, srv.addr())] {
        let (_, code) = Ftp::open([127, 0, 0, 2], srv.addr(), &header);
        assert_eq!(code, 0, "unlisted sender got a reply");
    }
    // The listed balancer, without a header (an FTP command instead), with a malformed or
    // oversized header: closed, no greeting.
    for bad in [
        &b"USER anonymous\r\n"[..],
        b"PROXY TCP4 999.0.0.1 127.0.0.1 1 21\r\n",
        format!("PROXY TCP4 {}\r\n", "1".repeat(300)).as_bytes(),
    ] {
        let (_, code) = Ftp::open([127, 0, 0, 1], srv.addr(), bad);
        assert_eq!(code, 0, "{:?}", String::from_utf8_lossy(bad));
    }
    // The balancer still gets served afterwards.
    let (mut c, code) = Ftp::open([127, 0, 0, 1], srv.addr(), &v1(client, srv.addr()));
    assert_eq!(code, 220);
    assert_eq!(c.login("anonymous", "a@b"), 230);
}

#[test]
fn connections_waiting_for_their_header_are_bounded_by_max_connections() {
    use std::io::Write;
    let f = fixture();
    let srv = start(&f, "max_connections = 2");
    let client = SocketAddr::from(([127, 0, 0, 9], 40000));
    // Two balancer connections that have not sent their header yet hold both places ...
    let mut quiet1 = socket_from([127, 0, 0, 1], srv.addr());
    let _quiet2 = socket_from([127, 0, 0, 1], srv.addr());
    // ... so a third is closed, even with a valid header.
    let (_, code) = Ftp::open([127, 0, 0, 1], srv.addr(), &v1(client, srv.addr()));
    assert_eq!(code, 0, "a third pending header");
    // The first one's header then starts its session.
    quiet1.write_all(&v1(client, srv.addr())).expect("header");
    let mut r = std::io::BufReader::new(quiet1);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).expect("greeting");
    assert!(line.starts_with("220"), "{line:?}");
}
