//! The command line (`serve`, `get`, `ls`) and its validation into typed settings, so that a bad
//! flag fails before any socket opens, with a message that names the flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;

use crate::client::Output;
use crate::server::{DEFAULT_PORT, ServerConfig};

/// Raw command-line flags, as clap parses them.
#[derive(Debug, Parser)]
#[command(
    name = "tcp-fileserv",
    version,
    about = "Serve a directory over a small framed TCP protocol, and download from it",
    long_about = "Serve a directory over a small framed TCP protocol, and download from it.\n\n\
                  Exit codes: 0 ok, 1 other error, 2 usage, 3 cannot connect, 4 not found, \
                  5 access denied, 6 protocol error, 7 local write error, 8 timeout, 9 server busy, \
                  10 resume impossible."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory, read-only, to any number of clients.
    Serve(ServeArgs),
    /// Download one file.
    Get(GetArgs),
    /// List what the server offers in a directory (names and sizes).
    Ls(LsArgs),
}

/// Flags of `tcp-fileserv serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory to serve (read-only); the current directory by default.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Address and port to listen on; all interfaces on port 7070 by default. Use `[::]:PORT` for
    /// IPv6 (and, on Linux, IPv4 too).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT))]
    pub bind: SocketAddr,
    /// Most clients served at once; more get a "busy" reply.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a connection may wait between requests before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a read or write inside a request may stall before the client is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub io_timeout: u64,
    /// Seconds running transfers may go on after Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub grace: u64,
}

/// Flags of `tcp-fileserv get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The server, as HOST:PORT (the port defaults to 7070).
    #[arg(value_name = "ADDR:PORT")]
    pub addr: String,
    /// The file to download, relative to the server's root (`dir/file.txt`).
    pub name: String,
    /// Where to save it: a path, or `-` for standard output. Default: `./<basename of NAME>`.
    #[arg(short, long, value_name = "PATH|-", allow_hyphen_values = true)]
    pub output: Option<PathBuf>,
    /// Resume a partial download (`<file>.part`) from its current length.
    #[arg(short = 'C', long = "continue")]
    pub resume: bool,
    /// Seconds to wait for the server at each step (connect, reply, every read).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// No progress bar and no summary line.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Flags of `tcp-fileserv ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The server, as HOST:PORT (the port defaults to 7070).
    #[arg(value_name = "ADDR:PORT")]
    pub addr: String,
    /// Directory to list, relative to the server's root; its root by default.
    #[arg(default_value = ".")]
    pub dir: String,
    /// Seconds to wait for the server at each step.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

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

fn seconds(flag: &'static str, secs: u64) -> Result<Duration, ConfigError> {
    if secs == 0 {
        return Err(invalid(flag, secs, "must be at least 1 second"));
    }
    Ok(Duration::from_secs(secs))
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
            },
        })
    }
}

/// Validated settings of `get`.
#[derive(Debug, Clone)]
pub struct GetConfig {
    /// `HOST:PORT`, with the default port filled in.
    pub addr: String,
    /// The remote name.
    pub name: String,
    /// Where the bytes go.
    pub output: Output,
    /// Resume from `<file>.part`.
    pub resume: bool,
    /// Wait limit for every network step.
    pub timeout: Duration,
    /// Suppress progress and summary.
    pub quiet: bool,
}

impl TryFrom<&GetArgs> for GetConfig {
    type Error = ConfigError;

    fn try_from(a: &GetArgs) -> Result<Self, ConfigError> {
        let output = match &a.output {
            None => Output::Default,
            Some(p) if p.as_os_str() == "-" => Output::Stdout,
            Some(p) if p.as_os_str().is_empty() => {
                return Err(invalid("--output", "", "empty path"));
            }
            Some(p) => Output::Path(p.clone()),
        };
        if a.resume && output == Output::Stdout {
            return Err(invalid(
                "--continue",
                "-o -",
                "cannot resume a download to standard output",
            ));
        }
        if a.name.is_empty() {
            return Err(invalid("NAME", "", "empty file name"));
        }
        Ok(Self {
            addr: with_default_port(&a.addr),
            name: a.name.clone(),
            output,
            resume: a.resume,
            timeout: seconds("--timeout", a.timeout)?,
            quiet: a.quiet,
        })
    }
}

/// `host` alone becomes `host:7070`, a bare IPv6 address `[v6]:7070`; `host:port` and
/// `[v6]:port` stay as they are. No name is resolved here.
pub fn with_default_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    if let Ok(ip) = addr.trim_matches(['[', ']']).parse::<IpAddr>() {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    match addr.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => addr.to_owned(),
        _ => format!("{addr}:{DEFAULT_PORT}"),
    }
}

/// The addresses a peer can use to reach a server bound to `bind`: every interface address when
/// bound to the unspecified address (LAN addresses first, loopback last), else `bind` itself.
pub fn reachable_addresses(bind: SocketAddr) -> Vec<SocketAddr> {
    if !bind.ip().is_unspecified() {
        return vec![bind];
    }
    let want_v6 = bind.is_ipv6();
    let mut addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        // A socket bound to [::] also takes IPv4 on Linux by default (bindv6only=0).
        .filter(|ip| ip.is_ipv4() || want_v6)
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    addrs.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    addrs.dedup();
    addrs
        .into_iter()
        .map(|ip| SocketAddr::new(ip, bind.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tcp-fileserv").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn serve_defaults_and_checks() {
        let Command::Serve(a) = parse(&["serve"]).command else {
            panic!("not serve")
        };
        assert_eq!(a.bind.port(), DEFAULT_PORT);
        assert!(a.bind.ip().is_unspecified());
        let cfg = ServeConfig::try_from(&a).unwrap();
        assert!(cfg.server.root.is_absolute());

        let Command::Serve(a) = parse(&["serve", "--root", "/no/such/dir"]).command else {
            panic!("not serve")
        };
        let err = ServeConfig::try_from(&a).unwrap_err().to_string();
        assert!(
            err.contains("--root") && err.contains("/no/such/dir"),
            "{err}"
        );

        let Command::Serve(a) = parse(&["serve", "--idle-timeout", "0"]).command else {
            panic!("not serve")
        };
        let err = ServeConfig::try_from(&a).unwrap_err().to_string();
        assert!(err.contains("--idle-timeout"), "{err}");
        assert!(Cli::try_parse_from(["t", "serve", "--bind", "nonsense"]).is_err());
    }

    #[test]
    fn get_output_forms() {
        let cfg = |args: &[&str]| {
            let Command::Get(a) = parse(args).command else {
                panic!("not get")
            };
            GetConfig::try_from(&a)
        };
        assert_eq!(cfg(&["get", "h:1", "f"]).unwrap().output, Output::Default);
        assert_eq!(
            cfg(&["get", "h:1", "f", "-o", "-"]).unwrap().output,
            Output::Stdout
        );
        assert_eq!(
            cfg(&["get", "h:1", "f", "-o", "-dash"]).unwrap().output,
            Output::Path("-dash".into())
        );
        let err = cfg(&["get", "h:1", "f", "-o", "-", "-C"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--continue"), "{err}");
    }

    #[test]
    fn default_port_is_filled_in() {
        assert_eq!(with_default_port("127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:7070");
        assert_eq!(with_default_port("localhost"), "localhost:7070");
        assert_eq!(with_default_port("[::1]:9"), "[::1]:9");
        assert_eq!(with_default_port("::1"), "[::1]:7070");
        assert_eq!(with_default_port("[::1]"), "[::1]:7070");
    }

    #[test]
    fn reachable_addresses_of_a_specific_bind_is_itself() {
        let a: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(reachable_addresses(a), vec![a]);
        let all = reachable_addresses("0.0.0.0:5".parse().unwrap());
        assert!(all.iter().any(|a| a.ip().is_loopback()), "{all:?}");
        assert!(all.iter().all(|a| a.is_ipv4() && a.port() == 5));
    }
}
