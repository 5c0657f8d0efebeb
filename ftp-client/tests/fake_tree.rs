//! Glob get (and the name rules of `ftp_client::names`) against a fake server written here, which
//! serves a tree whose listings a real server would never produce: `..`, `/`, `\`, absolute
//! paths, NUL, CR, drive prefixes, links, case twins, and a listing that never ends. Each test
//! walks LOCALDIR's parent before and after: nothing may appear, change or vanish outside LOCALDIR.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::{accept_within, client, exit_code, path_str, walk};

/// What the fake serves: listings by directory path (`/`, `/sub`), as raw lines, and file
/// contents by path.
#[derive(Clone, Default)]
struct Tree {
    /// FEAT names MLST (listings are then MLSD lines, else LIST lines).
    mlst: bool,
    listings: HashMap<String, Vec<String>>,
    files: HashMap<String, Vec<u8>>,
    /// MLSD/LIST of this directory sends lines until the client hangs up.
    endless: Option<String>,
    /// CWD to the key lands in the value (a server-side link shown as a directory: a loop).
    aliases: HashMap<String, String>,
    /// Every directory below this path lists one more directory, `deeper`, forever.
    infinite: Option<String>,
    /// CWD to this directory is refused (its listing fails).
    refuse_cwd: Option<String>,
    /// More sessions at once than this get `421` as their greeting.
    max_sessions: Option<usize>,
    /// The next RETR of this path sends half the file, then `426` (an interrupted run).
    cut_once: Arc<Mutex<Option<String>>>,
    /// Close the control connection after each completed RETR (a server's session limit).
    one_file_per_session: bool,
}

impl Tree {
    fn is_infinite(&self, dir: &str) -> bool {
        self.infinite
            .as_deref()
            .is_some_and(|p| dir == p || dir.starts_with(&format!("{p}/")))
    }
}

fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A fake FTP server in threads: one per control connection. Each command line it receives is
/// kept in `log`.
struct Fake {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    accept: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(tree: Tree) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let tree = Arc::new(tree);
        let (stop2, log2) = (stop.clone(), log.clone());
        let active = Arc::new(AtomicUsize::new(0));
        let accept = std::thread::spawn(move || {
            while let Some(mut s) = accept_within(&l) {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if tree
                    .max_sessions
                    .is_some_and(|m| active.load(Ordering::SeqCst) >= m)
                {
                    log2.lock().unwrap().push("(refused with 421)".into());
                    let _ = s.write_all(b"421 Too many connections from your address\r\n");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (tree, log, active) = (tree.clone(), log2.clone(), active.clone());
                std::thread::spawn(move || {
                    session(s, &tree, &log);
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

fn session(s: TcpStream, tree: &Tree, log: &Mutex<Vec<String>>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 fake tree\r\n");
    let mut cwd = "/".to_string();
    let mut data: Option<TcpListener> = None;
    let mut rest = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        log.lock().unwrap().push(line.clone());
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let verb = verb.to_ascii_uppercase();
        let reply = match verb.as_str() {
            "USER" => "331 pw\r\n".to_string(),
            "PASS" => "230 ok\r\n".into(),
            "TYPE" => "200 ok\r\n".into(),
            "FEAT" if tree.mlst => {
                "211-Features:\r\n MLST type*;size*;modify*;\r\n SIZE\r\n MDTM\r\n211 End\r\n"
                    .into()
            }
            "FEAT" => "211-Features:\r\n SIZE\r\n MDTM\r\n211 End\r\n".into(),
            "PWD" => format!("257 \"{cwd}\"\r\n"),
            "CWD" => {
                let to = if arg == "/" {
                    "/".into()
                } else {
                    join(&cwd, arg)
                };
                let to = tree.aliases.get(&to).cloned().unwrap_or(to);
                if tree.refuse_cwd.as_deref() == Some(to.as_str()) {
                    "550 permission denied\r\n".into()
                } else if tree.listings.contains_key(&to) || tree.is_infinite(&to) {
                    cwd = to;
                    "250 ok\r\n".into()
                } else {
                    "550 no such directory\r\n".into()
                }
            }
            "EPSV" => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                data = Some(l);
                format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
            }
            "REST" => {
                rest = arg.parse().unwrap_or(0);
                "350 ok\r\n".into()
            }
            "SIZE" => match tree.files.get(&join(&cwd, arg)) {
                Some(f) => format!("213 {}\r\n", f.len()),
                None => "550 no\r\n".into(),
            },
            "MDTM" => match tree.files.get(&join(&cwd, arg)) {
                Some(_) => "213 20260101000000\r\n".into(),
                None => "550 no\r\n".into(),
            },
            "MLSD" | "LIST" | "RETR" => {
                let payload: Option<Vec<u8>> = if verb == "RETR" {
                    tree.files
                        .get(&join(&cwd, arg))
                        .map(|f| f[rest.min(f.len())..].to_vec())
                } else if tree.is_infinite(&cwd) {
                    Some(b"type=dir;modify=20260101000000; deeper\r\n".to_vec())
                } else {
                    tree.listings.get(&cwd).map(|ls| {
                        ls.iter()
                            .map(|l| format!("{l}\r\n"))
                            .collect::<String>()
                            .into()
                    })
                };
                rest = 0;
                let Some(payload) = payload else {
                    let _ = w.write_all(b"550 no such file\r\n");
                    continue;
                };
                let _ = w.write_all(b"150 here it comes\r\n");
                let Some(mut d) = data.take().as_ref().and_then(accept_within) else {
                    return;
                };
                if verb != "RETR" && tree.endless.as_deref() == Some(cwd.as_str()) {
                    for i in 0u64.. {
                        let l = format!("type=file;size=1; endless-{i}\r\n");
                        if d.write_all(l.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
                let cut = verb == "RETR" && {
                    let mut c = tree.cut_once.lock().unwrap();
                    c.take_if(|p| *p == join(&cwd, arg)).is_some()
                };
                if cut {
                    let _ = d.write_all(&payload[..payload.len() / 2]);
                    drop(d);
                    "426 connection closed; transfer aborted\r\n".into()
                } else {
                    let _ = d.write_all(&payload);
                    drop(d);
                    if verb == "RETR" && tree.one_file_per_session {
                        let _ = w.write_all(b"226 done\r\n");
                        return;
                    }
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

/// A base directory holding LOCALDIR (`base/local`) and a bystander file next to it.
fn base() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("bystander.txt"), b"keep me").unwrap();
    std::fs::create_dir(base.path().join("evil")).unwrap();
    let local = base.path().join("local");
    std::fs::create_dir(&local).unwrap();
    (base, local)
}

/// Names in hostile listings that must never reach a RETR, CWD or the disk.
const HOSTILE: &[&str] = &[
    "../evil.txt",
    "../../evil.txt",
    "/tmp/ftp-client-abs-evil.txt",
    "sub/evil.txt",
    "..\\evil.txt",
    "C:evil.txt",
    "nul\0evil.txt",
    "cr\revil.txt",
];

fn hostile_tree(mlst: bool) -> Tree {
    let mut t = Tree {
        mlst,
        ..Tree::default()
    };
    let mut lines = Vec::new();
    let mut add = |name: &str, kind: &str, content: Option<&[u8]>| {
        let size = content.map_or(0, <[u8]>::len);
        lines.push(if mlst {
            format!("type={kind};size={size};modify=20260101000000; {name}")
        } else {
            let mode = match kind {
                "dir" => "drwxr-xr-x",
                "OS.unix=symlink" => "lrwxrwxrwx",
                _ => "-rw-r--r--",
            };
            format!("{mode} 1 u g {size} Jan 01 2026 {name}")
        });
        if let Some(c) = content {
            t.files.insert(join("/pub", name), c.to_vec());
        }
    };
    add("ok.txt", "file", Some(b"fine"));
    add("-leading dash.txt", "file", Some(b"dash"));
    add("Twin.txt", "file", Some(b"upper"));
    add("twin.txt", "file", Some(b"lower"));
    add("notes.md", "file", Some(b"not matched"));
    add(".", "cdir", None);
    add("..", "pdir", None);
    for h in HOSTILE {
        add(h, "file", Some(b"EVIL"));
    }
    add("link.txt", "OS.unix=symlink", Some(b"EVIL"));
    add("dir.txt", "dir", None);
    t.listings.insert("/".into(), vec![]);
    t.listings.insert("/pub".into(), lines);
    t.listings.insert("/pub/dir.txt".into(), vec![]);
    t
}

fn glob_get_refuses_hostile_names(mlst: bool) {
    let fake = Fake::start(hostile_tree(mlst));
    let (base, local) = base();
    let before = walk(base.path());
    let url = format!("ftp://{}/pub/*.txt", fake.addr);
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &url]);
    assert!(r.is_ok(), "{r:?}\n{trace}");

    let folds = ftp_client::names::folds_case(&local).unwrap();
    let mut want: BTreeMap<PathBuf, Option<Vec<u8>>> = before;
    want.insert("local/ok.txt".into(), Some(b"fine".to_vec()));
    want.insert("local/-leading dash.txt".into(), Some(b"dash".to_vec()));
    if !folds {
        want.insert("local/Twin.txt".into(), Some(b"upper".to_vec()));
        want.insert("local/twin.txt".into(), Some(b"lower".to_vec()));
    }
    assert_eq!(
        walk(base.path()),
        want,
        "only the safe matches, only in LOCALDIR"
    );
    assert!(!Path::new("/tmp/ftp-client-abs-evil.txt").exists());

    let cmds = fake.commands();
    for c in &cmds {
        assert!(
            !c.contains("evil") && !c.contains("link.txt"),
            "{c:?} sent\n{trace}"
        );
    }
    assert!(
        cmds.iter().any(|c| c == if mlst { "MLSD" } else { "LIST" }),
        "{cmds:?}"
    );
    // One session lists, one fetches every match: not a login per file.
    let logins = cmds.iter().filter(|c| c.starts_with("USER ")).count();
    assert_eq!(logins, 2, "{cmds:?}");
}

#[test]
fn glob_get_refuses_hostile_mlsd_names() {
    glob_get_refuses_hostile_names(true);
}

#[test]
fn glob_get_refuses_hostile_list_names() {
    glob_get_refuses_hostile_names(false);
}

#[test]
fn glob_get_three_part_form_and_no_match() {
    let fake = Fake::start(hostile_tree(true));
    let (base, local) = base();
    let host = fake.addr.to_string();
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &host, "pub", "[o]k.*"]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(std::fs::read(local.join("ok.txt")).unwrap(), b"fine");
    // Nothing matches: curl's "remote file not found", and nothing written.
    let before = walk(base.path());
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &host, "pub", "*.iso"]);
    assert_eq!(exit_code(&r), 78, "{r:?}\n{trace}");
    assert_eq!(walk(base.path()), before);
    // Only hostile names match: skipped, so "not found" too.
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &host, "pub", "*evil*"]);
    assert_eq!(exit_code(&r), 78, "{r:?}\n{trace}");
    assert_eq!(walk(base.path()), before);
}

#[test]
fn glob_get_names_each_failed_file_and_exits_18() {
    let mut tree = hostile_tree(true);
    // Listed but not retrievable: RETR answers 550.
    tree.files.remove("/pub/ok.txt");
    let fake = Fake::start(tree);
    let (_base, local) = base();
    // An earlier ok.txt stays as it was: a failed file never replaces it.
    std::fs::write(local.join("ok.txt"), b"old").unwrap();
    let url = format!("ftp://{}/pub/*.txt", fake.addr);
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &url]);
    assert_eq!(exit_code(&r), 18, "{r:?}\n{trace}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("ok.txt") && msg.starts_with("1 of "), "{msg}");
    assert_eq!(std::fs::read(local.join("ok.txt")).unwrap(), b"old");
    assert_eq!(
        std::fs::read(local.join("-leading dash.txt")).unwrap(),
        b"dash"
    );
}

#[test]
fn glob_get_refuses_a_local_symlink() {
    let fake = Fake::start(hostile_tree(true));
    let (base, local) = base();
    std::os::unix::fs::symlink(base.path().join("bystander.txt"), local.join("ok.txt")).unwrap();
    let url = format!("ftp://{}/pub/ok.txt*", fake.addr);
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &url]);
    assert_eq!(exit_code(&r), 18, "{r:?}\n{trace}");
    assert_eq!(
        std::fs::read(base.path().join("bystander.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn endless_listing_is_cut_and_writes_nothing() {
    let mut tree = hostile_tree(true);
    tree.endless = Some("/pub".into());
    let fake = Fake::start(tree);
    let (base, local) = base();
    let before = walk(base.path());
    let url = format!("ftp://{}/pub/*", fake.addr);
    let (r, _, trace) = client(&["get", "-o", path_str(&local), &url]);
    assert_eq!(
        exit_code(&r),
        8,
        "{r:?}\n{}",
        &trace[..trace.len().min(2000)]
    );
    assert!(r.unwrap_err().to_string().contains("more than"));
    assert_eq!(walk(base.path()), before);
}

#[test]
fn glob_usage_errors() {
    for args in [
        &["get", "-o", "-", "ftp://h/d/*.txt"][..],
        &["get", "ftp://h/d/[ab"],
        &["get", "-o", "/nonexistent/dir", "ftp://h/d/*.txt"],
    ] {
        let (r, _, _) = client(args);
        assert_eq!(exit_code(&r), 2, "{args:?}: {r:?}");
    }
}

// ---- mirror ---------------------------------------------------------------------------------

/// The hostile tree with a subdirectory as hostile as its parent, a directory that is its
/// parent again (a loop), and a symlink entry pointing up.
fn hostile_mirror_tree() -> Tree {
    let mut t = hostile_tree(true);
    let sub = t.listings["/pub"].clone();
    for (k, v) in t.files.clone() {
        if let Some(name) = k.strip_prefix("/pub/") {
            t.files.insert(format!("/pub/sub/{name}"), v);
        }
    }
    t.listings.insert("/pub/sub".into(), sub);
    t.listings.insert("/pub/sub/dir.txt".into(), vec![]);
    let lines = t.listings.get_mut("/pub").unwrap();
    lines.push("type=dir;modify=20260101000000; sub".into());
    lines.push("type=dir;modify=20260101000000; loop".into());
    lines.push("type=OS.unix=slink:/;modify=20260101000000; up".into());
    t.aliases.insert("/pub/loop".into(), "/pub".into());
    t
}

type Ran = (
    Result<ftp_client::Report, ftp_client::ClientError>,
    String,
    String,
);

fn mirror_from(fake: &Fake, local: &Path, extra: &[&str]) -> Ran {
    let url = format!("ftp://{}/pub/", fake.addr);
    let mut args = vec!["mirror", &url, path_str(local)];
    args.extend_from_slice(extra);
    client(&args)
}

#[test]
fn mirror_refuses_hostile_names_links_and_loops() {
    let fake = Fake::start(hostile_mirror_tree());
    let (base, local) = base();
    let before = walk(base.path());
    let (r, _, trace) = mirror_from(&fake, &local, &[]);
    assert!(r.is_ok(), "{r:?}\n{trace}");

    let folds = ftp_client::names::folds_case(&local).unwrap();
    let mut want = before;
    for dir in ["local", "local/sub"] {
        let f = |n: &str, c: &[u8]| (PathBuf::from(format!("{dir}/{n}")), Some(c.to_vec()));
        want.extend([
            f("ok.txt", b"fine"),
            f("-leading dash.txt", b"dash"),
            f("notes.md", b"not matched"),
        ]);
        if !folds {
            want.extend([f("Twin.txt", b"upper"), f("twin.txt", b"lower")]);
        }
        want.insert(format!("{dir}/dir.txt").into(), None);
    }
    want.insert("local/sub".into(), None);
    assert_eq!(walk(base.path()), want, "only safe names, only in LOCALDIR");
    let cmds = fake.commands();
    for c in &cmds {
        assert!(
            !c.contains("evil") && !c.contains("link.txt") && !c.ends_with("/up"),
            "{c:?} sent\n{trace}"
        );
    }
    // One session for the walk and one per worker (default 2), not a login per file.
    let logins = cmds.iter().filter(|c| c.starts_with("USER ")).count();
    assert!(logins <= 3, "{logins} logins for 10 files");
    // The loop was entered once (its PWD is /pub again) and never listed.
    let at = cmds
        .iter()
        .position(|c| c == "CWD /pub/loop")
        .expect("CWD loop");
    assert_eq!(cmds[at + 1], "PWD");
    assert_ne!(
        cmds.get(at + 2).map(String::as_str),
        Some("EPSV"),
        "{cmds:?}"
    );
}

#[test]
fn mirror_of_an_endless_depth_stops_at_the_bound() {
    let mut tree = hostile_tree(true);
    tree.listings
        .get_mut("/pub")
        .unwrap()
        .push("type=dir;modify=20260101000000; deeper".into());
    tree.infinite = Some("/pub/deeper".into());
    let fake = Fake::start(tree);
    let (_base, local) = base();
    let (r, _, trace) = mirror_from(&fake, &local, &["--include", "ok.txt"]);
    let tail = &trace[trace.len().saturating_sub(2000)..];
    assert!(r.is_ok(), "{r:?}\n{tail}");
    let mut depth = 0;
    let mut p = local.join("deeper");
    while p.is_dir() {
        depth += 1;
        p = p.join("deeper");
    }
    assert_eq!(depth, ftp_client::ops::MAX_DEPTH);
    assert_eq!(std::fs::read(local.join("ok.txt")).unwrap(), b"fine");
    assert!(!local.join("notes.md").exists(), "--include");
}

#[test]
fn mirror_delete_stays_inside_localdir_and_removes_links_not_targets() {
    let fake = Fake::start(hostile_tree(true));
    let (base, local) = base();
    std::fs::write(base.path().join("evil/target.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink(base.path().join("evil"), local.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(base.path().join("bystander.txt"), local.join("filelink")).unwrap();
    std::fs::create_dir_all(local.join("gone/deep")).unwrap();
    std::fs::write(local.join("gone/deep/old.txt"), b"old").unwrap();
    std::fs::write(local.join("stray.md"), b"stray").unwrap();
    std::fs::write(local.join("kept.tmp"), b"excluded, so kept").unwrap();
    let flags = ["--delete", "--exclude", "*.tmp"];
    let (r, out, trace) = mirror_from(&fake, &local, &[&flags[..], &["--dry-run"]].concat());
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert!(
        out.contains("delete stray.md") && out.contains("delete dirlink"),
        "{out}"
    );
    assert!(local.join("stray.md").exists(), "--dry-run deletes nothing");

    let (r, _, trace) = mirror_from(&fake, &local, &flags);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    for gone in ["dirlink", "filelink", "gone", "stray.md"] {
        assert!(
            std::fs::symlink_metadata(local.join(gone)).is_err(),
            "{gone} deleted"
        );
    }
    assert!(local.join("kept.tmp").exists());
    assert!(local.join("ok.txt").exists());
    assert_eq!(
        std::fs::read(base.path().join("evil/target.txt")).unwrap(),
        b"outside"
    );
    assert_eq!(
        std::fs::read(base.path().join("bystander.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn mirror_with_a_failed_listing_deletes_nothing_and_exits_18() {
    let mut tree = hostile_mirror_tree();
    tree.refuse_cwd = Some("/pub/sub".into());
    let fake = Fake::start(tree);
    let (_base, local) = base();
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/mine.txt"), b"mine").unwrap();
    std::fs::write(local.join("stray.md"), b"stray").unwrap();
    let (r, _, trace) = mirror_from(&fake, &local, &["--delete"]);
    assert_eq!(exit_code(&r), 18, "{r:?}\n{trace}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("sub/"), "{msg}");
    assert!(local.join("sub/mine.txt").exists() && local.join("stray.md").exists());
    assert_eq!(std::fs::read(local.join("ok.txt")).unwrap(), b"fine");
}

#[test]
fn mirror_backs_off_when_the_server_answers_421() {
    let mut tree = hostile_tree(true);
    tree.max_sessions = Some(1);
    let fake = Fake::start(tree);
    let (_base, local) = base();
    let (r, _, trace) = mirror_from(&fake, &local, &["--parallel", "4"]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(std::fs::read(local.join("ok.txt")).unwrap(), b"fine");
    assert_eq!(
        std::fs::read(local.join("notes.md")).unwrap(),
        b"not matched"
    );
    assert!(
        fake.commands().iter().any(|c| c == "(refused with 421)"),
        "the test did make the server refuse"
    );
}

#[test]
fn interrupted_mirror_run_again_resumes_the_part() {
    let mut tree = hostile_tree(true);
    let big = test_kit::pattern_bytes(100_000, 5);
    tree.files.insert("/pub/big.bin".into(), big.clone());
    tree.listings
        .get_mut("/pub")
        .unwrap()
        .push("type=file;size=100000;modify=20260101000000; big.bin".into());
    *tree.cut_once.lock().unwrap() = Some("/pub/big.bin".into());
    let fake = Fake::start(tree);
    let (_base, local) = base();
    // An older big.bin is there: the failed run must leave it as it was.
    std::fs::write(local.join("big.bin"), b"old").unwrap();
    let (r, _, trace) = mirror_from(&fake, &local, &[]);
    assert_eq!(exit_code(&r), 18, "{r:?}\n{trace}");
    assert!(r.unwrap_err().to_string().contains("big.bin"));
    assert_eq!(std::fs::read(local.join("big.bin")).unwrap(), b"old");
    let part = std::fs::read(local.join("big.bin.part")).unwrap();
    assert_eq!(part, &big[..50_000]);

    let (r, _, trace) = mirror_from(&fake, &local, &[]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(std::fs::read(local.join("big.bin")).unwrap(), big);
    assert!(!local.join("big.bin.part").exists());
    assert!(
        fake.commands().iter().any(|c| c == "REST 50000"),
        "the second run resumed"
    );
}

#[test]
fn mirror_reconnects_when_the_server_ends_a_session() {
    let mut tree = hostile_tree(true);
    tree.one_file_per_session = true;
    let fake = Fake::start(tree);
    let (_base, local) = base();
    let (r, _, trace) = mirror_from(&fake, &local, &["--parallel", "1"]);
    assert!(r.is_ok(), "{r:?}\n{trace}");
    assert_eq!(std::fs::read(local.join("ok.txt")).unwrap(), b"fine");
    assert_eq!(
        std::fs::read(local.join("notes.md")).unwrap(),
        b"not matched"
    );
}

#[test]
fn binary_mirror_exit_codes_and_dry_run_on_stdout() {
    let fake = Fake::start(hostile_tree(true));
    let (_base, local) = base();
    let bin = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ftp-client"));
        c.env_remove("FTP_PASSWORD").args(args);
        test_kit::run(&mut c)
    };
    bin(&["mirror", "--help"]).expect_code(0);
    bin(&["mirror", "h", "d"]).expect_code(2);
    bin(&["mirror", "h", "d", "x", "--parallel", "0"]).expect_code(2);
    let url = format!("ftp://{}/pub/", fake.addr);
    let ran = bin(&["mirror", &url, path_str(&local), "--dry-run"]);
    ran.expect_code(0);
    assert!(
        ran.stdout().contains("get ok.txt (4 bytes)"),
        "{}",
        ran.describe()
    );
    // The warnings name the refused entries, escaped: no raw CR reaches the terminal.
    let err = ran.stderr();
    assert!(
        err.contains("link.txt") && err.contains("cr\\x0devil.txt"),
        "{err}"
    );
    assert!(!err.contains('\r'), "{err:?}");
    assert_eq!(std::fs::read_dir(&local).unwrap().count(), 0, "dry run");
}
