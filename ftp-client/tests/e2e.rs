//! End-to-end tests of ftp-client: the library against vsftpd and pyftpdlib started on loopback,
//! small fake servers written here for the failures real servers don't produce on demand, and a
//! few runs of the binary for exit codes, stdout and the masked trace.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;

use common::{accept_within, client, enc, exit_code, path_str};
use ftp_client::{ClientError, Report};
use test_kit::peers::{start_pyftpdlib, start_vsftpd};
use test_kit::{Fixture, hostile_names, pattern_bytes, run, sha256, sha256_file};

/// A root with `pub/sub dir/` holding every hostile name (distinct 70 KB contents).
fn hostile_root() -> Fixture {
    let f = Fixture::empty();
    for (i, name) in hostile_names().iter().enumerate() {
        f.write(
            &format!("pub/sub dir/{name}"),
            &pattern_bytes(70_000 + i, i as u64 + 1),
        );
    }
    f.write("pub/big.bin", &pattern_bytes(5 << 20, 99));
    f
}

fn get_all_hostile(host_arg: &str, url: &str, root: &Path, port: &str) {
    let out = Fixture::empty();
    for name in hostile_names() {
        let want = sha256_file(&root.join("pub/sub dir").join(&name));
        // Three-part form: names literal, `--` before a name with a leading dash.
        let dest = out.path().join("three");
        std::fs::create_dir_all(&dest).unwrap();
        let (r, _, trace) = client(&[
            "get",
            "--port",
            port,
            "-o",
            path_str(&dest),
            host_arg,
            "pub/sub dir",
            "--",
            &name,
        ]);
        assert!(r.is_ok(), "{name:?}: {r:?}\n{trace}");
        assert_eq!(sha256_file(&dest.join(&name)), want, "{name:?}");
        assert!(trace.contains("> TYPE I"), "TYPE I is sent: {trace}");
        // URL form: each segment percent-encoded.
        let dest = out.path().join("url");
        std::fs::create_dir_all(&dest).unwrap();
        let u = format!("{url}/pub/{}/{}", enc("sub dir"), enc(&name));
        let (r, _, trace) = client(&["get", "-o", path_str(&dest), &u]);
        assert!(r.is_ok(), "{u}: {r:?}\n{trace}");
        assert_eq!(sha256_file(&dest.join(&name)), want, "{name:?}");
        assert!(
            std::fs::read_dir(&dest).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".part")),
            "no .part left after success"
        );
    }
}

#[test]
#[cfg_attr(
    not(peer_vsftpd),
    ignore = "needs vsftpd (under CI=true this fails instead)"
)]
fn vsftpd_get_hostile_names_both_forms_anonymous() {
    let root = hostile_root();
    let peer = start_vsftpd(root.path());
    let port = peer.addr.port().to_string();
    get_all_hostile("127.0.0.1", &peer.url(), root.path(), &port);
}

#[test]
#[cfg_attr(
    not(peer_pyftpdlib),
    ignore = "needs pyftpdlib (under CI=true this fails instead)"
)]
fn pyftpdlib_get_hostile_names_both_forms_anonymous() {
    let root = hostile_root();
    let peer = start_pyftpdlib(root.path(), &[]);
    let port = peer.addr.port().to_string();
    get_all_hostile("127.0.0.1", &peer.url(), root.path(), &port);
}

fn check_listing(out: &str, root: &Path) {
    for name in hostile_names() {
        let size = std::fs::metadata(root.join("pub/sub dir").join(&name))
            .unwrap()
            .len();
        let line = out
            .lines()
            .find(|l| l.ends_with(&format!("  {name}")))
            .unwrap_or_else(|| panic!("{name:?} missing from listing:\n{out}"));
        assert!(line.starts_with('-'), "{line}");
        assert!(
            line.contains(&format!(" {size}  ")),
            "size of {name:?}: {line}"
        );
        // A modification time YYYY-MM-DD.
        assert!(
            line.split_whitespace()
                .nth(2)
                .is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-'),
            "{line}"
        );
    }
}

#[test]
#[cfg_attr(
    not(all(peer_vsftpd, peer_pyftpdlib)),
    ignore = "needs vsftpd and pyftpdlib (under CI=true this fails instead)"
)]
fn ls_list_from_vsftpd_and_mlsd_from_pyftpdlib() {
    let root = hostile_root();
    {
        let v = start_vsftpd(root.path());
        let (r, out, trace) = client(&["ls", &format!("{}/pub/sub%20dir/", v.url())]);
        assert!(r.is_ok(), "{r:?}\n{trace}");
        assert!(
            trace.contains("> LIST") && !trace.contains("> MLSD"),
            "{trace}"
        );
        check_listing(&out, root.path());
        let (r, out, _) = client(&["ls", "--raw", &v.hostport(), "pub"]);
        assert!(r.is_ok());
        assert!(
            out.lines()
                .any(|l| l.starts_with('d') && l.ends_with(" sub dir")),
            "{out}"
        );
    }
    {
        let p = start_pyftpdlib(root.path(), &[]);
        let (r, out, trace) = client(&["ls", &p.hostport(), "pub/sub dir"]);
        assert!(r.is_ok(), "{r:?}\n{trace}");
        assert!(trace.contains("> MLSD"), "{trace}");
        check_listing(&out, root.path());
        let (r, out, _) = client(&["ls", &p.hostport(), "pub"]);
        assert!(r.is_ok());
        assert!(
            out.lines()
                .any(|l| l.starts_with('d') && l.ends_with(" sub dir/")),
            "{out}"
        );
    }
}

#[test]
#[cfg_attr(
    not(peer_pyftpdlib),
    ignore = "needs pyftpdlib (under CI=true this fails instead)"
)]
fn named_login_netrc_put_and_resumed_upload_on_pyftpdlib() {
    let root = hostile_root();
    let p = start_pyftpdlib(root.path(), &[("alice", "s3cr:et w")]);
    let hp = p.hostport();
    let local = Fixture::empty();
    let data = pattern_bytes(3_000_000, 7);
    let src = local.write("-leading dash ünï.bin", &data);

    // Named login with -u USER:PASS (a colon inside the password), upload to DIR.
    let (r, _, trace) = client(&["put", "-u", "alice:s3cr:et w", path_str(&src), &hp, "pub"]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(
        trace.contains("> PASS ****") && !trace.contains("s3cr"),
        "masked: {trace}"
    );
    let up = root.path().join("pub/-leading dash ünï.bin");
    assert_eq!(sha256_file(&up), sha256(&data));

    // The same user from a netrc file, uploading under a new name given in the URL.
    let netrc = local.write(
        "netrc",
        b"machine 127.0.0.1\n  login alice\n  password \"s3cr:et w\"\n",
    );
    let url = format!("{}/pub/{}", p.url(), enc("renamed %20.bin"));
    let (r, _, trace) = client(&[
        "put",
        "--netrc-file",
        path_str(&netrc),
        path_str(&src),
        &url,
    ]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(
        sha256_file(&root.path().join("pub/renamed %20.bin")),
        sha256(&data)
    );

    // Resume an upload cut in half: -C sends only the rest, with APPE.
    std::fs::write(&up, &data[..1_234_567]).unwrap();
    let (r, _, trace) = client(&[
        "put",
        "-C",
        "-u",
        "alice:s3cr:et w",
        path_str(&src),
        &hp,
        "pub",
    ]);
    let rep = r.unwrap_or_else(|e| panic!("{e}\n{trace}"));
    assert_eq!(rep.bytes, 3_000_000 - 1_234_567);
    assert!(trace.contains("> APPE "), "{trace}");
    assert_eq!(sha256_file(&up), sha256(&data));

    // Wrong password: 67. Anonymous upload: refused (25), not a success.
    let (r, _, _) = client(&["put", "-u", "alice:wrong", path_str(&src), &hp, "pub"]);
    assert_eq!(exit_code(&r), 67, "{r:?}");
    let (r, _, _) = client(&["put", path_str(&src), &hp, "pub"]);
    assert_eq!(exit_code(&r), 25, "{r:?}");

    // Named login for a download too.
    let out = local.path().join("got.bin");
    let (r, _, _) = client(&[
        "get",
        "-u",
        "alice:s3cr:et w",
        "-o",
        path_str(&out),
        &hp,
        "pub",
        "big.bin",
    ]);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        sha256_file(&out),
        sha256_file(&root.path().join("pub/big.bin"))
    );
}

#[test]
#[cfg_attr(
    not(all(peer_vsftpd, peer_pyftpdlib)),
    ignore = "needs vsftpd and pyftpdlib (under CI=true this fails instead)"
)]
fn resume_partial_download_on_both_servers() {
    let root = hostile_root();
    let want = sha256_file(&root.path().join("pub/big.bin"));
    let full = std::fs::read(root.path().join("pub/big.bin")).unwrap();
    let servers = [start_vsftpd(root.path()), start_pyftpdlib(root.path(), &[])];
    for peer in &servers {
        let out = Fixture::empty();
        let dest = out.path().join("big.bin");
        // An interrupted earlier run left 1 MB + 3 bytes in big.bin.part.
        out.write("big.bin.part", &full[..1_000_003]);
        let (r, _, trace) = client(&[
            "get",
            "-C",
            "-o",
            path_str(&dest),
            &peer.hostport(),
            "pub",
            "big.bin",
        ]);
        let rep = r.unwrap_or_else(|e| panic!("{e}\n{trace}"));
        assert!(trace.contains("> REST 1000003"), "{trace}");
        assert_eq!(rep.bytes, full.len() as u64 - 1_000_003);
        assert_eq!(sha256_file(&dest), want);
        assert!(!out.path().join("big.bin.part").exists());
        // A local copy larger than the remote file cannot be resumed: 36.
        out.write("big.bin.part", &pattern_bytes(full.len() + 10, 1));
        let (r, _, _) = client(&[
            "get",
            "-C",
            "-o",
            path_str(&dest),
            &peer.hostport(),
            "pub",
            "big.bin",
        ]);
        assert_eq!(exit_code(&r), 36, "{r:?}");
    }
}

#[test]
#[cfg_attr(
    not(all(peer_vsftpd, peer_pyftpdlib)),
    ignore = "needs vsftpd and pyftpdlib (under CI=true this fails instead)"
)]
fn refusals_map_to_curl_exit_codes() {
    let root = hostile_root();
    let out = Fixture::empty();
    let o = path_str(out.path());
    {
        let v = start_vsftpd(root.path());
        let hp = v.hostport();
        let (r, _, _) = client(&["get", "-o", o, &hp, "pub", "no such file"]);
        assert_eq!(exit_code(&r), 78, "{r:?}");
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("127.0.0.1") && msg.contains("no such file") && msg.contains("550"),
            "{msg}"
        );
        let (r, _, _) = client(&["get", "-o", o, &hp, "pub/missing dir", "f"]);
        assert_eq!(exit_code(&r), 9, "{r:?}");
        let (r, _, _) = client(&["ls", &hp, "pub/missing dir"]);
        assert_eq!(exit_code(&r), 9, "{r:?}");
        // vsftpd here is anonymous-only: a named login is refused.
        let (r, _, _) = client(&["get", "-u", "bob:pw", "-o", o, &hp, "pub", "big.bin"]);
        assert_eq!(exit_code(&r), 67, "{r:?}");
    }
    {
        let p = start_pyftpdlib(root.path(), &[("alice", "pw")]);
        let (r, _, _) = client(&[
            "get",
            "-u",
            "alice:nope",
            "-o",
            o,
            &p.hostport(),
            "pub",
            "big.bin",
        ]);
        assert_eq!(exit_code(&r), 67, "{r:?}");
        let (r, _, _) = client(&["get", "-o", o, &format!("{}/pub/none", p.url())]);
        assert_eq!(exit_code(&r), 78, "{r:?}");
    }
    // Nothing was left under any final name.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    // A closed port: 7.
    let closed_port = test_kit::ClosedPort::new();
    let closed = closed_port.addr().port();
    let (r, _, _) = client(&[
        "get",
        "--port",
        &closed.to_string(),
        "-o",
        o,
        "127.0.0.1",
        "d",
        "f",
    ]);
    assert_eq!(exit_code(&r), 7, "{r:?}");
}

// ---- fake servers ---------------------------------------------------------------------------

/// Accepts one control connection and runs `script` on it in a thread.
fn fake<T: Send + 'static>(
    script: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        script(accept_within(&l).expect("the client connected within 10 s"))
    });
    (addr, h)
}

/// A fake server that runs `sc` on one control connection, in a thread.
fn serve(sc: Script) -> (SocketAddr, JoinHandle<Served>) {
    fake(move |s| scripted(s, sc))
}

/// What a scripted fake server does.
struct Script {
    /// The address its PASV reply names.
    pasv_ip: [u8; 4],
    /// Where its data port really listens (127.0.0.1 unless a test needs another loopback).
    data_ip: [u8; 4],
    /// SIZE's answer (`None`: 550).
    size: Option<usize>,
    /// What RETR or LIST sends on the data connection.
    payload: Vec<u8>,
    /// How the data moves: this many bytes at a time, with this pause between (a slow link).
    pace: (usize, Duration),
    /// After the payload, keep the data connection open and silent (and, for STOR, never read
    /// it) until the client hangs up the control connection.
    stall: bool,
    /// The reply after the data connection closes.
    done: &'static str,
    /// Told when a held (`stall`) upload's first bytes have arrived: the client is mid-upload.
    uploading: Option<std::sync::mpsc::Sender<()>>,
}

impl Script {
    fn new(size: Option<usize>, payload: Vec<u8>, done: &'static str) -> Self {
        Self {
            pasv_ip: [127, 0, 0, 1],
            data_ip: [127, 0, 0, 1],
            size,
            payload,
            pace: (usize::MAX, Duration::ZERO),
            stall: false,
            done,
            uploading: None,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
struct Served {
    /// Whether a data connection came.
    data_connected: bool,
    /// What STOR/APPE received.
    stored: Vec<u8>,
    /// With `stall`: how the held data connection ended once the client had hung up, read to
    /// its end (`None`: a plain end of file, the FIN of a complete transfer).
    held_end: Option<std::io::ErrorKind>,
}

/// Writes `data` in pieces of `pace.0` bytes with `pace.1` between them.
fn send_paced(d: &mut TcpStream, data: &[u8], pace: (usize, Duration)) {
    for (i, piece) in data.chunks(pace.0).enumerate() {
        if i > 0 {
            std::thread::sleep(pace.1);
        }
        if d.write_all(piece).is_err() {
            return;
        }
    }
}

/// Reads `d` to its end in pieces of at most `pace.0` bytes with `pace.1` between them.
fn receive_paced(d: &mut TcpStream, pace: (usize, Duration)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; pace.0.min(1 << 20)];
    loop {
        match d.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(pace.1);
    }
}

/// A minimal server dialog: answers login, CWD, TYPE, FEAT (no MLST), REST, SIZE; EPSV refused;
/// PASV answered with `pasv_ip` and a data port on `data_ip`; RETR and LIST send the payload,
/// STOR and APPE receive, paced as `pace` says, then it says `done` (or, with `stall`, holds
/// the data connection until the client hangs up).
fn scripted(s: TcpStream, sc: Script) -> Served {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 fake\r\n");
    let data = TcpListener::bind(SocketAddr::from((sc.data_ip, 0))).unwrap();
    let port = data.local_addr().unwrap().port();
    let mut served = Served::default();
    // Held open, silent, while `stall` waits for the client to give up.
    let mut _held = None;
    for _ in 0..30 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "USER" => "331 pw\r\n".to_string(),
            "PASS" => "230 ok\r\n".into(),
            "CWD" => "250 ok\r\n".into(),
            "TYPE" => "200 ok\r\n".into(),
            "REST" => "350 ok\r\n".into(),
            "SIZE" => match sc.size {
                Some(n) => format!("213 {n}\r\n"),
                None => "550 no size\r\n".into(),
            },
            "EPSV" => "502 no EPSV here\r\n".into(),
            "PASV" => {
                let [a, b, c, d] = sc.pasv_ip;
                format!(
                    "227 Entering Passive Mode ({a},{b},{c},{d},{},{})\r\n",
                    port >> 8,
                    port & 255
                )
            }
            "RETR" | "LIST" | "STOR" | "APPE" => {
                let _ = w.write_all(b"150 here it comes\r\n");
                let Some(mut d) = accept_within(&data) else {
                    break;
                };
                served.data_connected = true;
                if matches!(verb.as_str(), "RETR" | "LIST") {
                    send_paced(&mut d, &sc.payload, sc.pace);
                } else if !sc.stall {
                    served.stored = receive_paced(&mut d, sc.pace);
                }
                if let (true, Some(tell)) = (sc.stall, &sc.uploading) {
                    let mut first = [0u8; 4096];
                    if d.read(&mut first).unwrap_or(0) > 0 {
                        let _ = tell.send(());
                    }
                }
                if sc.stall {
                    // The next read_line ends when the client, having timed out, hangs up.
                    _held = Some(d);
                    continue;
                }
                drop(d);
                format!("{}\r\n", sc.done)
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n");
                break;
            }
            _ => "502 ?\r\n".into(),
        };
        if w.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
    if let Some(mut d) = _held {
        let mut buf = vec![0u8; 1 << 20];
        served.held_end = loop {
            match d.read(&mut buf) {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e) => break Some(e.kind()),
            }
        };
    }
    served
}

fn get_from(addr: SocketAddr, extra: &[&str], dest: &str) -> Result<Report, ClientError> {
    let port = addr.port().to_string();
    let mut args = vec!["get", "--port", &port, "-o", dest];
    if !extra.contains(&"--timeout") {
        args.extend(["--timeout", "5"]);
    }
    args.extend_from_slice(extra);
    args.extend(["127.0.0.1", "d", "f"]);
    let (r, _, trace) = client(&args);
    if let Err(e) = &r {
        eprintln!("{e}\n{trace}");
    }
    r
}

/// Lists the fake at `addr` with `--timeout secs`: the result, the listing and the trace.
fn ls_from(addr: SocketAddr, secs: &str) -> (Result<Report, ClientError>, String, String) {
    let port = addr.port().to_string();
    client(&["ls", "--timeout", secs, "--port", &port, "127.0.0.1"])
}

/// Uploads `src` into `d` on the fake at `addr` with `--timeout 1`.
fn put_with_1s_timeout(addr: SocketAddr, src: &Path) -> Result<Report, ClientError> {
    let port = addr.port().to_string();
    let args = ["put", "--timeout", "1", "--port", &port, path_str(src)];
    let (r, _, trace) = client(&[&args[..], &["127.0.0.1", "d"]].concat());
    if let Err(e) = &r {
        eprintln!("{e}\n{trace}");
    }
    r
}

#[test]
fn pasv_address_from_server_is_ignored() {
    let payload = pattern_bytes(300_000, 5);
    let p2 = payload.clone();
    // 10.255.255.1: a third host the server must not make us connect to (RFC 2577).
    let (addr, h) = serve(Script {
        pasv_ip: [10, 255, 255, 1],
        ..Script::new(Some(300_000), p2, "226 done")
    });
    let out = Fixture::empty();
    let dest = out.path().join("f");
    let port = addr.port().to_string();
    let (r, _, trace) = client(&[
        "get",
        "--port",
        &port,
        "-o",
        path_str(&dest),
        "127.0.0.1",
        "d",
        "f",
    ]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(
        h.join().unwrap().data_connected,
        "the data connection reached the fake's 127.0.0.1 port"
    );
    assert!(
        trace.contains("ignoring the PASV address 10.255.255.1"),
        "{trace}"
    );
    assert!(
        trace.contains("> EPSV") && trace.contains("> PASV"),
        "EPSV first, then PASV: {trace}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
}

#[test]
fn trust_pasv_ip_uses_the_address_the_server_names() {
    // The data port listens on 127.0.0.2 only, and PASV says so; the control peer is
    // 127.0.0.1. Without --trust-pasv-ip the client goes to 127.0.0.1 (nothing there: 7).
    let payload = pattern_bytes(10_000, 8);
    let out = Fixture::empty();
    let dest = out.path().join("f");
    for (trust, want) in [(true, 0), (false, 7)] {
        let p2 = payload.clone();
        let (addr, h) = serve(Script {
            pasv_ip: [127, 0, 0, 2],
            data_ip: [127, 0, 0, 2],
            ..Script::new(Some(10_000), p2, "226 done")
        });
        let extra: &[&str] = if trust { &["--trust-pasv-ip"] } else { &[] };
        let r = get_from(addr, extra, path_str(&dest));
        assert_eq!(exit_code(&r), want, "trust={trust}: {r:?}");
        if trust {
            assert!(
                h.join().unwrap().data_connected,
                "data connection to 127.0.0.2"
            );
            assert_eq!(std::fs::read(&dest).unwrap(), payload);
        }
    }
}

#[test]
fn transfer_cut_short_is_18_and_leaves_no_final_file() {
    let out = Fixture::empty();
    // The server claims 1 MB, sends 400 KB, closes, and still says 226.
    let (addr, h) = serve(Script::new(
        Some(1_000_000),
        pattern_bytes(400_000, 1),
        "226 all good, honest",
    ));
    let dest = out.path().join("short.bin");
    let r = get_from(addr, &[], path_str(&dest));
    h.join().unwrap();
    assert_eq!(exit_code(&r), 18, "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("400000 bytes of 1000000"), "{msg}");
    assert!(!dest.exists(), "nothing under the final name");
    assert_eq!(
        std::fs::metadata(out.path().join("short.bin.part"))
            .unwrap()
            .len(),
        400_000,
        "kept for -C"
    );

    // No SIZE, and the server reports the abort: 426 → 18.
    let (addr, h) = serve(Script::new(
        None,
        pattern_bytes(1000, 1),
        "426 connection closed; transfer aborted",
    ));
    let dest = out.path().join("aborted.bin");
    let r = get_from(addr, &[], path_str(&dest));
    h.join().unwrap();
    assert_eq!(exit_code(&r), 18, "{r:?}");
    assert!(!dest.exists());
}

#[test]
fn interrupted_get_never_damages_an_existing_file() {
    let out = Fixture::empty();
    let old = b"the previous, complete version of f\n".to_vec();
    let dest = out.write("f", &old);
    let d = path_str(&dest).to_string();
    let cut = || {
        serve(Script::new(
            Some(1_000_000),
            pattern_bytes(400_000, 3),
            "226 done",
        ))
    };

    // A plain get over an existing file, cut short: 18, the old file untouched.
    let (addr, h) = cut();
    assert_eq!(exit_code(&get_from(addr, &[], &d)), 18);
    h.join().unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), old, "old content unchanged");
    std::fs::remove_file(out.path().join("f.part")).unwrap();

    // The same, the server aborting with 426 after some data, and with no SIZE.
    let (addr, h) = serve(Script::new(None, pattern_bytes(5000, 3), "426 aborted"));
    assert_eq!(exit_code(&get_from(addr, &[], &d)), 18);
    h.join().unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), old, "old content unchanged");
    let _ = std::fs::remove_file(out.path().join("f.part"));

    // -C continuing the shorter file under the final name, cut short: the file keeps its
    // name and its old bytes (what arrived is appended, ready for the next -C).
    let (addr, h) = cut();
    assert_eq!(exit_code(&get_from(addr, &["-C"], &d)), 18);
    h.join().unwrap();
    let now = std::fs::read(&dest).unwrap();
    assert_eq!(&now[..old.len()], &old[..], "old bytes kept in place");
    assert_eq!(now.len(), old.len() + 400_000);
    assert!(!out.path().join("f.part").exists());

    // -C with a local file larger than the remote one: 36 before any transfer, file intact.
    std::fs::write(&dest, &old).unwrap();
    let (addr, h) = serve(Script::new(Some(10), Vec::new(), "226 done"));
    assert_eq!(exit_code(&get_from(addr, &["-C"], &d)), 36);
    h.join().unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        old,
        "36 leaves the file alone"
    );
    assert!(!out.path().join("f.part").exists());
}

#[test]
fn more_bytes_than_size_fail_and_keep_the_old_file() {
    let out = Fixture::empty();
    let old = b"the previous, complete version of f\n".to_vec();
    let dest = out.write("f", &old);
    let d = path_str(&dest).to_string();
    let part = out.path().join("f.part");

    // SIZE says 100 000, the server sends one byte more, closes and says 226: 18, the old file
    // as it was, and no .part (bytes beyond SIZE make the whole transfer untrustworthy).
    let (addr, h) = serve(Script::new(
        Some(100_000),
        pattern_bytes(100_001, 20),
        "226 done",
    ));
    let r = get_from(addr, &[], &d);
    h.join().unwrap();
    assert_eq!(exit_code(&r), 18, "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("more than the 100000 bytes SIZE announced"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), old, "old content unchanged");
    assert!(!part.exists(), "nothing left to resume from");

    // An endless stream after SIZE's 1000 bytes: the client stops at the first byte too many
    // (the fake's writes then fail on the reset data connection) rather than buffer it.
    let (addr, h) = serve(Script::new(
        Some(1000),
        pattern_bytes(64 << 20, 21),
        "226 done",
    ));
    let r = get_from(addr, &[], &d);
    h.join().unwrap();
    assert_eq!(exit_code(&r), 18, "{r:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), old);
    assert!(!part.exists());
}

#[test]
fn a_server_that_ignores_rest_never_produces_a_corrupt_file() {
    // The fake answers 350 to REST and then sends the file from byte 0 anyway.
    let file = pattern_bytes(300_000, 22);
    let out = Fixture::empty();
    let dest = out.path().join("f");
    let part = out.path().join("f.part");
    let d = path_str(&dest).to_string();

    // A .part holding the first 100 000 bytes: -C asks REST 100000 and gets 300 000 bytes,
    // more than the 200 000 left: 36, no final file, the .part cut back to its good prefix.
    std::fs::write(&part, &file[..100_000]).unwrap();
    let (addr, h) = serve(Script::new(Some(300_000), file.clone(), "226 done"));
    let r = get_from(addr, &["-C"], &d);
    h.join().unwrap();
    assert_eq!(exit_code(&r), 36, "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("REST offset"), "{msg}");
    assert!(!dest.exists(), "no final file");
    assert_eq!(std::fs::read(&part).unwrap(), &file[..100_000]);

    // The same with the prefix under the final name (adopted by -C): it keeps its name and
    // exactly its old bytes.
    std::fs::rename(&part, &dest).unwrap();
    let (addr, h) = serve(Script::new(Some(300_000), file.clone(), "226 done"));
    let r = get_from(addr, &["-C"], &d);
    h.join().unwrap();
    assert_eq!(exit_code(&r), 36, "{r:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), &file[..100_000]);
    assert!(!part.exists());

    // A server that honours REST completes the same file.
    std::fs::rename(&dest, &part).unwrap();
    let (addr, h) = serve(Script::new(
        Some(300_000),
        file[100_000..].to_vec(),
        "226 done",
    ));
    let r = get_from(addr, &["-C"], &d);
    h.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), file);
}

/// `--timeout 1` means "no byte moved for 1 s" (docs/ftp-client.md), not "each 1 MiB buffer
/// within 1 s": every piece of these transfers arrives well within the second, and the whole
/// takes several.
const TRICKLE: (usize, Duration) = (32 << 10, Duration::from_millis(100));

#[test]
fn slow_but_moving_download_is_not_cut() {
    let payload = pattern_bytes(800 << 10, 12);
    let p2 = payload.clone();
    let (addr, h) = serve(Script {
        pace: TRICKLE,
        ..Script::new(Some(p2.len()), p2, "226 done")
    });
    let out = Fixture::empty();
    let dest = out.path().join("f");
    let start = Instant::now();
    let r = get_from(addr, &["--timeout", "1"], path_str(&dest));
    assert!(r.is_ok(), "{r:?}");
    assert!(start.elapsed() > Duration::from_secs(2), "it did trickle");
    assert!(h.join().unwrap().data_connected);
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
}

#[test]
fn slow_but_moving_listing_line_is_not_cut() {
    // One 40 KB listing line (within the 64 KiB bound) that takes over 2 s to arrive.
    let name = "n".repeat(40_000);
    let line = format!("-rw-r--r-- 1 0 0 5 Jan 1 2020 {name}\r\n");
    let (addr, h) = serve(Script {
        pace: (2 << 10, Duration::from_millis(120)),
        ..Script::new(None, line.into_bytes(), "226 done")
    });
    let (r, out, trace) = ls_from(addr, "1");
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(out.trim_end().ends_with(&name), "{}", out.len());
    h.join().unwrap();
}

#[test]
fn slow_but_moving_upload_is_not_cut() {
    // The fake reads 32 KiB every 100 ms (about 330 KB/s): the socket buffers take most of the
    // file at once, then drain for seconds while bytes never stop moving; the wait for the
    // completion reply must not count that time against --timeout.
    let data = pattern_bytes(1_200_000, 13);
    let local = Fixture::empty();
    let src = local.write("up.bin", &data);
    let (addr, h) = serve(Script {
        pace: TRICKLE,
        ..Script::new(None, Vec::new(), "226 stored")
    });
    let r = put_with_1s_timeout(addr, &src);
    assert!(r.is_ok(), "{r:?}");
    assert!(h.join().unwrap().stored == data, "every byte arrived");
}

#[test]
fn stalled_data_connection_times_out_with_28_both_ways() {
    // Download: 100 KB arrive, then the data connection stays open and silent.
    let (addr, h) = serve(Script {
        stall: true,
        ..Script::new(Some(1_000_000), pattern_bytes(100_000, 4), "226 done")
    });
    let out = Fixture::empty();
    let dest = out.path().join("f");
    let start = Instant::now();
    let r = get_from(addr, &["--timeout", "1"], path_str(&dest));
    assert_eq!(exit_code(&r), 28, "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("after 100000 bytes"), "names where: {msg}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(!dest.exists());
    // The client read all that came, so only SO_LINGER 0 makes its close a reset.
    assert_eq!(
        h.join().unwrap().held_end,
        Some(std::io::ErrorKind::ConnectionReset)
    );

    // Upload: the server takes the data connection and never reads it.
    let local = Fixture::empty();
    let src = local.write("up.bin", &pattern_bytes(32 << 20, 14));
    let (addr, h) = serve(Script {
        stall: true,
        ..Script::new(None, Vec::new(), "226 stored")
    });
    let start = Instant::now();
    let r = put_with_1s_timeout(addr, &src);
    assert_eq!(exit_code(&r), 28, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The abandoned upload was reset, not closed: a FIN would read as a complete file.
    let served = h.join().unwrap();
    assert_eq!(
        served.held_end,
        Some(std::io::ErrorKind::ConnectionReset),
        "the server saw the upload end with a reset"
    );
}

#[test]
fn an_interrupted_upload_is_reset_not_closed() {
    // The binary uploads 64 MiB to a fake that reads the first bytes, then stops reading; the
    // client is then interrupted (SIGINT, as Ctrl-C sends) while it waits for the socket. The
    // server must see a reset, which says "not complete", and not the FIN of a finished file.
    let local = Fixture::empty();
    let src = local.write("up.bin", &pattern_bytes(64 << 20, 15));
    let (tell, uploading) = std::sync::mpsc::channel();
    let (addr, h) = serve(Script {
        stall: true,
        uploading: Some(tell),
        ..Script::new(None, Vec::new(), "226 stored")
    });
    let port = addr.port().to_string();
    let mut cmd = bin(&["put", "-q", "--timeout", "60", "--port", &port]);
    cmd.args([path_str(&src), "127.0.0.1", "d"]);
    let mut child = test_kit::ChildGuard::spawn(cmd, "ftp-client");
    uploading
        .recv_timeout(Duration::from_secs(30))
        .expect("the upload started");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with the pid of our own child, which has not been reaped (the guard
    // waits for it below), so the pid cannot belong to another process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.child().wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {}", child.stderr());
    let served = h.join().unwrap();
    assert_eq!(
        served.held_end,
        Some(std::io::ErrorKind::ConnectionReset),
        "the server saw the upload end with a reset"
    );
}

#[test]
fn ctrl_c_during_a_resumed_get_gives_the_file_back_its_name() {
    // -C adopts the shorter file under the final name (moved to f.part while it grows); Ctrl-C
    // must not leave it under the .part name: the binary stops the operation, which moves it
    // back, what arrived appended.
    let out = Fixture::empty();
    let old = pattern_bytes(1000, 16);
    let dest = out.write("f", &old);
    let part = out.path().join("f.part");
    let (addr, h) = serve(Script {
        stall: true,
        ..Script::new(Some(1_000_000), pattern_bytes(5000, 17), "226 done")
    });
    let port = addr.port().to_string();
    let mut cmd = bin(&["get", "-q", "-C", "--timeout", "60", "--port", &port]);
    cmd.args(["-o", path_str(&dest), "127.0.0.1", "d", "f"]);
    let mut child = test_kit::ChildGuard::spawn(cmd, "ftp-client");
    // The transfer is under way once the file has moved to f.part (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !part.exists() {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with the pid of our own child, not reaped yet (waited for below).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.child().wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {}", child.stderr());
    h.join().unwrap();
    assert!(!part.exists(), "the adopted file is not left as f.part");
    let now = std::fs::read(&dest).unwrap();
    assert_eq!(&now[..old.len()], &old[..], "its old bytes kept in place");
}

#[test]
fn endless_listing_line_is_an_error() {
    // LIST sends 1 MiB without a newline: bounded at 64 KiB, exit 8.
    let (addr, h) = serve(Script::new(None, vec![b'x'; 1 << 20], "226 done"));
    let (r, out, _) = ls_from(addr, "5");
    assert_eq!(exit_code(&r), 8, "{r:?}");
    assert!(r.unwrap_err().to_string().contains("longer than 65536"));
    assert!(out.is_empty());
    h.join().unwrap();
}

#[test]
fn retries_reconnect_after_a_transient_refusal() {
    // First connection: "421 busy" and close; the second serves the file.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let payload = pattern_bytes(50_000, 6);
    let p2 = payload.clone();
    let h = std::thread::spawn(move || {
        let mut first = accept_within(&l).expect("first connection");
        let _ = first.write_all(b"421 too many users, try later\r\n");
        drop(first);
        let second = accept_within(&l).expect("the retry");
        scripted(second, Script::new(Some(50_000), p2, "226 done"))
    });
    let out = Fixture::empty();
    let dest = out.path().join("f");
    let d = path_str(&dest);
    // Without --retries the 421 is the answer.
    let l0 = TcpListener::bind("127.0.0.1:0").unwrap();
    let a0 = l0.local_addr().unwrap();
    let h0 = std::thread::spawn(move || {
        let mut s = accept_within(&l0).expect("connection");
        let _ = s.write_all(b"421 too many users, try later\r\n");
    });
    assert_eq!(exit_code(&get_from(a0, &[], d)), 8);
    h0.join().unwrap();
    let r = get_from(addr, &["--retries", "2"], d);
    assert!(r.is_ok(), "{r:?}");
    assert!(h.join().unwrap().data_connected);
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
}

#[test]
fn silent_server_times_out_with_28() {
    let out = Fixture::empty();
    let dest = out.path().join("f");
    // Accepts and never says a word.
    let (addr, h) = fake(|s| {
        let mut buf = [0u8; 64];
        let mut s = s;
        let _ = s.read(&mut buf);
    });
    let start = Instant::now();
    let r = get_from(addr, &["--timeout", "1"], path_str(&dest));
    assert_eq!(exit_code(&r), 28, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    h.join().unwrap();

    // Greets, logs in, then goes silent after EPSV.
    let (addr, h) = fake(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"220 hi\r\n").unwrap();
        for _ in 0..10 {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.starts_with("EPSV") {
                let _ = r.read_line(&mut line);
                return;
            }
            let reply: &[u8] = match line.get(..4).unwrap_or("") {
                "USER" => b"230 ok\r\n",
                "SIZE" => b"213 10\r\n",
                _ => b"200 ok\r\n",
            };
            w.write_all(reply).unwrap();
        }
    });
    let start = Instant::now();
    let r = get_from(addr, &["--timeout", "1"], path_str(&dest));
    assert_eq!(exit_code(&r), 28, "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    h.join().unwrap();
}

#[test]
fn endless_reply_line_is_an_error_not_unbounded_memory() {
    // "220 aaaa..." without end; count what the client reads before it hangs up.
    let (addr, h) = fake(|mut s| {
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"220 ").unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        // Bounded: at most 1 GiB, or until the client closes.
        while sent < (1 << 30) {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let start = Instant::now();
    let (r, _, _) = ls_from(addr, "10");
    assert_eq!(exit_code(&r), 8, "{r:?}");
    assert!(r.unwrap_err().to_string().contains("256 KiB"));
    let sent = h.join().unwrap();
    // The client stopped reading after its 256 KiB bound; what the server could push beyond
    // that sits in socket buffers (a few MiB at most on loopback).
    assert!(
        sent < 32 << 20,
        "server pushed {sent} bytes before the client hung up"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

// ---- the binary -----------------------------------------------------------------------------

/// The binary, fresh from this build (Cargo guarantees `CARGO_BIN_EXE_*` for integration tests),
/// with no password inherited from the environment and its own network waits bounded, so a
/// run cannot outlive the test.
fn bin(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ftp-client"));
    c.env_remove("FTP_PASSWORD").args(args);
    c
}

#[test]
fn retry_messages_are_log_lines_without_colour() {
    // First connection: a 421 whose text tries to colour the terminal; the retry is served.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let h = std::thread::spawn(move || {
        let mut first = accept_within(&l).expect("first connection");
        let _ = first.write_all(b"421 \x1b[31mbusy\x1b[0m, try later\r\n");
        drop(first);
        let second = accept_within(&l).expect("the retry");
        scripted(second, Script::new(Some(5), b"hello".to_vec(), "226 done"))
    });
    let o = run(
        bin(&["get", "--retries", "1", "--timeout", "5", "-o", "-"]).args([
            "--port",
            &port,
            "127.0.0.1",
            "d",
            "f",
        ]),
    );
    o.expect_code(0);
    assert!(h.join().unwrap().data_connected);
    assert_eq!(o.output.stdout, b"hello");
    let err = o.stderr();
    // stderr is a pipe here: the retry line is a plain log line, its level in clear text and
    // the server's escape sequence shown escaped, never a raw ESC.
    assert!(!err.contains('\u{1b}'), "{}", o.describe());
    let retry = err
        .lines()
        .find(|l| l.contains("retrying in 1s"))
        .unwrap_or_else(|| panic!("no retry line: {}", o.describe()));
    assert!(retry.trim_start().starts_with("WARN"), "{retry}");
    assert!(retry.contains("421 \\x1b[31mbusy"), "{retry}");
}

#[test]
fn a_user_without_a_password_and_no_terminal_fails_before_connecting() {
    // A listener nobody should reach: an empty password sent in a script would be a failed
    // login counted toward the account's lockout.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    for user_args in [&["-u", "dave"][..], &[]] {
        let url = if user_args.is_empty() {
            "ftp://dave@127.0.0.1/d/f"
        } else {
            "ftp://127.0.0.1/d/f"
        };
        // `run` gives the binary a closed stdin, not a terminal; `bin` drops FTP_PASSWORD.
        let o =
            run(bin(&["get", "--timeout", "5", "--port", &port, "-o", "-", url]).args(user_args));
        o.expect_code(2);
        let err = o.stderr();
        assert!(
            err.contains("FTP_PASSWORD") && err.contains("--password") && err.contains("\"dave\""),
            "{}",
            o.describe()
        );
        assert_eq!(err.lines().count(), 1, "{}", o.describe());
    }
    assert_eq!(
        l.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nobody connected"
    );
    // With FTP_PASSWORD it does connect (and the fake's greeting never comes: 28).
    let o = run(bin(&[
        "ls",
        "--timeout",
        "1",
        "-u",
        "dave",
        "--port",
        &port,
        "127.0.0.1",
    ])
    .env("FTP_PASSWORD", "pw"));
    o.expect_code(28);
    assert!(l.accept().is_ok(), "connected once a password was given");
}

#[test]
#[cfg_attr(
    not(peer_pyftpdlib),
    ignore = "needs pyftpdlib (under CI=true this fails instead)"
)]
fn binary_stdout_exit_codes_and_masked_trace() {
    let root = hostile_root();
    let p = start_pyftpdlib(root.path(), &[("alice", "hunter2")]);
    // get to stdout, URL form, named login from FTP_PASSWORD; -v shows the dialog on stderr.
    let url = format!(
        "ftp://alice@{}/pub/{}/{}",
        p.addr,
        enc("sub dir"),
        enc("ünïcödé-文件.bin")
    );
    // Run in an empty directory: `-o -` must never create a file.
    let cwd = Fixture::empty();
    let o = run(bin(&["get", "--timeout", "10", "-v", "-o", "-", &url])
        .env("FTP_PASSWORD", "hunter2")
        .current_dir(cwd.path()));
    o.expect_code(0);
    let err = o.stderr();
    assert_eq!(
        sha256(&o.output.stdout),
        sha256_file(&root.path().join("pub/sub dir/ünïcödé-文件.bin")),
        "{}",
        o.describe()
    );
    assert!(
        err.contains("> PASS ****") && !err.contains("hunter2"),
        "{err}"
    );
    assert!(
        err.contains("downloaded 70001 bytes in"),
        "summary line: {err}"
    );
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "-o - wrote no file"
    );

    // `-o -` cut short: 18, what arrived went to stdout, still no file anywhere.
    let (addr, h) = serve(Script::new(
        Some(1_000_000),
        pattern_bytes(400_000, 2),
        "226 done",
    ));
    let port = addr.port().to_string();
    let o = run(bin(&["get", "-q", "--timeout", "5", "-o", "-"])
        .args(["--port", &port, "127.0.0.1", "d", "f"])
        .current_dir(cwd.path()));
    h.join().unwrap();
    o.expect_code(18);
    assert_eq!(o.output.stdout.len(), 400_000, "{}", o.describe());
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "-o - wrote no file"
    );

    // --netrc reads $NETRC: the login comes from it (and the password stays masked).
    let conf = Fixture::empty();
    let netrc = conf.write("netrc", b"machine 127.0.0.1 login alice password hunter2\n");
    let hp = p.hostport();
    let o = run(
        bin(&["ls", "--timeout", "10", "-q", "-v", "--netrc", &hp, "pub"]).env("NETRC", &netrc),
    );
    o.expect_code(0);
    let err = o.stderr();
    assert!(
        err.contains("> USER alice") && !err.contains("hunter2"),
        "{}",
        o.describe()
    );

    // -q: no summary. ls to stdout.
    let o = run(&mut bin(&["ls", "--timeout", "10", "-q", &hp, "pub"]));
    o.expect_code(0);
    assert!(o.stderr().is_empty(), "{}", o.describe());
    assert!(o.stdout().contains("big.bin"), "{}", o.describe());

    // Usage errors: 2, with one line naming the problem.
    for (args, names) in [
        (&["get", "127.0.0.1", "d"][..], "HOST DIR FILE"),
        (&["get", "--timeout", "x", "h", "d", "f"], "--timeout"),
        (&["frobnicate"], "frobnicate"),
    ] {
        let o = run(&mut bin(args));
        o.expect_code(2);
        assert!(o.stderr().contains(names), "{}", o.describe());
    }
    // Missing file and closed port through the binary's exit code, each on one line; the
    // socket error under "cannot connect" is printed once.
    let nope = format!("{}/pub/nope", p.url());
    let o = run(&mut bin(&[
        "get",
        "--timeout",
        "10",
        "-q",
        "-o",
        "-",
        &nope,
    ]));
    o.expect_code(78);
    assert_eq!(o.stderr().lines().count(), 1, "{}", o.describe());
    let closed_port = test_kit::ClosedPort::new();
    let closed = closed_port.addr().port().to_string();
    let o = run(&mut bin(&[
        "ls",
        "--timeout",
        "10",
        "--port",
        &closed,
        "127.0.0.1",
    ]));
    o.expect_code(7);
    let err = o.stderr();
    assert_eq!(err.lines().count(), 1, "{}", o.describe());
    assert_eq!(err.matches("refused").count(), 1, "{}", o.describe());
}
