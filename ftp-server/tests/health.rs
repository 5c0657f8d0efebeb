//! The health endpoint (`health_bind`, `ftp_server::health`), driven with curl: `/live`,
//! `/ready` (200 while accepting, 503 while shutting down with a transfer still running) and
//! `/metrics` (libunftp's Prometheus metrics, which count the sessions and bytes served).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ftp_server::{BackgroundServer, Config};
use test_kit::{Fixture, require_tool, run};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const FILE: &str = "hostile ünï %20 name.txt";

fn start(f: &Fixture) -> BackgroundServer {
    let text =
        "health_bind = \"127.0.0.1:0\"\n\n[anonymous]\nhome = \"pub\"\nupload_dir = \"incoming\"\n";
    let cfg = Config::from_toml_str(text, f.path()).expect("valid config");
    BackgroundServer::start(cfg).expect("start server")
}

/// `GET url` with curl: the status code and the body.
fn get(curl: &Path, health: SocketAddr, path: &str) -> (u16, String) {
    let ran = run(Command::new(curl).args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        &format!("http://{health}{path}"),
    ]));
    ran.expect_code(0);
    let out = ran.stdout();
    let (body, code) = out.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

fn reply(r: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    r.read_line(&mut line).expect("reply");
    line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
#[cfg_attr(
    not(peer_curl),
    ignore = "needs curl (under CI=true this fails instead)"
)]
fn live_ready_and_metrics_then_not_ready_while_shutting_down() {
    let curl = require_tool("curl");
    let f = Fixture::empty();
    f.write(&format!("pub/{FILE}"), &test_kit::pattern_bytes(10_000, 3));
    f.write("pub/incoming/.keep", b"");
    let srv = start(&f);
    let health = srv.health_addr().expect("health endpoint");
    assert_eq!(get(&curl, health, "/live").0, 200);
    assert_eq!(get(&curl, health, "/ready"), (200, "ready\n".into()));
    assert_eq!(get(&curl, health, "/nope").0, 404);

    // A download through curl, then the metrics count it.
    let enc = FILE.replace('%', "%25").replace(' ', "%20");
    let ran = run(Command::new(&curl).args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        &format!("ftp://{}/{enc}", srv.addr()),
    ]));
    ran.expect_code(0);
    let (code, metrics) = get(&curl, health, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "ftp_sessions_count",
        "ftp_backend_read_bytes",
        "ftp_command_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let read: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ftp_backend_read_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ftp_backend_read_bytes value");
    assert!(read >= 10_000, "{read} bytes read");

    // An upload that stays open holds the shutdown in its grace period: meanwhile /ready says
    // 503 and /live still 200.
    let s = TcpStream::connect_timeout(&srv.addr(), IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    assert_eq!(reply(&mut r), 220);
    for (cmd, want) in [("USER anonymous", 331), ("PASS a@b", 230), ("TYPE I", 200)] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).expect("send");
        assert_eq!(reply(&mut r), want, "{cmd}");
    }
    w.write_all(b"EPSV\r\n").expect("send");
    let mut line = String::new();
    r.read_line(&mut line).expect("EPSV");
    let port: u16 = line
        .split("(|||")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .and_then(|p| p.parse().ok())
        .expect("EPSV port");
    let mut data = TcpStream::connect_timeout(&SocketAddr::new(srv.addr().ip(), port), IO_TIMEOUT)
        .expect("data");
    w.write_all(b"STOR incoming/held open.bin\r\n")
        .expect("send");
    assert_eq!(reply(&mut r), 150);
    data.write_all(b"some bytes").expect("data");
    // The upload is running once its temporary file exists (the server counts it as running
    // before creating it); only then does the shutdown have a transfer to wait for.
    let incoming = f.path().join("pub/incoming");
    for _ in 0..500 {
        if std::fs::read_dir(&incoming).expect("incoming").count() > 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        std::fs::read_dir(&incoming).expect("incoming").count() > 1,
        "the upload never started"
    );
    let stopper = std::thread::spawn(move || srv.stop());
    let mut status = 0;
    for _ in 0..500 {
        status = get(&curl, health, "/ready").0;
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 503, "not ready while shutting down");
    assert_eq!(get(&curl, health, "/live").0, 200);
    drop(data);
    assert_eq!(reply(&mut r), 226, "the running upload finished");
    stopper.join().expect("join").expect("stopped");
}
