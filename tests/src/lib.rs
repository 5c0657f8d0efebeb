//! The shared kit of the end-to-end suite: temporary roots with hostile file names, child
//! processes that die with the test, waiting for a port, and locating the peers (curl, lftp,
//! vsftpd, ...) that `.ci/run` installs.
//!
//! A test that needs a peer calls [`require_tool`]: under `CI=true` a missing peer fails the test
//! loudly; on a developer machine the test says on stderr that it is skipped.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod peers;

/// File names that break naive servers and clients: spaces, unicode, a percent-encoded look-alike,
/// a leading dash, a dotfile, shell metacharacters and a name of the maximum length (255 bytes)
/// most Linux file systems allow.
pub fn hostile_names() -> Vec<String> {
    vec![
        "with space.txt".to_string(),
        "ünïcödé-文件.bin".to_string(),
        "percent%20name.txt".to_string(),
        "-leading-dash.txt".to_string(),
        ".dotfile".to_string(),
        "quote'and\"semi;colon$(x).txt".to_string(),
        long_name(),
    ]
}

/// A 255-byte file name (the usual NAME_MAX).
pub fn long_name() -> String {
    let mut s = "L".repeat(251);
    s.push_str(".dat");
    s
}

/// Deterministic pseudo-random bytes (xorshift), so fixtures differ from each other and from
/// zero-filled buffers without pulling in a RNG crate.
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A temporary directory that holds one file per hostile name (each with distinct content) plus
/// whatever a test adds. Removed on drop.
pub struct Fixture {
    /// The temporary directory itself.
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// An empty fixture root.
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    /// A root filled with [`hostile_names`], each holding `size` bytes seeded by its index.
    pub fn with_hostile_files(size: usize) -> Self {
        let f = Self::empty();
        for (i, name) in hostile_names().iter().enumerate() {
            f.write(name, &pattern_bytes(size, i as u64 + 1));
        }
        f
    }

    /// The root path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `rel` (creating parent directories) and returns its full path.
    pub fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&p, data).expect("write fixture file");
        p
    }
}

/// SHA-256 of a byte slice, as lowercase hex.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 of a file, as lowercase hex, streamed.
pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("open {} for hashing: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read while hashing");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Whether we run under CI (`CI=true`), where missing peers are failures, never skips.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `tool` on PATH (or in /usr/sbin, where Debian puts vsftpd). Under CI a missing tool
/// panics with a message naming it; elsewhere the test is skipped with a note on stderr, and the
/// caller returns early on `None`.
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.push(PathBuf::from("/sbin"));
    if let Some(found) = dirs.iter().map(|d| d.join(tool)).find(|p| p.is_file()) {
        return Some(found);
    }
    if under_ci() {
        panic!("required peer `{tool}` is not installed: .ci/run must install it");
    }
    eprintln!("SKIPPED: `{tool}` is not installed here (under CI=true this is a failure)");
    None
}

/// Whether a Python module can be imported (pyftpdlib, ...), with the same CI rule as
/// [`require_tool`].
pub fn require_python_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if under_ci() {
            panic!("required Python module `{module}` is not installed: .ci/run must install it");
        }
        eprintln!("SKIPPED: Python module `{module}` is not installed here");
    }
    ok
}

/// A port that was free a moment ago on 127.0.0.1, for peers (vsftpd, pyftpdlib) that must be
/// told a port rather than binding port 0 themselves.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits until something accepts TCP connections on `addr`, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listened on {addr} within {timeout:?}");
}

/// A child process that is killed when dropped; its stderr is relayed line by line with a prefix
/// so a failing test shows what the peer said.
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout discarded and stderr relayed under `prefix`.
    pub fn spawn(mut cmd: Command, prefix: &str) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prefix}: {e}"));
        if let Some(err) = child.stderr.take() {
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[{prefix}] {line}");
                }
            });
        }
        Self { child }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Access to the underlying child, e.g. to send a signal or wait for it.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
