//! End to end on small sizes: the binary's table, JSON, CSV and SVG, the bytes each client
//! received (hostile names included), and that no file is left behind, even after Ctrl-C.
//! Never timings: the figures depend on the machine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ftp_client::tls::Trust;
use ftp_vs_tcp::measure::{FtpFile, ftp_get, tcp_get};
use ftp_vs_tcp::report::{CSV_COLUMNS, SCENARIO_COLUMNS, SIZE_COLUMNS};
use ftp_vs_tcp::servers::Servers;
use tcp_fileserv::config::HostPort;
use test_kit::{Fixture, hostile_names, run, sha256_file};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ftp-vs-tcp"))
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The fields of a CSV line (RFC 4180 quoting; the tool writes no line breaks inside fields).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The cells of a Markdown table row.
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split(" | ")
        .map(str::trim)
        .collect()
}

#[test]
fn a_small_comparison_prints_the_table_and_writes_json_csv_and_svg() {
    let tmp = Fixture::empty();
    let out = Fixture::empty();
    let (json, csv, svg) = (
        out.path().join("r.json"),
        out.path().join("r.csv"),
        out.path().join("r.svg"),
    );
    let ran = run(bin()
        .env("TMPDIR", tmp.path())
        .args(["--sizes", "1K,64K", "--runs", "2", "--clients", "1,2"])
        .args(["--small-files", "5", "--quiet"])
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .arg("--chart")
        .arg(&svg));
    ran.expect_code(0);
    let stdout = ran.stdout();

    // The table: its header, then one row per size and protocol with every column filled.
    let lines: Vec<&str> = stdout.lines().collect();
    let head = lines
        .iter()
        .position(|l| cells(l) == SIZE_COLUMNS)
        .unwrap_or_else(|| panic!("no size table header in\n{stdout}"));
    let rows: Vec<Vec<&str>> = lines[head + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| cells(l))
        .collect();
    let keys: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        keys,
        [
            ("1 KiB", "TCP"),
            ("1 KiB", "FTP"),
            ("1 KiB", "FTPS"),
            ("64 KiB", "TCP"),
            ("64 KiB", "FTP"),
            ("64 KiB", "FTPS")
        ],
        "\n{stdout}"
    );
    for r in &rows {
        assert_eq!(r.len(), SIZE_COLUMNS.len(), "{r:?}");
        assert!(r.iter().all(|c| !c.is_empty()), "{r:?}");
        assert!(r[9].ends_with('x'), "ratio column: {r:?}");
    }
    assert_eq!(rows[0][9], "1.00x", "TCP is the reference");
    // FTP's set-up is shown split: connect + login + TYPE/SIZE + EPSV.
    assert_eq!(rows[1][5].matches(" + ").count(), 3, "{:?}", rows[1]);
    // FTPS's adds the control connection's handshake, and shows the data connection's.
    assert_eq!(rows[2][5].matches(" + ").count(), 4, "{:?}", rows[2]);
    assert!(rows[2][5].contains("+ TLS "), "{:?}", rows[2]);
    assert!(rows[2][5].contains("; data TLS "), "{:?}", rows[2]);
    assert!(stdout.contains("FTPS: explicit FTPS"), "{stdout}");
    let shead = lines
        .iter()
        .position(|l| cells(l) == SCENARIO_COLUMNS)
        .unwrap_or_else(|| panic!("no scenario table in\n{stdout}"));
    let scen: Vec<Vec<&str>> = lines[shead + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| cells(l))
        .collect();
    // 5 small files: one connection/session and one per file; 1 and 2 clients: both protocols.
    assert_eq!(scen.len(), 4 + 2 * 2, "\n{stdout}");
    assert!(
        scen.iter()
            .any(|r| r[0] == "5 x 1 KiB, one session" && r[1] == "FTP")
    );
    assert!(
        scen.iter()
            .any(|r| r[0] == "2 clients at once x 64 KiB" && r[1] == "TCP")
    );

    // JSON: parses, and says every download was checked.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    let sizes = v["sizes"].as_array().expect("sizes");
    assert_eq!(sizes.len(), 6);
    for s in sizes {
        assert_eq!(s["verified"], true, "{s}");
        assert_eq!(s["runs"], 2, "{s}");
        assert_eq!(s["samples"].as_array().map(Vec::len), Some(2), "{s}");
        let rt = s["round_trips"].as_u64().unwrap();
        // TCP: connect + GET. FTP: connect, USER, PASS, TYPE, SIZE, EPSV, data, RETR. FTPS:
        // also AUTH TLS, the control handshake, PBSZ, PROT and the data handshake.
        let want = match s["protocol"].as_str() {
            Some("tcp") => 2,
            Some("ftp") => 8,
            _ => 13,
        };
        assert_eq!(rt, want, "{s}");
        let tls =
            s["tls_control_s"].as_f64().unwrap() > 0.0 && s["tls_data_s"].as_f64().unwrap() > 0.0;
        assert_eq!(
            tls,
            s["protocol"] == "ftps",
            "TLS phases only for FTPS: {s}"
        );
    }
    assert_eq!(
        v["ftps"].as_str().map(|s| s.starts_with("explicit")),
        Some(true)
    );
    assert_eq!(v["scenarios"].as_array().map(Vec::len), Some(8));

    // CSV: the header, then one line per size row and scenario row, all as wide.
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<Vec<String>> = text.lines().map(csv_fields).collect();
    assert_eq!(lines[0], CSV_COLUMNS);
    assert_eq!(lines.len(), 1 + 6 + 8);
    assert!(lines.iter().all(|l| l.len() == CSV_COLUMNS.len()), "{text}");
    assert!(
        lines.iter().any(|l| l[1] == "5 x 1 KiB, one session"),
        "a quoted field: {text}"
    );

    // SVG: well-formed XML with a line per protocol and readable size labels.
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg_text).expect("valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::trim))
        .collect();
    for want in [
        "TCP",
        "FTP",
        "FTPS",
        "TCP total",
        "FTP set-up (before the request)",
        "FTPS total",
        "1 KiB",
        "64 KiB",
    ] {
        assert!(texts.contains(&want), "{want:?} not among {texts:?}");
    }
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(
        lines >= 6,
        "throughput and time lines for the three protocols: {lines}"
    );

    assert!(
        entries(tmp.path()).is_empty(),
        "left behind: {:?}",
        entries(tmp.path())
    );
}

#[test]
fn every_client_receives_every_hostile_name_byte_for_byte() {
    let fixture = Fixture::with_hostile_files(100_000);
    let servers = Servers::start(fixture.path(), 4).expect("servers start");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let timeout = Duration::from_secs(30);
    for name in hostile_names() {
        let want = sha256_file(&fixture.path().join(&name));
        let t = tcp_get(&HostPort::from(servers.tcp), &name, true, timeout)
            .unwrap_or_else(|e| panic!("TCP {name:?}: {e:?}"));
        assert_eq!(
            (t.bytes, t.sha256.as_deref()),
            (100_000, Some(&*want)),
            "TCP {name:?}"
        );
        let f = FtpFile {
            host: servers.ftp.ip().to_string(),
            port: servers.ftp.port(),
            user: "anonymous".into(),
            password: "test@".into(),
            dirs: Vec::new(),
            name: name.clone(),
            tls: None,
        };
        let secure = FtpFile {
            port: servers.ftps.port(),
            tls: Some(Trust::Pin(servers.ftps_pin)),
            ..f.clone()
        };
        let f = rt
            .block_on(ftp_get(&f, true, timeout))
            .unwrap_or_else(|e| panic!("FTP {name:?}: {e:?}"));
        assert_eq!(
            (f.bytes, f.sha256.as_deref()),
            (100_000, Some(&*want)),
            "FTP {name:?}"
        );
        assert!(f.setup >= f.connect + f.login, "phases add up: {f:?}");
        assert_eq!(f.tls_control + f.tls_data, Duration::ZERO, "no TLS: {f:?}");
        let s = rt
            .block_on(ftp_get(&secure, true, timeout))
            .unwrap_or_else(|e| panic!("FTPS {name:?}: {e:?}"));
        assert_eq!(
            (s.bytes, s.sha256.as_deref()),
            (100_000, Some(&*want)),
            "FTPS {name:?}"
        );
        assert!(
            s.setup >= s.connect + s.tls_control + s.login,
            "phases add up: {s:?}"
        );
    }
}

#[test]
fn ctrl_c_removes_the_temporary_files() {
    let tmp = Fixture::empty();
    let mut child = bin()
        .env("TMPDIR", tmp.path())
        .args(["--sizes", "1G", "--runs", "50", "--quiet", "--no-scenarios"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it has begun writing its files (a bound, not a timing claim).
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let dirs = entries(tmp.path());
        if let Some(d) = dirs.first() {
            if !entries(&tmp.path().join(d)).is_empty() {
                break true;
            }
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(started, "the tool never wrote its files");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        entries(tmp.path()).is_empty(),
        "left behind: {:?}",
        entries(tmp.path())
    );
}

/// The shaped link: two namespaces and a tbf-shaped veth pair, made and removed by the tool.
/// Needs root (CI runs as root) and tc.
#[test]
#[cfg_attr(not(peer_tc), ignore = "needs tc (iproute2)")]
fn the_shaped_link_is_measured_and_removed() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the shaped link needs root");
    let tmp = Fixture::empty();
    let out = Fixture::empty();
    let json = out.path().join("r.json");
    let ran = run(bin()
        .env("TMPDIR", tmp.path())
        .args(["--sizes", "1K,64K", "--runs", "1", "--clients", "1"])
        .args(["--small-files", "3", "--quiet", "--link-rate", "200mbit"])
        .arg("--json")
        .arg(&json));
    ran.expect_code(0);
    assert!(
        ran.stdout().contains("Over a shaped link: 200mbit"),
        "{}",
        ran.describe()
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    let shaped = &v["shaped"];
    assert_eq!(
        shaped["sizes"].as_array().map(Vec::len),
        Some(6),
        "{shaped}"
    );
    assert!(
        shaped["sizes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verified"] == true)
    );
    assert_eq!(shaped["scenarios"].as_array().map(Vec::len), Some(4));
    // Its namespaces are gone (named after the tool's pid, which we do not know: none is left).
    let ns = run(Command::new("ip").args(["netns", "list"]));
    assert!(!ns.stdout().contains("ftpvstcp"), "{}", ns.stdout());
    assert!(entries(tmp.path()).is_empty());
}
