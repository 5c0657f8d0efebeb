//! FTPS (RFC 4217, issue 12) end to end: the server in-process on `127.0.0.1:0` with a
//! certificate made by the test (a throw-away CA's, or the server's own self-signed one), driven
//! by curl, lftp and Python's `ftplib.FTP_TLS`; a few tests spawn the binary for its banner
//! (the fingerprint) and its start-up errors.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ftp_server::{BackgroundServer, Config};
use test_kit::pki::{ServerCert, TestCa};
use test_kit::{ChildGuard, Fixture, hostile_names, pattern_bytes, require_tool, run, sha256};

const ALICE_PW: &str = "alice pw";

/// A root with a hostile-named file for anonymous users and one in alice's home.
fn tree() -> (Fixture, String) {
    let f = Fixture::empty();
    let name = hostile_names()
        .into_iter()
        .find(|n| n.contains(' ') && n.len() < 60)
        .expect("a hostile name with a space");
    f.write(&format!("pub/{name}"), &pattern_bytes(70_000, 1));
    f.write(&format!("home/alice/{name}"), &pattern_bytes(300_000, 2));
    (f, name)
}

/// Serves `f` with anonymous (home `pub`) and alice, plus `extra` top-level TOML keys.
fn start(f: &Fixture, extra: &str) -> BackgroundServer {
    let phc = ftp_server::hash_password_with_cost(ALICE_PW, 64, 1).expect("hash");
    let text = format!(
        "hidden = true\n{extra}\n[anonymous]\nhome = \"pub\"\n\n[[users]]\nname = \"alice\"\npassword = \"{phc}\"\nhome = \"home/alice\"\nwrite = true\n"
    );
    let cfg = Config::from_toml_str(&text, f.path()).expect("config");
    BackgroundServer::start(cfg).expect("server")
}

/// The TOML keys that serve `cert`, with an implicit listener on a free port.
fn with_cert(cert: &ServerCert, more: &str) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}\nimplicit_tls_bind = \"127.0.0.1:0\"\n{more}",
        cert.cert.to_string_lossy(),
        cert.key.to_string_lossy()
    )
}

fn enc(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://localhost:PORT/path` (curl checks the certificate against `localhost`).
fn url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("{scheme}://localhost:{}/{}", addr.port(), enc(path))
}

fn pki() -> (tempfile::TempDir, TestCa, ServerCert) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ftps");
    let cert = ca.server_cert("server", false);
    (dir, ca, cert)
}

#[test]
#[cfg_attr(
    not(peer_curl),
    ignore = "needs curl (under CI=true this fails instead)"
)]
fn curl_explicit_and_implicit_with_a_ca_signed_certificate() {
    let curl = require_tool("curl");
    let (f, name) = tree();
    let (_d, ca, cert) = pki();
    let srv = start(&f, &with_cert(&cert, ""));
    let implicit = srv.implicit_addr().expect("implicit listener");
    let alice = format!("alice:{ALICE_PW}");
    let cacert = ca.cert_path.to_string_lossy().into_owned();
    let want = sha256(&std::fs::read(f.path().join("home/alice").join(&name)).expect("read"));

    // Explicit (AUTH TLS, PBSZ 0, PROT P), the certificate checked against the test CA.
    let out = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert", &cacert])
        .args(["-u", &alice])
        .arg(url("ftp", srv.addr(), &name)));
    out.expect_code(0);
    assert_eq!(sha256(&out.output.stdout), want, "explicit RETR");
    // Upload over explicit TLS.
    let src = f.write("up.bin", &pattern_bytes(1 << 20, 3));
    run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert", &cacert])
        .args(["-u", &alice, "-T"])
        .arg(&src)
        .arg(url("ftp", srv.addr(), "up load.bin")))
    .expect_code(0);
    assert_eq!(
        sha256(&std::fs::read(f.path().join("home/alice/up load.bin")).expect("uploaded")),
        sha256(&pattern_bytes(1 << 20, 3))
    );
    // Implicit (ftps://): TLS from the first byte.
    let out = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--cacert", &cacert, "-u", &alice])
        .arg(url("ftps", implicit, &name)));
    out.expect_code(0);
    assert_eq!(sha256(&out.output.stdout), want, "implicit RETR");

    // Refusals. Alice in clear: USER gets 534 before any password is sent (curl: 67).
    let out = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "-u", &alice])
        .arg(url("ftp", srv.addr(), &name)));
    out.expect_code(67);
    assert!(out.stderr().contains("534"), "{}", out.describe());
    // TLS for the login only, data in clear (PROT C): the transfer is refused with 521.
    let out = run(Command::new(&curl)
        .args([
            "-sS",
            "--max-time",
            "20",
            "--ftp-ssl-control",
            "--cacert",
            &cacert,
        ])
        .args(["-u", &alice])
        .arg(url("ftp", srv.addr(), &name)));
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(out.output.stdout.is_empty(), "no data in clear");
    // Anonymous may stay plain (the default: optional).
    let out = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20"])
        .arg(format!("ftp://{}/{}", srv.addr(), enc(&name))));
    out.expect_code(0);
    // Without the CA, the certificate cannot be authenticated (curl: 60).
    run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "-u", &alice])
        .arg(url("ftp", srv.addr(), &name)))
    .expect_code(60);
}

#[test]
#[cfg_attr(
    not(peer_curl),
    ignore = "needs curl (under CI=true this fails instead)"
)]
fn curl_refuses_an_expired_certificate() {
    let curl = require_tool("curl");
    let (f, name) = tree();
    let (d, ca, _) = pki();
    let expired = ca.server_cert("expired", true);
    let srv = start(&f, &with_cert(&expired, ""));
    let out = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
        .arg(&ca.cert_path)
        .arg(url("ftp", srv.addr(), &name)));
    out.expect_code(60);
    drop(d);
}

#[test]
#[cfg_attr(
    not(peer_curl),
    ignore = "needs curl (under CI=true this fails instead)"
)]
fn a_class_with_tls_off_cannot_log_in_over_tls() {
    let curl = require_tool("curl");
    let (f, name) = tree();
    let (_d, ca, cert) = pki();
    let cfg = format!(
        "root = {:?}\n{}[anonymous]\nhome = \"pub\"\ntls = \"off\"\n",
        f.path().to_string_lossy(),
        with_cert(&cert, "")
    );
    let srv = BackgroundServer::start(Config::from_toml_str(&cfg, f.path()).expect("config"))
        .expect("server");
    let over_tls = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
        .arg(&ca.cert_path)
        .arg(url("ftp", srv.addr(), &name)));
    over_tls.expect_code(67);
    assert!(over_tls.stderr().contains("530"), "{}", over_tls.describe());
    run(Command::new(&curl)
        .args(["-sS", "--max-time", "20"])
        .arg(url("ftp", srv.addr(), &name)))
    .expect_code(0);
}

#[test]
#[cfg_attr(
    not(peer_curl),
    ignore = "needs curl (under CI=true this fails instead)"
)]
fn require_tls_reuse_accepts_curl_which_resumes_the_session() {
    let curl = require_tool("curl");
    let (f, name) = tree();
    let (_d, ca, cert) = pki();
    let srv = start(&f, &with_cert(&cert, "require_tls_reuse = true"));
    let out = run(Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
        .arg(&ca.cert_path)
        .args(["-u", &format!("alice:{ALICE_PW}")])
        .arg(url("ftp", srv.addr(), &name)));
    out.expect_code(0);
    assert_eq!(out.output.stdout.len(), 300_000);
}

/// Python's ftplib: FTP_TLS with `prot_p()`, then what `prot_c()` gets; prints `ok SIZE` or the
/// error reply.
const FTPLIB: &str = r#"
import ftplib, ssl, sys
host, port, cafile, name, password, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=cafile)
ftp = ftplib.FTP_TLS(context=ctx, timeout=20)
ftp.connect(host, port)
ftp.login("alice", password)
if mode == "P":
    ftp.prot_p()
buf = bytearray()
try:
    ftp.retrbinary("RETR " + name, buf.extend)
    print("ok", len(buf))
except (ftplib.error_reply, ftplib.error_temp, ftplib.error_perm) as e:
    print("error", e)
except OSError:
    # The data connection was refused after 150 (its TLS failed): the reply says why.
    try:
        ftp.getresp()
    except ftplib.all_errors as e:
        print("error", e)
ftp.close()
"#;

#[test]
#[cfg_attr(
    not(peer_python3),
    ignore = "needs python3 (under CI=true this fails instead)"
)]
fn python_ftplib_ftp_tls_with_prot_p_and_its_refusals() {
    let python = require_tool("python3");
    let (f, name) = tree();
    let (d, ca, cert) = pki();
    let script = d.path().join("ftps.py");
    std::fs::write(&script, FTPLIB).expect("script");
    let ask = |srv: &BackgroundServer, mode: &str| {
        let out = run(Command::new(&python)
            .arg(&script)
            .arg("localhost")
            .arg(srv.addr().port().to_string())
            .arg(&ca.cert_path)
            .arg(&name)
            .arg(ALICE_PW)
            .arg(mode));
        out.expect_code(0);
        out.stdout().trim().to_string()
    };
    let srv = start(&f, &with_cert(&cert, ""));
    assert_eq!(ask(&srv, "P"), "ok 300000");
    let refused = ask(&srv, "C");
    assert!(refused.starts_with("error 521"), "{refused}");
    // ftplib opens every data connection with a new TLS session: refused when reuse is required
    // (vsftpd's reply, 522), which is why require_tls_reuse is off by default.
    let strict = start(&f, &with_cert(&cert, "require_tls_reuse = true"));
    let refused = ask(&strict, "P");
    assert!(refused.starts_with("error 522"), "{refused}");
}

#[test]
#[cfg_attr(
    not(peer_lftp),
    ignore = "needs lftp (under CI=true this fails instead)"
)]
fn lftp_with_ssl_force_downloads_and_without_tls_cannot_log_in() {
    let lftp = require_tool("lftp");
    let (f, name) = tree();
    let (d, ca, cert) = pki();
    let srv = start(&f, &with_cert(&cert, ""));
    let dest = d.path().join("got.bin");
    let other_ca = TestCa::new(d.path(), "another");
    let script = |ssl: &str, ca_file: &Path| {
        format!(
            "set net:max-retries 1; set net:timeout 10; set ftp:ssl-force {ssl}; set ftp:ssl-allow {ssl}; \
             set ftp:ssl-protect-data true; set ssl:verify-certificate true; set ssl:ca-file {ca}; \
             open -u alice,'{pw}' ftp://localhost:{port}; get '{name}' -o {dest}",
            ca = ca_file.display(),
            pw = ALICE_PW,
            port = srv.addr().port(),
            dest = dest.display(),
        )
    };
    run(Command::new(&lftp)
        .arg("-c")
        .arg(script("true", &ca.cert_path)))
    .expect_code(0);
    assert_eq!(
        sha256(&std::fs::read(&dest).expect("downloaded")),
        sha256(&pattern_bytes(300_000, 2))
    );
    std::fs::remove_file(&dest).expect("rm");
    let out = run(Command::new(&lftp)
        .arg("-c")
        .arg(script("false", &ca.cert_path)));
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(!dest.exists());
    // ssl:verify-certificate on, with a CA that did not sign the server's certificate: lftp
    // refuses the server rather than going on.
    let out = run(Command::new(&lftp)
        .arg("-c")
        .arg(script("true", &other_ca.cert_path)));
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(!dest.exists());
}

/// A plain control connection: USER of an account that requires TLS is refused with 534, and
/// CCC (back to clear text) is refused too.
#[test]
fn plain_user_is_refused_when_the_class_requires_tls() {
    let (f, _) = tree();
    let (_d, _ca, cert) = pki();
    let srv = start(&f, &with_cert(&cert, ""));
    let s = TcpStream::connect(srv.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut reply = |line: Option<&str>| {
        if let Some(l) = line {
            w.write_all(format!("{l}\r\n").as_bytes()).expect("send");
        }
        let mut text = String::new();
        r.read_line(&mut text).expect("reply");
        text
    };
    assert!(reply(None).starts_with("220"));
    let t = reply(Some("USER alice"));
    assert!(t.starts_with("534"), "{t}");
    let t = reply(Some("USER nosuchuser"));
    assert!(
        t.starts_with("534"),
        "an unknown name gets the same reply: {t}"
    );
    let t = reply(Some("CCC"));
    assert!(t.starts_with('5'), "{t}");
    let t = reply(Some("USER anonymous"));
    assert!(t.starts_with("331"), "{t}");
}

/// Spawns the binary and reads its banner up to the `Accounts:` line.
fn banner(args: &[&std::ffi::OsStr]) -> (ChildGuard, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftp-server"));
    cmd.args(args);
    let (child, stdout) = ChildGuard::spawn_with_stdout(cmd, "ftp-server");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l: &String| l.starts_with("Accounts: ")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("no banner ({e}): {lines:?}; stderr:\n{}", child.stderr()),
        }
    }
    (child, lines)
}

#[test]
fn self_signed_fingerprint_is_in_the_banner_and_survives_a_restart() {
    let (f, _) = tree();
    let state = f.path().join("state dir");
    let args = |state: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--root".into(),
            f.path().join("pub").into(),
            "--tls-self-signed".into(),
            "--state-dir".into(),
            state.into(),
            "--implicit-tls-bind".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let fingerprint = |lines: &[String]| -> String {
        lines
            .iter()
            .find_map(|l| l.strip_prefix("TLS certificate SHA-256 fingerprint: "))
            .unwrap_or_else(|| panic!("no fingerprint in {lines:?}"))
            .to_string()
    };
    let a: Vec<std::ffi::OsString> = args(&state);
    let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
    let (child, first) = banner(&refs);
    drop(child);
    assert!(
        first
            .iter()
            .any(|l| l.trim().starts_with("ftps://127.0.0.1:")),
        "{first:?}"
    );
    assert!(
        first.iter().any(|l| l == "TLS: anonymous optional"),
        "{first:?}"
    );
    let (child, second) = banner(&refs);
    drop(child);
    let fp = fingerprint(&first);
    assert_eq!(
        fp,
        fingerprint(&second),
        "the same certificate after a restart"
    );
    // It is the certificate's, as openssl would print it.
    let pem = std::fs::read_to_string(state.join("tls-cert.pem")).expect("cert");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = decode_base64(&b64);
    assert_eq!(fp, ftp_server::tls::fingerprint(&der));
    assert_eq!(fp.len(), 95);
}

/// Enough base64 for a PEM body (the test-kit has no base64 crate).
fn decode_base64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn certificate_errors_stop_the_start_naming_the_file_and_the_cause() {
    let (f, _) = tree();
    let missing = f.path().join("no such cert.pem");
    let junk = f.write("junk.pem", b"not a certificate\n");
    let cases: [(&Path, &Path, &str); 2] = [
        (&missing, &junk, "No such file"),
        (&junk, &junk, "holds no certificate"),
    ];
    for (cert, key, cause) in cases {
        let out = run(Command::new(env!("CARGO_BIN_EXE_ftp-server"))
            .args(["--bind", "127.0.0.1:0", "--root"])
            .arg(f.path().join("pub"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key));
        out.expect_code(1);
        let err = out.stderr();
        assert!(
            err.contains(&cert.display().to_string()) && err.contains(cause),
            "{}",
            out.describe()
        );
    }
    // A policy that needs a certificate, without one: a configuration error (exit 2).
    let text = format!(
        "root = {:?}\n[anonymous]\nhome = \"pub\"\ntls = \"required\"\n",
        f.path().to_string_lossy()
    );
    let cfg = f.write("ftp.toml", text.as_bytes());
    let out = run(Command::new(env!("CARGO_BIN_EXE_ftp-server"))
        .arg("check-config")
        .arg(&cfg));
    out.expect_code(2);
    assert!(out.stderr().contains("anonymous.tls"), "{}", out.describe());
}

/// The `ftp://` port in a banner.
fn banner_port(lines: &[String]) -> u16 {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("ftp://127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no ftp:// address in {lines:?}"))
}

/// What a LAN user does with `--tls-self-signed`: compare the banner's fingerprint with
/// `openssl x509 -fingerprint -sha256`, then pin the certificate's public key in curl
/// (`--pinnedpubkey`, with `-k` since no authority signed it). A key that is not the server's
/// is refused (curl exit 90).
#[test]
#[cfg_attr(
    not(all(peer_curl, peer_openssl)),
    ignore = "needs curl and openssl (under CI=true this fails instead)"
)]
fn curl_pins_the_self_signed_key_whose_fingerprint_openssl_confirms() {
    let curl = require_tool("curl");
    let openssl = require_tool("openssl");
    let (f, name) = tree();
    let state = f.path().join("state 'dir'");
    let mut args: Vec<std::ffi::OsString> = ["--bind", "127.0.0.1:0", "--tls-self-signed"]
        .map(Into::into)
        .to_vec();
    args.extend(["--root".into(), f.path().join("pub").into_os_string()]);
    args.extend(["--state-dir".into(), state.clone().into_os_string()]);
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (child, lines) = banner(&refs);
    let fp = lines
        .iter()
        .find_map(|l| l.strip_prefix("TLS certificate SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in {lines:?}"))
        .to_string();
    let cert = state.join("tls-cert.pem");
    let out = run(Command::new(&openssl)
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert));
    out.expect_code(0);
    let theirs = out.stdout();
    // "sha256 Fingerprint=AB:CD:..." (OpenSSL 3) or "SHA256 Fingerprint=..." (1.1).
    let theirs = theirs.trim().rsplit('=').next().expect("a fingerprint");
    assert_eq!(fp, theirs, "{}", out.describe());

    let pubkey = f.path().join("server-pub.pem");
    run(Command::new(&openssl)
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(&pubkey))
    .expect_code(0);
    let port = banner_port(&lines);
    let url = format!("ftp://127.0.0.1:{port}/{}", enc(&name));
    let got = f.path().join("got.bin");
    run(Command::new(&curl)
        .args([
            "-sS",
            "--max-time",
            "20",
            "--ssl-reqd",
            "-k",
            "--pinnedpubkey",
        ])
        .arg(&pubkey)
        .arg("-o")
        .arg(&got)
        .arg(&url))
    .expect_code(0);
    assert_eq!(
        sha256(&std::fs::read(&got).expect("downloaded")),
        sha256(&pattern_bytes(70_000, 1))
    );
    let wrong = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    run(Command::new(&curl)
        .args([
            "-sS",
            "--max-time",
            "20",
            "--ssl-reqd",
            "-k",
            "--pinnedpubkey",
            wrong,
        ])
        .arg("-o")
        .arg(f.path().join("not.bin"))
        .arg(&url))
    .expect_code(90);
    drop(child);
}

/// A certificate past its date still starts the server (as nginx and vsftpd do), with a
/// `WARNING:` line in the banner naming the file; clients refuse it themselves (above).
#[test]
fn an_expired_certificate_is_named_by_a_warning_in_the_banner() {
    let (f, _) = tree();
    let (d, ca, _) = pki();
    let expired = ca.server_cert("expired", true);
    let args: Vec<std::ffi::OsString> = vec![
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--root".into(),
        f.path().join("pub").into(),
        "--tls-cert".into(),
        expired.cert.clone().into(),
        "--tls-key".into(),
        expired.key.clone().into(),
    ];
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (child, lines) = banner(&refs);
    drop(child);
    let warning = format!(
        "WARNING: TLS certificate {} HAS EXPIRED",
        expired.cert.display()
    );
    assert!(lines.iter().any(|l| l.starts_with(&warning)), "{lines:?}");
    drop(d);
}
