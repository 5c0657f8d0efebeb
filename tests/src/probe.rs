//! Which real peers (curl, lftp, vsftpd, pyftpdlib, ...) this machine has, told to the compiler
//! so that a test whose peer is missing shows as **ignored** in cargo's summary rather than as
//! passed.
//!
//! Each crate with peer tests has a two-line `build.rs` that includes this file with
//! `#[path]` (std only, so the product crates gain no build dependency) and calls
//! [`emit_cfgs`]. It sets `peer_<name>` (dashes as underscores) for every peer found; a test
//! then carries `#[cfg_attr(not(peer_curl), ignore = "needs curl")]`. Under `CI=true` every
//! cfg is set whether the peer is there or not, so a missing peer fails its tests instead of
//! skipping them: `.ci/run` must install it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A peer and how to find it.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// A program on PATH (or in /usr/sbin, where Debian puts vsftpd).
    Tool(&'static str),
    /// A module `python3` can import.
    PythonModule(&'static str),
}

/// Every peer the suite's tests use.
pub const PEERS: &[Peer] = &[
    Peer::Tool("curl"),
    // FTPS tests compare fingerprints and pin keys with what openssl prints.
    Peer::Tool("openssl"),
    Peer::Tool("wget"),
    Peer::Tool("lftp"),
    Peer::Tool("tnftp"),
    Peer::Tool("vsftpd"),
    Peer::Tool("nc"),
    Peer::Tool("python3"),
    Peer::PythonModule("pyftpdlib"),
    // iproute2's traffic control, for ftp-vs-tcp's shaped link (with `ip`, same package).
    Peer::Tool("tc"),
    // The load balancer of the scale-out tests (ftp-server/tests/haproxy.rs).
    Peer::Tool("haproxy"),
];

impl Peer {
    /// The name used in cfgs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tool(n) | Self::PythonModule(n) => n,
        }
    }

    /// The cfg set when the peer is present: `peer_<name>`.
    pub fn cfg(self) -> String {
        format!("peer_{}", self.name().replace('-', "_"))
    }
}

/// Whether we run under CI (`CI=true`), where missing peers are failures, never skips.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The directories searched for tools: PATH, then /usr/sbin and /sbin.
pub fn tool_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.push(PathBuf::from("/sbin"));
    dirs
}

/// Where `tool` is installed, if it is.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    tool_dirs()
        .into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether `python3` can import `module`.
pub fn has_python_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `peer` is installed here.
pub fn present(peer: Peer) -> bool {
    match peer {
        Peer::Tool(t) => find_tool(t).is_some(),
        Peer::PythonModule(m) => has_python_module(m),
    }
}

/// Prints the build-script lines: one `rustc-check-cfg` per peer, one `rustc-cfg` per peer
/// present (all of them under CI), and what to watch so that installing or removing a peer
/// re-runs the probe.
pub fn emit_cfgs() {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let ci = under_ci();
    for &peer in PEERS {
        println!("cargo::rustc-check-cfg=cfg({})", peer.cfg());
        let found = present(peer);
        if ci || found {
            println!("cargo::rustc-cfg={}", peer.cfg());
        }
        // A missing file counts as changed, so the probe runs again on each build until the
        // peer is installed; a present one is watched for removal or reinstallation.
        let watch = match peer {
            Peer::Tool(t) => find_tool(t).unwrap_or_else(|| PathBuf::from("/usr/bin").join(t)),
            Peer::PythonModule(m) => PathBuf::from(format!("/nonexistent-probe-marker/{m}")),
        };
        if matches!(peer, Peer::Tool(_)) || !found {
            println!("cargo::rerun-if-changed={}", watch.display());
        }
    }
}
