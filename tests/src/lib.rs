//! The shared kit of the end-to-end suite: temporary roots with hostile file names, child
//! processes that die with the test, waiting for a port, and locating the peers (curl, lftp,
//! vsftpd, ...) that `.ci/run` installs.
//!
//! A test that needs a peer is marked `#[cfg_attr(not(peer_curl), ignore = "needs curl")]`
//! (see [`probe`]): where the peer is missing it shows as ignored in cargo's summary; under
//! `CI=true` it runs and fails, and [`require_tool`] says which peer `.ci/run` must install.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod peers;
pub mod pki;

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

pub mod probe;

pub use probe::under_ci;

/// The path of `tool`, for a test marked `#[cfg_attr(not(peer_<tool>), ignore = "...")]`: such
/// a test runs only where the probe found the tool, or under CI, where a missing tool is a
/// failure with a message saying so.
pub fn require_tool(tool: &str) -> PathBuf {
    probe::find_tool(tool).unwrap_or_else(|| {
        panic!(
            "required peer `{tool}` is not installed{}",
            if under_ci() {
                ": .ci/run must install it"
            } else {
                " (run `cargo clean -p` on this crate if it was removed after the last build)"
            }
        )
    })
}

/// Panics unless `python3` can import `module` (see [`require_tool`]).
pub fn require_python_module(module: &str) {
    assert!(
        probe::has_python_module(module),
        "required Python module `{module}` is not installed: .ci/run must install it"
    );
}

/// A free TCP port for peers (vsftpd, pyftpdlib) that must be told a port rather than binding
/// port 0 themselves. Another process could take it before the peer binds: the peer's start is
/// then checked by [`wait_for_ftp`], which fails rather than talking to a stranger.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A loopback port that refuses connections for as long as this value lives: a socket is bound
/// to it but never listens, so no other process can take the port and a connect gets
/// ECONNREFUSED at once (unlike a port bound and dropped, which anyone may reuse).
#[derive(Debug)]
pub struct ClosedPort {
    addr: SocketAddr,
    _socket: socket2::Socket,
}

impl ClosedPort {
    /// Reserves a port on 127.0.0.1.
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .expect("local addr")
            .as_socket()
            .expect("an inet address");
        Self {
            addr,
            _socket: socket,
        }
    }

    /// The refusing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits until the FTP server `child` started answers on `addr` with its `220` greeting. Fails
/// at once when the child has exited (it could not bind, or crashed: its stderr is in the
/// panic message) and after `timeout`, so a test never talks to another process on the port.
pub fn wait_for_ftp(addr: SocketAddr, child: &mut ChildGuard, timeout: Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.child().try_wait().expect("poll child") {
            panic!(
                "{} exited ({status}) before serving on {addr}; stderr:\n{}",
                child.name(),
                child.stderr()
            );
        }
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("220") {
                return;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{} did not greet on {addr} within {timeout:?}; stderr:\n{}",
            child.name(),
            child.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs `cmd` to completion with a closed stdin. The [`Ran`] it returns prints the command
/// line, working directory, exit status, stdout and stderr when an assertion on it fails.
pub fn run(cmd: &mut Command) -> Ran {
    let described = format!("{cmd:?}");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    Ran {
        command: described,
        cwd: std::env::current_dir().ok(),
        output,
    }
}

/// A finished command and everything it printed.
pub struct Ran {
    /// The command line as run.
    pub command: String,
    /// The directory it ran in, when known.
    pub cwd: Option<PathBuf>,
    /// Its exit status and output.
    pub output: std::process::Output,
}

impl Ran {
    /// Its standard output, lossily decoded.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Its standard error, lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Its exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Everything about the run, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\ncwd: {:?}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.cwd,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Panics with [`describe`](Ran::describe) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "\n{}", self.describe());
        self
    }
}

/// A child process that is killed when dropped; its stderr is relayed line by line with a prefix
/// so a failing test shows what the peer said.
pub struct ChildGuard {
    child: Child,
    name: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout discarded and stderr relayed under `prefix`.
    pub fn spawn(mut cmd: Command, prefix: &str) -> Self {
        cmd.stdout(Stdio::null());
        Self::start(cmd, prefix)
    }

    /// Like [`spawn`](ChildGuard::spawn), but stdout is a pipe handed to the caller, to read
    /// what the child prints (a server's banner with its bound address) instead of polling.
    pub fn spawn_with_stdout(mut cmd: Command, prefix: &str) -> (Self, ChildStdout) {
        cmd.stdout(Stdio::piped());
        let mut guard = Self::start(cmd, prefix);
        let out = guard.child.stdout.take().expect("stdout is piped");
        (guard, out)
    }

    fn start(mut cmd: Command, prefix: &str) -> Self {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prefix}: {e}"));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let prefix = prefix.to_string();
            let kept = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[{prefix}] {line}");
                    if let Ok(mut k) = kept.lock() {
                        k.push_str(&line);
                        k.push('\n');
                    }
                }
            });
        }
        Self {
            child,
            name: prefix.to_string(),
            stderr,
        }
    }

    /// The name it was spawned under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
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
