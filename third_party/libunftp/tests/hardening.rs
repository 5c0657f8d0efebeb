//! Regression tests for the hardening patches carried in this copy of libunftp (see
//! PATCHES.md next to the package): a real server on a loopback port chosen by the OS (port 0,
//! never a fixed one), driven by a raw control connection so that exact replies can be checked.

#![allow(missing_docs)]

use libunftp::ServerBuilder;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use unftp_sbe_fs::Filesystem;

const WAIT: Duration = Duration::from_secs(10);

/// A temporary root with one file, removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("unftp-hardening-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.txt"), b"hello\n").unwrap();
        Root(dir)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `root` anonymously on `bind` (port 0) until the test ends; one `Server` per
/// connection, as `service` requires. Returns the bound address.
type Builder = ServerBuilder<Filesystem, unftp_core::auth::DefaultUser>;

async fn serve(root: &Root, bind: &str, tune: impl Fn(Builder) -> Builder + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let path = root.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let path = path.clone();
            let server = tune(ServerBuilder::new(Box::new(move || Filesystem::new(path.clone()).unwrap())))
                .build()
                .unwrap();
            tokio::spawn(server.service(stream));
        }
    });
    addr
}

/// Two adjacent ports that were free a moment ago.
fn two_port_range() -> (u16, u16) {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return (p, p + 1);
        }
    }
    panic!("no two adjacent free ports in 100 tries");
}

/// A passive range of one port that was free a moment ago.
fn one_port_range() -> std::ops::RangeInclusive<u16> {
    let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    p..=p
}

/// A raw control connection.
struct Ctl {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Ctl {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
        let (r, w) = stream.into_split();
        let mut c = Ctl {
            reader: BufReader::new(r),
            writer: w,
        };
        let (code, _) = c.reply().await;
        assert_eq!(code, 220);
        c
    }

    async fn login(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr).await;
        assert_eq!(c.cmd("USER anonymous").await.0, 331);
        assert_eq!(c.cmd("PASS guest@").await.0, 230);
        c
    }

    /// Reads one reply (multi-line aware); code 0 when the server closed the connection.
    async fn reply(&mut self) -> (u32, String) {
        let mut text = String::new();
        let mut first: Option<String> = None;
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line)).await.expect("a reply in time").unwrap_or(0);
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            let code = line.get(..3).unwrap_or("").to_string();
            match &first {
                None if line.as_bytes().get(3) == Some(&b'-') => first = Some(code),
                None => return (code.parse().unwrap_or(0), text),
                Some(c) if *c == code && line.as_bytes().get(3) == Some(&b' ') => return (code.parse().unwrap_or(0), text),
                Some(_) => {}
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> (u32, String) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }
}

/// The port of a `229 (|||port|)` reply.
fn epsv_port(text: &str) -> u16 {
    let start = text.find("|||").expect("EPSV reply") + 3;
    text[start..].split('|').next().unwrap().parse().unwrap()
}

/// The address of a `227 (h1,h2,h3,h4,p1,p2)` reply.
fn pasv_addr(text: &str) -> SocketAddr {
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.trim().parse().unwrap()).collect();
    SocketAddr::from(([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8], n[4] * 256 + n[5]))
}

async fn retr_over(c: &mut Ctl, data_addr: SocketAddr) -> Vec<u8> {
    let mut data = tokio::time::timeout(WAIT, TcpStream::connect(data_addr)).await.unwrap().unwrap();
    assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(c.reply().await.0, 226);
    got
}

fn plain(b: Builder) -> Builder {
    b
}

#[tokio::test]
async fn pasv_from_an_ipv4_client_on_a_dual_stack_listener_uses_its_ipv4_address() {
    let root = Root::new("pasv-mapped");
    let addr = serve(&root, "[::]:0", plain).await;
    let mut c = Ctl::login(SocketAddr::from(([127, 0, 0, 1], addr.port()))).await;
    let (code, text) = c.cmd("PASV").await;
    assert_eq!(code, 227, "{text}");
    let data = pasv_addr(&text);
    assert_eq!(data.ip().to_string(), "127.0.0.1", "{text}");
    assert_eq!(retr_over(&mut c, data).await, b"hello\n");
}

#[tokio::test]
async fn pasv_on_an_ipv6_control_connection_keeps_the_session_and_points_to_epsv() {
    let root = Root::new("pasv-v6");
    let addr = serve(&root, "[::1]:0", plain).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("PASV").await;
    assert_eq!(code, 425, "{text}");
    assert!(text.contains("EPSV"), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 200, "the session goes on");
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let data = SocketAddr::new(addr.ip(), epsv_port(&text));
    assert_eq!(retr_over(&mut c, data).await, b"hello\n");
}

#[tokio::test]
async fn a_new_epsv_releases_the_previous_port_at_once() {
    let root = Root::new("epsv-release");
    let range = one_port_range();
    let port = *range.start();
    let addr = serve(&root, "127.0.0.1:0", move |b| b.passive_ports(range.clone())).await;
    let mut c = Ctl::login(addr).await;
    for _ in 0..5 {
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        assert_eq!(epsv_port(&text), port);
    }
    let data = SocketAddr::new(addr.ip(), port);
    assert_eq!(retr_over(&mut c, data).await, b"hello\n");
}

#[tokio::test]
async fn epsv_flood_from_one_session_does_not_starve_another() {
    let root = Root::new("epsv-flood");
    // Two ports: without a limit per session, the flood takes both.
    let (lo, hi) = two_port_range();
    let addr = serve(&root, "127.0.0.1:0", move |b| b.passive_ports(lo..=hi)).await;
    let mut flooder = Ctl::login(addr).await;
    for _ in 0..100 {
        assert_eq!(flooder.cmd("EPSV").await.0, 229);
    }
    let mut other = Ctl::login(addr).await;
    let (code, text) = other.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let data = SocketAddr::new(addr.ip(), epsv_port(&text));
    assert_eq!(retr_over(&mut other, data).await, b"hello\n");
}

#[tokio::test]
async fn an_exhausted_range_gets_425_and_the_session_goes_on() {
    let root = Root::new("epsv-exhausted");
    let range = one_port_range();
    let addr = serve(&root, "127.0.0.1:0", move |b| b.passive_ports(range.clone())).await;
    let mut holder = Ctl::login(addr).await;
    assert_eq!(holder.cmd("EPSV").await.0, 229);
    let mut other = Ctl::login(addr).await;
    let (code, text) = other.cmd("EPSV").await;
    assert_eq!(code, 425, "{text}");
    assert_eq!(other.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn a_passive_listener_does_not_outlive_its_session() {
    let root = Root::new("epsv-session-end");
    let range = one_port_range();
    let addr = serve(&root, "127.0.0.1:0", move |b| b.passive_ports(range.clone())).await;
    let mut first = Ctl::login(addr).await;
    assert_eq!(first.cmd("EPSV").await.0, 229);
    assert_eq!(first.cmd("QUIT").await.0, 221);
    assert_eq!(first.reply().await.0, 0, "closed after QUIT");
    drop(first);
    // The port comes free when the session ends, not 15 s later.
    let mut second = Ctl::login(addr).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (code, text) = second.cmd("EPSV").await;
        if code == 229 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ended session still holds the port: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_data_connection_from_another_address_is_refused_and_the_client_still_connects() {
    let root = Root::new("epsv-foreign");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let data_addr = SocketAddr::new(addr.ip(), epsv_port(&text));
    // Another host (127.0.0.2 stands for one) races to the data port: it must get nothing.
    let thief = tokio::net::TcpSocket::new_v4().unwrap();
    thief.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut thief = tokio::time::timeout(WAIT, thief.connect(data_addr)).await.unwrap().unwrap();
    let mut stolen = Vec::new();
    let _ = tokio::time::timeout(WAIT, thief.read_to_end(&mut stolen)).await.expect("the thief is hung up on");
    assert!(stolen.is_empty());
    assert_eq!(retr_over(&mut c, data_addr).await, b"hello\n");
}

fn active(b: Builder) -> Builder {
    b.active_passive_mode(libunftp::options::ActivePassiveMode::ActiveAndPassive)
}

/// `PORT h1,h2,h3,h4,p1,p2` for an address.
fn port_arg(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else { panic!("PORT is IPv4") };
    let o = v4.ip().octets();
    format!("{},{},{},{},{},{}", o[0], o[1], o[2], o[3], v4.port() >> 8, v4.port() & 0xff)
}

#[tokio::test]
async fn port_to_the_clients_own_address_works() {
    let root = Root::new("port-own");
    let addr = serve(&root, "127.0.0.1:0", active).await;
    let mut c = Ctl::login(addr).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (code, text) = c.cmd(&format!("PORT {}", port_arg(listener.local_addr().unwrap()))).await;
    assert_eq!(code, 200, "{text}");
    let (mut data, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"hello\n");
    assert_eq!(c.reply().await.0, 226);
}

#[tokio::test]
async fn port_to_another_host_or_a_low_port_is_refused_before_any_connection() {
    let root = Root::new("port-bounce");
    let addr = serve(&root, "127.0.0.1:0", active).await;
    let mut c = Ctl::login(addr).await;
    // FTP bounce (RFC 2577 §3): a third host. 127.0.0.2 stands for it.
    let victim = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let (code, text) = c.cmd(&format!("PORT {}", port_arg(victim.local_addr().unwrap()))).await;
    assert_eq!(code, 504, "{text}");
    // A server that connected before answering would have its connection queued by now.
    assert_eq!(victim.accept().map_err(|e| e.kind()).unwrap_err(), std::io::ErrorKind::WouldBlock, "no connection was made");
    // A privileged port of the client's own host.
    let (code, text) = c.cmd("PORT 127,0,0,1,0,25").await;
    assert_eq!(code, 504, "{text}");
    // Malformed: a seventh field, a value over 255, too few fields.
    for bad in ["127,0,0,1,4,1,9", "127,0,0,1,4,256", "127,0,0,1,4", "a,b,c,d,e,f"] {
        let (code, text) = c.cmd(&format!("PORT {bad}")).await;
        assert_eq!(code, 501, "PORT {bad}: {text}");
    }
    assert_eq!(c.cmd("NOOP").await.0, 200, "the session goes on");
}

#[tokio::test]
async fn eprt_over_ipv4_and_ipv6_with_the_same_checks_as_port() {
    let root = Root::new("eprt");
    for (bind, client_ip) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
        let addr = serve(&root, bind, active).await;
        let mut c = Ctl::login(addr).await;
        let listener = TcpListener::bind(format!("{}:0", if client_ip.contains(':') { "[::1]" } else { client_ip })).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proto = if client_ip.contains(':') { 2 } else { 1 };
        let (code, text) = c.cmd(&format!("EPRT |{proto}|{client_ip}|{port}|")).await;
        assert_eq!(code, 200, "{text}");
        let (mut data, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, b"hello\n");
        assert_eq!(c.reply().await.0, 226);
        // Another host, a low port, an unknown protocol, a malformed argument.
        let other = if proto == 1 { "|1|127.0.0.2|5000|" } else { "|2|::2|5000|" };
        assert_eq!(c.cmd(&format!("EPRT {other}")).await.0, 504);
        assert_eq!(c.cmd(&format!("EPRT |{proto}|{client_ip}|21|")).await.0, 504);
        assert_eq!(c.cmd("EPRT |7|x|5000|").await.0, 522);
        assert_eq!(c.cmd("EPRT 127.0.0.1:5000").await.0, 501);
        assert_eq!(c.cmd("NOOP").await.0, 200);
    }
}

#[tokio::test]
async fn passive_only_refuses_port_and_eprt() {
    let root = Root::new("passive-only");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    assert_eq!(c.cmd("PORT 127,0,0,1,19,136").await.0, 502);
    assert_eq!(c.cmd("EPRT |1|127.0.0.1|5000|").await.0, 502);
    assert_eq!(c.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn bad_arguments_get_501_or_504_and_the_session_goes_on() {
    let root = Root::new("bad-args");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    for (line, want) in [
        ("REST abc", 501),
        ("REST -1", 501),
        ("TYPE Z", 501),
        ("TYPE", 501),
        ("TYPE L 7", 501),
        ("MODE X", 501),
        ("STRU X", 501),
        ("OPTS MLST x", 501),
        ("OPTS FROB ON", 501),
        ("TYPE I", 200),
        ("TYPE A", 200),
        ("TYPE L 8", 200),
        ("type i", 200),
        ("MODE S", 200),
        ("STRU F", 200),
    ] {
        let (code, text) = c.cmd(line).await;
        assert_eq!(code, want, "{line}: {text}");
        assert_eq!(c.cmd("NOOP").await.0, 200, "after {line}");
    }
}

#[tokio::test]
async fn more_than_ten_bad_commands_before_login_close_the_connection_with_421() {
    let root = Root::new("prelogin");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::connect(addr).await;
    // Unknown commands, commands that need a login, and bad arguments all count.
    let junk = ["FROB", "LIST", "RETR x", "GET / HTTP/1.1", "CWD /", "XYZZY", "STOR y", "REST abc", "SIZE z", "MKD d"];
    for line in junk {
        let (code, text) = c.cmd(line).await;
        assert!((500..=530).contains(&code), "{line}: {text}");
    }
    // NOOP and FEAT are fine before login and do not count.
    assert_eq!(c.cmd("NOOP").await.0, 200);
    let (code, text) = c.cmd("PWD").await;
    assert_eq!(code, 421, "the eleventh: {text}");
    assert_eq!(c.reply().await.0, 0, "closed");

    // A client that logs in after a few mistakes is not affected, nor is it counted after login.
    let mut c = Ctl::connect(addr).await;
    for _ in 0..5 {
        assert_eq!(c.cmd("LIST").await.0, 530);
    }
    assert_eq!(c.cmd("USER anonymous").await.0, 331);
    assert_eq!(c.cmd("PASS x@").await.0, 230);
    for _ in 0..20 {
        assert_eq!(c.cmd("FROB").await.0, 500);
    }
    assert_eq!(c.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn a_client_that_does_not_log_in_in_time_is_disconnected_even_if_it_sends_noop() {
    let root = Root::new("login-timeout");
    let addr = serve(&root, "127.0.0.1:0", |b| b.login_timeout(Duration::from_secs(1))).await;
    let mut c = Ctl::connect(addr).await;
    let start = tokio::time::Instant::now();
    let code = loop {
        let (code, _) = c.cmd("NOOP").await;
        if code != 200 {
            break code;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still connected after 5 s of NOOPs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 421);
    assert!(start.elapsed() >= Duration::from_millis(900), "not before the deadline");
    // A client that logs in in time is not affected by the deadline afterwards.
    let mut c = Ctl::login(addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order_each_with_its_own_reply() {
    let root = Root::new("pipeline");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    for _ in 0..20 {
        let mut c = Ctl::connect(addr).await;
        c.writer
            .write_all(b"USER anonymous\r\nPASS x@\r\nPWD\r\nTYPE I\r\nSIZE hello.txt\r\nMKD d\r\nCWD d\r\nPWD\r\nCWD /\r\nRMD d\r\nNOOP\r\n")
            .await
            .unwrap();
        let mut codes = Vec::new();
        for _ in 0..11 {
            codes.push(c.reply().await.0);
        }
        assert_eq!(codes, [331, 230, 257, 200, 213, 257, 250, 257, 250, 250, 200]);
    }
}

#[tokio::test]
async fn abor_interrupts_a_running_retr_with_426_then_226() {
    let root = Root::new("abor-retr");
    // Far more than the socket buffers hold, so the transfer is still running when ABOR comes.
    let big = std::fs::File::create(root.0.join("big.bin")).unwrap();
    big.set_len(256 << 20).unwrap();
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let data = TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))).await.unwrap();
    assert_eq!(c.cmd("RETR big.bin").await.0, 150);
    // The client reads nothing; the server's writes stall. ABOR must not wait for them.
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), c.cmd("ABOR")).await.expect("ABOR answered at once");
    assert_eq!(code, 426, "{text}");
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), c.reply()).await.expect("then 226");
    assert_eq!(code, 226, "{text}");
    drop(data);
    assert_eq!(c.cmd("NOOP").await.0, 200, "the session goes on");
    // And the next transfer works.
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    assert_eq!(retr_over(&mut c, SocketAddr::new(addr.ip(), epsv_port(&text))).await, b"hello\n");
}

#[tokio::test]
async fn abor_interrupts_a_running_stor_with_426_then_226() {
    let root = Root::new("abor-stor");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let mut data = TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))).await.unwrap();
    assert_eq!(c.cmd("STOR upload.bin").await.0, 150);
    data.write_all(&[7u8; 100_000]).await.unwrap();
    // The upload stays open (no EOF): only ABOR can end it.
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), c.cmd("ABOR")).await.expect("ABOR answered at once");
    assert_eq!(code, 426, "{text}");
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), c.reply()).await.expect("then 226");
    assert_eq!(code, 226, "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn abor_without_a_transfer_gets_226() {
    let root = Root::new("abor-idle");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    assert_eq!(c.cmd("ABOR").await.0, 226);
    assert_eq!(c.cmd("EPSV").await.0, 229);
    assert_eq!(c.cmd("ABOR").await.0, 226);
    assert_eq!(c.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn mkd_and_pwd_quote_paths_with_inner_quotes_doubled() {
    let root = Root::new("quotes");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("MKD say \"hi\"").await;
    assert_eq!(code, 257, "{text}");
    assert_eq!(text.trim_end(), "257 \"/say \"\"hi\"\"\" created");
    assert_eq!(c.cmd("CWD say \"hi\"").await.0, 250);
    let (code, text) = c.cmd("PWD").await;
    assert_eq!((code, text.trim_end()), (257, "257 \"/say \"\"hi\"\"\""));
}

/// Adds `n` empty files with 200-character names under `root/dir`: a listing of some
/// `n * 250` bytes, far more than loopback socket buffers hold when the client reads nothing.
fn big_dir(root: &Root, dir: &str, n: usize) {
    let d = root.0.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let pad = "x".repeat(190);
    for i in 0..n {
        std::fs::File::create(d.join(format!("{pad}{i:010}"))).unwrap();
    }
}

/// A data connection whose receive buffer stays small (no autotuning), that reads nothing.
async fn stalled_data(addr: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    tokio::time::timeout(WAIT, s.connect(addr)).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_listing_to_a_client_that_reads_nothing_ends_after_the_stall_limit() {
    let root = Root::new("list-stall");
    big_dir(&root, "big", 25_000);
    let addr = serve(&root, "127.0.0.1:0", |b| b.data_stall_timeout(Duration::from_secs(1))).await;
    let mut c = Ctl::login(addr).await;
    for cmd in ["LIST big", "NLST big", "MLSD big"] {
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        let data = stalled_data(SocketAddr::new(addr.ip(), epsv_port(&text))).await;
        let started = std::time::Instant::now();
        assert_eq!(c.cmd(cmd).await.0, 150, "{cmd}");
        let (code, text) = c.reply().await;
        assert_eq!(code, 426, "{cmd}: {text}");
        assert!(started.elapsed() >= Duration::from_millis(900), "{cmd} ended before the stall limit");
        drop(data);
        assert_eq!(c.cmd("NOOP").await.0, 200, "the session goes on after {cmd}");
    }
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    assert_eq!(retr_over(&mut c, SocketAddr::new(addr.ip(), epsv_port(&text))).await, b"hello\n");
}

#[tokio::test]
async fn a_listing_stops_when_its_session_ends() {
    let root = Root::new("list-gone");
    big_dir(&root, "big", 25_000);
    // One listing at a time, and no stall limit: only the end of A's session can free the
    // permit its stalled listing holds.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let addr = serve(&root, "127.0.0.1:0", move |b| b.listing_permits(permits.clone())).await;
    let mut a = Ctl::login(addr).await;
    let (code, text) = a.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let a_data = stalled_data(SocketAddr::new(addr.ip(), epsv_port(&text))).await;
    assert_eq!(a.cmd("LIST big").await.0, 150);
    let mut b = Ctl::login(addr).await;
    let (code, text) = b.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let mut b_data = tokio::time::timeout(WAIT, TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.cmd("LIST").await.0, 150);
    // A goes away without closing its data connection; its listing must stop.
    drop(a);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, b_data.read_to_end(&mut got))
        .await
        .expect("B's listing is sent")
        .unwrap();
    assert!(String::from_utf8_lossy(&got).contains("hello.txt"));
    assert_eq!(b.reply().await.0, 226);
    drop(a_data);
}

impl Ctl {
    /// Logs in anonymously over a control connection whose receive buffer stays small (no
    /// autotuning), so that a long reply it does not read stalls the server's writes.
    async fn login_small_buffer(addr: SocketAddr) -> Self {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        let stream = tokio::time::timeout(WAIT, s.connect(addr)).await.unwrap().unwrap();
        let (r, w) = stream.into_split();
        let mut c = Ctl {
            reader: BufReader::new(r),
            writer: w,
        };
        assert_eq!(c.reply().await.0, 220);
        assert_eq!(c.cmd("USER anonymous").await.0, 331);
        assert_eq!(c.cmd("PASS guest@").await.0, 230);
        c
    }
}

#[tokio::test]
async fn a_stat_listing_the_client_does_not_read_ends_its_session_and_frees_its_permit() {
    let root = Root::new("stat-stall");
    big_dir(&root, "big", 25_000);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let addr = serve(&root, "127.0.0.1:0", move |b| {
        b.data_stall_timeout(Duration::from_secs(1)).listing_permits(permits.clone())
    })
    .await;
    // A asks for the 6 MB listing on its control connection and reads none of it.
    let mut a = Ctl::login_small_buffer(addr).await;
    a.writer.write_all(b"STAT big\r\n").await.unwrap();
    // Its reply has begun, so its listing holds the one permit.
    tokio::time::timeout(WAIT, a.reader.get_ref().readable()).await.unwrap().unwrap();
    // B's STAT waits for that permit: it is answered once A's session has been ended (without
    // the limit on A's write, never: A's session lives on, and so does its permit).
    let mut b = Ctl::login(addr).await;
    let (code, text) = b.cmd("STAT /").await;
    assert_eq!(code, 213, "{text}");
    // A's connection was closed before its reply was complete.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, a.reader.read_to_end(&mut got))
        .await
        .expect("A's connection is closed");
    let lines = got.split(|&b| b == b'\n').count();
    assert!(lines < 25_000, "A got the whole listing ({lines} lines)");
    assert_eq!(b.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn stat_of_a_path_lists_it_from_the_working_directory_with_213_or_550() {
    let root = Root::new("stat-cwd");
    std::fs::create_dir_all(root.0.join("sub/inner")).unwrap();
    std::fs::write(root.0.join("sub/inner/only-here.txt"), b"x").unwrap();
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    assert_eq!(c.cmd("CWD /sub").await.0, 250);
    // `inner` is /sub/inner, not /inner.
    let (code, text) = c.cmd("STAT inner").await;
    assert_eq!(code, 213, "{text}");
    assert!(text.contains("only-here.txt"), "{text}");
    let (code, text) = c.cmd("STAT /sub/inner").await;
    assert_eq!(code, 213, "{text}");
    // A missing path is the storage back-end's 550, not a local error (451).
    let (code, text) = c.cmd("STAT missing").await;
    assert_eq!(code, 550, "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 200);
}

#[tokio::test]
async fn size_and_mdtm_of_a_directory_get_550() {
    let root = Root::new("size-dir");
    std::fs::create_dir_all(root.0.join("sub")).unwrap();
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    for cmd in ["SIZE sub", "MDTM sub", "SIZE /"] {
        let (code, text) = c.cmd(cmd).await;
        assert_eq!(code, 550, "{cmd}: {text}");
    }
    let (code, text) = c.cmd("SIZE hello.txt").await;
    assert_eq!((code, text.trim()), (213, "213 6"));
    assert_eq!(c.cmd("MDTM hello.txt").await.0, 213);
}

#[tokio::test]
async fn telnet_commands_nul_bytes_and_bare_lf_leave_the_session_alive() {
    let root = Root::new("telnet");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    // Telnet "interrupt process" and "data mark" before ABOR (RFC 959 §4.1.3), as lftp does.
    c.writer.write_all(b"\xff\xf4\xff\xf2ABOR\r\n").await.unwrap();
    assert_eq!(c.reply().await.0, 226);
    // A bare LF ends a command too; a NUL inside one makes it unknown, not fatal.
    c.writer.write_all(b"NOOP\nNO\0OP\r\n").await.unwrap();
    assert_eq!(c.reply().await.0, 200);
    assert!((500..600).contains(&c.reply().await.0));
    assert_eq!(c.cmd("PWD").await.0, 257);
}

// Patch 23: refusals known before the transfer are the command's own reply, before any 150.

mod picky {
    //! A back-end that answers the preflight checks, in front of the file-system one.

    use async_trait::async_trait;
    use std::fmt::Debug;
    use std::path::{Path, PathBuf};
    use unftp_core::auth::DefaultUser;
    use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result, StorageBackend};
    use unftp_sbe_fs::{Filesystem, Meta};

    #[derive(Debug)]
    pub struct Picky(pub Filesystem);

    fn named(path: &Path, prefix: &str) -> bool {
        path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix))
    }

    #[async_trait]
    impl StorageBackend<DefaultUser> for Picky {
        type Metadata = Meta;

        fn supported_features(&self) -> u32 {
            StorageBackend::<DefaultUser>::supported_features(&self.0)
        }
        async fn metadata<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<Meta> {
            self.0.metadata(u, p).await
        }
        async fn list<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
            self.0.list(u, p).await
        }
        async fn get<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P, s: u64) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
            self.0.get(u, p, s).await
        }
        async fn put<P: AsRef<Path> + Send + Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(
            &self,
            u: &DefaultUser,
            r: R,
            p: P,
            s: u64,
        ) -> Result<u64> {
            self.0.put(u, r, p, s).await
        }
        async fn del<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> {
            self.0.del(u, p).await
        }
        async fn mkd<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> {
            self.0.mkd(u, p).await
        }
        async fn rename<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, f: P, t: P) -> Result<()> {
            self.0.rename(u, f, t).await
        }
        async fn rmd<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> {
            self.0.rmd(u, p).await
        }
        async fn cwd<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> {
            self.0.cwd(u, p).await
        }

        /// Missing → 550 "not found"; `secret*` → 550 "permission denied"; `REST` beyond the
        /// end → 554 (patch 24).
        async fn check_get<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P, start_pos: u64) -> Result<()> {
            if named(p.as_ref(), "secret") {
                return Err(ErrorKind::PermissionDenied.into());
            }
            let len = self.0.metadata(u, p).await.map_err(|e| Error::new(ErrorKind::PermanentFileNotAvailable, e))?.len();
            if start_pos > len {
                return Err(ErrorKind::InvalidRestOffset.into());
            }
            Ok(())
        }
        /// `taken*` → 553; APPE to `locked*` → 550; `REST` beyond the end → 554 (patch 24).
        async fn check_put<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P, start_pos: u64, append: bool) -> Result<()> {
            match () {
                () if named(p.as_ref(), "taken") => Err(ErrorKind::FileNameNotAllowedError.into()),
                () if append && named(p.as_ref(), "locked") => Err(ErrorKind::PermissionDenied.into()),
                () if start_pos > self.0.metadata(u, p).await.map_or(0, |m| m.len()) => Err(ErrorKind::InvalidRestOffset.into()),
                () => Ok(()),
            }
        }
        /// `private*` → 550.
        async fn check_list<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, p: P) -> Result<()> {
            if named(p.as_ref(), "private") {
                return Err(ErrorKind::PermissionDenied.into());
            }
            Ok(())
        }
    }
}

/// Serves `root` anonymously through [`picky::Picky`], as [`serve`] does with the plain back-end.
async fn serve_picky(root: &Root) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let path = root.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let path = path.clone();
            let server = ServerBuilder::new(Box::new(move || picky::Picky(Filesystem::new(path.clone()).unwrap())))
                .build()
                .unwrap();
            tokio::spawn(server.service(stream));
        }
    });
    addr
}

/// EPSV, then the client's data connection, as wget and curl make it before the command.
async fn data_connection(c: &mut Ctl, addr: SocketAddr) -> TcpStream {
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    tokio::time::timeout(WAIT, TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_refused_retr_gets_550_as_its_reply_and_the_data_connection_serves_the_next_command() {
    let root = Root::new("preflight-retr");
    let addr = serve_picky(&root).await;
    let mut c = Ctl::login(addr).await;
    let mut data = data_connection(&mut c, addr).await;
    for (line, why) in [("RETR missing.txt", "File not found"), ("RETR secret.txt", "Permission denied")] {
        let (code, text) = c.cmd(line).await;
        assert_eq!(code, 550, "{line}: the refusal is the first reply, no 150 before it: {text}");
        assert!(text.contains(why), "{line}: the data channel's own wording: {text}");
    }
    // A refused REST + RETR consumes the REST offset, as vsftpd does.
    assert_eq!(c.cmd("REST 3").await.0, 350);
    assert_eq!(c.cmd("RETR missing.txt").await.0, 550);
    // The data connection was not used: the next command gets it, from the start of the file.
    assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"hello\n");
    assert_eq!(c.reply().await.0, 226);
}

#[tokio::test]
async fn refused_uploads_and_listings_get_their_reply_before_any_150() {
    let root = Root::new("preflight-put-list");
    std::fs::create_dir(root.0.join("private")).unwrap();
    let addr = serve_picky(&root).await;
    let mut c = Ctl::login(addr).await;
    let _data = data_connection(&mut c, addr).await;
    for (line, want) in [
        ("STOR taken.txt", 553),
        ("APPE locked.txt", 550),
        ("LIST private", 550),
        ("NLST private", 550),
        ("MLSD private", 550),
    ] {
        let (code, text) = c.cmd(line).await;
        assert_eq!(code, want, "{line}: {text}");
    }
    assert!(!root.0.join("taken.txt").exists() && !root.0.join("locked.txt").exists());
    // Accepted commands still get 150 and use the data connection.
    assert_eq!(c.cmd("LIST").await.0, 150);
    assert_eq!(c.reply().await.0, 226);
}

#[tokio::test]
async fn a_data_connection_left_by_a_refused_command_is_released_by_the_next_epsv() {
    let root = Root::new("preflight-release");
    let addr = serve_picky(&root).await;
    let mut c = Ctl::login(addr).await;
    let mut first = data_connection(&mut c, addr).await;
    assert_eq!(c.cmd("RETR missing.txt").await.0, 550);
    // The client asks for a new one, as wget and curl do for their next transfer: the server
    // closes the unused one now (before the patch it held it for 5 minutes).
    let mut second = data_connection(&mut c, addr).await;
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, first.read(&mut buf)).await.expect("the old data connection is closed").unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, second.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"hello\n");
    assert_eq!(c.reply().await.0, 226);
}

#[tokio::test]
async fn a_back_end_without_checks_still_answers_after_150() {
    // The checks default to Ok: the file-system back-end's refusals come from the transfer.
    let root = Root::new("preflight-default");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    let _data = data_connection(&mut c, addr).await;
    assert_eq!(c.cmd("RETR missing.txt").await.0, 150);
    assert_eq!(c.reply().await.0, 550);
}

// Patch 24: a REST offset beyond the end of the file gets 554 (RFC 3659 §5), before any 150.

#[tokio::test]
async fn a_rest_offset_beyond_the_end_gets_554_for_retr_stor_and_appe() {
    let root = Root::new("preflight-rest");
    let addr = serve_picky(&root).await;
    let mut c = Ctl::login(addr).await;
    let mut data = data_connection(&mut c, addr).await;
    for line in ["RETR hello.txt", "STOR hello.txt", "APPE hello.txt"] {
        assert_eq!(c.cmd("REST 7").await.0, 350);
        let (code, text) = c.cmd(line).await;
        assert_eq!(code, 554, "{line} after REST 7 of a 6-byte file: {text}");
    }
    assert_eq!(std::fs::read(root.0.join("hello.txt")).unwrap(), b"hello\n", "the file is untouched");
    // The end itself is a valid offset: nothing left to send.
    assert_eq!(c.cmd("REST 6").await.0, 350);
    assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap().unwrap();
    assert!(got.is_empty());
    assert_eq!(c.reply().await.0, 226);
}

// Patch 25: nothing the server sends names the software or its version.

#[tokio::test]
async fn greeting_help_and_stat_do_not_name_the_software() {
    let root = Root::new("no-banner");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let leaks = |text: &str| {
        let lower = text.to_lowercase();
        lower.contains("unftp") || lower.contains("sbe") || lower.contains("authenticator") || text.contains(env!("CARGO_PKG_VERSION"))
    };
    let stream = TcpStream::connect(addr).await.unwrap();
    let (r, w) = stream.into_split();
    let mut c = Ctl {
        reader: BufReader::new(r),
        writer: w,
    };
    let (code, greeting) = c.reply().await;
    assert_eq!(code, 220);
    assert!(!leaks(&greeting), "{greeting}");
    let (code, help) = c.cmd("HELP").await;
    assert_eq!(code, 214, "{help}");
    assert!(help.contains("RETR") && !leaks(&help), "{help}");
    assert_eq!(c.cmd("USER anonymous").await.0, 331);
    assert_eq!(c.cmd("PASS guest@").await.0, 230);
    let (code, help) = c.cmd("HELP").await;
    assert!(code == 214 && !leaks(&help), "{help}");
    let (code, stat) = c.cmd("STAT").await;
    assert_eq!(code, 211, "{stat}");
    assert!(stat.contains("offset for REST") && !leaks(&stat), "{stat}");
}

// --- FTPS (our patches 36-38) -------------------------------------------------------------

mod ftps {
    use super::*;
    use libunftp::options::FtpsRequiredFor;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;
    use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

    /// A self-signed certificate for `localhost` made with openssl for these tests (valid until
    /// 2126), and its key.
    pub(super) fn resource(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/resources").join(name)
    }

    /// Accepts the test certificate without checking it: these tests are about the server.
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub(super) fn connector(resume: bool) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
    impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

    /// A control connection that can be secured after AUTH TLS (or from the start).
    pub(super) struct TlsCtl {
        reader: Option<BufReader<ReadHalf<Box<dyn Io>>>>,
        writer: Option<WriteHalf<Box<dyn Io>>>,
        pub(super) tls: tokio_rustls::TlsConnector,
    }

    impl TlsCtl {
        pub(super) async fn connect(addr: SocketAddr, tls: tokio_rustls::TlsConnector, implicit: bool) -> Self {
            let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
            let io: Box<dyn Io> = if implicit {
                Box::new(tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap())
            } else {
                Box::new(tcp)
            };
            let (r, w) = tokio::io::split(io);
            let mut c = TlsCtl {
                reader: Some(BufReader::new(r)),
                writer: Some(w),
                tls,
            };
            assert_eq!(c.reply().await.0, 220);
            c
        }

        /// AUTH TLS and the handshake (RFC 4217 §4).
        pub(super) async fn secure(&mut self) {
            assert_eq!(self.cmd("AUTH TLS").await.0, 234);
            let r = self.reader.take().unwrap();
            assert!(r.buffer().is_empty());
            let io = r.into_inner().unsplit(self.writer.take().unwrap());
            let tls = self.tls.connect(ServerName::try_from("localhost").unwrap(), io).await.unwrap();
            let (r, w) = tokio::io::split(Box::new(tls) as Box<dyn Io>);
            self.reader = Some(BufReader::new(r));
            self.writer = Some(w);
        }

        pub(super) async fn reply(&mut self) -> (u32, String) {
            let mut line = String::new();
            let reader = self.reader.as_mut().unwrap();
            let n = tokio::time::timeout(WAIT, reader.read_line(&mut line)).await.expect("a reply in time").unwrap_or(0);
            if n == 0 {
                return (0, line);
            }
            (line.get(..3).unwrap_or("").parse().unwrap_or(0), line)
        }

        pub(super) async fn cmd(&mut self, line: &str) -> (u32, String) {
            self.writer.as_mut().unwrap().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
            self.reply().await
        }

        /// EPSV, a data connection (TLS over it when `tls`), RETR hello.txt: what arrived, and
        /// the final reply's code.
        pub(super) async fn retr(&mut self, addr: SocketAddr, tls: bool) -> (Vec<u8>, u32) {
            let (code, text) = self.cmd("EPSV").await;
            assert_eq!(code, 229, "{text}");
            let data = tokio::time::timeout(WAIT, TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))))
                .await
                .unwrap()
                .unwrap();
            let (code, text) = self.cmd("RETR hello.txt").await;
            assert_eq!(code, 150, "{text}");
            let mut got = Vec::new();
            if tls {
                // A refused handshake (patch 37's 522) leaves nothing to read.
                if let Ok(mut s) = self.tls.connect(ServerName::try_from("localhost").unwrap(), data).await {
                    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await.unwrap();
                }
            } else {
                let mut data = data;
                let _ = tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap();
            }
            (got, self.reply().await.0)
        }
    }

    #[tokio::test]
    async fn ftps_required_for_some_users_refuses_their_plain_login_and_unprotected_data() {
        let root = Root::new("ftps-per-user");
        let addr = serve(&root, "127.0.0.1:0", |b| {
            b.ftps(resource("ftps-test.crt"), resource("ftps-test.key"))
                .ftps_required_for(FtpsRequiredFor::new(|name| name != "anonymous"))
        })
        .await;
        // Plain: alice is refused at USER, before any password; anonymous is not.
        let mut c = TlsCtl::connect(addr, connector(true), false).await;
        let (code, text) = c.cmd("USER alice").await;
        assert_eq!(code, 534, "{text}");
        assert_eq!(c.cmd("PASS secret").await.0, 503, "no USER was accepted");
        assert_eq!(c.cmd("USER anonymous").await.0, 331);
        assert_eq!(c.cmd("PASS guest@").await.0, 230);
        assert_eq!(c.retr(addr, false).await, (b"hello\n".to_vec(), 226));
        // Over TLS, alice logs in but gets no data connection before PROT P.
        let mut c = TlsCtl::connect(addr, connector(true), false).await;
        c.secure().await;
        assert_eq!(c.cmd("USER alice").await.0, 331);
        assert_eq!(c.cmd("PASS secret").await.0, 230);
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 521, "{text}");
        assert_eq!(c.cmd("PBSZ 0").await.0, 200);
        assert_eq!(c.cmd("PROT P").await.0, 200);
        assert_eq!(c.retr(addr, true).await, (b"hello\n".to_vec(), 226));
        // PROT C after the data connection was opened: the transfer itself is refused.
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        assert_eq!(c.cmd("PROT C").await.0, 200);
        assert_eq!(c.cmd("RETR hello.txt").await.0, 521);
        assert_eq!(c.cmd("NOOP").await.0, 200, "the session goes on");
    }

    /// Logs in as anonymous over explicit TLS with `PROT P`.
    async fn protected_session(addr: SocketAddr, resume: bool) -> TlsCtl {
        let mut c = TlsCtl::connect(addr, connector(resume), false).await;
        c.secure().await;
        assert_eq!(c.cmd("USER anonymous").await.0, 331);
        assert_eq!(c.cmd("PASS guest@").await.0, 230);
        assert_eq!(c.cmd("PBSZ 0").await.0, 200);
        assert_eq!(c.cmd("PROT P").await.0, 200);
        c
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_on_a_data_connection_is_answered_and_the_session_goes_on() {
        let root = Root::new("ftps-bad-data-handshake");
        let addr = serve(&root, "127.0.0.1:0", |b| {
            b.ftps(resource("ftps-test.crt"), resource("ftps-test.key"))
                .data_stall_timeout(Duration::from_secs(2))
        })
        .await;
        let mut c = protected_session(addr, true).await;
        // Not a ClientHello: the handshake fails at once.
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        let mut data = TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))).await.unwrap();
        assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
        data.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let (code, text) = c.reply().await;
        assert_eq!(code, 425, "{text}");
        drop(data);
        // Nothing at all: the handshake ends with the stall limit.
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        let _data = TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))).await.unwrap();
        assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
        let (code, text) = c.reply().await;
        assert_eq!(code, 425, "{text}");
        assert_eq!(c.retr(addr, true).await, (b"hello\n".to_vec(), 226), "the session goes on");
    }

    #[tokio::test]
    async fn ftps_require_resumption_refuses_a_data_connection_with_a_new_tls_session() {
        let root = Root::new("ftps-resumption");
        let addr = serve(&root, "127.0.0.1:0", |b| {
            b.ftps(resource("ftps-test.crt"), resource("ftps-test.key")).ftps_require_resumption(true)
        })
        .await;
        let mut c = protected_session(addr, false).await;
        let (got, code) = c.retr(addr, true).await;
        assert_eq!(code, 522, "a full handshake is refused");
        assert!(got.is_empty());
        let mut c = protected_session(addr, true).await;
        assert_eq!(c.retr(addr, true).await, (b"hello\n".to_vec(), 226), "a resumed session is accepted");
    }

    #[tokio::test]
    async fn implicit_ftps_starts_with_the_handshake_and_protects_data_from_the_start() {
        let root = Root::new("ftps-implicit");
        let addr = serve(&root, "127.0.0.1:0", |b| {
            b.ftps(resource("ftps-test.crt"), resource("ftps-test.key")).ftps_implicit(true)
        })
        .await;
        let mut c = TlsCtl::connect(addr, connector(true), true).await;
        assert_eq!(c.cmd("USER anonymous").await.0, 331);
        assert_eq!(c.cmd("PASS guest@").await.0, 230);
        assert_eq!(c.retr(addr, true).await, (b"hello\n".to_vec(), 226), "no PROT P needed");
        // A plain client gets no greeting: its first line is not a ClientHello.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"USER anonymous\r\n").await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut got)).await.expect("closed in time");
        assert!(!got.starts_with(b"220"), "{:?}", String::from_utf8_lossy(&got));
    }

    #[tokio::test]
    async fn a_tls_upload_whose_client_reads_nothing_is_received_whole() {
        let root = Root::new("ftps-upload-no-read");
        let addr = serve(&root, "127.0.0.1:0", |b| {
            b.ftps(resource("ftps-test.crt"), resource("ftps-test.key"))
                .ftps_tls_flags(libunftp::options::TlsFlags::LATEST_VERSIONS | libunftp::options::TlsFlags::RESUMPTION_TICKETS)
        })
        .await;
        let mut c = protected_session(addr, true).await;
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        let data = TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))).await.unwrap();
        assert_eq!(c.cmd("STOR up.bin").await.0, 150);
        let mut tls = c.tls.connect(ServerName::try_from("localhost").unwrap(), data).await.unwrap();
        let body = vec![7u8; 4 << 20];
        tls.write_all(&body).await.unwrap();
        tls.shutdown().await.unwrap();
        // Closed without reading: anything the server sent after the handshake is unread.
        drop(tls);
        let (code, text) = c.reply().await;
        assert_eq!(code, 226, "{text}");
        assert_eq!(std::fs::read(root.0.join("up.bin")).unwrap().len(), body.len());
    }

    /// Many AUTH TLS upgrades at once on a busy multi-threaded runtime: every handshake works.
    /// Before patch 40 the upgrade waited for a message from a spawned task, and the control
    /// loop could read the ClientHello as a command first and answer it in clear, breaking the
    /// client's handshake ("received corrupt message").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auth_tls_upgrades_before_reading_anything_else() {
        let root = Root::new("ftps-auth-race");
        let addr = serve(&root, "127.0.0.1:0", |b| b.ftps(resource("ftps-test.crt"), resource("ftps-test.key"))).await;
        let tls = connector(true);
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let tls = tls.clone();
            tasks.push(tokio::spawn(async move {
                let mut failures = 0;
                for _ in 0..25 {
                    let tcp = TcpStream::connect(addr).await.unwrap();
                    let mut r = BufReader::new(tcp);
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    r.get_mut().write_all(b"AUTH TLS\r\n").await.unwrap();
                    line.clear();
                    r.read_line(&mut line).await.unwrap();
                    assert!(line.starts_with("234"), "{line}");
                    assert!(r.buffer().is_empty());
                    match tokio::time::timeout(WAIT, tls.connect(ServerName::try_from("localhost").unwrap(), r.into_inner())).await {
                        Ok(Ok(mut s)) => {
                            s.write_all(b"NOOP\r\n").await.unwrap();
                            let mut buf = [0u8; 3];
                            s.read_exact(&mut buf).await.unwrap();
                            assert_eq!(&buf, b"200");
                        }
                        _ => failures += 1,
                    }
                }
                failures
            }));
        }
        let mut failures = 0;
        for t in tasks {
            failures += t.await.unwrap();
        }
        assert_eq!(failures, 0, "handshakes broken out of 800");
    }
}

/// A file-system back-end that appends by itself (patch 32): it advertises
/// `FEATURE_APPEND` and writes `put(.., APPEND)` with `O_APPEND`; it records every `start_pos`
/// `put` gets.
#[derive(Debug)]
struct AppendingFs {
    fs: Filesystem,
    root: PathBuf,
    puts: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

#[async_trait::async_trait]
impl unftp_core::storage::StorageBackend<unftp_core::auth::DefaultUser> for AppendingFs {
    type Metadata = unftp_sbe_fs::Meta;

    fn supported_features(&self) -> u32 {
        libunftp::storage::FEATURE_APPEND | unftp_core::storage::FEATURE_RESTART
    }

    async fn metadata<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(&self, user: &unftp_core::auth::DefaultUser, path: P) -> unftp_core::storage::Result<Self::Metadata> {
        self.fs.metadata(user, path).await
    }

    async fn list<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(
        &self,
        user: &unftp_core::auth::DefaultUser,
        path: P,
    ) -> unftp_core::storage::Result<Vec<unftp_core::storage::Fileinfo<PathBuf, Self::Metadata>>> {
        self.fs.list(user, path).await
    }

    async fn get<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(
        &self,
        user: &unftp_core::auth::DefaultUser,
        path: P,
        start_pos: u64,
    ) -> unftp_core::storage::Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        self.fs.get(user, path, start_pos).await
    }

    async fn put<P: AsRef<std::path::Path> + Send + std::fmt::Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &unftp_core::auth::DefaultUser,
        mut input: R,
        path: P,
        start_pos: u64,
    ) -> unftp_core::storage::Result<u64> {
        self.puts.lock().unwrap().push(start_pos);
        if start_pos != libunftp::storage::APPEND {
            return self.fs.put(user, input, path, start_pos).await;
        }
        let full = self.root.join(path.as_ref().strip_prefix("/").unwrap_or(path.as_ref()));
        let mut file = tokio::fs::OpenOptions::new().append(true).create(true).open(full).await?;
        let n = tokio::io::copy(&mut input, &mut file).await?;
        file.sync_all().await?;
        Ok(n)
    }

    async fn del<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(&self, user: &unftp_core::auth::DefaultUser, path: P) -> unftp_core::storage::Result<()> {
        self.fs.del(user, path).await
    }

    async fn mkd<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(&self, user: &unftp_core::auth::DefaultUser, path: P) -> unftp_core::storage::Result<()> {
        self.fs.mkd(user, path).await
    }

    async fn rename<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(&self, user: &unftp_core::auth::DefaultUser, from: P, to: P) -> unftp_core::storage::Result<()> {
        self.fs.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(&self, user: &unftp_core::auth::DefaultUser, path: P) -> unftp_core::storage::Result<()> {
        self.fs.rmd(user, path).await
    }

    async fn cwd<P: AsRef<std::path::Path> + Send + std::fmt::Debug>(&self, user: &unftp_core::auth::DefaultUser, path: P) -> unftp_core::storage::Result<()> {
        self.fs.cwd(user, path).await
    }
}

/// Uploads `body` with `verb` (`STOR`, `APPE`) over a fresh passive connection; the final code.
async fn upload(c: &mut Ctl, addr: SocketAddr, verb_path: &str, body: &[u8]) -> u32 {
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let mut data = TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))).await.unwrap();
    assert_eq!(c.cmd(verb_path).await.0, 150, "{verb_path}");
    data.write_all(body).await.unwrap();
    drop(data);
    c.reply().await.0
}

#[tokio::test]
async fn appe_asks_a_back_end_that_appends_by_itself_to_append() {
    let root = Root::new("appe-append");
    std::os::unix::fs::symlink("hello.txt", root.0.join("link.txt")).unwrap();
    let puts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (path, recorded) = (root.0.clone(), puts.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (path, puts) = (path.clone(), recorded.clone());
            let server = ServerBuilder::new(Box::new(move || AppendingFs {
                fs: Filesystem::new(path.clone()).unwrap(),
                root: path.clone(),
                puts: puts.clone(),
            }))
            .build()
            .unwrap();
            tokio::spawn(server.service(stream));
        }
    });
    let mut c = Ctl::login(addr).await;
    // Through a symlink: the target grows, the link stays a link (before the patch the back-end
    // got the link's own length, 9, and wrote there).
    assert_eq!(upload(&mut c, addr, "APPE link.txt", b"world\n").await, 226);
    assert_eq!(upload(&mut c, addr, "APPE new.txt", b"fresh\n").await, 226);
    assert_eq!(std::fs::read(root.0.join("hello.txt")).unwrap(), b"hello\nworld\n");
    assert!(std::fs::symlink_metadata(root.0.join("link.txt")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(root.0.join("new.txt")).unwrap(), b"fresh\n");
    // STOR after REST still gets its offset.
    assert_eq!(c.cmd("REST 2").await.0, 350);
    assert_eq!(upload(&mut c, addr, "STOR new.txt", b"ESH\n").await, 226);
    assert_eq!(*puts.lock().unwrap(), [libunftp::storage::APPEND, libunftp::storage::APPEND, 2]);
}

#[tokio::test]
async fn appe_to_a_back_end_that_does_not_append_by_itself_works_as_before() {
    let root = Root::new("appe-plain");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    assert_eq!(upload(&mut c, addr, "APPE hello.txt", b"world\n").await, 226);
    assert_eq!(std::fs::read(root.0.join("hello.txt")).unwrap(), b"hello\nworld\n");
}

#[tokio::test]
async fn an_error_reply_carries_one_reply_code() {
    let root = Root::new("one-code");
    let addr = serve(&root, "127.0.0.1:0", plain).await;
    let mut c = Ctl::login(addr).await;
    // MLST used to answer with the storage error's own text: `550 storage error: 550 ...`.
    for cmd in ["MLST missing.txt", "SIZE missing.txt", "MDTM missing.txt", "CWD missing", "DELE missing.txt"] {
        let (code, text) = c.cmd(cmd).await;
        assert_eq!(code, 550, "{cmd}: {text}");
        assert_eq!(text.matches("550").count(), 1, "{cmd}: {text}");
        assert!(!text.contains("storage error"), "{cmd}: {text}");
    }
    assert_eq!(c.cmd("MLST missing.txt").await.1, "550 File not found\r\n");
}

/// The records a server logs, with their levels.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<(slog::Level, String)>>>);

impl slog::Drain for Captured {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        self.0.lock().unwrap().push((record.level(), record.msg().to_string()));
        Ok(())
    }
}

impl Captured {
    /// Records at `warn` or above whose message contains `what`.
    fn warnings_about(&self, what: &str) -> Vec<String> {
        let records = self.0.lock().unwrap();
        records
            .iter()
            .filter(|(level, msg)| level.is_at_least(slog::Level::Warning) && msg.contains(what))
            .map(|(_, msg)| msg.clone())
            .collect()
    }

    fn any(&self, what: &str) -> bool {
        self.0.lock().unwrap().iter().any(|(_, msg)| msg.contains(what))
    }
}

/// Refuses `nobody` as an unknown user and every password but `right`.
#[derive(Debug)]
struct OnePassword;

#[async_trait::async_trait]
impl unftp_core::auth::Authenticator for OnePassword {
    async fn authenticate(&self, username: &str, creds: &unftp_core::auth::Credentials) -> Result<unftp_core::auth::Principal, unftp_core::auth::AuthenticationError> {
        match (username, creds.password.as_deref()) {
            ("nobody", _) => Err(unftp_core::auth::AuthenticationError::BadUser),
            (_, Some("right")) => Ok(unftp_core::auth::Principal { username: username.into() }),
            _ => Err(unftp_core::auth::AuthenticationError::new("account expired")),
        }
    }
}

#[tokio::test]
async fn refused_logins_and_refused_commands_are_logged_at_info_not_warn() {
    let root = Root::new("log-levels");
    let logs = Captured::default();
    let logger = slog::Logger::root(logs.clone(), slog::o!());
    let addr = serve(&root, "127.0.0.1:0", move |b| {
        b.logger(logger.clone()).authenticator(std::sync::Arc::new(OnePassword))
    })
    .await;
    for (user, pass) in [("nobody", "x"), ("alice", "wrong")] {
        let mut c = Ctl::connect(addr).await;
        assert_eq!(c.cmd(&format!("USER {user}")).await.0, 331);
        assert_eq!(c.cmd(&format!("PASS {pass}")).await.0, 530);
    }
    let mut c = Ctl::connect(addr).await;
    assert_eq!(c.cmd("USER alice").await.0, 331);
    assert_eq!(c.cmd("PASS right").await.0, 230);
    for cmd in ["CWD missing", "MKD hello.txt", "RMD missing", "SIZE missing"] {
        assert_eq!(c.cmd(cmd).await.0, 550, "{cmd}");
    }
    assert_eq!(c.cmd("NOOP").await.0, 200);
    // The refusals are logged (at info, with the authenticator's reason) ...
    assert!(logs.any("unknown user nobody"));
    assert!(logs.any("account expired"));
    assert!(logs.any("CWD: Failed to change directory"));
    // ... and none at warn.
    for what in ["PASS", "CWD", "MKD", "RMD", "SIZE"] {
        assert_eq!(logs.warnings_about(what), Vec::<String>::new(), "{what}");
    }
}

/// Serves `root` with `service_until`, every session ending when `stop` is cancelled; each
/// session's end (its `service_until` returning) is counted in `ended`.
async fn serve_until(
    root: &Root,
    stop: tokio_util::sync::CancellationToken,
    ended: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tune: impl Fn(Builder) -> Builder + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let path = root.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let path = path.clone();
            let server = tune(ServerBuilder::new(Box::new(move || Filesystem::new(path.clone()).unwrap())))
                .build()
                .unwrap();
            let (stop, ended) = (stop.clone(), ended.clone());
            tokio::spawn(async move {
                server.service_until(stream, stop.cancelled_owned()).await.unwrap();
                ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    addr
}

#[tokio::test]
async fn service_until_closes_its_sessions_when_the_shutdown_signal_comes() {
    let root = Root::new("service-until");
    let stop = tokio_util::sync::CancellationToken::new();
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = serve_until(&root, stop.clone(), ended.clone(), |b| b).await;
    let mut idle = Ctl::login(addr).await;
    let mut fresh = Ctl::connect(addr).await;
    assert_eq!(idle.cmd("NOOP").await.0, 200);
    assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 0);
    stop.cancel();
    // Both connections are closed by the server (end of stream), and both services return.
    assert_eq!(idle.reply().await.0, 0, "the logged-in session is closed");
    assert_eq!(fresh.reply().await.0, 0, "the session before login is closed");
    tokio::time::timeout(WAIT, async {
        while ended.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both service_until calls return");
}

#[tokio::test]
async fn after_quit_the_server_waits_for_the_client_to_close_first() {
    let root = Root::new("close-linger");
    let stop = tokio_util::sync::CancellationToken::new();
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = |e: &std::sync::Arc<std::sync::atomic::AtomicUsize>| e.load(std::sync::atomic::Ordering::SeqCst);
    // A linger far longer than the test: only the client's close or the shutdown end it.
    let addr = serve_until(&root, stop.clone(), ended.clone(), |b| b.close_linger(Duration::from_secs(600))).await;
    let mut a = Ctl::login(addr).await;
    assert_eq!(a.cmd("QUIT").await.0, 221);
    // After 221 the server does not close: the client's read finds no end of stream.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), a.reader.read(&mut byte)).await;
    assert!(read.is_err(), "the server closed first after QUIT: {read:?}");
    assert_eq!(count(&ended), 0);
    // The client closes: the session ends.
    drop(a);
    tokio::time::timeout(WAIT, async {
        while count(&ended) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session ends once the client has closed");
    // A client that never closes after QUIT is closed by a shutdown, without the linger.
    let mut b = Ctl::login(addr).await;
    assert_eq!(b.cmd("QUIT").await.0, 221);
    stop.cancel();
    assert_eq!(b.reply().await.0, 0, "closed at shutdown");
}

// Patch 44: the embedder learns when a session's control loop ends, even while a transfer runs.

#[tokio::test]
async fn the_session_end_signal_fires_when_the_client_leaves_during_an_upload() {
    let root = Root::new("session-end");
    let ended = tokio_util::sync::CancellationToken::new();
    let signal = ended.clone();
    let addr = serve(&root, "127.0.0.1:0", move |b| b.session_end_signal(signal.clone())).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let mut data = tokio::time::timeout(WAIT, TcpStream::connect(SocketAddr::new(addr.ip(), epsv_port(&text))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.cmd("STOR up.bin").await.0, 150);
    data.write_all(b"the first part of an upload").await.unwrap();
    assert_eq!(c.cmd("NOOP").await.0, 200);
    assert!(!ended.is_cancelled(), "the client is still there");
    // The client goes away; its data connection stays open, the upload unfinished.
    drop(c);
    tokio::time::timeout(WAIT, ended.cancelled())
        .await
        .expect("the signal fires while the upload is still running");
    drop(data);
}

// Patch 46: the future of `service_until` holds what the session needs, not the `Server`.

#[tokio::test]
async fn a_served_session_holds_a_small_future() {
    let root = Root::new("small-future");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let path = root.0.clone();
    let server = ServerBuilder::new(Box::new(move || Filesystem::new(path.clone()).unwrap())).build().unwrap();
    let session = server.service_until(stream, futures_util::future::pending());
    // Before the patch the future held the `Server`, its options and the spawn step inline:
    // 3,032 bytes for ftp-server's session, kept for the session's whole life.
    let size = std::mem::size_of_val(&session);
    assert!(size < 1024, "the session's future is {size} bytes");
    drop(session);
    drop(client);
}

/// Serves as `serve` does, but every connection on behalf of `client` (as behind a proxy that
/// passed the client's address): `Server::service_with_peer`.
async fn serve_for(root: &Root, client: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let path = root.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let path = path.clone();
            let server = plain(ServerBuilder::new(Box::new(move || Filesystem::new(path.clone()).unwrap())))
                .build()
                .unwrap();
            tokio::spawn(server.service_with_peer(stream, Some(client)));
        }
    });
    addr
}

#[tokio::test]
async fn service_with_peer_takes_the_data_connection_from_the_given_client_not_the_proxy() {
    let root = Root::new("with-peer");
    // The control connection comes from 127.0.0.1 (the "proxy"); the client is 127.0.0.2.
    let addr = serve_for(&root, SocketAddr::from(([127, 0, 0, 2], 40000))).await;
    let mut c = Ctl::login(addr).await;
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let data_addr = SocketAddr::new(addr.ip(), epsv_port(&text));
    // The proxy's own address is not the client's: hung up on.
    let mut proxy = tokio::time::timeout(WAIT, TcpStream::connect(data_addr)).await.unwrap().unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, proxy.read_to_end(&mut got)).await.expect("the proxy's address is hung up on");
    assert!(got.is_empty());
    // The client's own address gets the file.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut data = tokio::time::timeout(WAIT, sock.connect(data_addr)).await.unwrap().unwrap();
    assert_eq!(c.cmd("RETR hello.txt").await.0, 150);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(c.reply().await.0, 226);
    assert_eq!(got, b"hello\n");
    // And STAT names the client, not the proxy.
    let (code, text) = c.cmd("STAT").await;
    assert_eq!(code, 211, "{text}");
    assert!(text.contains("127.0.0.2"), "{text}");
}
