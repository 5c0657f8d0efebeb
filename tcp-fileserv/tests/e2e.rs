//! End-to-end tests of tcp-fileserv: the server runs in-process on 127.0.0.1:0, driven by the
//! library client, by raw sockets speaking (and breaking) the protocol, by the real binary (for
//! exit codes, resume and output forms) and by the Python snippet in docs/tcp-protocol.md.
//!
//! No test waits by sleeping: each waits for the event itself (a reply, a close seen with
//! poll(2), the child's exit, a line on its stdout), always with a limit, so a broken server
//! fails a test instead of hanging it.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use filexfer::download::Output as Dest;
use tcp_fileserv::client::{self, Client, ClientError, GetOptions};
use tcp_fileserv::config::HostPort;
use tcp_fileserv::exit_codes::ExitCode;
use tcp_fileserv::protocol::{self, HEADER_LEN, Kind, Request, Status};
use tcp_fileserv::server::{self, ServerConfig};
use test_kit::{
    ChildGuard, Fixture, Ran, hostile_names, long_name, pattern_bytes, require_tool, run, sha256,
    sha256_file,
};

/// The longest any single wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A server running on its own runtime thread; stopped (gracefully) on drop.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Closed when the server thread ends (its sender is dropped).
    done: std::sync::mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(root: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut cfg = ServerConfig::new(root.to_path_buf());
        cfg.grace = Duration::from_secs(5);
        tweak(&mut cfg);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _done = done_tx;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                server::run(listener, cfg, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("server run");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        Self {
            addr,
            stop: Some(stop_tx),
            done,
            thread: Some(thread),
        }
    }

    fn client(&self) -> Client {
        Client::connect(&HostPort::from(self.addr), Duration::from_secs(10)).expect("connect")
    }

    /// Stops the server and waits for it (graceful: running transfers may finish, for the
    /// grace period), failing the test if it does not stop within `PATIENCE`.
    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let Some(t) = self.thread.take() else { return };
        let stopped = matches!(
            self.done.recv_timeout(PATIENCE),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
        // Panicking again while a failed test unwinds would abort the whole run.
        if !stopped && !std::thread::panicking() {
            panic!("the server did not stop within {PATIENCE:?}");
        }
        if stopped && t.join().is_err() && !std::thread::panicking() {
            panic!("the server thread panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Downloads `name` into memory over a fresh connection.
/// The hostile names include `.dotfile`, which is hidden unless the server is told to serve
/// dotfiles (`--hidden`).
fn serve_dotfiles(cfg: &mut ServerConfig) {
    cfg.hidden = true;
}

fn fetch(srv: &TestServer, name: &str) -> Result<Vec<u8>, ClientError> {
    let mut c = srv.client();
    let len = c.request(Kind::Get, name, 0)?;
    let mut out = Vec::new();
    c.read_body(name, len, &mut out, "memory", &mut |_| {})?;
    Ok(out)
}

fn refused_status(r: Result<Vec<u8>, ClientError>) -> Status {
    match r {
        Err(ClientError::Refused { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Sends raw bytes on a new connection and returns the reply header and message (if any).
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (protocol::ReplyHeader, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    read_reply(&mut s)
}

fn read_reply(s: &mut TcpStream) -> (protocol::ReplyHeader, String) {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).expect("reply header");
    let h = protocol::decode_reply_header(&head).unwrap().unwrap();
    let mut msg = vec![0u8; h.msg_len as usize];
    s.read_exact(&mut msg).unwrap();
    (h, String::from_utf8(msg).unwrap())
}

fn request_bytes(kind: Kind, name: &str, offset: u64) -> Vec<u8> {
    protocol::encode_request(&Request {
        kind,
        name: name.into(),
        offset,
        escaped: false,
    })
    .unwrap()
}

/// The binary under test, as Cargo built it for this test run.
fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tcp-fileserv"))
}

/// Runs the binary in `cwd` to completion.
fn run_bin(args: &[&str], cwd: &Path) -> Ran {
    run(bin().args(args).current_dir(cwd))
}

/// Accepts one connection, or fails after `PATIENCE`: a client that never comes must fail the
/// test, not hang it.
fn accept_within(listener: &TcpListener) -> TcpStream {
    assert!(
        wait_for(listener.as_raw_fd(), libc::POLLIN) & libc::POLLIN != 0,
        "no client connected within {PATIENCE:?}"
    );
    let (s, _) = listener.accept().expect("accept");
    s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    s
}

/// The poll(2) events of `fd` once one of `events` (or a hang-up or error) is reported, or 0
/// after `PATIENCE`. Nothing is read, so a peer's close is seen even with unread data queued.
fn wait_for(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::c_short {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd, exclusively borrowed for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, PATIENCE.as_millis() as libc::c_int) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return if n > 0 { pfd.revents } else { 0 };
        }
    }
}

/// How the server closed `s`: `Some(true)` for a reset, `Some(false)` for a FIN, `None` if it is
/// still open after `PATIENCE`.
fn closed_by_server(s: &TcpStream) -> Option<bool> {
    let ev = wait_for(s.as_raw_fd(), libc::POLLRDHUP);
    if ev & libc::POLLERR != 0 {
        Some(true)
    } else if ev & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
        Some(false)
    } else {
        None
    }
}

#[test]
fn hostile_names_download_byte_for_byte() {
    let fx = Fixture::with_hostile_files(100_000);
    fx.write("sub dir/nested ünï.bin", &pattern_bytes(300_000, 99));
    let srv = TestServer::start(fx.path(), serve_dotfiles);
    let mut names = hostile_names();
    names.push("sub dir/nested ünï.bin".into());
    // One connection carries every request (the lessons' "serve the same client again").
    let mut c = srv.client();
    for name in &names {
        let len = c.request(Kind::Get, name, 0).unwrap();
        let mut got = Vec::new();
        c.read_body(name, len, &mut got, "memory", &mut |_| {})
            .unwrap();
        assert_eq!(
            sha256(&got),
            sha256_file(&fx.path().join(name)),
            "content of {name:?}"
        );
    }
    // Zero-length and large (sendfile path) files too.
    fx.write("empty", b"");
    fx.write("large.bin", &pattern_bytes(20 << 20, 7));
    assert_eq!(fetch(&srv, "empty").unwrap(), b"");
    assert_eq!(
        sha256(&fetch(&srv, "large.bin").unwrap()),
        sha256_file(&fx.path().join("large.bin"))
    );
}

#[test]
fn refusals_are_replies_never_file_bytes() {
    let outside = Fixture::empty();
    outside.write("secret.txt", b"top secret");
    let fx = Fixture::with_hostile_files(10);
    fx.write("dir/inner.txt", b"inner");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), fx.path().join("escape"))
        .unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../etc/passwd",
        fx.path().join("rel-escape"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), fx.path().join("dir-escape")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", fx.path().join("device-link")).unwrap();
    let fifo = fx.path().join("fifo");
    run(Command::new("mkfifo").arg(&fifo)).expect_code(0);
    let srv = TestServer::start(fx.path(), |_| {});

    let cases = [
        ("missing.txt", Status::NotFound),
        ("dir", Status::NotRegularFile),
        (".", Status::NotRegularFile),
        ("fifo", Status::NotRegularFile),
        ("escape", Status::AccessDenied),
        ("rel-escape", Status::AccessDenied),
        ("dir-escape/secret.txt", Status::AccessDenied),
        ("device-link", Status::AccessDenied),
        ("../secret.txt", Status::BadRequest),
        ("dir/../../x", Status::BadRequest),
        ("/etc/passwd", Status::BadRequest),
        ("a\0b", Status::BadRequest),
    ];
    for (name, want) in cases {
        assert_eq!(refused_status(fetch(&srv, name)), want, "name {name:?}");
    }
    // Listing a symlink that leaves the root is refused too; the listing of the root leaves out
    // escaping links and the FIFO.
    let mut c = srv.client();
    assert!(matches!(
        c.list("dir-escape"),
        Err(ClientError::Refused {
            status: Status::AccessDenied,
            ..
        })
    ));
    let listed: Vec<String> = srv
        .client()
        .list(".")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(listed.contains(&"dir".to_string()) && listed.contains(&long_name()));
    for hidden in ["escape", "rel-escape", "dir-escape", "fifo", "device-link"] {
        assert!(!listed.contains(&hidden.to_string()), "{hidden} listed");
    }

    // A name that is not UTF-8: bad request, and the connection stays usable.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bad = request_bytes(Kind::Get, "ab", 0);
    bad[HEADER_LEN] = 0xff;
    s.write_all(&bad).unwrap();
    let (h, msg) = read_reply(&mut s);
    assert_eq!(h.status, Status::BadRequest);
    assert!(msg.contains("UTF-8"), "{msg}");
    s.write_all(&request_bytes(Kind::Get, "dir/inner.txt", 0))
        .unwrap();
    let (h, _) = read_reply(&mut s);
    assert_eq!((h.status, h.length), (Status::Ok, 5));
}

#[test]
fn malformed_headers_get_an_error_and_never_hurt_others() {
    let fx = Fixture::empty();
    fx.write("f.txt", b"hello");
    let srv = TestServer::start(fx.path(), |_| {});

    // Garbage (an HTTP request): bad request, then the server closes.
    let (h, msg) = raw_exchange(srv.addr, b"GET /f.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.status, Status::BadRequest);
    assert!(msg.contains("magic"), "{msg}");

    // A header announcing a 65535-byte name: refused from the header, nothing allocated/read.
    let mut huge = request_bytes(Kind::Get, "f.txt", 0);
    huge.truncate(HEADER_LEN);
    huge[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
    let (h, msg) = raw_exchange(srv.addr, &huge);
    assert_eq!(h.status, Status::BadRequest);
    assert!(msg.contains("longer than the maximum"), "{msg}");

    // An unknown version and an unknown kind.
    let mut v9 = request_bytes(Kind::Get, "f.txt", 0);
    v9[3] = 9;
    assert_eq!(
        raw_exchange(srv.addr, &v9).0.status,
        Status::UnsupportedVersion
    );
    let mut k = request_bytes(Kind::Get, "f.txt", 0);
    k[4] = 42;
    assert_eq!(raw_exchange(srv.addr, &k).0.status, Status::BadRequest);

    // A truncated header, then the client vanishes; and a resume offset past the end.
    {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(&request_bytes(Kind::Get, "f.txt", 0)[..7])
            .unwrap();
    }
    let (h, msg) = raw_exchange(srv.addr, &request_bytes(Kind::Get, "f.txt", 6));
    assert_eq!(h.status, Status::BadOffset);
    assert!(msg.contains("only 5 bytes"), "{msg}");

    // Everyone else is still served.
    assert_eq!(fetch(&srv, "f.txt").unwrap(), b"hello");
}

#[test]
fn fifty_parallel_downloads_are_all_correct() {
    let fx = Fixture::empty();
    for i in 0..5u64 {
        fx.write(&format!("file {i}.bin"), &pattern_bytes(1 << 20, i + 10));
    }
    let srv = TestServer::start(fx.path(), |_| {});
    let want: Vec<String> = (0..5)
        .map(|i| sha256_file(&fx.path().join(format!("file {i}.bin"))))
        .collect();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let addr = srv.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(&HostPort::from(addr), PATIENCE).unwrap();
                let name = format!("file {}.bin", i % 5);
                let len = c.request(Kind::Get, &name, 0).unwrap();
                let mut out = Vec::with_capacity(len as usize);
                c.read_body(&name, len, &mut out, "memory", &mut |_| {})
                    .unwrap();
                (i % 5, sha256(&out))
            })
        })
        .collect();
    for h in handles {
        let (idx, got) = h.join().expect("download thread");
        assert_eq!(got, want[idx]);
    }
}

#[test]
fn a_client_vanishing_mid_stream_does_not_affect_others() {
    let fx = Fixture::empty();
    fx.write("big.bin", &pattern_bytes(64 << 20, 3));
    fx.write("small.txt", b"still here");
    let srv = TestServer::start(fx.path(), |_| {});
    // Start a big download on a raw socket, read a little, and drop it mid-stream.
    {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&request_bytes(Kind::Get, "big.bin", 0))
            .unwrap();
        let mut some = vec![0u8; 100_000];
        s.read_exact(&mut some).unwrap();
    }
    // Meanwhile (and after), other clients are served in full.
    for _ in 0..3 {
        assert_eq!(fetch(&srv, "small.txt").unwrap(), b"still here");
    }
    assert_eq!(
        sha256(&fetch(&srv, "big.bin").unwrap()),
        sha256_file(&fx.path().join("big.bin"))
    );
}

#[test]
fn idle_and_slow_clients_are_dropped_by_the_timeouts() {
    let fx = Fixture::empty();
    let size = 64usize << 20;
    fx.write("big.bin", &pattern_bytes(size, 5));
    fx.write("f.txt", b"ok");
    let srv = TestServer::start(fx.path(), |c| {
        c.idle_timeout = Duration::from_secs(1);
        c.io_timeout = Duration::from_secs(1);
    });
    // Idle: connects and says nothing.
    let idle = TcpStream::connect(srv.addr).unwrap();
    // Slow: sends half a header and stops.
    let mut half = TcpStream::connect(srv.addr).unwrap();
    half.write_all(&request_bytes(Kind::Get, "f.txt", 0)[..8])
        .unwrap();
    // Stalled: asks for a file far larger than the socket buffers and never reads.
    let mut stalled = TcpStream::connect(srv.addr).unwrap();
    stalled
        .write_all(&request_bytes(Kind::Get, "big.bin", 0))
        .unwrap();

    // The first two get a plain close; the stalled one a reset, so the kernel does not keep the
    // unsent bytes of a peer that stopped reading.
    assert_eq!(
        closed_by_server(&idle),
        Some(false),
        "idle client not closed"
    );
    assert_eq!(
        closed_by_server(&half),
        Some(false),
        "half-header client not closed"
    );
    assert_eq!(
        closed_by_server(&stalled),
        Some(true),
        "stalled client not reset"
    );
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    assert!(
        got.len() < size,
        "the stalled client got the whole file: it was not dropped"
    );
    // The server itself is fine.
    assert_eq!(fetch(&srv, "f.txt").unwrap(), b"ok");
}

#[test]
fn beyond_the_connection_limit_clients_are_told_busy() {
    let fx = Fixture::empty();
    fx.write("f.txt", b"ok");
    let srv = TestServer::start(fx.path(), |c| c.max_connections = 2);
    // Two clients take the two slots; a reply proves each has its slot.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(srv.addr).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s.write_all(&request_bytes(Kind::Get, "f.txt", 0)).unwrap();
            let (h, _) = read_reply(&mut s);
            assert_eq!((h.status, h.length), (Status::Ok, 2));
            s
        })
        .collect();
    let out = run_bin(
        &["get", &srv.addr.to_string(), "f.txt", "-o", "-"],
        Path::new("."),
    );
    out.expect_code(ExitCode::Busy.code());
    assert!(out.stderr().contains("busy"), "{}", out.describe());
    // They leave politely: once the server has closed their connections, their slots are free.
    for mut s in held {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("the server closes");
        assert_eq!(rest, b"ok");
    }
    assert_eq!(fetch(&srv, "f.txt").unwrap(), b"ok");
}

#[test]
fn binary_exit_codes_messages_and_outputs() {
    let fx = Fixture::with_hostile_files(5000);
    fx.write("dir/x.txt", b"x");
    let srv = TestServer::start(fx.path(), serve_dotfiles);
    let addr = srv.addr.to_string();
    let work = Fixture::empty();

    // Default output: ./<basename>, for every hostile name; `--` lets a name start with a dash,
    // as with any POSIX tool.
    for name in hostile_names() {
        run_bin(&["get", "-q", &addr, "--", &name], work.path()).expect_code(0);
        assert_eq!(
            sha256_file(&work.path().join(&name)),
            sha256_file(&fx.path().join(&name))
        );
    }
    // `-o -` writes the bytes to stdout, the summary to stderr.
    let name = &hostile_names()[1];
    let out = run_bin(&["get", &addr, name, "-o", "-"], work.path());
    out.expect_code(0);
    assert_eq!(
        sha256(&out.output.stdout),
        sha256_file(&fx.path().join(name))
    );
    assert!(out.stderr().contains("5000 bytes"), "{}", out.describe());
    // A subdirectory name saves under its basename only.
    run_bin(&["get", &addr, "dir/x.txt", "-q"], work.path()).expect_code(0);
    assert_eq!(std::fs::read(work.path().join("x.txt")).unwrap(), b"x");

    let cases: &[(&str, ExitCode, &str)] = &[
        ("missing.txt", ExitCode::NotFound, "missing.txt"),
        ("dir", ExitCode::NotFound, "not a regular file"),
        ("../etc/passwd", ExitCode::AccessDenied, ".."),
    ];
    for (name, code, text) in cases {
        let out = run_bin(&["get", &addr, name, "-o", "out.bin"], work.path());
        out.expect_code(code.code());
        assert!(out.stderr().contains(text), "{}", out.describe());
        assert!(!work.path().join("out.bin").exists());
        assert!(!work.path().join("out.bin.part").exists());
    }
    // Nothing listens: cannot connect.
    let closed = test_kit::ClosedPort::new();
    let out = run_bin(&["get", &closed.addr().to_string(), "f", "-q"], work.path());
    out.expect_code(ExitCode::Connect.code());
    assert!(
        out.stderr().contains("cannot connect"),
        "{}",
        out.describe()
    );
    // Bad flags: usage, naming the flag, before any connection is tried.
    let closed = closed.addr().to_string();
    for (args, flag) in [
        (&["get", &closed, "f", "--timeout", "0"][..], "--timeout"),
        (&["ls", &closed, "--timeout", "0"], "--timeout"),
        (&["get", "host:http", "f"], "ADDR:PORT"),
        (&["get", &closed, "dir/"], "NAME"),
        (&["serve", "--root", "/no/such/dir"], "--root"),
    ] {
        let out = run_bin(args, work.path());
        out.expect_code(ExitCode::Usage.code());
        assert!(out.stderr().contains(flag), "{}", out.describe());
    }

    // ls: names and sizes, directories marked.
    let out = run_bin(&["ls", &addr], work.path());
    out.expect_code(0);
    let text = out.stdout();
    assert!(text.lines().any(|l| l.trim_start() == "-  dir/"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start() == format!("5000  {}", long_name())),
        "{text}"
    );
    run_bin(&["ls", &addr, "missing-dir"], work.path()).expect_code(ExitCode::NotFound.code());
}

#[test]
fn ls_never_prints_control_characters_from_the_server() {
    let fx = Fixture::empty();
    // A name that would clear the screen and fake a second entry on a terminal.
    let evil = "x\u{1b}[2J\r\n           9  fake.txt\u{7}";
    fx.write(evil, b"abc");
    let srv = TestServer::start(fx.path(), |_| {});
    let out = run_bin(&["ls", &srv.addr.to_string()], fx.path());
    out.expect_code(0);
    let text = out.stdout();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(
        !text.trim_end_matches('\n').chars().any(char::is_control),
        "{text:?}"
    );
    assert!(text.contains("x\\x1b[2J\\x0d\\x0a"), "{text:?}");
}

#[test]
fn dotfiles_are_hidden_and_refused_unless_served() {
    let fx = Fixture::empty();
    fx.write("a.txt", b"a");
    fx.write(".env", b"SECRET=1");
    fx.write(".git/config", b"[core]");
    fx.write(".ssh/id_ed25519", b"key");
    fx.write("dir/.hidden", b"h");
    fx.write("dir/shown", b"s");
    let names = |c: &mut Client, dir: &str| -> Vec<String> {
        c.list(dir).unwrap().into_iter().map(|e| e.name).collect()
    };

    let srv = TestServer::start(fx.path(), |_| {});
    let mut c = srv.client();
    assert_eq!(names(&mut c, "."), ["a.txt", "dir"]);
    assert_eq!(names(&mut c, "dir"), ["shown"]);
    // Refused exactly as a missing name is: nothing tells that they exist.
    for name in [
        ".env",
        ".git/config",
        ".ssh/id_ed25519",
        "dir/.hidden",
        "./.env",
    ] {
        assert_eq!(
            refused_status(fetch(&srv, name)),
            Status::NotFound,
            "{name}"
        );
    }
    assert!(matches!(
        c.list(".git"),
        Err(ClientError::Refused {
            status: Status::NotFound,
            ..
        })
    ));
    // The binary's `ls` agrees.
    let work = Fixture::empty();
    let out = run_bin(&["ls", &srv.addr.to_string()], work.path());
    out.expect_code(0);
    assert!(!out.stdout().contains(".env"), "{}", out.describe());

    // Served with `hidden` (the --hidden flag).
    let srv = TestServer::start(fx.path(), serve_dotfiles);
    let mut c = srv.client();
    assert_eq!(names(&mut c, "."), [".env", ".git", ".ssh", "a.txt", "dir"]);
    assert_eq!(names(&mut c, "dir"), [".hidden", "shown"]);
    assert_eq!(fetch(&srv, ".git/config").unwrap(), b"[core]");
    assert_eq!(fetch(&srv, ".env").unwrap(), b"SECRET=1");
}

#[test]
fn control_characters_and_non_utf8_names_are_listed_escaped_and_downloadable() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::empty();
    let evil = "bell\u{7} esc\u{1b}[31m cr\r.txt";
    fx.write(evil, b"evil bytes");
    // A name that is not UTF-8 (Latin-1 "café" and a stray 0xff), and one inside a directory
    // whose own name is not UTF-8.
    let raw = OsStr::from_bytes(b"caf\xe9 \xff.bin");
    std::fs::write(fx.path().join(raw), b"latin-1 name").unwrap();
    let raw_dir = OsStr::from_bytes(b"d\xfe");
    std::fs::create_dir(fx.path().join(raw_dir)).unwrap();
    std::fs::write(fx.path().join(raw_dir).join("in.txt"), b"inside").unwrap();
    let srv = TestServer::start(fx.path(), |_| {});
    let addr = srv.addr.to_string();
    let work = Fixture::empty();

    // `ls`: every name listed, none with a control character, the others' bytes as \xNN.
    let out = run_bin(&["ls", &addr], work.path());
    out.expect_code(0);
    let text = out.stdout();
    assert_eq!(text.lines().count(), 3, "{}", out.describe());
    assert!(
        !text.lines().any(|l| l.chars().any(char::is_control)),
        "{text:?}"
    );
    assert!(
        text.contains("bell\\x07 esc\\x1b[31m cr\\x0d.txt"),
        "{text:?}"
    );
    assert!(text.contains("caf\\xe9 \\xff.bin"), "{text:?}");
    assert!(text.contains("d\\xfe/"), "{text:?}");

    // The library sees the escaped flag, and sends a listed name back as it got it.
    let mut c = srv.client();
    let listed = c.list(".").unwrap();
    let latin = listed
        .iter()
        .find(|e| e.escaped && e.name.starts_with("caf"))
        .unwrap();
    assert_eq!(latin.name, "caf\\xe9 \\xff.bin");
    let dest = work.path().join("by-entry");
    let opts = GetOptions {
        output: Dest::Path(dest.clone()),
        resume: false,
        progress: false,
    };
    client::download(&mut c, latin, &opts).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"latin-1 name");
    let inner = c
        .list(client::Name {
            text: "d\\xfe",
            escaped: true,
        })
        .unwrap();
    assert_eq!(inner[0].name, "in.txt");
    // An escaped name that is malformed is a bad request, never a guess.
    let bad = client::Name {
        text: "caf\\q",
        escaped: true,
    };
    assert!(matches!(
        c.request(Kind::Get, bad, 0),
        Err(ClientError::Refused {
            status: Status::BadRequest,
            ..
        })
    ));

    // The binary downloads both by their bytes: the default local name is those same bytes.
    let mut cmd = bin();
    cmd.args(["get", "-q", &addr])
        .arg(raw)
        .current_dir(work.path());
    run(&mut cmd).expect_code(0);
    assert_eq!(
        std::fs::read(work.path().join(raw)).unwrap(),
        b"latin-1 name"
    );
    let mut cmd = bin();
    let nested = [raw_dir.as_bytes(), b"/in.txt"].concat();
    cmd.args(["get", "-q", "-o", "-", &addr])
        .arg(OsStr::from_bytes(&nested))
        .current_dir(work.path());
    let out = run(&mut cmd);
    out.expect_code(0);
    assert_eq!(out.output.stdout, b"inside");
    // Without -q: the summary line names the local file, escaped.
    let out = run_bin(&["get", &addr, evil], work.path());
    out.expect_code(0);
    assert_eq!(
        std::fs::read(work.path().join(evil)).unwrap(),
        b"evil bytes"
    );
    let err = out.stderr();
    assert!(err.contains("bell\\x07 esc\\x1b[31m"), "{}", out.describe());
    assert!(
        !err.trim_end_matches('\n').chars().any(char::is_control),
        "{err:?}"
    );
    // A local file in the way that cannot be written: the error names it escaped too.
    std::fs::remove_file(work.path().join(evil)).unwrap();
    std::fs::create_dir(work.path().join(format!("{evil}.part"))).unwrap();
    let out = run_bin(&["get", &addr, evil], work.path());
    out.expect_code(ExitCode::LocalWrite.code());
    let err = out.stderr();
    assert_eq!(err.lines().count(), 1, "{}", out.describe());
    assert!(
        !err.trim_end_matches('\n').chars().any(char::is_control),
        "{err:?}"
    );

    // A refusal that names a hostile name shows it escaped, on one line.
    let missing = "no\u{1b}]0;pwned\u{7}\r\nsuch";
    let out = run_bin(&["get", &addr, missing], work.path());
    out.expect_code(ExitCode::NotFound.code());
    let err = out.stderr();
    assert_eq!(err.lines().count(), 1, "{}", out.describe());
    assert!(
        !err.trim_end_matches('\n').chars().any(char::is_control),
        "{err:?}"
    );
}

#[test]
fn a_refusal_message_reaches_the_terminal_escaped() {
    let hostile = "no such file\u{1b}]0;pwned\u{7}\r\ntcp-fileserv: all good";
    let (addr, fake) = fake_server(protocol::encode_error(Status::NotFound, hostile), |_| {});
    let work = Fixture::empty();
    let out = run_bin(&["get", &addr, "f"], work.path());
    fake.join().unwrap();
    out.expect_code(ExitCode::NotFound.code());
    let err = out.stderr();
    assert!(
        !err.trim_end_matches('\n').chars().any(char::is_control),
        "{err:?}"
    );
    assert!(
        err.contains("no such file\\x1b]0;pwned\\x07\\x0d\\x0a"),
        "{err:?}"
    );
}

#[test]
fn timeout_when_the_server_never_answers() {
    // A listener that accepts (the kernel does) but never replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let work = Fixture::empty();
    let out = run_bin(&["get", &addr, "f", "--timeout", "1"], work.path());
    out.expect_code(ExitCode::Timeout.code());
    assert!(out.stderr().contains("timed out"), "{}", out.describe());
    assert!(!work.path().join("f").exists() && !work.path().join("f.part").exists());
}

/// A fake server on its own thread: accepts one client, reads its whole request, sends
/// `reply`, runs `then` on the connection, and closes. (The request must be read to its end:
/// closing with unread bytes would reset the connection and destroy the reply in flight.)
fn fake_server(
    reply: Vec<u8>,
    then: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let thread = std::thread::spawn(move || {
        let mut s = accept_within(&listener);
        let mut req = vec![0u8; HEADER_LEN];
        s.read_exact(&mut req).expect("a request header");
        let head = protocol::decode_request_header(&req).unwrap().unwrap();
        req.resize(HEADER_LEN + usize::from(head.name_len), 0);
        s.read_exact(&mut req[HEADER_LEN..])
            .expect("a request name");
        s.write_all(&reply).expect("the client reads the reply");
        then(&mut s);
    });
    (addr, thread)
}

/// A download that will be interrupted: the file served, and a work directory where an older
/// version of it already exists.
struct Interrupted {
    served: Fixture,
    data: Vec<u8>,
    _work: Fixture,
    target: std::path::PathBuf,
    part: std::path::PathBuf,
}

impl Interrupted {
    const NAME: &str = "big file.bin";
    const OLD: &[u8] = b"the previous version";

    fn new(size: usize, seed: u64) -> Self {
        let served = Fixture::empty();
        let data = pattern_bytes(size, seed);
        served.write(Self::NAME, &data);
        let work = Fixture::empty();
        let target = work.path().join(Self::NAME);
        std::fs::write(&target, Self::OLD).unwrap();
        let part = work.path().join(format!("{}.part", Self::NAME));
        Self {
            served,
            data,
            _work: work,
            target,
            part,
        }
    }

    /// A fake server's reply: the header announcing the whole file, then its first `sent` bytes.
    fn first_bytes(&self, sent: usize) -> Vec<u8> {
        [
            &protocol::encode_ok(self.data.len() as u64)[..],
            &self.data[..sent],
        ]
        .concat()
    }

    /// `get NAME -o TARGET` from `addr`, plus `extra` flags.
    fn get(&self, addr: &str, extra: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.args(["get", addr, Self::NAME])
            .args(extra)
            .arg("-o")
            .arg(&self.target);
        cmd
    }

    /// Checks that the old file is untouched and the .part holds a prefix of the file, of at
    /// most `sent` bytes; returns its length.
    fn check_interrupted(&self, sent: usize) -> usize {
        assert_eq!(std::fs::read(&self.target).unwrap(), Self::OLD);
        let got = std::fs::read(&self.part).unwrap();
        assert!(!got.is_empty() && got.len() <= sent, "{} bytes", got.len());
        assert!(
            self.data.starts_with(&got),
            "the .part is not a prefix of the file"
        );
        got.len()
    }

    /// `--continue` against the real server picks up at byte `from` and completes the file.
    fn resume_from(&self, from: usize) {
        let srv = TestServer::start(self.served.path(), |_| {});
        let out = run(&mut self.get(&srv.addr.to_string(), &["--continue"]));
        out.expect_code(0);
        let resumed = format!("resumed at byte {from}");
        assert!(out.stderr().contains(&resumed), "{}", out.describe());
        assert!(!self.part.exists());
        assert_eq!(sha256_file(&self.target), sha256(&self.data));
    }
}

#[test]
fn an_interrupted_download_keeps_the_old_file_and_resumes() {
    let case = Interrupted::new(8 << 20, 11);
    // A server that announces the whole file, sends its first 3 MiB, then drops the connection.
    let sent = 3 << 20;
    let (addr, fake) = fake_server(case.first_bytes(sent), |_| {});
    let out = run(&mut case.get(&addr, &["-q"]));
    fake.join().unwrap();
    out.expect_code(ExitCode::Protocol.code());
    // Every byte that arrived is in the .part.
    assert_eq!(case.check_interrupted(sent), sent);
    case.resume_from(sent);
}

#[test]
fn a_killed_download_keeps_the_old_file_and_resumes() {
    let case = Interrupted::new(32 << 20, 12);
    // A server that sends 24 MiB of the file. Its write returns only once the client has read
    // all but what the socket buffers hold (a few MiB on loopback), so the client is surely
    // mid-transfer, with a .part on disk, when it is killed; no destructor runs after SIGKILL.
    let sent = 24 << 20;
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (addr, fake) = fake_server(case.first_bytes(sent), move |s| {
        sent_tx.send(()).unwrap();
        // Keep the transfer open until the client is gone.
        let _ = s.read(&mut [0u8; 1]);
    });
    let mut child = ChildGuard::spawn(case.get(&addr, &["-q"]), "tcp-fileserv get");
    sent_rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("the client did not read ({e}): {}", child.stderr()));
    child.child().kill().unwrap();
    assert!(!child.child().wait().unwrap().success());
    fake.join().unwrap();
    let kept = case.check_interrupted(sent);
    case.resume_from(kept);
}

#[test]
fn a_transfer_cut_short_is_an_error_and_leaves_no_final_file() {
    // Announce 1000 bytes, send 10, close.
    let (addr, fake) = fake_server(
        [&protocol::encode_ok(1000)[..], &[7u8; 10]].concat(),
        |_| {},
    );
    let work = Fixture::empty();
    let out = run_bin(&["get", &addr, "short.bin"], work.path());
    fake.join().unwrap();
    out.expect_code(ExitCode::Protocol.code());
    assert!(
        out.stderr().contains("after 10 of 1000 bytes"),
        "{}",
        out.describe()
    );
    assert!(!work.path().join("short.bin").exists());
}

#[test]
fn library_download_resumes_and_refuses_an_impossible_resume() {
    let fx = Fixture::empty();
    let data = pattern_bytes(3 << 20, 21);
    fx.write("r.bin", &data);
    let srv = TestServer::start(fx.path(), |_| {});
    let work = Fixture::empty();
    let target = work.path().join("r.bin");
    std::fs::write(work.path().join("r.bin.part"), &data[..1_234_567]).unwrap();
    let opts = GetOptions {
        output: Dest::Path(target.clone()),
        resume: true,
        progress: false,
    };
    let s = client::download(&mut srv.client(), "r.bin", &opts).unwrap();
    assert_eq!(
        (s.resumed_from, s.bytes),
        (1_234_567, (3 << 20) - 1_234_567)
    );
    assert_eq!(sha256_file(&target), sha256(&data));
    // A part longer than the remote file cannot be resumed: exit code 10, part kept.
    std::fs::write(work.path().join("r.bin.part"), vec![0u8; (3 << 20) + 1]).unwrap();
    let err = client::download(&mut srv.client(), "r.bin", &opts).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Resume, "{err}");
    assert!(work.path().join("r.bin.part").exists());
    assert_eq!(sha256_file(&target), sha256(&data), "the old file is kept");
    // Nothing left to fetch: the complete file stays, nothing is sent.
    std::fs::remove_file(work.path().join("r.bin.part")).unwrap();
    let s = client::download(&mut srv.client(), "r.bin", &opts).unwrap();
    assert_eq!(
        (s.verb, s.bytes, s.resumed_from),
        ("already complete:", 0, 3 << 20)
    );
    assert_eq!(sha256_file(&target), sha256(&data));
}

#[test]
fn shutdown_lets_a_running_transfer_finish_and_stops_accepting() {
    let fx = Fixture::empty();
    fx.write("big.bin", &pattern_bytes(32 << 20, 8));
    let mut srv = TestServer::start(fx.path(), |_| {});
    let addr = srv.addr;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&request_bytes(Kind::Get, "big.bin", 0))
        .unwrap();
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    let len = protocol::decode_reply_header(&head)
        .unwrap()
        .unwrap()
        .length;
    // Ask for shutdown while the body is in flight (the client has read none of it yet).
    let stopper = std::thread::spawn(move || srv.stop());
    let mut body = Vec::new();
    s.take(len).read_to_end(&mut body).unwrap();
    assert_eq!(sha256(&body), sha256_file(&fx.path().join("big.bin")));
    stopper.join().unwrap();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
#[cfg_attr(
    not(peer_python3),
    ignore = "needs python3 (under CI=true this fails instead)"
)]
fn the_python_snippet_in_the_docs_works() {
    let python = require_tool("python3");
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tcp-protocol.md"),
    )
    .unwrap();
    let start = doc.find("```python\n").expect("python block in the doc") + 10;
    let len = doc[start..].find("```").expect("end of the python block");
    let work = Fixture::empty();
    let script = work.write("client.py", &doc.as_bytes()[start..start + len]);

    let fx = Fixture::with_hostile_files(200_000);
    let srv = TestServer::start(fx.path(), serve_dotfiles);
    let port = srv.addr.port().to_string();
    for name in hostile_names() {
        let out = run(Command::new(&python)
            .arg(&script)
            .args(["127.0.0.1", &port, &name]));
        out.expect_code(0);
        assert_eq!(
            sha256(&out.output.stdout),
            sha256_file(&fx.path().join(&name))
        );
    }
    let out = run(Command::new(&python)
        .arg(&script)
        .args(["127.0.0.1", &port, "../nope"]));
    out.expect_code(1);
    assert!(out.stderr().contains("refused"), "{}", out.describe());
}

#[test]
fn the_binary_prints_its_addresses_and_exits_cleanly_on_sigterm() {
    let fx = Fixture::with_hostile_files(1000);
    let mut cmd = bin();
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--root"])
        .arg(fx.path());
    let (mut child, stdout) = ChildGuard::spawn_with_stdout(cmd, "tcp-fileserv serve");
    // Its stdout, line by line, on a channel: a line (or the end, when the process exits) is
    // the event we wait for, with a limit.
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no banner line ({e}); stderr:\n{}", child.stderr()))
    };
    let banner = next_line();
    assert!(
        banner.contains(fx.path().canonicalize().unwrap().to_str().unwrap()),
        "{banner}"
    );
    let hint = next_line();
    let addr = hint
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {hint:?}"))
        .to_string();
    assert!(!addr.ends_with(":0"), "the bound port is printed: {hint}");
    let work = Fixture::empty();
    run_bin(&["get", "-q", &addr, &hostile_names()[0]], work.path()).expect_code(0);

    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    // Its stdout closes when it exits.
    match lines.recv_timeout(PATIENCE) {
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
        other => panic!("server did not stop on SIGTERM: {other:?}"),
    }
    let status = child.child().wait().unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        child.stderr()
    );
}

/// The `VmHWM` (peak resident set) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[test]
fn stalled_listings_of_a_100k_entry_directory_keep_the_server_bounded() {
    // 100,000 names of 100 characters: a listing body of 11.1 MB, far more than the socket
    // buffers of a client that reads nothing hold.
    let fx = Fixture::empty();
    let big = fx.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let pad = "n".repeat(90);
    for i in 0..100_000 {
        std::fs::File::create(big.join(format!("{pad}{i:010}"))).unwrap();
    }
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--io-timeout",
        "1",
        "--root",
    ])
    .arg(fx.path());
    let (mut child, stdout) = ChildGuard::spawn_with_stdout(cmd, "tcp-fileserv serve");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let _banner = lines.next();
    let hint = lines.next().expect("address line").unwrap();
    let addr: SocketAddr = hint
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {hint:?}"))
        .parse()
        .unwrap();
    let pid = child.id();
    // `n` clients ask for the listing at once and read nothing; each is reset by the server
    // once its listing stalls for the I/O timeout.
    let stall = |n: usize| {
        let clients: Vec<TcpStream> = (0..n)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&request_bytes(Kind::List, "big", 0)).unwrap();
                s
            })
            .collect();
        for s in &clients {
            assert_eq!(closed_by_server(s), Some(true), "stalled listing not reset");
        }
    };
    let base = peak_rss(pid);
    stall(1);
    let one = peak_rss(pid) - base;
    const N: usize = 16;
    stall(N);
    let all = peak_rss(pid) - base;
    eprintln!(
        "server peak RSS: {:.1} MB at start; +{:.1} MB for one stalled 100k-entry LIST, +{:.1} MB for {N} at once",
        base as f64 / 1e6,
        one as f64 / 1e6,
        all as f64 / 1e6
    );
    // The server still lists for a client that reads.
    let mut c = Client::connect(&HostPort::from(addr), PATIENCE).unwrap();
    assert_eq!(c.list("big").unwrap().len(), 100_000);
    drop(c);
    child.child().kill().unwrap();
    assert!(
        all < 6 * one.max(16 << 20),
        "{N} stalled listings grew the server by {all} bytes (one: {one})"
    );
}
