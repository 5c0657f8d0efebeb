//! `mirror` and glob `get` against real servers: our ftp-server in-process, vsftpd (LIST only)
//! and pyftpdlib (MLSD). One scenario for each: a tree with hostile-but-legal names, deep
//! nesting and an empty directory is mirrored; a second run fetches nothing; files changed on
//! the server (size, or time only) and only they move; `--dry-run` changes nothing;
//! `--delete` removes exactly what the server lost, and nothing outside LOCALDIR.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{client, path_str, walk};
use ftp_client::Report;
use test_kit::peers::{start_pyftpdlib, start_vsftpd};
use test_kit::{Fixture, hostile_names, pattern_bytes};

/// The server's `tree/`: hostile names in `sub dir/`, a deep chain, an empty directory.
fn build_tree(root: &Path) {
    let f = |rel: &str, data: &[u8]| {
        let p = root.join("tree").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    for (i, name) in hostile_names().iter().enumerate() {
        f(
            &format!("sub dir/{name}"),
            &pattern_bytes(3000 + i, i as u64 + 1),
        );
    }
    f("a/b/c/d/e/f/g/h/deep.txt", b"deep");
    f("top.bin", &pattern_bytes(200_000, 7));
    f("a/same-size.txt", b"version 1");
    std::fs::create_dir_all(root.join("tree/empty dir")).unwrap();
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// `N fetched` from the summary.
fn fetched(r: &Report) -> usize {
    let s = r.saved_to.clone().unwrap_or_default();
    let n = s
        .split(" fetched")
        .next()
        .and_then(|h| h.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok());
    n.unwrap_or_else(|| panic!("no count in {s:?}"))
}

fn mirror(args: &[&str]) -> Report {
    let mut a = vec!["mirror"];
    a.extend_from_slice(args);
    let (r, out, trace) = client(&a);
    match r {
        Ok(r) => r,
        Err(e) => panic!("{a:?}: {e}\n{out}\n{trace}"),
    }
}

fn scenario(url: &str, root: &Path) {
    build_tree(root);
    let base = Fixture::empty();
    std::fs::write(base.path().join("bystander"), b"keep").unwrap();
    let local = base.path().join("local");
    let l = path_str(&local).to_string();
    let src = format!("{url}/tree/");
    let server = root.join("tree");

    let r = mirror(&[&src, &l, "--parallel", "3"]);
    assert_eq!(walk(&local), walk(&server), "first run");
    assert_eq!(fetched(&r), hostile_names().len() + 3);

    let r = mirror(&[&src, &l]);
    assert_eq!(fetched(&r), 0, "nothing changed: {:?}", r.saved_to);

    // Changes: a new size, a new file, and same size with another time.
    std::fs::write(server.join("top.bin"), pattern_bytes(100_000, 8)).unwrap();
    std::fs::write(server.join("a/new.txt"), b"new").unwrap();
    std::fs::write(server.join("a/same-size.txt"), b"version 2").unwrap();
    set_mtime(
        &server.join("a/same-size.txt"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
    );
    // --dry-run says so and touches nothing.
    let before = walk(base.path());
    let (r, out, trace) = client(&["mirror", &src, &l, "--dry-run"]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(
        out.contains("get top.bin") && out.contains("get a/new.txt"),
        "{out}"
    );
    assert_eq!(walk(base.path()), before, "--dry-run wrote nothing");

    let r = mirror(&[&src, &l]);
    assert_eq!(fetched(&r), 3, "only the changed files: {:?}", r.saved_to);
    assert_eq!(walk(&local), walk(&server));

    // --delete: what the server lost goes, and only inside LOCALDIR.
    std::fs::remove_file(server.join("a/new.txt")).unwrap();
    std::fs::remove_dir(server.join("empty dir")).unwrap();
    std::fs::write(local.join("stray.txt"), b"local only").unwrap();
    let r = mirror(&[&src, &l]);
    assert_eq!(fetched(&r), 0);
    assert!(
        local.join("stray.txt").exists(),
        "never deleted without --delete"
    );
    mirror(&[&src, &l, "--delete", "--exclude", "*.keep"]);
    assert_eq!(walk(&local), walk(&server), "after --delete");
    assert_eq!(
        std::fs::read(base.path().join("bystander")).unwrap(),
        b"keep"
    );

    // Glob get from the same server.
    let out = Fixture::empty();
    let (r, _, trace) = client(&[
        "get",
        "-o",
        path_str(out.path()),
        &format!("{url}/tree/sub%20dir/*.txt"),
    ]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    let want: Vec<_> = hostile_names()
        .into_iter()
        .filter(|n| n.ends_with(".txt"))
        .collect();
    let got = walk(out.path());
    assert_eq!(got.len(), want.len(), "{got:?}");
    for n in want {
        assert_eq!(
            got.get(Path::new(&n)).cloned().flatten(),
            std::fs::read(server.join("sub dir").join(&n)).ok()
        );
    }
}

#[test]
fn mirror_from_our_ftp_server() {
    let root = Fixture::empty();
    std::fs::create_dir(root.path().join("pub")).unwrap();
    let cfg = ftp_server::Config::from_toml_str(
        // The hostile names include a dotfile: served only with `hidden`.
        "root = \".\"\nhidden = true\n\n[anonymous]\nhome = \"pub\"\n",
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
fn mirror_from_vsftpd() {
    let root = Fixture::empty();
    let peer = start_vsftpd(root.path());
    scenario(&peer.url(), root.path());
}

#[test]
#[cfg_attr(
    not(peer_pyftpdlib),
    ignore = "needs pyftpdlib (under CI=true this fails instead)"
)]
fn mirror_from_pyftpdlib() {
    let root = Fixture::empty();
    let peer = start_pyftpdlib(root.path(), &[]);
    scenario(&peer.url(), root.path());
}

/// `mirror --reverse`: a local tree with hostile-but-legal names up to `url` (a writable
/// directory, `server` on disk), then a no-op run, a changed file, `--dry-run`, `--delete`, and
/// a local link that is never followed.
fn reverse_scenario(url: &str, server: &Path) {
    let src = Fixture::empty();
    build_tree(src.path());
    let local = src.path().join("tree");
    let outside = Fixture::empty();
    std::fs::write(outside.path().join("secret"), b"not to upload").unwrap();
    std::os::unix::fs::symlink(outside.path(), local.join("link-out")).unwrap();
    let l = path_str(&local).to_string();
    let up = |extra: &[&str]| {
        let mut a = vec!["mirror", "--reverse", url, &l];
        a.extend_from_slice(extra);
        let (r, out, trace) = client(&a);
        match r {
            Ok(r) => (r.saved_to.unwrap_or_default(), out),
            Err(e) => panic!("{a:?}: {e}\n{trace}"),
        }
    };
    let without_link = |mut m: BTreeMap<PathBuf, Option<Vec<u8>>>| {
        m.retain(|p, _| !p.starts_with("link-out"));
        m
    };

    let (r, _) = up(&[]);
    assert_eq!(walk(server), without_link(walk(&local)), "{r}");
    assert!(
        r.contains(&format!("({} uploaded", hostile_names().len() + 3)),
        "{r}"
    );
    let (r, _) = up(&[]);
    assert!(r.contains("(0 uploaded"), "{r}");

    std::fs::write(local.join("top.bin"), pattern_bytes(1000, 3)).unwrap();
    let (_, plan) = up(&["--dry-run"]);
    assert_eq!(plan.trim(), "put top.bin");
    let (r, _) = up(&[]);
    assert!(r.contains("(1 uploaded"), "{r}");
    assert_eq!(walk(server), without_link(walk(&local)));

    std::fs::remove_file(local.join("a/same-size.txt")).unwrap();
    std::fs::remove_dir(local.join("empty dir")).unwrap();
    up(&[]);
    assert!(
        server.join("a/same-size.txt").exists(),
        "never deleted without --delete"
    );
    up(&["--delete"]);
    assert_eq!(walk(server), without_link(walk(&local)), "after --delete");
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"not to upload"
    );
}

#[test]
#[cfg_attr(
    not(peer_pyftpdlib),
    ignore = "needs pyftpdlib (under CI=true this fails instead)"
)]
fn mirror_reverse_to_pyftpdlib() {
    let root = Fixture::empty();
    std::fs::create_dir(root.path().join("up")).unwrap();
    let peer = start_pyftpdlib(root.path(), &[("alice", "s3cret")]);
    let url = format!("ftp://alice:s3cret@{}/up/", peer.addr);
    reverse_scenario(&url, &root.path().join("up"));
}

#[test]
fn mirror_reverse_to_our_ftp_server() {
    let root = Fixture::empty();
    std::fs::create_dir_all(root.path().join("home/alice/up")).unwrap();
    // Low argon2 cost: tests run unoptimised builds.
    let hash = ftp_server::hash_password_with_cost("s3cret", 64, 1).expect("hash");
    let text = format!(
        "root = \".\"\nhidden = true\n\n[[users]]\nname = \"alice\"\npassword = \"{hash}\"\nhome = \"home/alice\"\nwrite = true\n"
    );
    let cfg = ftp_server::Config::from_toml_str(&text, root.path()).expect("config");
    let srv = ftp_server::BackgroundServer::start(cfg).expect("start ftp-server");
    let url = format!("ftp://alice:s3cret@{}/up/", srv.addr());
    reverse_scenario(&url, &root.path().join("home/alice/up"));
    srv.stop().expect("stop");
}
