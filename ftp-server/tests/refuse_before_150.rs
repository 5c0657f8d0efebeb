//! A transfer command the server will refuse is refused by its own reply, before any `150`
//! (issue 11; libunftp patches 23-24, `ftp_server::preflight`): a missing file, a directory, a
//! FIFO, a file anonymous may not read (the drop box), an upload without the right, a name
//! already taken in the drop box, a `REST` offset beyond the end of the file.
//!
//! Checked on the wire (a raw control connection: the first reply is the refusal) and with the
//! clients people use, each of which mishandled a `550` after `150`: wget (exit 8 at once, no
//! retry, no file left), curl (78 "file not found", 9 for a directory it cannot enter, 25
//! "upload failed"), Python's ftplib (`error_perm` from the command itself, before any data
//! connection is handed out), lftp and tnftp. Our ftp-client's exit codes (19, 25, 78) are
//! checked in `ftp-client/tests/against_ftp_server.rs`, which can run its binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ftp_server::{BackgroundServer, Config};
use test_kit::{Fixture, Ran, pattern_bytes, require_tool, run};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Names with spaces, unicode, a leading dash and a `%20` look-alike, as every fixture has.
const MISSING: &str = "no such file ünï.txt";
const DIR: &str = "a dir ünï";
const FIFO: &str = "-fifo with space";
const TAKEN: &str = "taken percent%20name.txt";
const TEN: &str = "ten bytes ünï.txt";

/// root/pub: anonymous's home, with a file, a directory, a FIFO and the drop box `incoming/`
/// holding a name already taken; root/home/alice (write) with a 10-byte file and a directory;
/// root/home/bob (read-only).
fn tree() -> Fixture {
    let f = Fixture::empty();
    f.write("pub/readable.bin", &pattern_bytes(5000, 1));
    f.write(&format!("pub/{DIR}/inside.txt"), b"inside");
    f.write(&format!("pub/incoming/{TAKEN}"), b"dropped by someone else");
    f.write(&format!("home/alice/{TEN}"), b"0123456789");
    f.write(&format!("home/alice/{DIR}/inside.txt"), b"inside");
    f.write("home/bob/readme.txt", b"bob's");
    let made = Command::new("mkfifo")
        .arg(f.path().join("pub").join(FIFO))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    f
}

fn cheap_hash(pw: &str) -> String {
    ftp_server::hash_password_with_cost(pw, 64, 1).expect("hash")
}

fn start(f: &Fixture) -> BackgroundServer {
    let text = format!(
        r#"
root = "."

[anonymous]
home = "pub"
upload_dir = "incoming"

[[users]]
name = "alice"
password = "{pw}"
home = "home/alice"
write = true

[[users]]
name = "bob"
password = "{pw}"
home = "home/bob"
write = false
"#,
        pw = cheap_hash("pw")
    );
    let cfg = Config::from_toml_str(&text, f.path()).expect("valid config");
    BackgroundServer::start(cfg).expect("start server")
}

/// Percent-encodes a path for a URL (curl, wget, lftp and tnftp decode it).
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

fn url(addr: SocketAddr, path: &str) -> String {
    format!("ftp://{}:{}/{}", addr.ip(), addr.port(), enc(path))
}

/// The directory a client downloads into, which must stay empty after a refusal.
fn assert_empty(dir: &Path, ran: &Ran) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "a refused download left {left:?}\n{}",
        ran.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// On the wire.

/// A raw control connection: each command's *first* reply is what the test sees.
struct Ctl {
    r: BufReader<TcpStream>,
    w: TcpStream,
    server: SocketAddr,
}

impl Ctl {
    fn login(server: SocketAddr, user: &str, pass: &str) -> Self {
        let s = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Self {
            r: BufReader::new(s),
            w,
            server,
        };
        assert_eq!(c.reply().0, 220);
        assert_eq!(c.cmd(&format!("USER {user}")).0, 331);
        assert_eq!(c.cmd(&format!("PASS {pass}")).0, 230);
        assert_eq!(c.cmd("TYPE I").0, 200);
        c
    }

    /// One reply, multi-line aware.
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("a reply in time");
            assert!(n > 0, "connection closed after: {text}");
            text.push_str(&line);
            if line.len() > 3 && line.as_bytes()[3] == b' ' {
                return (line[..3].parse().expect("reply code"), text);
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// EPSV and the data connection, made before the command as clients do.
    fn data(&mut self) -> TcpStream {
        let (c, t) = self.cmd("EPSV");
        assert_eq!(c, 229, "{t}");
        let port: u16 = t
            .split("(|||")
            .nth(1)
            .unwrap()
            .split('|')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let s = TcpStream::connect_timeout(&SocketAddr::new(self.server.ip(), port), IO_TIMEOUT)
            .expect("data connection");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// `line` with a data connection ready: its first reply must be `want`, never `150`.
    fn refused(&mut self, line: &str, want: u16) {
        let _data = self.data();
        let (code, text) = self.cmd(line);
        assert_eq!(
            code, want,
            "{line}: the first reply must be the refusal: {text}"
        );
        assert_eq!(self.cmd("NOOP").0, 200, "{line}: the session goes on");
    }
}

#[test]
fn every_refusal_known_before_the_transfer_is_the_reply_to_the_command() {
    let f = tree();
    let srv = start(&f);
    let addr = srv.addr();

    let mut anon = Ctl::login(addr, "anonymous", "me@example.org");
    anon.refused(&format!("RETR {MISSING}"), 550);
    anon.refused(&format!("RETR {DIR}"), 550);
    anon.refused(&format!("RETR {FIFO}"), 550);
    anon.refused(&format!("RETR incoming/{TAKEN}"), 550);
    anon.refused("STOR outside the drop box.txt", 550);
    anon.refused(&format!("STOR incoming/{TAKEN}"), 553);
    anon.refused(&format!("APPE incoming/{TAKEN}"), 553);
    anon.refused("LIST incoming", 550);
    anon.refused("NLST incoming", 550);
    anon.refused("MLSD incoming", 550);
    anon.refused(&format!("LIST {MISSING}"), 550);
    // The data connection left by a refusal serves the next command.
    let mut data = anon.data();
    assert_eq!(anon.cmd(&format!("RETR {MISSING}")).0, 550);
    assert_eq!(anon.cmd("RETR readable.bin").0, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, pattern_bytes(5000, 1));
    assert_eq!(anon.reply().0, 226);

    let mut bob = Ctl::login(addr, "bob", "pw");
    bob.refused("STOR new.txt", 550);
    bob.refused("APPE readme.txt", 550);

    let mut alice = Ctl::login(addr, "alice", "pw");
    alice.refused("STOR no such dir/x.txt", 550);
    alice.refused("STOR .", 553);
    for verb in ["RETR", "STOR", "APPE"] {
        assert_eq!(alice.cmd("REST 11").0, 350);
        alice.refused(&format!("{verb} {TEN}"), 554);
    }
    let ten = f.path().join("home/alice").join(TEN);
    assert_eq!(std::fs::read(&ten).unwrap(), b"0123456789", "untouched");
    // The end itself is a valid offset; a refused command consumed its REST.
    let mut data = alice.data();
    assert_eq!(alice.cmd("REST 10").0, 350);
    assert_eq!(alice.cmd(&format!("RETR {TEN}")).0, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    assert_eq!(alice.reply().0, 226);
    srv.stop().expect("stop");
}

#[test]
fn help_and_greeting_do_not_name_the_software() {
    let f = tree();
    let srv = start(&f);
    let s = TcpStream::connect_timeout(&srv.addr(), IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut c = Ctl {
        r: BufReader::new(s.try_clone().unwrap()),
        w: s,
        server: srv.addr(),
    };
    let leaks = |t: &str| {
        let t = t.to_lowercase();
        t.contains("unftp") || t.contains("libunftp") || t.contains("0.24")
    };
    let (code, greeting) = c.reply();
    assert!(code == 220 && !leaks(&greeting), "{greeting}");
    let (code, help) = c.cmd("HELP");
    assert!(
        code == 214 && help.contains("RETR") && !leaks(&help),
        "{help}"
    );
    srv.stop().expect("stop");
}

// ---------------------------------------------------------------------------------------------
// With real clients.

#[test]
#[cfg_attr(
    not(peer_wget),
    ignore = "needs wget (under CI=true this fails instead)"
)]
fn wget_stops_at_once_without_retrying_and_leaves_no_file() {
    let wget = require_tool("wget");
    let f = tree();
    let srv = start(&f);
    let out = Fixture::empty();
    for path in [MISSING, DIR, FIFO, &format!("incoming/{TAKEN}")] {
        // wget's defaults (20 tries): a 550 after 150 made it retry for minutes and left an
        // empty file; a 550 to RETR is final for it (exit 8, "server issued an error").
        let ran = run(Command::new(&wget)
            .arg("-nv")
            .arg("-P")
            .arg(out.path())
            .arg(url(srv.addr(), path)));
        ran.expect_code(8);
        assert!(!ran.stderr().contains("Retrying"), "{}", ran.describe());
        assert_empty(out.path(), &ran);
    }
    srv.stop().expect("stop");
}

#[test]
#[cfg_attr(
    not(peer_curl),
    ignore = "needs curl (under CI=true this fails instead)"
)]
fn curl_reports_not_found_access_denied_and_upload_failed() {
    let curl = require_tool("curl");
    let f = tree();
    let srv = start(&f);
    let addr = srv.addr();
    let out = Fixture::empty();
    let get = |path: &str| {
        run(Command::new(&curl)
            .args(["-sS", "--output-dir"])
            .arg(out.path())
            .arg("-O")
            .arg(url(addr, path)))
    };
    // RETR refused with 550: "remote file not found" (78), whatever the reason, as for vsftpd.
    for path in [MISSING, DIR, FIFO, &format!("incoming/{TAKEN}")] {
        let ran = get(path);
        ran.expect_code(78);
        assert_empty(out.path(), &ran);
    }
    // A directory it cannot enter: "access denied" (9).
    let ran = get(&format!("{MISSING}/x.txt"));
    ran.expect_code(9);
    assert_empty(out.path(), &ran);
    // Uploads refused before 150: "upload failed" (25), nothing created or changed.
    let local = out.path().join("local.txt");
    std::fs::write(&local, b"upload").unwrap();
    for (user, path) in [
        ("anonymous:me@", "outside the drop box.txt"),
        ("anonymous:me@", &format!("incoming/{TAKEN}")),
        ("bob:pw", "new.txt"),
        ("alice:pw", DIR),
    ] {
        let ran = run(Command::new(&curl)
            .args(["-sS", "-u", user, "-T"])
            .arg(&local)
            .arg(url(addr, path)));
        ran.expect_code(25);
    }
    assert!(!f.path().join("pub/outside the drop box.txt").exists());
    assert!(!f.path().join("home/bob/new.txt").exists());
    assert_eq!(
        std::fs::read(f.path().join("pub/incoming").join(TAKEN)).unwrap(),
        b"dropped by someone else"
    );
    srv.stop().expect("stop");
}

#[test]
#[cfg_attr(
    not(peer_python3),
    ignore = "needs python3 (under CI=true this fails instead)"
)]
fn ftplib_gets_error_perm_from_the_command_before_any_data_connection() {
    require_tool("python3");
    let f = tree();
    let srv = start(&f);
    // transfercmd() sends the command and returns the data connection once the server says
    // 150; a refusal must raise error_perm from it. One line per command: code, or "DATA" if a
    // data connection was handed out.
    let script = r#"
import ftplib, sys
host, port = sys.argv[1], int(sys.argv[2])
def session(user, pw, cmds):
    f = ftplib.FTP()
    f.connect(host, port, timeout=10)
    f.login(user, pw)
    for cmd, rest in cmds:
        try:
            f.transfercmd(cmd, rest).close()
            print(cmd, "DATA")
            f.voidresp()
        except ftplib.error_perm as e:
            print(cmd, str(e)[:3])
    f.quit()
session("anonymous", "me@example.org", [(c, None) for c in sys.argv[3:10]])
session("alice", "pw", [(c, 11) for c in sys.argv[10:]])
"#;
    let cmds = [
        format!("RETR {MISSING}"),
        format!("RETR {DIR}"),
        format!("RETR {FIFO}"),
        format!("RETR incoming/{TAKEN}"),
        "STOR outside.txt".to_string(),
        format!("STOR incoming/{TAKEN}"),
        "MLSD incoming".to_string(),
        format!("RETR {TEN}"),
        format!("STOR {TEN}"),
        format!("APPE {TEN}"),
    ];
    let ran = run(Command::new("python3")
        .args(["-c", script])
        .arg(srv.addr().ip().to_string())
        .arg(srv.addr().port().to_string())
        .args(&cmds));
    ran.expect_code(0);
    let want: Vec<String> = cmds
        .iter()
        .zip([550, 550, 550, 550, 550, 553, 550, 554, 554, 554])
        .map(|(c, code)| format!("{c} {code}"))
        .collect();
    assert_eq!(
        ran.stdout().lines().collect::<Vec<_>>(),
        want,
        "{}",
        ran.describe()
    );
    srv.stop().expect("stop");
}

#[test]
#[cfg_attr(
    not(peer_lftp),
    ignore = "needs lftp (under CI=true this fails instead)"
)]
fn lftp_reports_the_refusal_and_leaves_no_file() {
    let lftp = require_tool("lftp");
    let f = tree();
    let srv = start(&f);
    let out = Fixture::empty();
    let local = Fixture::empty();
    let upload = local.write("upload.txt", b"upload");
    let open = format!("open -p {} {}", srv.addr().port(), srv.addr().ip());
    let quote = |s: &str| format!("\"{s}\"");
    for (cmd, code) in [
        (format!("get {}", quote(MISSING)), "550"),
        (
            format!("get {}", quote(&format!("incoming/{TAKEN}"))),
            "550",
        ),
        (
            format!(
                "put {} -o {}",
                quote(upload.to_str().unwrap()),
                quote(&format!("incoming/{TAKEN}"))
            ),
            "553",
        ),
    ] {
        let ran = run(Command::new(&lftp)
            .current_dir(out.path())
            .args(["-c", &format!("set net:max-retries 1; {open}; {cmd}")]));
        ran.expect_code(1);
        let said = format!("{}{}", ran.stdout(), ran.stderr());
        assert!(
            said.contains(&format!("Access failed: {code}")),
            "{}",
            ran.describe()
        );
        assert_empty(out.path(), &ran);
    }
    srv.stop().expect("stop");
}

#[test]
#[cfg_attr(
    not(peer_tnftp),
    ignore = "needs tnftp (under CI=true this fails instead)"
)]
fn tnftp_reports_the_refusal_and_leaves_no_file() {
    let tnftp = require_tool("tnftp");
    let f = tree();
    let srv = start(&f);
    let out = Fixture::empty();
    // URL mode (auto-fetch): exit 1 with the server's reply text, no file.
    for (path, text) in [
        (MISSING.to_string(), "File not found"),
        (format!("incoming/{TAKEN}"), "Permission denied"),
    ] {
        let ran = run(Command::new(&tnftp)
            .current_dir(out.path())
            .arg(url(srv.addr(), &path)));
        ran.expect_code(1);
        assert!(
            ran.stdout().contains(text) || ran.stderr().contains(text),
            "{}",
            ran.describe()
        );
        assert_empty(out.path(), &ran);
    }
    // Scripted on stdin, verbose: each refusal is the reply to the command, no 150 anywhere.
    let local = Fixture::empty();
    let upload = local.write("upload.txt", b"upload");
    let script = local.write(
        "script",
        format!(
            "user anonymous me@\nbinary\nget \"{MISSING}\"\nput {} \"incoming/{TAKEN}\"\nbye\n",
            upload.display()
        )
        .as_bytes(),
    );
    let mut cmd = Command::new(&tnftp);
    cmd.current_dir(out.path())
        .args(["-n", "-v"])
        .arg(srv.addr().ip().to_string())
        .arg(srv.addr().port().to_string())
        .stdin(std::fs::File::open(&script).unwrap());
    let ran = Ran {
        command: format!("{cmd:?} < script"),
        cwd: Some(out.path().to_path_buf()),
        output: cmd.output().expect("run tnftp"),
    };
    let said = ran.stdout();
    assert!(
        said.contains("550 File not found") && said.contains("553 File name not allowed"),
        "{}",
        ran.describe()
    );
    assert!(
        !said.lines().any(|l| l.starts_with("150")),
        "{}",
        ran.describe()
    );
    assert_empty(out.path(), &ran);
    srv.stop().expect("stop");
}
