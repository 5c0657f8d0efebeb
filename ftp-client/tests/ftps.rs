//! FTPS (RFC 4217, issue 12): ftp-client against our ftp-server (in-process, port 0) with
//! certificates the test makes (a throw-away CA's, or the server's self-signed one, pinned),
//! explicit (`--tls`) and implicit (`ftps://`), and against vsftpd with `ssl_enable=YES` and
//! `require_ssl_reuse=YES`; then the refusals and their curl exit codes (35, 60, 64).

mod common;

use common::{client, enc, exit_code};
use ftp_server::{BackgroundServer, Config};
use test_kit::pki::{ServerCert, TestCa};
use test_kit::{Fixture, hostile_names, pattern_bytes, sha256, sha256_file};

const ALICE_PW: &str = "alice secret";

/// A root with hostile names in `pub/` (anonymous) and in alice's home.
fn tree() -> Fixture {
    let f = Fixture::empty();
    for (i, name) in hostile_names().iter().enumerate() {
        f.write(&format!("pub/{name}"), &pattern_bytes(20_000 + i, i as u64));
        f.write(
            &format!("home/alice/{name}"),
            &pattern_bytes(40_000 + i, i as u64 + 100),
        );
    }
    f.write("home/alice/big.bin", &pattern_bytes(3 << 20, 7));
    f
}

/// Serves `f` with anonymous (`pub`) and alice, plus the top-level keys `extra`.
fn start(f: &Fixture, extra: &str) -> BackgroundServer {
    let phc = ftp_server::hash_password_with_cost(ALICE_PW, 64, 1).expect("hash");
    let text = format!(
        "{extra}\n[anonymous]\nhome = \"pub\"\n\n[[users]]\nname = \"alice\"\npassword = \"{phc}\"\nhome = \"home/alice\"\nwrite = true\n"
    );
    BackgroundServer::start(Config::from_toml_str(&text, f.path()).expect("config"))
        .expect("server")
}

fn cert_keys(cert: &ServerCert) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}\nimplicit_tls_bind = \"127.0.0.1:0\"\n",
        cert.cert.to_string_lossy(),
        cert.key.to_string_lossy()
    )
}

fn alice() -> String {
    format!("alice:{ALICE_PW}")
}

#[test]
fn explicit_tls_with_a_ca_signed_certificate_gets_puts_and_lists_hostile_names() {
    let f = tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "explicit");
    let cert = ca.server_cert("server", false);
    let srv = start(&f, &cert_keys(&cert));
    let base = format!("ftp://127.0.0.1:{}", srv.addr().port());
    let cacert = ca.cert_path.to_str().expect("utf-8");
    let out = Fixture::empty();
    let o = out.path().to_str().expect("utf-8");
    let u = alice();
    let tls = ["--tls", "--cacert", cacert, "-u", u.as_str()];

    for name in hostile_names()
        .iter()
        .map(String::as_str)
        .chain(["big.bin"])
    {
        let url = format!("{base}/{}", enc(name));
        let mut args = vec!["get", "-v", "-o", o, &url];
        args.extend(tls);
        let (r, _, trace) = client(&args);
        assert!(r.is_ok(), "{name:?}: {r:?}\n{trace}");
        assert_eq!(
            sha256_file(&out.path().join(name)),
            sha256_file(&f.path().join("home/alice").join(name)),
            "{name:?}"
        );
        // The trace shows the TLS version and cipher of both connections, masks PASS, and
        // the data connection resumed the control connection's session.
        assert!(
            trace.contains("* TLS on the control connection: TLSv1_3"),
            "{trace}"
        );
        assert!(trace.contains("(session resumed)"), "{trace}");
        assert!(
            trace.contains("> PASS ****") && !trace.contains(ALICE_PW),
            "{trace}"
        );
    }
    // Upload, then list, over TLS.
    let src = out.write("up load ü.bin", &pattern_bytes(1 << 20, 9));
    let mut args = vec!["put", src.to_str().expect("utf-8"), &base];
    args.extend(tls);
    let url = format!("{base}/");
    args[2] = &url;
    let (r, _, trace) = client(&args);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(
        sha256_file(&f.path().join("home/alice/up load ü.bin")),
        sha256(&pattern_bytes(1 << 20, 9))
    );
    let mut args = vec!["ls", &url];
    args.extend(tls);
    let (r, listing, trace) = client(&args);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    for name in hostile_names() {
        assert!(listing.contains(&name), "{name:?} missing:\n{listing}");
    }
}

#[test]
fn implicit_tls_with_the_self_signed_certificate_pinned() {
    let f = tree();
    let state = tempfile::tempdir().expect("tempdir");
    let srv = start(
        &f,
        &format!(
            "tls_self_signed = true\nstate_dir = {:?}\nimplicit_tls_bind = \"127.0.0.1:0\"\nrequire_tls_reuse = true\n",
            state.path().to_string_lossy()
        ),
    );
    let pin = srv.tls_fingerprint().expect("a fingerprint").to_string();
    let implicit = srv.implicit_addr().expect("implicit listener");
    let out = Fixture::empty();
    let o = out.path().to_str().expect("utf-8");
    let name = &hostile_names()[0];
    let url = format!("ftps://{implicit}/{}", enc(name));
    let u = alice();
    let (r, _, trace) = client(&["get", "-o", o, "--pin-sha256", &pin, "-u", &u, &url]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(
        sha256_file(&out.path().join(name)),
        sha256_file(&f.path().join("home/alice").join(name))
    );
    // Explicit on the other port, pinned too: require_tls_reuse is satisfied, since every data
    // connection resumes the session.
    let url = format!("ftp://{}/big.bin", srv.addr());
    let (r, _, trace) = client(&[
        "get",
        "-o",
        o,
        "--tls",
        "--pin-sha256",
        &pin,
        "-u",
        &u,
        &url,
    ]);
    assert!(r.is_ok(), "{r:?}\n{trace}");

    // A pin that does not match: 60, nothing written.
    let mut wrong = pin.clone();
    wrong.replace_range(0..2, if pin.starts_with("00") { "11" } else { "00" });
    let (r, _, trace) = client(&[
        "get",
        "-o",
        o,
        "--tls",
        "--pin-sha256",
        &wrong,
        "-u",
        &u,
        &url,
    ]);
    assert_eq!(exit_code(&r), 60, "{r:?}\n{trace}");
    // No pin: the self-signed certificate is not trusted by the system roots: 60.
    let (r, _, trace) = client(&["get", "-o", o, "--tls", "-u", &u, &url]);
    assert_eq!(exit_code(&r), 60, "{r:?}\n{trace}");
    // --insecure: accepted (main warns).
    let (r, _, trace) = client(&["get", "-o", o, "--tls", "--insecure", "-u", &u, &url]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
}

#[test]
fn refusals_have_curls_exit_codes() {
    let f = tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "refusals");
    let expired = ca.server_cert("expired", true);
    let cacert = ca.cert_path.to_str().expect("utf-8");
    let out = Fixture::empty();
    let o = out.path().to_str().expect("utf-8");
    let name = &hostile_names()[1];
    let u = alice();

    // An expired certificate: 60.
    let srv = start(&f, &cert_keys(&expired));
    let url = format!("ftp://127.0.0.1:{}/{}", srv.addr().port(), enc(name));
    let (r, _, trace) = client(&["get", "-o", o, "--tls", "--cacert", cacert, "-u", &u, &url]);
    assert_eq!(exit_code(&r), 60, "{r:?}\n{trace}");
    assert!(format!("{:?}", r).contains("expired"), "{r:?}");
    // Plain login to an account that requires TLS: USER refused (534), exit 67.
    let (r, _, trace) = client(&["get", "-o", o, "-u", &u, &url]);
    assert_eq!(exit_code(&r), 67, "{r:?}\n{trace}");
    assert!(trace.contains("< 534"), "{trace}");
    // Implicit TLS against the explicit port: the handshake fails: 35.
    let url_implicit = format!("ftps://127.0.0.1:{}/{}", srv.addr().port(), enc(name));
    let (r, _, trace) = client(&[
        "get",
        "-o",
        o,
        "--timeout",
        "5",
        "--insecure",
        &url_implicit,
    ]);
    assert_eq!(exit_code(&r), 35, "{r:?}\n{trace}");
    drop(srv);

    // A server without TLS: --tls fails with 64; --tls=optional goes on in clear.
    let plain = start(&f, "");
    let url = format!("ftp://{}/{}", plain.addr(), enc(name));
    let (r, _, trace) = client(&["get", "-o", o, "--tls", &url]);
    assert_eq!(exit_code(&r), 64, "{r:?}\n{trace}");
    assert!(
        trace.contains("> AUTH TLS") && trace.contains("< 502"),
        "{trace}"
    );
    let (r, _, trace) = client(&["get", "-o", o, "--tls=optional", &url]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(trace.contains("continuing without TLS"), "{trace}");
    assert_eq!(
        sha256_file(&out.path().join(name)),
        sha256_file(&f.path().join("pub").join(name))
    );
    // Flags that make no sense without TLS are usage errors.
    let (r, _, _) = client(&["get", "-o", o, "--cacert", cacert, &url]);
    assert_eq!(exit_code(&r), 2, "{r:?}");
    let (r, _, _) = client(&["get", "-o", o, "--tls", "--pin-sha256", "AB:CD", &url]);
    assert_eq!(exit_code(&r), 2, "{r:?}");
}

#[test]
#[cfg_attr(
    not(peer_vsftpd),
    ignore = "needs vsftpd (under CI=true this fails instead)"
)]
fn against_vsftpd_with_ssl_enable_and_require_ssl_reuse() {
    let f = tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "vsftpd");
    let cert = ca.server_cert("vsftpd", false);
    let peer = test_kit::peers::start_vsftpd_tls(&f.path().join("pub"), &cert);
    let cacert = ca.cert_path.to_str().expect("utf-8");
    let out = Fixture::empty();
    let o = out.path().to_str().expect("utf-8");
    for name in hostile_names().iter().take(3) {
        let url = format!("{}/{}", peer.url(), enc(name));
        let (r, _, trace) = client(&["get", "-v", "-o", o, "--tls", "--cacert", cacert, &url]);
        assert!(r.is_ok(), "{name:?}: {r:?}\n{trace}");
        assert_eq!(
            sha256_file(&out.path().join(name)),
            sha256_file(&f.path().join("pub").join(name)),
            "{name:?}"
        );
        assert!(trace.contains("(session resumed)"), "{trace}");
    }
    let (r, listing, trace) = client(&[
        "ls",
        "--tls",
        "--cacert",
        cacert,
        &format!("{}/", peer.url()),
    ]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(listing.contains(&hostile_names()[0]), "{listing}");
    // vsftpd forces TLS for the login (force_anon_logins_ssl): plain FTP is refused.
    let url = format!("{}/{}", peer.url(), enc(&hostile_names()[0]));
    let (r, _, trace) = client(&["get", "-o", o, &url]);
    assert_eq!(exit_code(&r), 67, "{r:?}\n{trace}");
}
