//! Validated settings, built from the raw flags of [`crate::cli`] with `TryFrom`: every value is
//! parsed and checked once, here, into the type the library uses (a [`Duration`], a
//! [`SocketAddr`] or [`HostPort`], an absolute path, a download [`Output`]), so that a bad flag
//! fails before any socket opens, with a message that names the flag.

use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use filexfer::download::{Output, safe_file_name};
use thiserror::Error;

use crate::cli::{GetArgs, LsArgs, ServeArgs};
use crate::paths::wire_name;
use crate::server::{DEFAULT_PORT, ServerConfig};

/// A flag whose value cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The value of `flag` is wrong, for the reason given.
    #[error("invalid {flag} {value:?}: {reason}")]
    Invalid {
        /// The flag, as typed (`--root`).
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

fn invalid(flag: &'static str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A timeout flag in whole seconds; 0 would mean "give up at once", never what anyone wants.
fn seconds(flag: &'static str, secs: u64) -> Result<Duration, ConfigError> {
    if secs == 0 {
        return Err(invalid(flag, secs, "must be at least 1 second"));
    }
    Ok(Duration::from_secs(secs))
}

/// A server to connect to: a host name or IP address and a port. The name is resolved only when
/// connecting (it may have several addresses, tried in turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port (never 0).
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST`, `HOST:PORT`, `IPv6`, `[IPv6]` or `[IPv6]:PORT`; a missing port is
    /// [`DEFAULT_PORT`].
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Self::new(a.ip().to_string(), a.port());
        }
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Self::new(ip.to_string(), DEFAULT_PORT);
        }
        match s.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{port:?} is not a port number (1-65535)"))?;
                Self::new(host.to_owned(), port)
            }
            None => Self::new(s.to_owned(), DEFAULT_PORT),
        }
    }

    fn new(host: String, port: u16) -> Result<Self, String> {
        if host.is_empty() {
            return Err("no host name".into());
        }
        if host.parse::<IpAddr>().is_err() && host.contains(['[', ']', ':', '/', ' ']) {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        if port == 0 {
            return Err("port 0 cannot be connected to".into());
        }
        Ok(Self { host, port })
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<SocketAddr> for HostPort {
    fn from(a: SocketAddr) -> Self {
        Self {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

/// `host:port`, with an IPv6 address in brackets (RFC 3986 §3.2.2), as users type it.
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The server a client command talks to, and how long it waits for it at each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The server.
    pub addr: HostPort,
    /// Wait limit for every network step (connect, reply, every read).
    pub timeout: Duration,
}

impl Remote {
    /// Validates the `ADDR:PORT` argument and the `--timeout` flag of `get` and `ls`.
    fn from_flags(addr: &str, timeout: u64) -> Result<Self, ConfigError> {
        Ok(Self {
            addr: HostPort::parse(addr).map_err(|reason| invalid("ADDR:PORT", addr, reason))?,
            timeout: seconds("--timeout", timeout)?,
        })
    }
}

/// Validated settings of `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// How to serve.
    pub server: ServerConfig,
}

impl TryFrom<&ServeArgs> for ServeConfig {
    type Error = ConfigError;

    fn try_from(a: &ServeArgs) -> Result<Self, ConfigError> {
        let root = a
            .root
            .canonicalize()
            .map_err(|e| invalid("--root", a.root.display(), e))?;
        if !root.is_dir() {
            return Err(invalid("--root", a.root.display(), "not a directory"));
        }
        if a.max_connections == 0 {
            return Err(invalid("--max-connections", 0, "must be at least 1"));
        }
        Ok(Self {
            bind: a.bind,
            server: ServerConfig {
                root,
                max_connections: a.max_connections,
                idle_timeout: seconds("--idle-timeout", a.idle_timeout)?,
                io_timeout: seconds("--io-timeout", a.io_timeout)?,
                grace: seconds("--grace", a.grace)?,
                hidden: a.hidden,
            },
        })
    }
}

/// Validated settings of `get`.
#[derive(Debug, Clone)]
pub struct GetConfig {
    /// The server and the wait limit.
    pub remote: Remote,
    /// The remote name, as it travels (see [`crate::paths::wire_name`]).
    pub name: String,
    /// `name` is escaped: the name given is not UTF-8.
    pub escaped: bool,
    /// Where the bytes go: the path named with `-o`, standard output for `-o -`, else the last
    /// component of the remote name in the current directory.
    pub output: Output,
    /// Resume from `<file>.part` (or a shorter file under the final name).
    pub resume: bool,
    /// Suppress progress and summary.
    pub quiet: bool,
}

impl TryFrom<&GetArgs> for GetConfig {
    type Error = ConfigError;

    fn try_from(a: &GetArgs) -> Result<Self, ConfigError> {
        if a.name.is_empty() {
            return Err(invalid("NAME", "", "empty file name"));
        }
        let (name, escaped) = wire_name(&a.name);
        let output = match &a.output {
            Some(p) if p.as_os_str() == "-" => Output::Stdout,
            Some(p) if p.as_os_str().is_empty() => {
                return Err(invalid("--output", "", "empty path"));
            }
            Some(p) => Output::Path(p.clone()),
            // Never a path from the remote name: `a/../../x` must not write outside the
            // current directory.
            None => {
                let bytes = a.name.as_bytes();
                let last = bytes.rsplit(|b| *b == b'/').next().unwrap_or_default();
                // The rules look at ASCII only (`.`, `..`, `/`, `\`, NUL), which a lossy
                // decoding keeps: a name that is not UTF-8 is judged the same way.
                if safe_file_name(&String::from_utf8_lossy(last)).is_none() {
                    return Err(invalid(
                        "NAME",
                        &name,
                        "cannot derive a local file name from it: name one with -o",
                    ));
                }
                Output::Path(PathBuf::from(OsStr::from_bytes(last)))
            }
        };
        if a.resume && output == Output::Stdout {
            return Err(invalid(
                "--continue",
                "-o -",
                "cannot resume a download to standard output",
            ));
        }
        Ok(Self {
            remote: Remote::from_flags(&a.addr, a.timeout)?,
            name,
            escaped,
            output,
            resume: a.resume,
            quiet: a.quiet,
        })
    }
}

/// Validated settings of `ls`.
#[derive(Debug, Clone)]
pub struct LsConfig {
    /// The server and the wait limit.
    pub remote: Remote,
    /// The directory to list (`.` for the root), as it travels.
    pub dir: String,
    /// `dir` is escaped: the name given is not UTF-8.
    pub escaped: bool,
}

impl TryFrom<&LsArgs> for LsConfig {
    type Error = ConfigError;

    fn try_from(a: &LsArgs) -> Result<Self, ConfigError> {
        if a.dir.is_empty() {
            return Err(invalid(
                "DIR",
                "",
                "empty directory name (use . for the root)",
            ));
        }
        let (dir, escaped) = wire_name(&a.dir);
        Ok(Self {
            remote: Remote::from_flags(&a.addr, a.timeout)?,
            dir,
            escaped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("tcp-fileserv").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    fn serve(args: &[&str]) -> Result<ServeConfig, ConfigError> {
        let Command::Serve(a) = parse(args) else {
            panic!("not serve")
        };
        ServeConfig::try_from(&a)
    }

    fn get(args: &[&str]) -> Result<GetConfig, ConfigError> {
        let Command::Get(a) = parse(args) else {
            panic!("not get")
        };
        GetConfig::try_from(&a)
    }

    fn ls(args: &[&str]) -> Result<LsConfig, ConfigError> {
        let Command::Ls(a) = parse(args) else {
            panic!("not ls")
        };
        LsConfig::try_from(&a)
    }

    #[test]
    fn dotfiles_are_served_only_with_hidden() {
        assert!(!serve(&["serve"]).unwrap().server.hidden);
        assert!(serve(&["serve", "--hidden"]).unwrap().server.hidden);
    }

    #[test]
    fn a_name_that_is_not_utf8_travels_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"dir/caf\xe9");
        let Command::Get(a) = Cli::try_parse_from([
            std::ffi::OsStr::new("t"),
            "get".as_ref(),
            "h:1".as_ref(),
            raw,
        ])
        .unwrap()
        .command
        else {
            panic!("not get")
        };
        let c = GetConfig::try_from(&a).unwrap();
        assert_eq!((c.name.as_str(), c.escaped), ("dir/caf\\xe9", true));
        let want = std::ffi::OsStr::from_bytes(b"caf\xe9");
        assert_eq!(c.output, Output::Path(PathBuf::from(want)));
        let c = get(&["get", "h:1", "back\\slash/ok"]).unwrap();
        assert_eq!((c.name.as_str(), c.escaped), ("back\\slash/ok", false));
    }

    #[test]
    fn serve_checks_root_and_ranges() {
        assert!(serve(&["serve"]).unwrap().server.root.is_absolute());
        let err = serve(&["serve", "--root", "/no/such/dir"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--root") && err.contains("/no/such/dir"),
            "{err}"
        );
        for flag in [
            "--idle-timeout",
            "--io-timeout",
            "--grace",
            "--max-connections",
        ] {
            let err = serve(&["serve", flag, "0"]).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn get_output_forms() {
        let output = |args: &[&str]| get(args).unwrap().output;
        let path = |p: &str| Output::Path(p.into());
        assert_eq!(output(&["get", "h:1", "f"]), path("f"));
        assert_eq!(output(&["get", "h:1", "dir/sub/a b.txt"]), path("a b.txt"));
        assert_eq!(output(&["get", "h:1", "../../etc/passwd"]), path("passwd"));
        assert_eq!(output(&["get", "h:1", "--", "-dash"]), path("-dash"));
        assert_eq!(output(&["get", "h:1", "f", "-o", "-"]), Output::Stdout);
        assert_eq!(output(&["get", "h:1", "f", "-o", "-dash"]), path("-dash"));
        for no_name in ["dir/..", ".", "/", "dir/", "a\\b"] {
            let err = get(&["get", "h:1", no_name]).unwrap_err().to_string();
            assert!(
                err.contains("NAME") && err.contains("-o"),
                "{no_name}: {err}"
            );
        }
        let err = get(&["get", "h:1", "f", "-o", "-", "-C"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--continue"), "{err}");
        let err = get(&["get", "h:1", "f", "--timeout", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--timeout"), "{err}");
    }

    #[test]
    fn ls_timeout_zero_is_refused_here() {
        let err = ls(&["ls", "h", "--timeout", "0"]).unwrap_err().to_string();
        assert!(
            err.contains("--timeout") && err.contains("at least 1"),
            "{err}"
        );
        let ok = ls(&["ls", "h"]).unwrap();
        assert_eq!(
            (ok.dir.as_str(), ok.remote.timeout),
            (".", Duration::from_secs(30))
        );
    }

    #[test]
    fn host_port_table() {
        let ok = |s: &str, host: &str, port: u16, shown: &str| {
            let hp = HostPort::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((hp.host.as_str(), hp.port), (host, port), "{s}");
            assert_eq!(hp.to_string(), shown, "{s}");
        };
        ok("127.0.0.1:9", "127.0.0.1", 9, "127.0.0.1:9");
        ok("127.0.0.1", "127.0.0.1", 7070, "127.0.0.1:7070");
        ok("localhost", "localhost", 7070, "localhost:7070");
        ok("files.example:70", "files.example", 70, "files.example:70");
        ok("[::1]:9", "::1", 9, "[::1]:9");
        ok("::1", "::1", 7070, "[::1]:7070");
        ok("[::1]", "::1", 7070, "[::1]:7070");
        for bad in [
            "",
            ":80",
            "host:",
            "host:http",
            "host:70000",
            "host:0",
            "a:b:c",
            "[x]:1",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?} accepted");
        }
        let err = ls(&["ls", "host:http"]).unwrap_err().to_string();
        assert!(
            err.contains("ADDR:PORT") && err.contains("port number"),
            "{err}"
        );
    }
}
