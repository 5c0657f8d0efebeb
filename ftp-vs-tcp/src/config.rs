//! The command line in two stages: [`Cli`] holds the raw flags as clap parsed them;
//! [`Config::try_from`] checks them into typed values (sizes in bytes, parsed URLs), so that a
//! bad flag fails before any file is written or any socket opens, with a message naming it.

use std::path::PathBuf;

use clap::Parser;
use ftp_client::target::{Remote, parse_url};
use tcp_fileserv::config::HostPort;
use thiserror::Error;

/// Sizes measured when `--sizes` is not given: 1 KiB to 1 GiB.
pub const DEFAULT_SIZES: &str = "1K,64K,1M,16M,256M,1G";

/// Raw TCP against FTP: the suite's own servers and clients, side by side.
///
/// With no arguments, starts ftp-server and tcp-fileserv in this process on loopback over a
/// temporary directory, downloads files of each size with the suite's TCP and FTP clients and
/// prints what FTP costs next to raw TCP. With --ftp and --tcp, measures real servers instead.
#[derive(Debug, Parser)]
#[command(name = "ftp-vs-tcp", version)]
pub struct Cli {
    /// File sizes to measure, comma-separated, with K, M, G suffixes (powers of 1024).
    #[arg(long, value_name = "LIST", default_value = DEFAULT_SIZES)]
    pub sizes: String,
    /// Downloads per size and protocol (the median is reported); one more, first, checks the
    /// bytes and warms the caches and is not counted.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub runs: u32,
    /// Concurrent clients for the concurrency scenario, comma-separated.
    #[arg(long, value_name = "LIST", default_value = "1,8,64")]
    pub clients: String,
    /// Files in the many-small-files scenario (1 KiB each).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub small_files: u32,
    /// Skip the scenarios beyond one file (many small files, concurrent clients).
    #[arg(long)]
    pub no_scenarios: bool,
    /// Also measure over a rate-limited link: a veth pair between two network namespaces that
    /// the tool creates and removes, shaped with tbf to this rate (e.g. 100mbit). Needs root.
    #[arg(long, value_name = "RATE")]
    pub link_rate: Option<String>,
    /// Delay added each way on that link, in milliseconds (netem over tbf; needs the kernel's
    /// sch_netem). 0: tbf alone.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub link_delay: u32,
    /// The shaped link at 100mbit (same as --link-rate 100mbit).
    #[arg(long)]
    pub shaped: bool,
    /// A real FTP server's file: ftp://HOST/DIR/FILE, or ftp://USER:PASS@HOST:PORT/DIR/FILE (needs
    /// --tcp).
    #[arg(long, value_name = "URL", requires = "tcp")]
    pub ftp: Option<String>,
    /// A real tcp-fileserv serving the same file: HOST:PORT/NAME (needs --ftp).
    #[arg(long, value_name = "HOST:PORT/NAME", requires = "ftp")]
    pub tcp: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the results as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Also draw throughput and time per file against size as an SVG chart in this file.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Seconds any one wait may last before a download fails.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where the files come from.
#[derive(Debug, Clone)]
pub enum Target {
    /// Our own two servers, started here over files created here.
    Local {
        /// Sizes in bytes, in the order given.
        sizes: Vec<u64>,
    },
    /// Real servers serving the same file.
    Remote {
        /// The FTP side.
        ftp: Remote,
        /// The tcp-fileserv side.
        tcp: HostPort,
        /// The file's name on the tcp-fileserv side.
        tcp_name: String,
    },
}

/// The rate-limited link of the shaped scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// tbf rate, as tc takes it (`100mbit`).
    pub rate: String,
    /// Delay added each way, milliseconds.
    pub delay_ms: u32,
}

/// Rate of `--shaped` without `--link-rate`.
pub const DEFAULT_LINK_RATE: &str = "100mbit";

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to measure.
    pub target: Target,
    /// Counted downloads per size and protocol (at least 1).
    pub runs: u32,
    /// Client counts of the concurrency scenario.
    pub clients: Vec<usize>,
    /// Files of the many-small-files scenario (0: scenario skipped).
    pub small_files: u32,
    /// Whether to run the scenarios beyond one file (local target only).
    pub scenarios: bool,
    /// Also measure over a shaped link (local target only).
    pub link: Option<LinkSpec>,
    /// JSON output file.
    pub json: Option<PathBuf>,
    /// CSV output file.
    pub csv: Option<PathBuf>,
    /// SVG chart file.
    pub chart: Option<PathBuf>,
    /// Limit of any one wait.
    pub timeout: std::time::Duration,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// A flag that does not check out; the message names it.
#[derive(Debug, Error)]
#[error("{flag}: {message}")]
pub struct ConfigError {
    /// The flag, as typed on the command line.
    pub flag: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

/// Parses `1K`, `64K`, `1M`, `1G` or a plain byte count (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 1K, 64K, 1M, 1G, 1000)"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// A size as a short label: `1 KiB`, `64 KiB`, `1 MiB`, `1 GiB`, or bytes.
pub fn size_label(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

fn parse_list<T>(
    flag: &'static str,
    s: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let items: Vec<T> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| one(p).map_err(|m| bad(flag, m)))
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(bad(flag, "the list is empty"));
    }
    Ok(items)
}

/// Splits `HOST:PORT/NAME` at the first `/` (an IPv6 host is written in brackets, which hold
/// no `/`).
pub fn parse_tcp_target(s: &str) -> Result<(HostPort, String), String> {
    let (hp, name) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected HOST:PORT/NAME"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: no file name after the /"));
    }
    Ok((HostPort::parse(hp)?, name.to_owned()))
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, ConfigError> {
        if cli.runs == 0 {
            return Err(bad("--runs", "must be at least 1"));
        }
        let clients = parse_list("--clients", &cli.clients, |p| {
            match p.trim().parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(format!("{p:?} is not a client count from 1 to 1000")),
            }
        })?;
        let target = match (cli.ftp, cli.tcp) {
            (Some(url), Some(tcp)) => {
                let ftp = parse_url(&url).map_err(|e| bad("--ftp", e.0))?;
                if ftp.file.is_none() {
                    return Err(bad("--ftp", "the URL names no file (ftp://HOST/DIR/FILE)"));
                }
                let (tcp, tcp_name) = parse_tcp_target(&tcp).map_err(|m| bad("--tcp", m))?;
                Target::Remote { ftp, tcp, tcp_name }
            }
            (None, None) => {
                let mut sizes = parse_list("--sizes", &cli.sizes, parse_size)?;
                // Each size is one file: a repeat would be measured twice under one name.
                let mut seen = std::collections::HashSet::new();
                sizes.retain(|s| seen.insert(*s));
                Target::Local { sizes }
            }
            // clap's `requires` already refuses one without the other.
            _ => return Err(bad("--ftp", "--ftp and --tcp go together")),
        };
        if let Some(p) = &cli.chart {
            if p.extension().and_then(|e| e.to_str()) != Some("svg") {
                return Err(bad("--chart", "the chart is SVG: name the file *.svg"));
            }
        }
        let link = match (cli.link_rate, cli.shaped) {
            (Some(r), _) => Some(crate::netns::parse_rate(&r).map_err(|m| bad("--link-rate", m))?),
            (None, true) => Some(DEFAULT_LINK_RATE.to_owned()),
            (None, false) => None,
        }
        .map(|rate| LinkSpec {
            rate,
            delay_ms: cli.link_delay,
        });
        if link.is_some() {
            if matches!(target, Target::Remote { .. }) {
                return Err(bad(
                    "--link-rate",
                    "the shaped link is for the local comparison, not with --ftp/--tcp",
                ));
            }
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return Err(bad("--link-rate", "making network namespaces needs root"));
            }
        }
        if cli.link_delay > 1000 {
            return Err(bad("--link-delay", "at most 1000 ms"));
        }
        if cli.timeout == 0 {
            return Err(bad("--timeout", "must be at least 1 second"));
        }
        Ok(Self {
            target,
            runs: cli.runs,
            clients,
            small_files: cli.small_files,
            scenarios: !cli.no_scenarios,
            link,
            json: cli.json,
            csv: cli.csv,
            chart: cli.chart,
            timeout: std::time::Duration::from_secs(cli.timeout),
            progress: !cli.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        let table = [
            ("1K", Ok(1024)),
            ("64k", Ok(64 << 10)),
            ("1M", Ok(1 << 20)),
            ("256MiB", Ok(256 << 20)),
            ("1G", Ok(1 << 30)),
            ("1000", Ok(1000)),
        ];
        for (s, want) in table {
            assert_eq!(parse_size(s), want, "{s}");
        }
        for s in ["", "K", "1T", "0", "-1K", "99999999999G", "1.5M"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
        assert_eq!(size_label(1 << 30), "1 GiB");
        assert_eq!(size_label(64 << 10), "64 KiB");
        assert_eq!(size_label(1000), "1000 B");
    }

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["ftp-vs-tcp"];
        argv.extend_from_slice(args);
        Config::try_from(Cli::try_parse_from(argv).expect("clap accepts it"))
    }

    #[test]
    fn bad_flags_are_named() {
        for (args, flag) in [
            (&["--sizes", "1K,x"][..], "--sizes"),
            (&["--runs", "0"][..], "--runs"),
            (&["--clients", "0"][..], "--clients"),
            (&["--chart", "out.png"][..], "--chart"),
            (&["--link-rate", "fast"][..], "--link-rate"),
            (&["--link-delay", "5000"][..], "--link-delay"),
            (&["--ftp", "ftp://h/dir/", "--tcp", "h:7070/f"][..], "--ftp"),
            (&["--ftp", "ftp://h/dir/f", "--tcp", "h:7070"][..], "--tcp"),
        ] {
            let e = config(args).expect_err("refused");
            assert_eq!(e.flag, flag, "{args:?}: {e}");
        }
        assert!(Cli::try_parse_from(["ftp-vs-tcp", "--ftp", "ftp://h/f"]).is_err());
    }

    #[test]
    fn defaults_and_a_remote_pair() {
        let c = config(&[]).unwrap();
        let Target::Local { sizes } = c.target else {
            panic!("local by default")
        };
        assert_eq!(sizes.len(), 6);
        let Target::Local { sizes } = config(&["--sizes", "1K,64K,1024,1K"]).unwrap().target else {
            panic!("local")
        };
        assert_eq!(sizes, [1024, 64 << 10], "repeats dropped, order kept");
        assert_eq!((c.runs, c.clients), (5, vec![1, 8, 64]));
        let c = config(&[
            "--ftp",
            "ftp://h:2121/a%20b/f.bin",
            "--tcp",
            "[::1]:7070/x/f.bin",
        ])
        .unwrap();
        let Target::Remote { ftp, tcp, tcp_name } = c.target else {
            panic!("remote")
        };
        assert_eq!(
            (ftp.port, ftp.dirs, ftp.file),
            (
                Some(2121),
                vec!["a b".to_string()],
                Some("f.bin".to_string())
            )
        );
        assert_eq!((tcp.port, tcp_name.as_str()), (7070, "x/f.bin"));
    }
}
