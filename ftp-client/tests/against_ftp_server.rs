//! ftp-client against our own ftp-server, started in-process on port 0 (BackgroundServer):
//! anonymous get in both name forms, a listing, a missing file, and the binary's exit codes
//! for refusals the server gives before `150`.

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

    // The server answers RETR itself with 550 (no 150 first): "not found".
    let (r, _, trace) = client(&["get", "-o", o, &format!("ftp://{addr}/d/nope")]);
    assert_eq!(r.map_err(|e| e.exit_code()).err(), Some(78), "{trace}");
    assert!(!out.path().join("nope").exists() && !out.path().join("nope.part").exists());
    srv.stop().expect("stop");
}

/// ftp-server refuses before `150` what it knows it will refuse (its issue 11): the binary
/// reports each refusal with its documented exit code (docs/ftp-client.md), and leaves no
/// local file.
#[test]
fn refusals_before_150_give_the_documented_exit_codes() {
    let root = Fixture::empty();
    root.write("pub/a dir ünï/x.txt", b"x");
    root.write("pub/incoming/taken -name.txt", b"someone else's");
    let cfg = Config::from_toml_str(
        "root = \".\"\n\n[anonymous]\nhome = \"pub\"\nupload_dir = \"incoming\"\n",
        root.path(),
    )
    .expect("anonymous config");
    let srv = BackgroundServer::start(cfg).expect("start ftp-server");
    let addr = srv.addr();
    let out = Fixture::empty();
    let local = out.write("local ünï.txt", b"upload");
    let url = |path: &str| {
        let segments: Vec<String> = path.split('/').map(enc).collect();
        format!("ftp://{addr}/{}", segments.join("/"))
    };
    let cases: &[(&[&str], &str, i32)] = &[
        // RETR answered 550: "not found" (78), whatever the server's reason.
        (&["get"], "no such file.txt", 78),
        (&["get"], "a dir ünï", 78),
        (&["get"], "incoming/taken -name.txt", 78),
        // STOR refused: 25.
        (&["put", local.to_str().unwrap()], "outside.txt", 25),
        (
            &["put", local.to_str().unwrap()],
            "incoming/taken -name.txt",
            25,
        ),
        // MLSD refused for another reason than "not found": 19.
        (&["ls"], "incoming/", 19),
    ];
    for (args, path, code) in cases {
        let ran = test_kit::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_ftp-client"))
                .current_dir(out.path())
                .args(*args)
                .arg(url(path)),
        );
        ran.expect_code(*code);
    }
    let mut left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["local ünï.txt"], "nothing but the upload's source");
    assert!(!root.path().join("pub/outside.txt").exists());
    assert_eq!(
        std::fs::read(root.path().join("pub/incoming/taken -name.txt")).unwrap(),
        b"someone else's"
    );
    srv.stop().expect("stop");
}

/// `RUST_LOG=suppaftp=trace` (or `trace`) must not print the password: suppaftp logs every
/// command it sends at `debug`, `PASS` included, and filexfer's logging caps it at `info`.
#[test]
fn rust_log_at_trace_never_prints_the_password() {
    const PW: &str = "s3cret-Pa55word";
    let root = Fixture::empty();
    root.write("home/dave/a.txt", b"hello\n");
    let phc = ftp_server::hash_password_with_cost(PW, 64, 1).expect("hash");
    let cfg = Config::from_toml_str(
        &format!("root = \".\"\n\n[[users]]\nname = \"dave\"\npassword = \"{phc}\"\nhome = \"home/dave\"\n"),
        root.path(),
    )
    .expect("config");
    let srv = BackgroundServer::start(cfg).expect("start ftp-server");
    let out = Fixture::empty();
    for rust_log in ["suppaftp=trace", "trace"] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_ftp-client"))
            .env("RUST_LOG", rust_log)
            .args(["get", "-o"])
            .arg(out.path())
            .arg(format!("ftp://dave:{PW}@{}/a.txt", srv.addr()))
            .output()
            .expect("run ftp-client");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "RUST_LOG={rust_log}: {stderr}");
        assert!(
            !stderr.contains(PW),
            "RUST_LOG={rust_log} printed the password:\n{stderr}"
        );
    }
    srv.stop().expect("stop");
}
