//! `get --segments N` against real servers (our ftp-server in-process, vsftpd, pyftpdlib):
//! byte-exact for an odd size with N=4 and for N larger than the file; and against a fake
//! server written here for what real servers do not do on demand: refuse a second session (the
//! download goes on with one), refuse REST (one stream), ignore REST (detected by the probe:
//! exit 36, no file, no `.part`), ignore it only after the probe (detected by the last range,
//! the `.part` removed), and cut a range midway (the `.part` and its state stay; `-C` finishes
//! without fetching again what had arrived).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::{accept_within, client, enc, exit_code, path_str};
use ftp_client::Report;
use test_kit::peers::{start_pyftpdlib, start_vsftpd};
use test_kit::{Fixture, pattern_bytes};

/// A hostile-but-legal name for the served file.
const NAME: &str = "-seg ment ü.bin";
/// An odd size, not a multiple of any segment count.
const SIZE: usize = 1_000_003;

/// Fetches `url` with `--segments n` into a fresh directory; returns the bytes and the trace.
fn fetch(url: &str, n: usize) -> (Vec<u8>, String) {
    let out = Fixture::empty();
    let dest = out.path().join("got.bin");
    let (r, _, trace) = client(&[
        "get",
        "--segments",
        &n.to_string(),
        "-o",
        path_str(&dest),
        url,
    ]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["got.bin"], "no .part or state left");
    (std::fs::read(&dest).unwrap(), trace)
}

/// The scenario every real server gets: `root` is what `base` (an ftp:// URL) serves.
fn scenario(base: &str, root: &Path) {
    let big = pattern_bytes(SIZE, 11);
    std::fs::write(root.join(NAME), &big).unwrap();
    std::fs::write(root.join("tiny.bin"), b"abcde").unwrap();

    let (got, trace) = fetch(&format!("{base}/{}", enc(NAME)), 4);
    assert!(got == big, "byte-exact ({} bytes)", got.len());
    // Four sessions were opened; the ranges go to whichever is free (on loopback the first
    // may finish its range before the last has logged in), each at its offset (the first
    // range needs no REST).
    for k in 2..=4 {
        assert!(
            trace.contains(&format!("[{k}] * connecting")),
            "session {k}:\n{trace}"
        );
    }
    for start in [SIZE / 4, SIZE / 2, SIZE * 3 / 4] {
        assert!(
            trace.contains(&format!("> REST {start}\n")),
            "REST {start}\n{trace}"
        );
    }

    // More sessions than bytes: a range of one byte each.
    let (got, trace) = fetch(&format!("{base}/tiny.bin"), 16);
    assert_eq!(got, b"abcde");
    assert!(trace.contains("[5] * connecting"), "{trace}");
    for start in 1..5 {
        assert!(
            trace.contains(&format!("> REST {start}\n")),
            "REST {start}\n{trace}"
        );
    }
    assert!(
        !trace.contains("[6] "),
        "no more sessions than bytes\n{trace}"
    );
}

#[test]
fn segments_from_our_ftp_server() {
    let root = Fixture::empty();
    std::fs::create_dir(root.path().join("pub")).unwrap();
    let cfg = ftp_server::Config::from_toml_str(
        "root = \".\"\n\n[anonymous]\nhome = \"pub\"\n",
        root.path(),
    )
    .expect("anonymous config");
    let srv = ftp_server::BackgroundServer::start(cfg).expect("start ftp-server");
    scenario(&format!("ftp://{}", srv.addr()), &root.path().join("pub"));
    srv.stop().expect("stop");
}

#[test]
#[cfg_attr(
    not(peer_vsftpd),
    ignore = "needs vsftpd (under CI=true this fails instead)"
)]
fn segments_from_vsftpd() {
    let root = Fixture::empty();
    let peer = start_vsftpd(root.path());
    scenario(&peer.url(), root.path());
}

#[test]
#[cfg_attr(
    not(peer_pyftpdlib),
    ignore = "needs pyftpdlib (under CI=true this fails instead)"
)]
fn segments_from_pyftpdlib() {
    let root = Fixture::empty();
    let peer = start_pyftpdlib(root.path(), &[]);
    scenario(&peer.url(), root.path());
}

/// How the fake misbehaves.
#[derive(Default)]
struct Behaviour {
    /// More sessions at once than this get `421` as their greeting.
    max_sessions: Option<usize>,
    /// `REST` gets `502`.
    no_rest: bool,
    /// `REST` gets `350`, and `RETR` then sends from byte 0 all the same.
    ignore_rest: bool,
    /// As `ignore_rest`, except for `REST size-1` (the client's probe), which is honoured.
    ignore_rest_but_the_probe: bool,
    /// `(from, at)`: the first RETR from byte `from` stops at byte `at` with `426`.
    cut: Mutex<Option<(usize, usize)>>,
}

/// A fake FTP server serving one file, `/data.bin`, in threads (one per session).
struct Fake {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Every command line received, and `(refused with 421)` for each refused session.
    log: Arc<Mutex<Vec<String>>>,
    accept: Option<JoinHandle<()>>,
}

struct Served {
    file: Vec<u8>,
    how: Behaviour,
    log: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start(file: Vec<u8>, how: Behaviour) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Served {
            file,
            how,
            log: log.clone(),
        });
        let stop2 = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let accept = std::thread::spawn(move || {
            while let Some(mut s) = accept_within(&l) {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if shared
                    .how
                    .max_sessions
                    .is_some_and(|m| active.load(Ordering::SeqCst) >= m)
                {
                    shared.log.lock().unwrap().push("(refused with 421)".into());
                    let _ = s.write_all(b"421 Too many connections from your address\r\n");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (shared, active) = (shared.clone(), active.clone());
                std::thread::spawn(move || {
                    session(s, &shared);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            stop,
            log,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("ftp://{}/data.bin", self.addr)
    }

    fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn session(s: TcpStream, sv: &Served) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 fake segments\r\n");
    let mut data: Option<TcpListener> = None;
    let mut rest = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        sv.log.lock().unwrap().push(line.clone());
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 pw\r\n".to_string(),
            "PASS" => "230 ok\r\n".into(),
            "TYPE" => "200 ok\r\n".into(),
            "SIZE" if arg == "data.bin" => format!("213 {}\r\n", sv.file.len()),
            "EPSV" => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                data = Some(l);
                format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
            }
            "REST" if sv.how.no_rest => "502 REST not implemented\r\n".into(),
            "REST" => {
                rest = arg.parse().unwrap_or(0);
                "350 ok\r\n".into()
            }
            "RETR" if arg == "data.bin" => {
                let probe = rest + 1 == sv.file.len();
                let ignored = sv.how.ignore_rest || (sv.how.ignore_rest_but_the_probe && !probe);
                let start = if ignored { 0 } else { rest };
                rest = 0;
                let _ = w.write_all(b"150 here it comes\r\n");
                let Some(mut d) = data.take().as_ref().and_then(accept_within) else {
                    return;
                };
                let mut end = sv.file.len();
                let mut cut = false;
                if let Some((_, at)) = sv.how.cut.lock().unwrap().take_if(|c| c.0 == start) {
                    (end, cut) = (at, true);
                }
                let mut ok = true;
                for piece in sv.file[start.min(end)..end].chunks(16 << 10) {
                    if d.write_all(piece).is_err() {
                        ok = false;
                        break;
                    }
                }
                drop(d);
                if cut || !ok {
                    "426 Connection closed; transfer aborted\r\n".into()
                } else {
                    "226 done\r\n".into()
                }
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n");
                return;
            }
            _ => "502 not here\r\n".into(),
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs `get --segments 4` (plus `extra`) from `fake` into `dest`.
fn get4(fake: &Fake, dest: &Path, extra: &[&str]) -> (u8, String) {
    let (code, _, log) = get4_report(fake, dest, extra);
    (code, log)
}

/// [`get4`], also returning the summary of a success.
fn get4_report(fake: &Fake, dest: &Path, extra: &[&str]) -> (u8, Option<Report>, String) {
    let mut args = vec!["get", "--segments", "4", "-o", path_str(dest)];
    args.extend_from_slice(extra);
    let url = fake.url();
    args.push(&url);
    let (r, _, trace) = client(&args);
    let code = exit_code(&r);
    let log = format!("{r:?}\n{trace}");
    (code, r.ok(), log)
}

fn part_of(dest: &Path) -> std::path::PathBuf {
    dest.with_file_name("got.bin.part")
}

fn state_of(dest: &Path) -> std::path::PathBuf {
    dest.with_file_name("got.bin.part.segments")
}

#[test]
fn a_refused_second_session_leaves_the_download_to_the_first() {
    let file = pattern_bytes(300_001, 5);
    let fake = Fake::start(
        file.clone(),
        Behaviour {
            max_sessions: Some(1),
            ..Behaviour::default()
        },
    );
    let out = Fixture::empty();
    let dest = out.path().join("got.bin");
    let (code, log) = get4(&fake, &dest, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(std::fs::read(&dest).unwrap() == file, "byte-exact");
    assert!(
        fake.commands().iter().any(|c| c == "(refused with 421)"),
        "{log}"
    );
    assert!(!part_of(&dest).exists() && !state_of(&dest).exists());
}

#[test]
fn a_server_without_rest_gets_one_stream() {
    let file = pattern_bytes(200_003, 6);
    let fake = Fake::start(
        file.clone(),
        Behaviour {
            no_rest: true,
            ..Behaviour::default()
        },
    );
    let out = Fixture::empty();
    let dest = out.path().join("got.bin");
    let (code, log) = get4(&fake, &dest, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(std::fs::read(&dest).unwrap() == file, "byte-exact");
    let retrs = fake
        .commands()
        .iter()
        .filter(|c| c.starts_with("RETR"))
        .count();
    assert_eq!(retrs, 1, "one stream: {log}");
}

#[test]
fn a_server_that_ignores_rest_is_caught_before_any_file_is_written() {
    let file = pattern_bytes(400_000, 7);
    let fake = Fake::start(
        file,
        Behaviour {
            ignore_rest: true,
            ..Behaviour::default()
        },
    );
    let out = Fixture::empty();
    let dest = out.path().join("got.bin");
    std::fs::write(&dest, b"an older file that must survive").unwrap();
    let (code, log) = get4(&fake, &dest, &[]);
    assert_eq!(code, 36, "{log}");
    assert!(log.contains("does not honour REST"), "{log}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"an older file that must survive"
    );
    assert!(
        !part_of(&dest).exists() && !state_of(&dest).exists(),
        "{log}"
    );
    // Only the probe's RETR ran: no segment session was started.
    let retrs = fake
        .commands()
        .iter()
        .filter(|c| c.starts_with("RETR"))
        .count();
    assert_eq!(retrs, 1, "{log}");
}

#[test]
fn rest_ignored_after_the_probe_is_caught_by_the_last_range() {
    let file = pattern_bytes(400_000, 9);
    let fake = Fake::start(
        file,
        Behaviour {
            ignore_rest_but_the_probe: true,
            ..Behaviour::default()
        },
    );
    let out = Fixture::empty();
    let dest = out.path().join("got.bin");
    std::fs::write(&dest, b"an older file that must survive").unwrap();
    let (code, log) = get4(&fake, &dest, &[]);
    assert_eq!(code, 36, "{log}");
    assert!(log.contains("does not honour REST"), "{log}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"an older file that must survive"
    );
    // The middle ranges wrote bytes from the wrong offsets: the part is removed, not kept.
    assert!(
        !part_of(&dest).exists() && !state_of(&dest).exists(),
        "{log}"
    );
}

#[test]
fn an_interrupted_download_resumes_each_range_with_continue() {
    let size = 800_000;
    let file = pattern_bytes(size, 8);
    // The cut falls inside the third of four ranges (600 000 .. 800 000 is the last).
    let fake = Fake::start(
        file.clone(),
        Behaviour {
            cut: Mutex::new(Some((400_000, 500_000))),
            ..Behaviour::default()
        },
    );
    let out = Fixture::empty();
    let dest = out.path().join("got.bin");
    std::fs::write(&dest, b"old").unwrap();
    let (code, log) = get4(&fake, &dest, &[]);
    assert_eq!(code, 18, "{log}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"old",
        "never replaced on failure"
    );
    assert!(part_of(&dest).exists() && state_of(&dest).exists(), "{log}");
    let state = std::fs::read_to_string(state_of(&dest)).unwrap();
    assert!(state.contains("400000 600000 100000\n"), "{state}");

    let kept = 100_000
        + state
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with("400000 "))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>();

    let (code, report, log) = get4_report(&fake, &dest, &["-C"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        std::fs::read(&dest).unwrap() == file,
        "byte-exact after resume"
    );
    assert!(!part_of(&dest).exists() && !state_of(&dest).exists());
    // What the state counted as done was not fetched again.
    let report = report.unwrap();
    assert_eq!(report.resumed_from, kept, "{log}");
    assert_eq!(report.bytes, size as u64 - kept, "{log}");
    assert!(
        log.contains("> REST 500000\n"),
        "continued at the cut\n{log}"
    );
}
