//! Two ftp-server instances over one shared directory behind HAProxy (TCP mode,
//! `send-proxy-v2`, `balance roundrobin`, health checks on `/ready`), as docs/scale-out.md
//! describes: a file uploaded through one session is downloaded byte-exact through another
//! that lands on the other instance; the lockout and the per-IP limit see the client's real
//! address (clients bind 127.0.0.x sources); stopping one instance leaves new sessions served
//! by the other. Data connections bypass HAProxy: each instance advertises its own passive
//! address and range.
//!
//! Which instance served a session is read from each instance's own `/metrics`
//! (`ftp_sessions_count`; the instances are separate processes, so separate registries).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use test_kit::{ChildGuard, Fixture, free_port, pattern_bytes, require_tool};

mod common;
use common::{Ftp, IO_TIMEOUT};

const BALANCER: [u8; 4] = [127, 0, 0, 1];

/// One spawned ftp-server instance: its FTP and health addresses.
struct Instance {
    child: ChildGuard,
    ftp: SocketAddr,
    health: SocketAddr,
}

/// Spawns the binary with `config` and reads its bound addresses from the start-up banner
/// (printed once its sockets are bound).
fn spawn_instance(name: &str, config: &Path) -> Instance {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftp-server"));
    cmd.arg("--config").arg(config);
    let (child, stdout) = ChildGuard::spawn_with_stdout(cmd, name);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !banner.iter().any(|l| l.starts_with("Accounts: ")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => banner.push(line),
            Err(e) => panic!("{name}: no banner ({e}): {banner:?}\n{}", child.stderr()),
        }
    }
    let find = |prefix: &str, suffix: &str| -> SocketAddr {
        banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|a| a.trim_end_matches(suffix))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no {prefix} in {banner:?}"))
    };
    let ftp = find("ftp://", "/");
    let health = find("Health: http://", "/ready");
    Instance { child, ftp, health }
}

/// `GET /metrics` of an instance; the value of the unlabelled metric `name`.
fn metric(health: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect_timeout(&health, IO_TIMEOUT).expect("health connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse().expect("metric value"))
}

/// The cluster: a shared root, two instances, HAProxy in front.
struct Cluster {
    root: Fixture,
    a: Instance,
    b: Instance,
    _haproxy: ChildGuard,
    front: SocketAddr,
}

impl Cluster {
    fn start() -> Self {
        let haproxy = require_tool("haproxy");
        let root = Fixture::empty();
        root.write("pub/welcome.txt", b"hello\n");
        root.write("alice/.keep", b"");
        let pw = ftp_server::hash_password_with_cost("alice pw", 64, 1).expect("hash");
        let instance = |name: &str| {
            // Each instance its own passive range (one free port is enough for these
            // sequential transfers) and its own advertised address.
            let passive = free_port();
            let config = root.path().join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    r#"root = "."
bind = "127.0.0.1:0"
health_bind = "127.0.0.1:0"
passive_ports = "{passive}-{passive}"
passive_host = "127.0.0.1"
proxy_protocol = true
proxy_from = ["127.0.0.1/32"]
max_connections_per_ip = 1
max_login_failures = 2
login_lockout_secs = 600

[anonymous]
home = "pub"

[[users]]
name = "alice"
password = "{pw}"
home = "alice"
write = true
"#
                ),
            )
            .expect("config");
            spawn_instance(name, &config)
        };
        let a = instance("ftp-a");
        let b = instance("ftp-b");
        let front = SocketAddr::from((BALANCER, free_port()));
        let cfg = root.path().join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(front, &a, &b)).expect("haproxy.cfg");
        let mut cmd = Command::new(haproxy);
        cmd.arg("-db").arg("-f").arg(&cfg);
        let mut guard = ChildGuard::spawn(cmd, "haproxy");
        // Up when a session through it gets its greeting (HAProxy starts its servers UP).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = guard.child().try_wait() {
                panic!("haproxy exited ({status}):\n{}", guard.stderr());
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&front, IO_TIMEOUT) {
                s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                let mut first = [0u8; 3];
                if s.read_exact(&mut first).is_ok() && &first == b"220" {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "haproxy never came up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            root,
            a,
            b,
            _haproxy: guard,
            front,
        }
    }

    fn sessions(&self) -> (u64, u64) {
        (
            metric(self.a.health, "ftp_sessions_count"),
            metric(self.b.health, "ftp_sessions_count"),
        )
    }

    /// A session through HAProxy from `src`, greeted (or refused: code ≠ 220).
    fn open(&self, src: [u8; 4]) -> (Ftp, u16) {
        Ftp::open(src, self.front, b"")
    }
}

/// The configuration docs/scale-out.md shows, with this test's ports.
fn haproxy_config(front: SocketAddr, a: &Instance, b: &Instance) -> String {
    format!(
        r#"global
    maxconn 256

defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    retries 2
    option redispatch

frontend ftp
    bind {front}
    default_backend ftp_servers

backend ftp_servers
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready
    server a {a_ftp} send-proxy-v2 check port {a_health} inter 200ms fall 1 rise 2
    server b {b_ftp} send-proxy-v2 check port {b_health} inter 200ms fall 1 rise 2
"#,
        a_ftp = a.ftp,
        a_health = a.health.port(),
        b_ftp = b.ftp,
        b_health = b.health.port(),
    )
}

#[test]
#[cfg_attr(
    not(peer_haproxy),
    ignore = "needs haproxy (under CI=true this fails instead)"
)]
fn an_upload_through_one_instance_is_downloaded_through_the_other() {
    let c = Cluster::start();
    let before = c.sessions();
    let body = pattern_bytes(300_000, 7);
    let name = "shared ünï %20 -upload.bin";
    let (mut up, code) = c.open([127, 0, 0, 2]);
    assert_eq!(code, 220);
    assert_eq!(up.login("alice", "alice pw"), 230);
    assert_eq!(up.cmd("TYPE I"), 200);
    assert_eq!(up.stor([127, 0, 0, 2], name, &body), 226);
    let after_up = c.sessions();
    let (mut down, code) = c.open([127, 0, 0, 3]);
    assert_eq!(code, 220);
    assert_eq!(down.login("alice", "alice pw"), 230);
    assert_eq!(down.cmd("TYPE I"), 200);
    assert_eq!(down.retr([127, 0, 0, 3], name), Ok(body.clone()));
    let after_down = c.sessions();
    let uploader_a = after_up.0 > before.0;
    assert_ne!(
        uploader_a,
        after_up.1 > before.1,
        "exactly one instance took the upload: {before:?} {after_up:?}"
    );
    if uploader_a {
        assert!(after_down.1 > after_up.1, "download on b: {after_down:?}");
    } else {
        assert!(after_down.0 > after_up.0, "download on a: {after_down:?}");
    }
    assert_eq!(
        std::fs::read(c.root.path().join("alice").join(name)).expect("in the shared root"),
        body
    );
}

#[test]
#[cfg_attr(
    not(peer_haproxy),
    ignore = "needs haproxy (under CI=true this fails instead)"
)]
fn lockout_and_per_ip_limits_see_the_real_client_through_haproxy() {
    let c = Cluster::start();
    // Per-IP limit of 1 per instance: the client's two sessions land on the two instances,
    // its third is refused; another client behind the same balancer still gets in.
    let (_s1, c1) = c.open([127, 0, 0, 4]);
    let (_s2, c2) = c.open([127, 0, 0, 4]);
    let (_s3, c3) = c.open([127, 0, 0, 4]);
    assert_eq!((c1, c2, c3), (220, 220, 421), "one session per instance");
    let (_o, code) = c.open([127, 0, 0, 5]);
    assert_eq!(code, 220, "another client");
    // Lockout after two failures per instance: failures from 127.0.0.6 until each instance
    // has seen two (each instance's own `ftp_auth_failures`) lock it out of both; 127.0.0.7
    // still logs in.
    let failures = |c: &Cluster| {
        (
            metric(c.a.health, "ftp_auth_failures"),
            metric(c.b.health, "ftp_auth_failures"),
        )
    };
    for _ in 0..20 {
        let (fa, fb) = failures(&c);
        if fa >= 2 && fb >= 2 {
            break;
        }
        let mut s = open_when_free(&c, [127, 0, 0, 6]);
        assert_eq!(s.login("alice", "wrong"), 530);
        assert_eq!(s.cmd("QUIT"), 221);
    }
    let (fa, fb) = failures(&c);
    assert!(fa >= 2 && fb >= 2, "failures on both: {fa} {fb}");
    for _ in 0..4 {
        let mut s = open_when_free(&c, [127, 0, 0, 6]);
        assert_eq!(s.login("alice", "alice pw"), 530, "locked out everywhere");
        assert_eq!(s.cmd("QUIT"), 221);
    }
    let (mut s, code) = c.open([127, 0, 0, 7]);
    assert_eq!(code, 220);
    assert_eq!(s.login("alice", "alice pw"), 230);
}

/// A session from `src` once an instance has a per-IP slot for it again (an instance gives
/// the slot back when it has seen the previous session's close).
fn open_when_free(c: &Cluster, src: [u8; 4]) -> Ftp {
    for _ in 0..500 {
        let (s, code) = c.open(src);
        if code == 220 {
            return s;
        }
        assert_eq!(code, 421, "only the per-IP limit may refuse");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("per-IP slot of {src:?} never given back");
}

#[test]
#[cfg_attr(
    not(peer_haproxy),
    ignore = "needs haproxy (under CI=true this fails instead)"
)]
fn stopping_one_instance_leaves_new_sessions_to_the_other() {
    let mut c = Cluster::start();
    let (_, b_before) = c.sessions();
    c.a.child.child().kill().expect("kill a");
    let _ = c.a.child.child().wait();
    for i in 0..6u8 {
        let (mut s, code) = c.open([127, 0, 0, 10 + i]);
        assert_eq!(code, 220, "session {i} after a stopped");
        assert_eq!(s.login("anonymous", "a@b"), 230);
        assert_eq!(
            s.retr([127, 0, 0, 10 + i], "welcome.txt"),
            Ok(b"hello\n".to_vec())
        );
        assert_eq!(s.cmd("QUIT"), 221);
    }
    let b_after = metric(c.b.health, "ftp_sessions_count");
    assert!(
        b_after >= b_before + 6,
        "b served them: {b_before} -> {b_after}"
    );
}
