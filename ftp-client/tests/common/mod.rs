//! What every end-to-end test file of ftp-client shares: running the client in-process with a
//! command line, building URLs from hostile names, and the fake servers' bounded accept.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ftp_client::{ClientError, Report, Tracer};

/// Runs the client in-process with `args` (as after `ftp-client`); returns the result, the
/// listing output and the protocol trace.
pub fn client(args: &[&str]) -> (Result<Report, ClientError>, String, String) {
    let config = match ftp_client::config::from_args(
        std::iter::once("ftp-client").chain(args.iter().copied()),
    ) {
        Ok(c) => c,
        Err(e) => return (Err(e), String::new(), String::new()),
    };
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let trace: Tracer = Arc::new(move |l: &str| {
        let mut s = sink.lock().unwrap();
        s.push_str(l);
        s.push('\n');
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    let r = rt.block_on(ftp_client::run(&config, &mut out, Some(trace)));
    let trace = log.lock().unwrap().clone();
    (r, String::from_utf8_lossy(&out).into_owned(), trace)
}

/// The exit code the binary would end with.
pub fn exit_code(r: &Result<Report, ClientError>) -> u8 {
    match r {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A temporary path as a command-line argument.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Every path below `root`, relative, with its contents (`None` for a directory or a symlink,
/// which is recorded but never followed), for before/after comparisons of a local tree.
pub fn walk(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(root).expect("below root").to_path_buf();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            if m.file_type().is_symlink() {
                out.insert(rel, None);
            } else if m.is_dir() {
                out.insert(rel, None);
                todo.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Every wait of a fake server ends after this long, so a client that never comes (or never
/// reads) cannot hang the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// Accepts one connection on `l` within [`WAIT`], without polling in a sleep loop: `poll(2)`
/// wakes on the connection itself. Reads and writes on it time out after [`WAIT`] too.
pub fn accept_within(l: &TcpListener) -> Option<TcpStream> {
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for a descriptor `l` keeps open during the call.
    let n = unsafe { libc::poll(&mut p, 1, WAIT.as_millis() as i32) };
    if n != 1 {
        return None;
    }
    let (s, _) = l.accept().ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    s.set_write_timeout(Some(WAIT)).ok()?;
    Some(s)
}
