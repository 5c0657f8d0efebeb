//! Command line in two stages: [`Cli`] holds the raw flags as clap parsed them, and
//! [`Config::try_from`] checks and resolves them (target form, credentials from `-u`, the URL,
//! `FTP_PASSWORD` or netrc, output path) so a bad flag fails before any socket opens, with a
//! message that names it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
/// Where a download goes: standard output (`-o -`) or a path.
pub use filexfer::download::Output;
use filexfer::download::safe_file_name;

use crate::error::ClientError;
use crate::names::{self, Glob};
use crate::netrc;
use crate::target::{self, Remote};
use crate::tls::{TlsMode, Trust};

/// Retrieve, list and upload files on any RFC 959 FTP server.
///
/// A remote file is named by HOST, DIR and FILE (as in `get ftp.acc.umu.se Public/EFLIB/ README`)
/// or by an RFC 1738 URL (`ftp://[USER[:PASS]@]HOST[:PORT]/DIR/FILE[;type=a|i]`). Exit codes
/// follow curl's: 6 resolve, 7 connect, 9 CWD refused, 18 partial transfer, 23 local write,
/// 28 timeout, 35 TLS handshake failed, 36 resume impossible, 60 server certificate not
/// trusted, 64 TLS refused by the server, 67 login refused, 78 remote file not found, 2 usage.
/// FTPS: `--tls` (explicit) or an `ftps://` URL (implicit); see `--cacert`, `--pin-sha256`.
#[derive(Debug, Parser)]
#[command(name = "ftp-client", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options shared by every command.
    #[command(flatten)]
    pub common: Common,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download a file: `get HOST DIR FILE` or `get ftp://HOST/DIR/FILE`. A FILE with `*`, `?`
    /// or `[...]` is a glob (quote it): every matching file of DIR, into `-o DIR` or `.`; exit 18
    /// naming each file that failed.
    Get {
        /// HOST (then DIR and FILE follow) or an ftp:// URL.
        target: String,
        /// Remote directory, e.g. `Public/EFLIB/` (not with a URL).
        dir: Option<String>,
        /// Remote file name or glob (not with a URL). Put `--` before a name that starts with `-`.
        file: Option<String>,
        /// Where to save: a path, a directory, or `-` for standard output [default: ./FILE].
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Fetch the file over N sessions at once, each a byte range (REST), into FILE.part;
        /// one stream when the server lacks REST or SIZE or refuses more sessions.
        #[arg(long, value_name = "N", default_value_t = 1)]
        segments: usize,
    },
    /// List a directory: `ls HOST [DIR]` or `ls ftp://HOST/DIR/`.
    Ls {
        /// HOST (then DIR may follow) or an ftp:// URL.
        target: String,
        /// Remote directory (not with a URL).
        dir: Option<String>,
        /// Print the server's own listing lines instead of the table.
        #[arg(long)]
        raw: bool,
    },
    /// Mirror a remote tree into a local directory: `mirror HOST DIR LOCALDIR` or
    /// `mirror ftp://HOST/DIR/ LOCALDIR`. Only files whose size or modification time changed
    /// are fetched; a `.part` left by an interrupted run is resumed.
    Mirror {
        /// HOST (then DIR and LOCALDIR follow) or an ftp:// URL (then LOCALDIR).
        target: String,
        /// DIR LOCALDIR after a HOST, LOCALDIR after a URL.
        #[arg(num_args = 1..=2, required = true, value_name = "[DIR] LOCALDIR")]
        rest: Vec<String>,
        /// Sessions fetching at once (fewer when the server answers 421).
        #[arg(long, default_value_t = 2, value_name = "N")]
        parallel: usize,
        /// Remove local files (and empty directories) that are gone from the server.
        #[arg(long)]
        delete: bool,
        /// Fetch only files whose name matches GLOB (repeatable).
        #[arg(long, value_name = "GLOB")]
        include: Vec<String>,
        /// Never fetch (or delete) files whose name matches GLOB (repeatable; wins over
        /// --include).
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// Print what would be fetched, created and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Upload LOCALDIR's tree into DIR instead (DIR must exist); --delete then removes
        /// remote files gone from LOCALDIR.
        #[arg(long, short = 'R')]
        reverse: bool,
    },
    /// Upload a file: `put LOCAL HOST [DIR]` or `put LOCAL ftp://HOST/DIR/[NAME]`.
    Put {
        /// The local file to send.
        local: PathBuf,
        /// HOST (then DIR may follow) or an ftp:// URL (ending in `/` to keep LOCAL's name).
        target: String,
        /// Remote directory (not with a URL).
        dir: Option<String>,
    },
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct Common {
    /// Server port [default: the URL's, else 21].
    #[arg(long, global = true, value_name = "PORT")]
    pub port: Option<u16>,
    /// USER or USER:PASS (default: anonymous). Without PASS the password comes from
    /// FTP_PASSWORD, then netrc, then a prompt when a terminal is there (else exit 2).
    #[arg(short = 'u', long = "user", global = true, value_name = "USER[:PASS]")]
    pub user: Option<String>,
    /// Password for the user (prefer FTP_PASSWORD or netrc: a flag shows in `ps`).
    #[arg(
        long,
        global = true,
        env = "FTP_PASSWORD",
        hide_env_values = true,
        value_name = "PASS"
    )]
    pub password: Option<String>,
    /// Look the host up in ~/.netrc (or $NETRC) for the login and password.
    #[arg(long, global = true)]
    pub netrc: bool,
    /// Look the host up in this netrc file (implies --netrc).
    #[arg(long, global = true, value_name = "FILE")]
    pub netrc_file: Option<PathBuf>,
    /// Resume: continue FILE.part (or a shorter FILE) with REST; for put, append with APPE.
    #[arg(short = 'C', long = "continue", global = true)]
    pub resume: bool,
    /// Show the protocol dialog on stderr (the PASS argument masked).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Seconds to wait for a connection and for each reply; a transfer fails when no data
    /// moved for that long (a slow transfer that keeps moving is never cut).
    #[arg(long, global = true, default_value = "30", value_name = "SECS")]
    pub timeout: f64,
    /// Try again this many times after a network failure, a timeout or a 4xx reply.
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// No progress bar and no summary line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Connect to the address a PASV reply names instead of the control connection's peer.
    #[arg(long, global = true)]
    pub trust_pasv_ip: bool,
    /// Explicit FTPS (RFC 4217): AUTH TLS, PBSZ 0, PROT P. `--tls` or `--tls=required` fails
    /// (exit 64) when the server refuses; `--tls=optional` then goes on in clear, with a
    /// warning. (`ftps://` URLs use implicit TLS.)
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "required"
    )]
    pub tls: Option<TlsWhen>,
    /// The same as `--tls=required`.
    #[arg(long, global = true)]
    pub tls_required: bool,
    /// Trust the CA certificates of this PEM file instead of the system's.
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Accept only the server certificate with this SHA-256 fingerprint (as ftp-server prints
    /// it: AB:CD:...), whoever signed it: for a self-signed server.
    #[arg(long, global = true, value_name = "HASH", conflicts_with = "cacert")]
    pub pin_sha256: Option<String>,
    /// Do not check the server's certificate at all (a warning says so): anyone on the path
    /// could read and change the session.
    #[arg(
        long,
        short = 'k',
        global = true,
        conflicts_with_all = ["cacert", "pin_sha256"]
    )]
    pub insecure: bool,
}

/// `--tls=WHEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsWhen {
    /// Fail when the server cannot do TLS.
    Required,
    /// Go on in clear, with a warning, when the server refuses AUTH TLS.
    Optional,
}

/// The checked operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Download `remote.file` from `remote.dirs`.
    Get {
        /// The remote file.
        remote: Remote,
        /// Where to write it.
        output: Output,
    },
    /// Download `remote.file` to `output` over up to `segments` sessions at once.
    GetSegments {
        /// The remote file.
        remote: Remote,
        /// Where to write it (a path: standard output cannot be written at offsets).
        output: Output,
        /// Sessions (and byte ranges), 2 to [`MAX_PARALLEL`].
        segments: usize,
    },
    /// Download every file of `remote.dirs` whose name matches `glob` into `dest`.
    GetGlob {
        /// The remote directory (`file` is `None`).
        remote: Remote,
        /// The pattern as given, for messages.
        pattern: String,
        /// The pattern, parsed.
        glob: Glob,
        /// The local directory the files go into.
        dest: PathBuf,
    },
    /// Mirror the tree at `remote.dirs` into `local`.
    Mirror {
        /// The remote directory.
        remote: Remote,
        /// LOCALDIR.
        local: PathBuf,
        /// The mirror's own options.
        opts: MirrorOptions,
    },
    /// List `remote.dirs`.
    Ls {
        /// The remote directory.
        remote: Remote,
        /// Print the server's lines as they are.
        raw: bool,
    },
    /// Upload `local` as `name` into `remote.dirs`.
    Put {
        /// The local file.
        local: PathBuf,
        /// The remote directory.
        remote: Remote,
        /// The remote name.
        name: String,
    },
}

/// The options of `mirror`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorOptions {
    /// Sessions at once, 1 to [`MAX_PARALLEL`].
    pub parallel: usize,
    /// Remove local files gone from the server.
    pub delete: bool,
    /// Fetch only names matching one of these (all when empty).
    pub include: Vec<Glob>,
    /// Never fetch or delete names matching one of these.
    pub exclude: Vec<Glob>,
    /// Change nothing, say what would be done.
    pub dry_run: bool,
    /// Upload LOCALDIR to the server instead.
    pub reverse: bool,
}

impl MirrorOptions {
    /// Whether a file named `name` is mirrored (fetched, and deleted with `--delete`).
    pub fn wants(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(name)))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

/// Most sessions `--parallel` may open: more only gets a public server to refuse them.
pub const MAX_PARALLEL: usize = 16;

/// Everything the client needs, checked.
#[derive(Clone)]
pub struct Config {
    /// What to do, and where.
    pub op: Operation,
    /// The server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Login name (`anonymous` by default).
    pub user: String,
    /// Password; `None` means "ask" (main prompts on a terminal, else an empty one is sent).
    pub password: Option<String>,
    /// Resume (-C).
    pub resume: bool,
    /// The limit of every network wait.
    pub timeout: Duration,
    /// Retries after transient failures.
    pub retries: u32,
    /// Draw a progress bar on stderr (main sets it when stderr is a terminal and not -q).
    pub progress: bool,
    /// The bars a file's bar goes under when several transfers run at once (mirror's workers);
    /// `None`: each transfer draws its own when `progress` says so.
    pub bars: Option<filexfer::progress::Bars>,
    /// No summary line.
    pub quiet: bool,
    /// Print the protocol dialog.
    pub verbose: bool,
    /// Use the PASV reply's address.
    pub trust_pasv_ip: bool,
    /// FTPS: explicit, implicit, or off.
    pub tls: TlsMode,
    /// Which server certificates are trusted (when `tls` is not off).
    pub trust: Trust,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Config")
            .field("op", &self.op)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("resume", &self.resume)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// The anonymous login of RFC 1635: user `anonymous`, an e-mail-like password.
pub const ANONYMOUS: (&str, &str) = ("anonymous", "anonymous@");

fn usage<T>(msg: impl Into<String>) -> Result<T, ClientError> {
    Err(ClientError::Usage(msg.into()))
}

/// Builds the [`Remote`] from TARGET and the optional positional DIR / FILE.
fn remote_of(
    target_arg: &str,
    dir: Option<&str>,
    file: Option<&str>,
    needs_file: bool,
) -> Result<Remote, ClientError> {
    let r = if target::is_url(target_arg) {
        if dir.is_some() || file.is_some() {
            return usage(format!(
                "{target_arg:?} is a URL: put the directory and file in it, not after it"
            ));
        }
        target::parse_url(target_arg)
    } else {
        if needs_file && file.is_none() {
            return usage("get needs HOST DIR FILE (or an ftp:// URL)");
        }
        target::from_parts(target_arg, dir.unwrap_or(""), file)
    };
    let r = r.map_err(|e| ClientError::Usage(format!("bad target: {e}")))?;
    if needs_file && r.file.is_none() {
        return usage(format!(
            "{target_arg:?} names a directory, not a file (use `ls` to list it)"
        ));
    }
    Ok(r)
}

/// Parses and checks a command line (first item: the program name) without exiting the
/// process on a usage error, for callers that embed the client (and the end-to-end tests).
pub fn from_args<I, T>(args: I) -> Result<Config, ClientError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| ClientError::Usage(e.to_string()))?;
    Config::try_from(cli)
}

fn default_netrc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETRC") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".netrc"))
}

impl TryFrom<Cli> for Config {
    type Error = ClientError;

    fn try_from(cli: Cli) -> Result<Self, ClientError> {
        let c = cli.common;
        if !(c.timeout.is_finite() && c.timeout > 0.0 && c.timeout <= 86_400.0) {
            return usage(format!(
                "--timeout {}: give seconds between 0 and 86400",
                c.timeout
            ));
        }
        let (op, remote) = match cli.command {
            Command::Get {
                target,
                dir,
                file,
                output,
                segments,
            } => {
                let mut remote = remote_of(&target, dir.as_deref(), file.as_deref(), true)?;
                if !(1..=MAX_PARALLEL).contains(&segments) {
                    return usage(format!(
                        "--segments {segments}: give 1 to {MAX_PARALLEL} sessions"
                    ));
                }
                if segments > 1 && remote.file.as_deref().is_some_and(names::is_glob) {
                    return usage("--segments fetches one file, not a glob");
                }
                if segments > 1 && output.as_ref().is_some_and(|p| p.as_os_str() == "-") {
                    return usage("--segments cannot write standard output (-o -) at offsets");
                }
                if let Some(pattern) = remote.file.take_if(|f| names::is_glob(f)) {
                    let glob =
                        Glob::new(&pattern).map_err(|e| ClientError::Usage(e.to_string()))?;
                    let dest = match output {
                        None => PathBuf::from("."),
                        Some(p) if p.is_dir() => p,
                        Some(p) => {
                            return usage(format!(
                                "-o {}: a glob needs an existing directory to save into",
                                p.display()
                            ));
                        }
                    };
                    let op = Operation::GetGlob {
                        remote: remote.clone(),
                        pattern,
                        glob,
                        dest,
                    };
                    (op, remote)
                } else {
                    let name = remote.file.clone().unwrap_or_default();
                    // The remote name becomes a local one only when it is a single plain
                    // component: a decoded `%2F` must not steer the file elsewhere
                    // (`ftp://h/..%2F..%2F.bashrc`).
                    let local_name_ok = safe_file_name(&name).is_some();
                    let bad_local = || {
                        usage(format!(
                            "the remote name {name:?} is not a safe local file name: give -o PATH"
                        ))
                    };
                    let output = match output {
                        Some(p) if p.as_os_str() == "-" => {
                            if c.resume {
                                return usage("--continue cannot resume standard output (-o -)");
                            }
                            Output::Stdout
                        }
                        Some(p) if p.is_dir() => {
                            if !local_name_ok {
                                return bad_local();
                            }
                            Output::Path(p.join(&name))
                        }
                        Some(p) => Output::Path(p),
                        None if !local_name_ok => return bad_local(),
                        None => Output::Path(PathBuf::from(&name)),
                    };
                    let op = if segments > 1 {
                        Operation::GetSegments {
                            remote: remote.clone(),
                            output,
                            segments,
                        }
                    } else {
                        Operation::Get {
                            remote: remote.clone(),
                            output,
                        }
                    };
                    (op, remote)
                }
            }
            Command::Ls { target, dir, raw } => {
                let mut remote = remote_of(&target, dir.as_deref(), None, false)?;
                // `ls ftp://h/a/b` lists b: a last segment without `/` is a directory here.
                if let Some(f) = remote.file.take() {
                    remote.dirs.push(f);
                }
                (
                    Operation::Ls {
                        remote: remote.clone(),
                        raw,
                    },
                    remote,
                )
            }
            Command::Mirror {
                target,
                rest,
                parallel,
                delete,
                include,
                exclude,
                dry_run,
                reverse,
            } => {
                let (dir, local) = match (target::is_url(&target), rest.as_slice()) {
                    (true, [local]) => (None, local),
                    (false, [dir, local]) => (Some(dir.as_str()), local),
                    _ => {
                        return usage("mirror needs HOST DIR LOCALDIR or ftp://HOST/DIR/ LOCALDIR");
                    }
                };
                let mut remote = remote_of(&target, dir, None, false)?;
                // `mirror ftp://h/a/b L` mirrors b: the last segment is a directory here.
                if let Some(f) = remote.file.take() {
                    remote.dirs.push(f);
                }
                if !(1..=MAX_PARALLEL).contains(&parallel) {
                    return usage(format!(
                        "--parallel {parallel}: give 1 to {MAX_PARALLEL} sessions"
                    ));
                }
                let globs = |flag: &str, v: Vec<String>| {
                    v.iter()
                        .map(|p| {
                            Glob::new(p).map_err(|e| ClientError::Usage(format!("{flag}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                };
                let local = PathBuf::from(local);
                if (reverse || local.exists()) && !local.is_dir() {
                    return usage(format!("{}: not a directory", local.display()));
                }
                let opts = MirrorOptions {
                    parallel,
                    delete,
                    include: globs("--include", include)?,
                    exclude: globs("--exclude", exclude)?,
                    dry_run,
                    reverse,
                };
                (
                    Operation::Mirror {
                        remote: remote.clone(),
                        local,
                        opts,
                    },
                    remote,
                )
            }
            Command::Put { local, target, dir } => {
                let mut remote = remote_of(&target, dir.as_deref(), None, false)?;
                let name = match remote.file.take() {
                    Some(n) => n,
                    None => match local.file_name().and_then(|n| n.to_str()) {
                        Some(n) => n.to_string(),
                        None => {
                            return usage(format!(
                                "{}: no UTF-8 file name to upload as; name it in the URL",
                                local.display()
                            ));
                        }
                    },
                };
                (
                    Operation::Put {
                        local,
                        remote: remote.clone(),
                        name,
                    },
                    remote,
                )
            }
        };

        let port = c.port.or(remote.port).unwrap_or(21);
        if port == 0 {
            return usage("--port 0 is not a port");
        }

        // Credentials: -u beats the URL; a password from either beats FTP_PASSWORD / --password,
        // which beats netrc.
        let (mut user, mut password) = match &c.user {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(u.clone()), None),
            },
            None => (remote.user.clone(), remote.password.clone()),
        };
        if user.as_deref() == Some("") {
            return usage("-u: the user name is empty");
        }
        if user.is_some() && password.is_none() {
            password = c.password.clone();
        }
        let netrc_path = match (&c.netrc_file, c.netrc) {
            (Some(p), _) => {
                if !p.is_file() {
                    return usage(format!("--netrc-file {}: no such file", p.display()));
                }
                Some(p.clone())
            }
            (None, true) => default_netrc().filter(|p| p.is_file()),
            (None, false) => None,
        };
        if password.is_none() {
            if let Some(p) = netrc_path {
                let entries = netrc::read(&p).map_err(|e| {
                    ClientError::Usage(format!("cannot read netrc {}: {e}", p.display()))
                })?;
                if let Some(e) = netrc::lookup(&entries, &remote.host, user.as_deref()) {
                    if user.is_none() {
                        user = e.login.clone();
                    }
                    password = e.password.clone();
                }
            }
        }
        let user = match user {
            Some(u) => u,
            None => {
                password = Some(password.unwrap_or_else(|| ANONYMOUS.1.to_string()));
                ANONYMOUS.0.to_string()
            }
        };
        if password.is_none() && (user == "anonymous" || user == "ftp") {
            password = Some(ANONYMOUS.1.to_string());
        }
        for v in std::iter::once(&user).chain(password.iter()) {
            if v.contains(['\r', '\n', '\0']) {
                return usage("the user name or password contains CR, LF or NUL");
            }
        }

        let tls = match (remote.implicit_tls, c.tls, c.tls_required) {
            (true, Some(TlsWhen::Optional), _) => {
                return usage(
                    "an ftps:// URL is TLS from the first byte: --tls=optional cannot apply",
                );
            }
            (true, _, _) => TlsMode::Implicit,
            (false, _, true) | (false, Some(TlsWhen::Required), _) => {
                TlsMode::Explicit { required: true }
            }
            (false, Some(TlsWhen::Optional), false) => TlsMode::Explicit { required: false },
            (false, None, false) => TlsMode::Off,
        };
        let trust = match (&c.cacert, &c.pin_sha256, c.insecure) {
            (_, _, true) => Trust::Insecure,
            (_, Some(pin), _) => {
                Trust::Pin(crate::tls::parse_pin(pin).map_err(ClientError::Usage)?)
            }
            (Some(ca), _, _) => Trust::CaFile(ca.clone()),
            (None, None, false) => Trust::System,
        };
        if tls == TlsMode::Off && (c.cacert.is_some() || c.pin_sha256.is_some() || c.insecure) {
            return usage("--cacert, --pin-sha256 and --insecure need --tls or an ftps:// URL");
        }
        let port = if remote.implicit_tls && c.port.is_none() && remote.port.is_none() {
            // The registered port of implicit FTPS (ftps, 990).
            990
        } else {
            port
        };

        Ok(Config {
            op,
            host: remote.host.clone(),
            port,
            user,
            password,
            resume: c.resume,
            timeout: Duration::from_secs_f64(c.timeout),
            retries: c.retries.min(100),
            progress: false,
            bars: None,
            quiet: c.quiet,
            verbose: c.verbose,
            trust_pasv_ip: c.trust_pasv_ip,
            tls,
            trust,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_debug_assert() {
        Cli::command().debug_assert();
    }

    fn cfg(args: &[&str]) -> Result<Config, ClientError> {
        let cli = Cli::try_parse_from(std::iter::once("ftp-client").chain(args.iter().copied()))
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Config::try_from(cli)
    }

    #[test]
    fn get_three_parts_anonymous() {
        let c = cfg(&["get", "ftp.acc.umu.se", "Public/EFLIB/", "README"]).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_deref()), ANONYMOUS_PAIR);
        assert_eq!(c.port, 21);
        match c.op {
            Operation::Get { remote, output } => {
                assert_eq!(remote.dirs, vec!["Public", "EFLIB"]);
                assert_eq!(output, Output::Path("README".into()));
            }
            _ => panic!(),
        }
    }
    const ANONYMOUS_PAIR: (&str, Option<&str>) = ("anonymous", Some("anonymous@"));

    #[test]
    fn get_url_credentials_and_flags() {
        let c = cfg(&[
            "get",
            "ftp://bob:pw@h:2121/d/f",
            "-o",
            "-",
            "--port",
            "3000",
        ])
        .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_deref()),
            ("bob", Some("pw"))
        );
        assert_eq!(c.port, 3000);
        assert!(matches!(
            c.op,
            Operation::Get {
                output: Output::Stdout,
                ..
            }
        ));
        let c = cfg(&["get", "ftp://bob:pw@h/d/f", "-u", "carol:x"]).unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_deref()),
            ("carol", Some("x"))
        );
        // No password given: None (main prompts). Clap may have filled --password from an
        // FTP_PASSWORD set around the tests, so the flag is cleared to test this case always.
        let mut cli =
            Cli::try_parse_from(["ftp-client", "get", "ftp://h/d/f", "-u", "dave"]).unwrap();
        cli.common.password = None;
        let c = Config::try_from(cli).unwrap();
        assert_eq!((c.user.as_str(), c.password), ("dave", None));
        let c = cfg(&["get", "ftp://h/d/f", "-u", "dave", "--password", "pp"]).unwrap();
        assert_eq!(c.password.as_deref(), Some("pp"));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["get", "h", "d"][..],
            &["get", "ftp://h/d/"],
            &["get", "ftp://h/d/f", "d"],
            &["get", "h", "d", "f", "-C", "-o", "-"],
            &["get", "h", "d", "f", "--timeout", "0"],
            &["get", "h", "d", "f", "--timeout", "nan"],
            &["get", "h", "d", ".."],
            &["get", "http://h/f"],
            &["get", "h", "d", "f", "-u", ""],
            &["get", "h", "d", "f", "--netrc-file", "/nonexistent/netrc"],
            &["put", "x", "ftp://h/d/", "extra"],
            // A decoded name that would leave the current directory, without -o.
            &["get", "ftp://h/d/..%2F..%2F.bashrc"],
            &["get", "ftp://h/d/a%2Fb"],
            &["get", "ftp://h/d/.."],
            &["get", "ftp://h/d/..;type=i"],
            &["get", "-o", "/tmp", "ftp://h/d/..%2Fx"],
        ] {
            let e = cfg(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn slash_in_remote_name_needs_an_explicit_output() {
        let c = cfg(&["get", "-o", "saved", "ftp://h/d/a%2Fb"]).unwrap();
        match c.op {
            Operation::Get { remote, output } => {
                assert_eq!(remote.file.as_deref(), Some("a/b"));
                assert_eq!(output, Output::Path("saved".into()));
            }
            _ => panic!(),
        }
    }

    #[test]
    fn ls_and_put_forms() {
        let c = cfg(&["ls", "ftp://h/a/b"]).unwrap();
        match c.op {
            Operation::Ls { remote, .. } => assert_eq!(remote.dirs, vec!["a", "b"]),
            _ => panic!(),
        }
        let c = cfg(&["put", "/tmp/some file.bin", "h", "up/dir"]).unwrap();
        match c.op {
            Operation::Put { remote, name, .. } => {
                assert_eq!(remote.dirs, vec!["up", "dir"]);
                assert_eq!(name, "some file.bin");
            }
            _ => panic!(),
        }
        let c = cfg(&["put", "local.bin", "ftp://h/up/new%20name"]).unwrap();
        match c.op {
            Operation::Put { name, .. } => assert_eq!(name, "new name"),
            _ => panic!(),
        }
    }

    #[test]
    fn netrc_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("netrc");
        std::fs::write(&p, "machine 127.0.0.1 login alice password s3cret\n").unwrap();
        let ps = p.to_str().unwrap();
        let c = cfg(&["get", "127.0.0.1", "d", "f", "--netrc-file", ps]).unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_deref()),
            ("alice", Some("s3cret"))
        );
        // Another host: anonymous.
        let c = cfg(&["get", "localhost", "d", "f", "--netrc-file", ps]).unwrap();
        assert_eq!(c.user, "anonymous");
        // A password with CR/LF (command injection) is refused before any connection.
        std::fs::write(&p, "machine h login u password \"x\rDELE y\"\n").unwrap();
        let e = cfg(&["get", "h", "d", "f", "--netrc-file", ps]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        std::fs::write(&p, "machine 127.0.0.1 login alice password s3cret\n").unwrap();
        // An explicit password wins over netrc.
        let c = cfg(&[
            "get",
            "127.0.0.1",
            "d",
            "f",
            "--netrc-file",
            ps,
            "-u",
            "alice:x",
        ])
        .unwrap();
        assert_eq!(c.password.as_deref(), Some("x"));
    }

    #[test]
    fn mirror_forms_and_usage_errors() {
        let c = cfg(&[
            "mirror",
            "h",
            "pub/x",
            "/tmp",
            "--parallel",
            "4",
            "--delete",
        ])
        .unwrap();
        match c.op {
            Operation::Mirror {
                remote,
                local,
                opts,
            } => {
                assert_eq!(remote.dirs, vec!["pub", "x"]);
                assert_eq!(local, PathBuf::from("/tmp"));
                assert_eq!((opts.parallel, opts.delete, opts.dry_run), (4, true, false));
            }
            _ => panic!(),
        }
        let c = cfg(&["mirror", "ftp://h/a/b", "out", "--exclude", "*.tmp"]).unwrap();
        match c.op {
            Operation::Mirror { remote, opts, .. } => {
                assert_eq!(remote.dirs, vec!["a", "b"]);
                assert_eq!(opts.parallel, 2, "the default");
                assert!(opts.wants("a.iso") && !opts.wants("x.tmp"));
            }
            _ => panic!(),
        }
        let c = cfg(&[
            "mirror",
            "h",
            "d",
            "o",
            "--include",
            "*.iso",
            "--exclude",
            "b*",
        ])
        .unwrap();
        match c.op {
            Operation::Mirror { opts, .. } => {
                assert!(opts.wants("a.iso") && !opts.wants("b.iso") && !opts.wants("a.txt"));
            }
            _ => panic!(),
        }
        for args in [
            &["mirror", "h", "d"][..],
            &["mirror", "ftp://h/d/", "x", "y"],
            &["mirror", "h", "d", "o", "--parallel", "0"],
            &["mirror", "h", "d", "o", "--parallel", "99"],
            &["mirror", "h", "d", "o", "--include", "[x"],
            &["mirror", "h", "d", "/etc/passwd"],
            &["mirror", "--reverse", "h", "d", "/nonexistent/dir"],
        ] {
            let e = cfg(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn segments_forms_and_usage_errors() {
        let c = cfg(&["get", "--segments", "4", "ftp://h/d/f"]).unwrap();
        match c.op {
            Operation::GetSegments {
                remote,
                output,
                segments,
            } => {
                assert_eq!(remote.file.as_deref(), Some("f"));
                assert_eq!(output, Output::Path("f".into()));
                assert_eq!(segments, 4);
            }
            _ => panic!(),
        }
        let c = cfg(&["get", "--segments", "1", "h", "d", "f"]).unwrap();
        assert!(
            matches!(c.op, Operation::Get { .. }),
            "one segment: a plain get"
        );
        for args in [
            &["get", "--segments", "0", "h", "d", "f"][..],
            &["get", "--segments", "17", "h", "d", "f"],
            &["get", "--segments", "2", "h", "d", "*.iso"],
            &["get", "--segments", "2", "-o", "-", "h", "d", "f"],
        ] {
            let e = cfg(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn debug_hides_password() {
        let c = cfg(&["get", "ftp://bob:topsecret@h/d/f"]).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
