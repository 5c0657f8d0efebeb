//! ftp-client against our own ftp-server, started in-process on port 0 (BackgroundServer):
//! anonymous get in both name forms, a listing, and a missing file.

mod common;

use common::{client, enc};
use ftp_server::{BackgroundServer, Config};
use test_kit::{Fixture, hostile_names, pattern_bytes, sha256_file};

#[test]
fn get_and_ls_against_our_ftp_server() {
    let root = Fixture::empty();
    for (i, name) in hostile_names().iter().enumerate() {
        root.write(
            &format!("pub/d/{name}"),
            &pattern_bytes(50_000 + i, i as u64 + 3),
        );
    }
    root.write("pub/d/big.bin", &pattern_bytes(3 << 20, 11));
    // The hostile names include a dotfile: served only with `hidden`.
    let cfg = Config::from_toml_str(
        "root = \".\"\nhidden = true\n\n[anonymous]\nhome = \"pub\"\n",
        root.path(),
    )
    .expect("anonymous config");
    let srv = BackgroundServer::start(cfg).expect("start ftp-server");
    let addr = srv.addr();
    let out = Fixture::empty();
    let o = out.path().to_str().unwrap();

    for name in hostile_names()
        .iter()
        .map(String::as_str)
        .chain(["big.bin"])
    {
        let want = sha256_file(&root.path().join("pub/d").join(name));
        let (r, _, trace) = client(&["get", "-o", o, &addr.to_string(), "d", "--", name]);
        assert!(r.is_ok(), "{name:?}: {r:?}\n{trace}");
        assert_eq!(sha256_file(&out.path().join(name)), want, "{name:?}");
        std::fs::remove_file(out.path().join(name)).unwrap();
        let url = format!("ftp://{addr}/d/{}", enc(name));
        let (r, _, trace) = client(&["get", "-o", o, &url]);
        assert!(r.is_ok(), "{url}: {r:?}\n{trace}");
        assert_eq!(sha256_file(&out.path().join(name)), want, "{name:?}");
    }

    let (r, listing, trace) = client(&["ls", &format!("ftp://{addr}/d/")]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    for name in hostile_names() {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!("  {name}"))),
            "{name:?} missing:\n{listing}"
        );
    }

    // libunftp answers 150 first and 550 only after the data connection: still "not found".
    let (r, _, trace) = client(&["get", "-o", o, &format!("ftp://{addr}/d/nope")]);
    assert_eq!(r.map_err(|e| e.exit_code()).err(), Some(78), "{trace}");
    assert!(!out.path().join("nope").exists() && !out.path().join("nope.part").exists());
    srv.stop().expect("stop");
}
