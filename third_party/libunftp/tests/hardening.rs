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
async fn serve(root: &Root, bind: &str, tune: fn(ServerBuilder<Filesystem, unftp_core::auth::DefaultUser>) -> ServerBuilder<Filesystem, unftp_core::auth::DefaultUser>) -> SocketAddr {
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

fn plain(b: ServerBuilder<Filesystem, unftp_core::auth::DefaultUser>) -> ServerBuilder<Filesystem, unftp_core::auth::DefaultUser> {
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
