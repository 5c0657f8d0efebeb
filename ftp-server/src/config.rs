//! Configuration in two stages: the TOML file and the command-line flags are parsed into raw
//! values, then validated into a [`Config`] whose every field is ready to use. A bad value fails
//! before any socket opens, with a message naming the key and its line (file) or the flag.
//!
//! The file format and every key are documented in `docs/ftp-server.md`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libunftp::options::PassiveHost;
use serde::Deserialize;
use time::OffsetDateTime;
use toml::Spanned;

use crate::cli::Cli;
use crate::path::confine;

/// The port the server listens on when neither `--bind` nor `bind` says otherwise.
pub const DEFAULT_PORT: u16 = 2121;

/// Why a configuration was refused. Each variant names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key of the TOML file has a bad value (or the file is not valid TOML).
    #[error("{}:{line}: `{key}`: {message}", file.display())]
    File {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The key, e.g. `users[1].password` or `max_connections`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A command-line flag (or its environment variable) has a bad value.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag, e.g. `--passive-ports`.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Per-IP brute-force protection, shared by all connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Failed logins from one IP within `window` that trigger a lockout (default 5).
    pub max_failures: u32,
    /// The sliding window failures are counted in (default 60 s).
    pub window: Duration,
    /// How long a locked-out IP is refused (default 300 s).
    pub lockout: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        }
    }
}

/// Whether an account class uses FTPS (RFC 4217), as the `tls` key of its table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// The class logs in without TLS: a login over a TLS control connection is refused (`530`),
    /// as vsftpd's `allow_anon_ssl = NO` does for anonymous users.
    Off,
    /// With or without TLS, as the client chooses.
    Optional,
    /// TLS only: `USER` before `AUTH TLS` gets `534` (before any password is sent), and every
    /// transfer without `PROT P` gets `521` (RFC 4217 §9, §11).
    Required,
}

impl TlsPolicy {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!(
                "{other:?} is not a TLS policy: \"off\", \"optional\" or \"required\""
            )),
        }
    }

    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files given by the administrator (`tls_cert`, `tls_key`).
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A self-signed certificate made on first use and kept in `state_dir`, so that its
    /// fingerprint survives restarts (`tls_self_signed`).
    SelfSigned {
        /// The state directory.
        state_dir: PathBuf,
    },
}

/// FTPS settings (docs/ftp-server.md, "TLS").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate.
    pub source: CertSource,
    /// A second listener for implicit FTPS (`ftps://`, TLS from the first byte).
    pub implicit_bind: Option<SocketAddr>,
    /// Refuse TLS data connections that do not resume a TLS session (vsftpd's
    /// `require_ssl_reuse`).
    pub require_reuse: bool,
}

/// The anonymous class (`anonymous` or `ftp`, any non-empty password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousConfig {
    /// What anonymous users see as `/`, relative to the root (empty: the root itself).
    pub home: PathBuf,
    /// Optional drop box, relative to `home`: new names may be uploaded there, nothing there may
    /// be listed or downloaded.
    pub upload_dir: Option<PathBuf>,
    /// Most bytes per second each anonymous transfer moves (0: no limit), like vsftpd's
    /// `anon_max_rate`.
    pub max_rate: u64,
    /// Allows `home` to contain a real user's home (refused by default: anonymous users could
    /// read it).
    pub expose_real_homes: bool,
    /// Its `tls` key; `None`: the default (optional with a certificate, off without).
    pub tls: Option<TlsPolicy>,
}

/// A real account: full rights in its home (or read-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealUser {
    /// Login name.
    pub name: String,
    /// argon2id PHC string, as printed by `ftp-server hash-password`.
    pub password: String,
    /// Home, relative to the root.
    pub home: PathBuf,
    /// `false` makes the account read-only.
    pub write: bool,
    /// Most bytes per second each of its transfers moves (0: no limit).
    pub max_rate: u64,
    /// Its `tls` key; `None`: the default (required with a certificate, off without).
    pub tls: Option<TlsPolicy>,
}

/// The shared area every guest is confined to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestArea {
    /// The guests' home, relative to the root.
    pub home: PathBuf,
    /// Whether guests may upload new names (never overwrite, delete or rename).
    pub upload: bool,
    /// Most bytes per second each guest transfer moves (0: no limit).
    pub max_rate: u64,
    /// Allows `home` to contain a real user's home (refused by default).
    pub expose_real_homes: bool,
    /// Its `tls` key; `None`: the default (required with a certificate, off without).
    pub tls: Option<TlsPolicy>,
}

/// A temporary guest login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Login name.
    pub name: String,
    /// argon2id PHC string.
    pub password: String,
    /// The instant after which the login is refused (with the same reply as a wrong password).
    pub expires: Option<OffsetDateTime>,
}

/// A validated server configuration. Build it with [`Config::new`] (anonymous read-only over a
/// directory), [`Config::from_toml_str`], [`Config::load`] or `Config::try_from(cli)`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every home is below this directory (absolute).
    pub root: PathBuf,
    /// Where the binary listens (the library takes an already bound listener instead).
    pub bind: SocketAddr,
    /// Ports offered for passive data connections (PASV/EPSV).
    pub passive_ports: RangeInclusive<u16>,
    /// What PASV replies advertise (RFC 959 §4.1.2 `227 ... (h1,h2,h3,h4,p1,p2)`): the control
    /// connection's local address (the default), a fixed IPv4 address, or a DNS name resolved
    /// to IPv4 at each PASV (behind NAT). Parsed once, here.
    pub passive_host: PassiveHost,
    /// Connections served at once; beyond it a new client gets `421` and is closed.
    pub max_connections: usize,
    /// Connections served at once per client IP.
    pub max_connections_per_ip: usize,
    /// Whether active mode (PORT/EPRT) is offered. The server then connects only to the
    /// client's own address and ports 1024 and up (RFC 2577); some clients (Windows' `ftp`)
    /// speak nothing else. `false` (`--passive-only`) refuses PORT and EPRT with `502`.
    pub active: bool,
    /// A client that has not logged in this long after connecting gets `421` and is
    /// disconnected, whatever it sends meanwhile (NOOP keep-alives included).
    pub login_timeout: Duration,
    /// A control connection idle this long is closed.
    pub idle_timeout: Duration,
    /// A data transfer that moves no byte for this long is ended.
    pub data_timeout: Duration,
    /// Brute-force protection.
    pub login_policy: LoginPolicy,
    /// On Ctrl-C / SIGTERM, running transfers get this long to finish.
    pub shutdown_grace: Duration,
    /// Also write transfers in the classic xferlog format to this file.
    pub xferlog: Option<PathBuf>,
    /// Whether dotfiles (`.git`, `.env`, any path with a component starting with `.`) are
    /// listed and served. `false` (the default) leaves them out of listings and refuses every
    /// command on them with `550`, uploads of such names included.
    pub hidden: bool,
    /// The anonymous class, if enabled.
    pub anonymous: Option<AnonymousConfig>,
    /// Real accounts.
    pub users: Vec<RealUser>,
    /// The guest area (required when there are guests).
    pub guest_area: Option<GuestArea>,
    /// Guest logins.
    pub guests: Vec<Guest>,
    /// FTPS, when a certificate is configured.
    pub tls: Option<TlsSettings>,
    /// The PROXY protocol (behind a load balancer), when on: which peers must send it.
    pub proxy: Option<ProxySettings>,
    /// Where the HTTP health endpoint (`/ready`, `/live`, `/metrics`) listens, when on.
    pub health_bind: Option<SocketAddr>,
}

/// PROXY protocol settings (docs/scale-out.md): with them, every control connection must come
/// from one of the listed balancer networks and start with a PROXY header (v1 or v2) naming the
/// client; any other connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// The load balancers' addresses or networks (`proxy_from`), parsed once here.
    pub from: Vec<ipnet::IpNet>,
    /// How long a balancer has to send its header after connecting.
    pub header_timeout: Duration,
}

impl ProxySettings {
    /// Whether `ip` is one of the listed balancers (IPv4-mapped addresses compared as IPv4).
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.from.iter().any(|n| n.contains(&ip))
    }
}

/// Parses a `proxy_from` entry: a network (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?} is neither an IP address nor a network like 10.0.0.0/8"))
}

/// Builds the PROXY settings from `proxy_protocol` and `proxy_from`.
fn proxy_settings(on: bool, from: &[String]) -> Result<Option<ProxySettings>, String> {
    if !on {
        return Ok(None);
    }
    if from.is_empty() {
        return Err("the PROXY protocol needs the balancers' addresses in `proxy_from`".into());
    }
    let from = from
        .iter()
        .map(|s| parse_network(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ProxySettings {
        from,
        header_timeout: Duration::from_secs(5),
    }))
}

impl Config {
    /// Anonymous, read-only access to `root` with every other setting at its default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bind: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            passive_ports: 49152..=65535,
            passive_host: PassiveHost::FromConnection,
            max_connections: 200,
            max_connections_per_ip: 16,
            active: true,
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(60),
            login_policy: LoginPolicy::default(),
            shutdown_grace: Duration::from_secs(10),
            xferlog: None,
            hidden: false,
            anonymous: Some(AnonymousConfig {
                home: PathBuf::new(),
                upload_dir: None,
                max_rate: 0,
                expose_real_homes: false,
                tls: None,
            }),
            users: Vec::new(),
            guest_area: None,
            guests: Vec::new(),
            tls: None,
            proxy: None,
            health_bind: None,
        }
    }

    /// Reads and validates a config file. Relative paths in it are relative to its directory;
    /// without a `root` key the root is the current directory (never the file's own folder,
    /// which would serve the file and its password hashes).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        Self::parse(&text, path, base, &cwd)
    }

    /// Parses and validates config text; relative paths, and the root when the text sets none,
    /// are resolved against `base_dir`. Errors name the file as `<config>`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::parse(text, Path::new("<config>"), base_dir, base_dir)
    }

    fn parse(
        text: &str,
        file: &Path,
        base: &Path,
        default_root: &Path,
    ) -> Result<Self, ConfigError> {
        let ctx = Ctx { text, file };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start);
            let line = ctx.line_of(start);
            ConfigError::File {
                file: file.to_path_buf(),
                line,
                key: ctx.key_on_line(line),
                message: e.message().trim().to_string(),
            }
        })?;
        let mut cfg = Config::new(PathBuf::new());
        let root = match &raw.root {
            Some(r) => {
                let p = Path::new(r.get_ref());
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                };
                check_root(&p).map_err(|m| ctx.err(r.span(), "root", m))?
            }
            // Never the config file's own folder: that would serve the file (and its password
            // hashes) to anonymous users. Like `ftp-server` without a config: the current
            // directory.
            None => check_root(default_root).map_err(|m| ctx.err(0..0, "root", m))?,
        };
        cfg.root = root;
        if let Some(b) = &raw.bind {
            cfg.bind = parse_bind(b.get_ref()).map_err(|m| ctx.err(b.span(), "bind", m))?;
        }
        if let Some(p) = &raw.passive_ports {
            cfg.passive_ports =
                parse_port_range(p.get_ref()).map_err(|m| ctx.err(p.span(), "passive_ports", m))?;
        }
        if let Some(h) = &raw.passive_host {
            cfg.passive_host = parse_passive_host(h.get_ref())
                .map_err(|m| ctx.err(h.span(), "passive_host", m))?;
        }
        let positive = |v: &Option<Spanned<u64>>, key: &str| -> Result<Option<u64>, ConfigError> {
            match v {
                None => Ok(None),
                Some(s) if *s.get_ref() == 0 => {
                    Err(ctx.err(s.span(), key, "must be at least 1".into()))
                }
                Some(s) => Ok(Some(*s.get_ref())),
            }
        };
        if let Some(n) = positive(&raw.max_connections, "max_connections")? {
            cfg.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = positive(&raw.max_connections_per_ip, "max_connections_per_ip")? {
            cfg.max_connections_per_ip = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(a) = &raw.active {
            cfg.active = *a.get_ref();
        }
        if let Some(n) = positive(&raw.login_timeout_secs, "login_timeout_secs")? {
            cfg.login_timeout = Duration::from_secs(n);
        }
        if let Some(n) = positive(&raw.idle_timeout_secs, "idle_timeout_secs")? {
            cfg.idle_timeout = Duration::from_secs(n);
        }
        if let Some(n) = positive(&raw.data_timeout_secs, "data_timeout_secs")? {
            cfg.data_timeout = Duration::from_secs(n);
        }
        if let Some(n) = positive(&raw.max_login_failures, "max_login_failures")? {
            cfg.login_policy.max_failures = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = positive(&raw.login_failure_window_secs, "login_failure_window_secs")? {
            cfg.login_policy.window = Duration::from_secs(n);
        }
        if let Some(n) = positive(&raw.login_lockout_secs, "login_lockout_secs")? {
            cfg.login_policy.lockout = Duration::from_secs(n);
        }
        if let Some(s) = &raw.shutdown_grace_secs {
            cfg.shutdown_grace = Duration::from_secs(*s.get_ref());
        }
        if let Some(h) = &raw.hidden {
            cfg.hidden = *h.get_ref();
        }
        if let Some(b) = &raw.health_bind {
            cfg.health_bind =
                Some(parse_bind(b.get_ref()).map_err(|m| ctx.err(b.span(), "health_bind", m))?);
        }
        if raw.proxy_protocol.is_some() || raw.proxy_from.is_some() {
            let on = raw.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
            let (span, key) = match (&raw.proxy_from, &raw.proxy_protocol) {
                (Some(f), _) if on => (f.span(), "proxy_from"),
                (_, Some(p)) => (p.span(), "proxy_protocol"),
                (Some(f), None) => (f.span(), "proxy_from"),
                (None, None) => (0..0, "proxy_protocol"),
            };
            let from = raw.proxy_from.as_ref().map(|f| f.get_ref().clone());
            if !on && from.is_some() {
                return Err(ctx.err(
                    span,
                    key,
                    "`proxy_from` needs `proxy_protocol = true`".into(),
                ));
            }
            cfg.proxy = proxy_settings(on, from.as_deref().unwrap_or_default())
                .map_err(|m| ctx.err(span, key, m))?;
        }
        if let Some(x) = &raw.xferlog {
            let p = Path::new(x.get_ref());
            cfg.xferlog = Some(if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            });
        }
        let path_of = |v: &Spanned<String>| {
            let p = Path::new(v.get_ref());
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let source = match (&raw.tls_cert, &raw.tls_key, &raw.tls_self_signed) {
            (Some(c), _, Some(s)) if *s.get_ref() => {
                return Err(ctx.err(
                    c.span(),
                    "tls_cert",
                    "give either tls_cert and tls_key, or tls_self_signed = true, not both".into(),
                ));
            }
            (Some(c), Some(k), _) => Some(CertSource::Files {
                cert: path_of(c),
                key: path_of(k),
            }),
            (Some(c), None, _) => {
                return Err(ctx.err(c.span(), "tls_key", "tls_cert needs tls_key".into()));
            }
            (None, Some(k), _) => {
                return Err(ctx.err(k.span(), "tls_cert", "tls_key needs tls_cert".into()));
            }
            (None, None, Some(s)) if *s.get_ref() => Some(CertSource::SelfSigned {
                state_dir: match &raw.state_dir {
                    Some(d) => path_of(d),
                    None => crate::tls::default_state_dir().ok_or_else(|| {
                        ctx.err(
                            s.span(),
                            "state_dir",
                            "neither XDG_STATE_HOME nor HOME is set: give state_dir".into(),
                        )
                    })?,
                },
            }),
            (None, None, _) => None,
        };
        let implicit_bind = match &raw.implicit_tls_bind {
            Some(b) => Some(
                parse_bind(b.get_ref()).map_err(|m| ctx.err(b.span(), "implicit_tls_bind", m))?,
            ),
            None => None,
        };
        let require_reuse = raw.require_tls_reuse.as_ref().is_some_and(|r| *r.get_ref());
        cfg.tls = match source {
            Some(source) => Some(TlsSettings {
                source,
                implicit_bind,
                require_reuse,
            }),
            None => {
                let needs = [
                    (
                        "implicit_tls_bind",
                        raw.implicit_tls_bind.as_ref().map(|b| b.span()),
                    ),
                    (
                        "require_tls_reuse",
                        raw.require_tls_reuse.as_ref().map(|r| r.span()),
                    ),
                ];
                if let Some((key, Some(span))) = needs.into_iter().find(|(_, s)| s.is_some()) {
                    return Err(ctx.err(
                        span,
                        key,
                        "needs a certificate: tls_cert and tls_key, or tls_self_signed = true"
                            .into(),
                    ));
                }
                None
            }
        };

        let mut names: HashSet<String> = HashSet::new();
        for (i, u) in raw.users.iter().enumerate() {
            let key = |k: &str| format!("users[{i}].{k}");
            let name = check_name(&u.name, &mut names)
                .map_err(|m| ctx.err(u.name.span(), &key("name"), m))?;
            check_phc(u.password.get_ref())
                .map_err(|m| ctx.err(u.password.span(), &key("password"), m))?;
            let home = check_home(&cfg.root, u.home.get_ref())
                .map_err(|m| ctx.err(u.home.span(), &key("home"), m))?;
            cfg.users.push(RealUser {
                name,
                password: u.password.get_ref().clone(),
                home,
                write: u.write,
                max_rate: u.max_rate.unwrap_or(0),
                tls: tls_key(&ctx, u.tls.as_ref(), &key("tls"))?,
            });
        }
        if let Some(g) = &raw.guest {
            let g = g.get_ref();
            let home = check_home(&cfg.root, g.home.get_ref())
                .map_err(|m| ctx.err(g.home.span(), "guest.home", m))?;
            cfg.guest_area = Some(GuestArea {
                home,
                upload: g.upload,
                max_rate: g.max_rate.unwrap_or(0),
                expose_real_homes: g.expose_real_homes,
                tls: tls_key(&ctx, g.tls.as_ref(), "guest.tls")?,
            });
        }
        for (i, g) in raw.guests.iter().enumerate() {
            let key = |k: &str| format!("guests[{i}].{k}");
            let name = check_name(&g.name, &mut names)
                .map_err(|m| ctx.err(g.name.span(), &key("name"), m))?;
            check_phc(g.password.get_ref())
                .map_err(|m| ctx.err(g.password.span(), &key("password"), m))?;
            let expires = match &g.expires {
                None => None,
                Some(e) => Some(
                    OffsetDateTime::parse(
                        e.get_ref(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|err| {
                        ctx.err(
                            e.span(),
                            &key("expires"),
                            format!("not an RFC 3339 date-time like 2026-12-31T23:59:59Z ({err})"),
                        )
                    })?,
                ),
            };
            if cfg.guest_area.is_none() {
                return Err(ctx.err(
                    g.name.span(),
                    &key("name"),
                    "guests need a [guest] table with the shared `home` they are confined to"
                        .into(),
                ));
            }
            cfg.guests.push(Guest {
                name,
                password: g.password.get_ref().clone(),
                expires,
            });
        }
        // Without an [anonymous] table, anonymous access is on only when no other account
        // exists: a config that defines real users must not expose their homes anonymously by
        // accident.
        cfg.anonymous = match &raw.anonymous {
            None if cfg.users.is_empty() && cfg.guests.is_empty() => Some(AnonymousConfig {
                home: PathBuf::new(),
                upload_dir: None,
                max_rate: 0,
                expose_real_homes: false,
                tls: None,
            }),
            None => None,
            Some(a) if !a.get_ref().enabled => None,
            Some(a) => {
                let a = a.get_ref();
                let home_s = a.home.as_ref().map(|h| h.get_ref().as_str()).unwrap_or("");
                let home_span = a.home.as_ref().map_or(0..0, |h| h.span());
                let home = check_home(&cfg.root, home_s)
                    .map_err(|m| ctx.err(home_span, "anonymous.home", m))?;
                let upload_dir = match &a.upload_dir {
                    None => None,
                    Some(u) => {
                        let rel = check_home(&cfg.root.join(&home), u.get_ref())
                            .map_err(|m| ctx.err(u.span(), "anonymous.upload_dir", m))?;
                        if rel.as_os_str().is_empty() {
                            return Err(ctx.err(
                                u.span(),
                                "anonymous.upload_dir",
                                "must be a directory below anonymous.home, not the home itself"
                                    .into(),
                            ));
                        }
                        Some(rel)
                    }
                };
                Some(AnonymousConfig {
                    home,
                    upload_dir,
                    max_rate: a.max_rate.unwrap_or(0),
                    expose_real_homes: a.expose_real_homes,
                    tls: tls_key(&ctx, a.tls.as_ref(), "anonymous.tls")?,
                })
            }
        };
        if cfg.anonymous.is_none() && cfg.users.is_empty() && cfg.guests.is_empty() {
            return Err(ctx.err(
                0..0,
                "anonymous",
                "no account class is enabled: enable [anonymous] or add [[users]] / [[guests]]"
                    .into(),
            ));
        }
        if cfg.tls.is_none() {
            let asked = [
                (
                    "anonymous.tls".to_string(),
                    raw.anonymous
                        .as_ref()
                        .and_then(|a| a.get_ref().tls.as_ref()),
                ),
                (
                    "guest.tls".to_string(),
                    raw.guest.as_ref().and_then(|g| g.get_ref().tls.as_ref()),
                ),
            ]
            .into_iter()
            .chain(
                raw.users
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (format!("users[{i}].tls"), u.tls.as_ref())),
            );
            for (key, v) in asked {
                if let Some(v) = v
                    && v.get_ref() != "off"
                {
                    return Err(ctx.err(
                        v.span(),
                        &key,
                        "needs a certificate: tls_cert and tls_key, or tls_self_signed = true"
                            .into(),
                    ));
                }
            }
        }
        let config_file = (file != Path::new("<config>")).then_some(file);
        if let Err((key, message)) = cfg.check_exposure(config_file) {
            let span = match key {
                "anonymous.home" => raw.anonymous.as_ref().map_or(0..0, |a| a.span()),
                _ => raw.guest.as_ref().map_or(0..0, |g| g.span()),
            };
            return Err(ctx.err(span, key, message));
        }
        Ok(cfg)
    }

    /// Refuses a configuration where what anonymous or guest users can read holds secrets: the
    /// config file itself (it has the password hashes), the xferlog (names and e-mail
    /// addresses), or a real user's home (unless the area says `expose_real_homes = true`).
    /// Returns the key to blame and why.
    fn check_exposure(&self, config_file: Option<&Path>) -> Result<(), (&'static str, String)> {
        let mut areas: Vec<(&'static str, PathBuf, bool)> = Vec::new();
        if let Some(a) = &self.anonymous {
            areas.push((
                "anonymous.home",
                self.root.join(&a.home),
                a.expose_real_homes,
            ));
        }
        if let Some(g) = &self.guest_area {
            areas.push(("guest.home", self.root.join(&g.home), g.expose_real_homes));
        }
        let absolute = |p: &Path| {
            std::fs::canonicalize(p).ok().or_else(|| {
                // A file not yet created (the xferlog): its directory, then its name.
                let dir = std::fs::canonicalize(p.parent()?).ok()?;
                Some(dir.join(p.file_name()?))
            })
        };
        let secrets: Vec<(String, PathBuf)> = config_file
            .and_then(absolute)
            .map(|p| {
                (
                    "the config file, which holds the password hashes,".to_string(),
                    p,
                )
            })
            .into_iter()
            .chain(self.xferlog.as_deref().and_then(absolute).map(|p| {
                (
                    "the xferlog, which holds user names and addresses,".to_string(),
                    p,
                )
            }))
            .collect();
        for (key, area, expose) in areas {
            for (what, path) in &secrets {
                if path.starts_with(&area) {
                    return Err((
                        key,
                        format!(
                            "{what} {} is inside this area ({}), which its users can read: move it out, or point `{key}` elsewhere",
                            path.display(),
                            area.display()
                        ),
                    ));
                }
            }
            if expose {
                continue;
            }
            if let Some(u) = self
                .users
                .iter()
                .find(|u| self.root.join(&u.home).starts_with(&area))
            {
                return Err((
                    key,
                    format!(
                        "real user {:?}'s home {} is inside this area ({}): its users could read it. Point `{key}` elsewhere, or add `expose_real_homes = true` to this table if that is meant",
                        u.name,
                        self.root.join(&u.home).display(),
                        area.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The TLS policy of a class: its `tls` key, or the default, which is `required` for real
    /// and guest accounts and `optional` for anonymous as soon as a certificate is configured,
    /// and `off` without one. `tls` is the class's key.
    pub fn tls_policy(&self, class: crate::account::Class, tls: Option<TlsPolicy>) -> TlsPolicy {
        use crate::account::Class;
        match (&self.tls, tls) {
            (None, _) => TlsPolicy::Off,
            (Some(_), Some(p)) => p,
            (Some(_), None) if class == Class::Anonymous => TlsPolicy::Optional,
            (Some(_), None) => TlsPolicy::Required,
        }
    }

    /// The TLS policy of each class that is on, for the start-up banner: e.g.
    /// `anonymous optional, real required, guest required`; `None` without a certificate.
    pub fn tls_summary(&self) -> Option<String> {
        use crate::account::Class;
        self.tls.as_ref()?;
        let mut parts = Vec::new();
        if let Some(a) = &self.anonymous {
            parts.push(format!(
                "anonymous {}",
                self.tls_policy(Class::Anonymous, a.tls).as_str()
            ));
        }
        let mut real: Vec<&str> = self
            .users
            .iter()
            .map(|u| self.tls_policy(Class::Real, u.tls).as_str())
            .collect();
        real.dedup();
        if !real.is_empty() {
            parts.push(format!("real {}", real.join("/")));
        }
        if let (Some(g), false) = (&self.guest_area, self.guests.is_empty()) {
            parts.push(format!(
                "guest {}",
                self.tls_policy(Class::Guest, g.tls).as_str()
            ));
        }
        Some(parts.join(", "))
    }

    /// The account classes that are on, for the start-up banner: e.g.
    /// `anonymous (read-only), 2 real, 1 guest`.
    pub fn classes_summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.anonymous {
            match &a.upload_dir {
                Some(u) => parts.push(format!("anonymous (read-only, drop box /{})", u.display())),
                None => parts.push("anonymous (read-only)".to_string()),
            }
        }
        if !self.users.is_empty() {
            parts.push(format!("{} real", self.users.len()));
        }
        if !self.guests.is_empty() {
            parts.push(format!("{} guest", self.guests.len()));
        }
        parts.join(", ")
    }
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    /// Loads `--config` if given (or the defaults), then lets each flag override its key.
    fn try_from(cli: Cli) -> Result<Self, Self::Error> {
        let mut cfg = match &cli.config {
            Some(path) => Config::load(path)?,
            None => {
                let root = match &cli.root {
                    Some(r) => r.clone(),
                    None => std::env::current_dir().map_err(|e| ConfigError::Flag {
                        flag: "--root",
                        message: format!("cannot determine the current directory: {e}"),
                    })?,
                };
                let mut c = Config::new(PathBuf::new());
                c.root = check_root(&root).map_err(|message| ConfigError::Flag {
                    flag: "--root",
                    message,
                })?;
                c
            }
        };
        if let (Some(root), Some(_)) = (&cli.root, &cli.config) {
            cfg.root = check_root(root).map_err(|message| ConfigError::Flag {
                flag: "--root",
                message,
            })?;
            // Homes were checked against the file's root; check them again against the flag's.
            for home in cfg.homes() {
                check_home(&cfg.root, &home.to_string_lossy()).map_err(|message| {
                    ConfigError::Flag {
                        flag: "--root",
                        message: format!("with this root, {message}"),
                    }
                })?;
            }
        }
        if let Some(b) = &cli.bind {
            cfg.bind = parse_bind(b).map_err(|message| ConfigError::Flag {
                flag: "--bind",
                message,
            })?;
        }
        if let Some(p) = &cli.passive_ports {
            cfg.passive_ports = parse_port_range(p).map_err(|message| ConfigError::Flag {
                flag: "--passive-ports",
                message,
            })?;
        }
        if let Some(h) = &cli.passive_host {
            cfg.passive_host = parse_passive_host(h).map_err(|message| ConfigError::Flag {
                flag: "--passive-host",
                message,
            })?;
        }
        if let Some(x) = &cli.xferlog {
            cfg.xferlog = Some(x.clone());
        }
        if cli.hidden {
            cfg.hidden = true;
        }
        if cli.passive_only {
            cfg.active = false;
        }
        if let Some(b) = &cli.health_bind {
            cfg.health_bind = Some(parse_bind(b).map_err(|message| ConfigError::Flag {
                flag: "--health-bind",
                message,
            })?);
        }
        if cli.proxy_protocol || !cli.proxy_from.is_empty() {
            let from = if cli.proxy_from.is_empty() {
                cfg.proxy
                    .as_ref()
                    .map(|p| p.from.iter().map(ToString::to_string).collect())
                    .unwrap_or_default()
            } else {
                cli.proxy_from.clone()
            };
            let on = cli.proxy_protocol || cfg.proxy.is_some();
            if !on {
                return Err(ConfigError::Flag {
                    flag: "--proxy-from",
                    message: "needs --proxy-protocol".into(),
                });
            }
            cfg.proxy = proxy_settings(on, &from).map_err(|message| ConfigError::Flag {
                flag: if cli.proxy_from.is_empty() {
                    "--proxy-protocol"
                } else {
                    "--proxy-from"
                },
                message,
            })?;
        }
        if let Some(n) = cli.max_connections {
            if n == 0 {
                return Err(ConfigError::Flag {
                    flag: "--max-connections",
                    message: "must be at least 1".into(),
                });
            }
            cfg.max_connections = n;
        }
        cfg.apply_tls_flags(&cli)?;
        // The flags may have moved the root or the xferlog: check again what anonymous and guest
        // users can read.
        if cli.root.is_some() || cli.xferlog.is_some() {
            cfg.check_exposure(cli.config.as_deref())
                .map_err(|(key, message)| ConfigError::Flag {
                    flag: if cli.xferlog.is_some() {
                        "--xferlog"
                    } else {
                        "--root"
                    },
                    message: format!("`{key}`: {message}"),
                })?;
        }
        Ok(cfg)
    }
}

impl Config {
    /// The TLS flags over the file's keys.
    fn apply_tls_flags(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        let no_cert = |flag| ConfigError::Flag {
            flag,
            message: "needs a certificate: --tls-cert and --tls-key, or --tls-self-signed".into(),
        };
        let source = match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => Some(CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None) => return Err(no_cert("--tls-key")),
            (None, Some(_)) => return Err(no_cert("--tls-cert")),
            (None, None) if cli.tls_self_signed => Some(CertSource::SelfSigned {
                state_dir: match &cli.state_dir {
                    Some(d) => d.clone(),
                    None => match self.tls.as_ref().map(|t| &t.source) {
                        Some(CertSource::SelfSigned { state_dir }) => state_dir.clone(),
                        _ => crate::tls::default_state_dir().ok_or(ConfigError::Flag {
                            flag: "--state-dir",
                            message: "neither XDG_STATE_HOME nor HOME is set: give --state-dir"
                                .into(),
                        })?,
                    },
                },
            }),
            (None, None) => None,
        };
        if let Some(source) = source {
            match &mut self.tls {
                Some(t) => t.source = source,
                None => {
                    self.tls = Some(TlsSettings {
                        source,
                        implicit_bind: None,
                        require_reuse: false,
                    })
                }
            }
        }
        if let (
            Some(d),
            Some(TlsSettings {
                source: CertSource::SelfSigned { state_dir },
                ..
            }),
        ) = (&cli.state_dir, &mut self.tls)
        {
            *state_dir = d.clone();
        }
        if let Some(b) = &cli.implicit_tls_bind {
            let addr = parse_bind(b).map_err(|message| ConfigError::Flag {
                flag: "--implicit-tls-bind",
                message,
            })?;
            self.tls
                .as_mut()
                .ok_or_else(|| no_cert("--implicit-tls-bind"))?
                .implicit_bind = Some(addr);
        }
        if cli.require_tls_reuse {
            self.tls
                .as_mut()
                .ok_or_else(|| no_cert("--require-tls-reuse"))?
                .require_reuse = true;
        }
        Ok(())
    }

    fn homes(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.users.iter().map(|u| u.home.clone()).collect();
        if let Some(a) = &self.anonymous {
            v.push(a.home.clone());
        }
        if let Some(g) = &self.guest_area {
            v.push(g.home.clone());
        }
        v
    }
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The key written on a line (`key = value`), for syntax errors toml reports by position.
    fn key_on_line(&self, line: usize) -> String {
        let l = self.text.lines().nth(line.saturating_sub(1)).unwrap_or("");
        match l.split_once('=') {
            Some((k, _)) => k.trim().to_string(),
            None => l.trim().to_string(),
        }
    }

    fn err(&self, span: std::ops::Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::File {
            file: self.file.to_path_buf(),
            line: self.line_of(span.start),
            key: key.to_string(),
            message,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    root: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    passive_ports: Option<Spanned<String>>,
    passive_host: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    max_connections_per_ip: Option<Spanned<u64>>,
    active: Option<Spanned<bool>>,
    login_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    data_timeout_secs: Option<Spanned<u64>>,
    max_login_failures: Option<Spanned<u64>>,
    login_failure_window_secs: Option<Spanned<u64>>,
    login_lockout_secs: Option<Spanned<u64>>,
    shutdown_grace_secs: Option<Spanned<u64>>,
    xferlog: Option<Spanned<String>>,
    hidden: Option<Spanned<bool>>,
    proxy_protocol: Option<Spanned<bool>>,
    proxy_from: Option<Spanned<Vec<String>>>,
    health_bind: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_self_signed: Option<Spanned<bool>>,
    state_dir: Option<Spanned<String>>,
    implicit_tls_bind: Option<Spanned<String>>,
    require_tls_reuse: Option<Spanned<bool>>,
    anonymous: Option<Spanned<RawAnonymous>>,
    #[serde(default)]
    users: Vec<RawUser>,
    guest: Option<Spanned<RawGuestArea>>,
    #[serde(default)]
    guests: Vec<RawGuest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnonymous {
    #[serde(default = "yes")]
    enabled: bool,
    home: Option<Spanned<String>>,
    upload_dir: Option<Spanned<String>>,
    max_rate: Option<u64>,
    #[serde(default)]
    expose_real_homes: bool,
    tls: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password: Spanned<String>,
    home: Spanned<String>,
    #[serde(default)]
    write: bool,
    max_rate: Option<u64>,
    tls: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuestArea {
    home: Spanned<String>,
    #[serde(default)]
    upload: bool,
    max_rate: Option<u64>,
    #[serde(default)]
    expose_real_homes: bool,
    tls: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    name: Spanned<String>,
    password: Spanned<String>,
    expires: Option<Spanned<String>>,
}

/// A class's `tls` key.
fn tls_key(
    ctx: &Ctx<'_>,
    v: Option<&Spanned<String>>,
    key: &str,
) -> Result<Option<TlsPolicy>, ConfigError> {
    v.map(|v| TlsPolicy::parse(v.get_ref()).map_err(|m| ctx.err(v.span(), key, m)))
        .transpose()
}

fn check_root(p: &Path) -> Result<PathBuf, String> {
    let canon = std::fs::canonicalize(p)
        .map_err(|e| format!("root directory {} is not usable: {e}", p.display()))?;
    if !canon.is_dir() {
        return Err(format!("root {} is not a directory", p.display()));
    }
    Ok(canon)
}

/// A home (or upload dir) must be relative, stay inside its base, and exist as a directory.
fn check_home(base: &Path, home: &str) -> Result<PathBuf, String> {
    let p = Path::new(home);
    if p.is_absolute() {
        return Err(format!(
            "{home:?} must be relative to the root (every home is below `root`)"
        ));
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("{home:?} must not contain `..`"));
    }
    let rel = confine(p).ok_or_else(|| format!("{home:?} leaves the root"))?;
    let full = base.join(&rel);
    if !full.is_dir() {
        return Err(format!("directory {} does not exist", full.display()));
    }
    Ok(rel)
}

fn check_name(name: &Spanned<String>, seen: &mut HashSet<String>) -> Result<String, String> {
    let n = name.get_ref();
    if n.is_empty() || n.len() > 64 || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{n:?} is not a valid login name (1-64 characters, no spaces or control characters)"
        ));
    }
    let lower = n.to_ascii_lowercase();
    if lower == "anonymous" || lower == "ftp" {
        return Err(format!("{n:?} is reserved for the anonymous class"));
    }
    if !seen.insert(n.clone()) {
        return Err(format!("login name {n:?} is defined twice"));
    }
    Ok(n.clone())
}

fn check_phc(s: &str) -> Result<(), String> {
    let h = argon2::PasswordHash::new(s).map_err(|e| {
        format!("not a PHC password hash ({e}); create one with `ftp-server hash-password`")
    })?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm is {}, expected argon2id; create one with `ftp-server hash-password`",
            h.algorithm
        ));
    }
    Ok(())
}

/// Parses `ADDR:PORT` (`[::]:2121` for IPv6) or a bare address (port 2121).
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    Err(format!(
        "{s:?} is not ADDR:PORT (e.g. 0.0.0.0:2121 or [::]:2121)"
    ))
}

/// Parses `LOW-HIGH` (inclusive, both ≥ 1024, LOW ≤ HIGH).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range LOW-HIGH like 49152-65535");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 {
        return Err(format!(
            "{s:?}: passive ports must be 1024 or above (ports below are privileged)"
        ));
    }
    if lo > hi {
        return Err(format!("{s:?}: LOW is above HIGH"));
    }
    Ok(lo..=hi)
}

/// Parses what PASV should advertise: an IPv4 address, or a host name (resolved by libunftp at
/// each PASV, so a dynamic address behind NAT stays right). PASV cannot carry IPv6 (RFC 2428
/// clients use EPSV, which needs no address).
pub fn parse_passive_host(h: &str) -> Result<PassiveHost, String> {
    if let Ok(ip) = h.parse::<Ipv4Addr>() {
        return Ok(PassiveHost::Ip(ip));
    }
    if h.trim_matches(['[', ']'])
        .parse::<std::net::Ipv6Addr>()
        .is_ok()
    {
        return Err(format!(
            "{h:?}: PASV can only advertise an IPv4 address (IPv6 clients use EPSV, which needs none)"
        ));
    }
    // A DNS name (RFC 1123 §2.1): letters, digits, hyphens and dots, at most 253 characters.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if h.len() > 253 || !h.trim_end_matches('.').split('.').all(label_ok) {
        return Err(format!("{h:?} is not an IPv4 address or host name"));
    }
    Ok(PassiveHost::Dns(h.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for sub in ["pub", "pub/incoming", "home/alice", "guest"] {
            std::fs::create_dir_all(d.path().join(sub)).expect("mkdir");
        }
        d
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0zJ8BgyNpyGbMsoJf5hN8bfx6X1Dm3Gk9r5HqfLMzK4";

    fn err_of(text: &str) -> (usize, String, String) {
        let d = root();
        match Config::from_toml_str(text, d.path()) {
            Err(ConfigError::File {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn full_example_parses() {
        let d = root();
        let text = format!(
            r#"
root = "."
bind = "127.0.0.1:2121"
passive_ports = "50000-50100"
max_connections = 20
max_connections_per_ip = 4
idle_timeout_secs = 30
hidden = true

[anonymous]
enabled = true
home = "pub"
upload_dir = "incoming"

[[users]]
name = "alice"
password = "{HASH}"
home = "home/alice"
write = true

[guest]
home = "guest"
upload = true

[[guests]]
name = "visitor"
password = "{HASH}"
expires = "2026-12-31T23:59:59Z"
"#
        );
        let c = Config::from_toml_str(&text, d.path()).expect("valid");
        assert_eq!(c.passive_ports, 50000..=50100);
        assert_eq!(c.max_connections_per_ip, 4);
        assert!(c.hidden);
        let a = c.anonymous.expect("anonymous on");
        assert_eq!(a.home, Path::new("pub"));
        assert_eq!(a.upload_dir.as_deref(), Some(Path::new("incoming")));
        assert_eq!(c.users[0].name, "alice");
        assert!(c.guests[0].expires.is_some());
    }

    #[test]
    fn errors_name_key_and_line() {
        let cases: Vec<(String, usize, &str, &str)> = vec![
            (
                "max_connections = \"many\"\n".into(),
                1,
                "max_connections",
                "invalid type",
            ),
            (
                "\n\npassive_ports = \"10-20\"\n".into(),
                3,
                "passive_ports",
                "1024",
            ),
            ("bind = \"nowhere\"\n".into(), 1, "bind", "ADDR:PORT"),
            ("colour = 1\n".into(), 1, "colour", "unknown field"),
            (
                "max_connections = 0\n".into(),
                1,
                "max_connections",
                "at least 1",
            ),
            (
                "[[users]]\nname = \"bob\"\npassword = \"hunter2\"\nhome = \"home/alice\"\n".into(),
                3,
                "users[0].password",
                "PHC",
            ),
            (
                format!("[[users]]\nname = \"bob\"\npassword = \"{HASH}\"\nhome = \"../etc\"\n"),
                4,
                "users[0].home",
                "..",
            ),
            (
                format!("[[users]]\nname = \"bob\"\npassword = \"{HASH}\"\nhome = \"nope\"\n"),
                4,
                "users[0].home",
                "does not exist",
            ),
            (
                format!("[[users]]\nname = \"ftp\"\npassword = \"{HASH}\"\nhome = \"pub\"\n"),
                2,
                "users[0].name",
                "reserved",
            ),
            (
                format!(
                    "[guest]\nhome = \"guest\"\n[[guests]]\nname = \"v\"\npassword = \"{HASH}\"\nexpires = \"tomorrow\"\n"
                ),
                6,
                "guests[0].expires",
                "RFC 3339",
            ),
            (
                format!("[[guests]]\nname = \"v\"\npassword = \"{HASH}\"\n"),
                2,
                "guests[0].name",
                "[guest]",
            ),
            (
                "[anonymous]\nenabled = false\n".into(),
                1,
                "anonymous",
                "no account class",
            ),
            (
                "[anonymous]\nhome = \"pub\"\nupload_dir = \"/tmp\"\n".into(),
                3,
                "anonymous.upload_dir",
                "relative",
            ),
            ("max_connections = \n".into(), 1, "max_connections", ""),
        ];
        for (text, line, key, needle) in cases {
            let (l, k, m) = err_of(&text);
            assert_eq!((l, k.as_str()), (line, key), "for {text:?}: {m}");
            assert!(
                m.contains(needle),
                "message for {text:?} lacks {needle:?}: {m}"
            );
        }
    }

    #[test]
    fn anonymous_defaults_depend_on_other_accounts() {
        let d = root();
        let c = Config::from_toml_str("", d.path()).expect("empty config");
        assert!(c.anonymous.is_some());
        let text =
            format!("[[users]]\nname = \"bob\"\npassword = \"{HASH}\"\nhome = \"home/alice\"\n");
        let c = Config::from_toml_str(&text, d.path()).expect("users only");
        assert!(c.anonymous.is_none());
    }

    #[test]
    fn passive_host_is_parsed_once() {
        let ok: [(&str, PassiveHost); 3] = [
            ("192.0.2.7", PassiveHost::Ip(Ipv4Addr::new(192, 0, 2, 7))),
            (
                "ftp.example.org",
                PassiveHost::Dns("ftp.example.org".into()),
            ),
            ("nas-1.", PassiveHost::Dns("nas-1.".into())),
        ];
        for (text, want) in ok {
            assert_eq!(parse_passive_host(text), Ok(want), "{text}");
        }
        for bad in [
            "::1",
            "[2001:db8::1]",
            "",
            "two words",
            "-lead.example",
            "a..b",
            "x_y",
        ] {
            assert!(parse_passive_host(bad).is_err(), "{bad:?} accepted");
        }
        let d = root();
        let e = Config::from_toml_str("\npassive_host = \"::1\"\n", d.path()).expect_err("IPv6");
        assert!(
            matches!(&e, ConfigError::File { line: 2, key, .. } if key == "passive_host"),
            "{e}"
        );
    }

    #[test]
    fn without_a_root_key_the_root_is_the_current_directory_not_the_files() {
        let dir = root();
        let file = dir.path().join("ftp.toml");
        std::fs::write(&file, "[anonymous]\n").expect("write");
        let cfg = Config::load(&file).expect("valid");
        assert_eq!(
            cfg.root,
            std::fs::canonicalize(std::env::current_dir().expect("cwd")).expect("canonical")
        );
    }

    #[test]
    fn secrets_inside_what_anonymous_or_guests_can_read_are_refused() {
        let dir = root();
        for d in ["pub", "home/alice", "guest/x"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let phc = crate::auth::hash_password_with_cost("pw", 64, 1).expect("hash");
        let alice =
            format!("[[users]]\nname = \"alice\"\npassword = \"{phc}\"\nhome = \"home/alice\"\n");
        // The config file in the anonymous area (the root itself).
        let file = dir.path().join("ftp.toml");
        std::fs::write(&file, "root = \".\"\n[anonymous]\nhome = \"\"\n").expect("write");
        let e = Config::load(&file)
            .expect_err("config readable by anonymous")
            .to_string();
        assert!(
            e.contains("anonymous.home") && e.contains("password hashes"),
            "{e}"
        );
        // Moved out of the area: fine.
        std::fs::write(&file, "root = \".\"\n[anonymous]\nhome = \"pub\"\n").expect("write");
        Config::load(&file).expect("config outside the anonymous area");
        // An anonymous area that holds a real user's home, unless it says so.
        let text = format!("root = \".\"\n[anonymous]\nhome = \"home\"\n{alice}");
        std::fs::write(&file, &text).expect("write");
        let e = Config::load(&file)
            .expect_err("alice's home exposed")
            .to_string();
        assert!(
            e.contains("\"alice\"") && e.contains("expose_real_homes"),
            "{e}"
        );
        let text = text.replace(
            "home = \"home\"\n",
            "home = \"home\"\nexpose_real_homes = true\n",
        );
        std::fs::write(&file, &text).expect("write");
        Config::load(&file).expect("exposure asked for");
        // The guest area, and the xferlog.
        let text = format!(
            "root = \".\"\n[anonymous]\nenabled = false\n[guest]\nhome = \"guest\"\n{alice}\nxferlog = \"guest/x/xfer.log\"\n"
        );
        let text = text.replace("xferlog = \"guest/x/xfer.log\"\n", "");
        let text = format!("xferlog = \"guest/x/xfer.log\"\n{text}");
        std::fs::write(&file, &text).expect("write");
        let e = Config::load(&file)
            .expect_err("xferlog readable by guests")
            .to_string();
        assert!(e.contains("guest.home") && e.contains("xferlog"), "{e}");
    }

    #[test]
    fn ranges_and_binds() {
        assert_eq!(parse_port_range("2000-2000"), Ok(2000..=2000));
        assert!(parse_port_range("3000-2000").is_err());
        assert!(parse_port_range("2000").is_err());
        assert!(parse_port_range("-").is_err());
        assert_eq!(
            parse_bind("[::1]:21"),
            Ok(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 21)))
        );
        assert_eq!(parse_bind("127.0.0.1").map(|a| a.port()), Ok(DEFAULT_PORT));
    }

    #[test]
    fn proxy_from_is_parsed_once_and_needs_proxy_protocol() {
        let d = tempfile::tempdir().expect("tmp");
        let c = Config::from_toml_str(
            "proxy_protocol = true\nproxy_from = [\"10.1.2.3/8\", \"192.0.2.9\", \"fd00::/8\"]\n",
            d.path(),
        )
        .expect("valid");
        let p = c.proxy.expect("on");
        assert_eq!(p.from[0].to_string(), "10.0.0.0/8");
        assert_eq!(p.from[1].to_string(), "192.0.2.9/32");
        assert!(p.trusts("10.200.0.1".parse().expect("ip")));
        assert!(
            p.trusts("::ffff:192.0.2.9".parse().expect("ip")),
            "IPv4-mapped"
        );
        assert!(!p.trusts("192.0.2.10".parse().expect("ip")));
        for (text, line, key) in [
            ("proxy_protocol = true\n", 1, "proxy_protocol"),
            ("proxy_protocol = true\nproxy_from = []\n", 2, "proxy_from"),
            (
                "proxy_protocol = true\nproxy_from = [\"10.0.0.0/33\"]\n",
                2,
                "proxy_from",
            ),
            ("proxy_from = [\"10.0.0.1\"]\n", 1, "proxy_from"),
        ] {
            let e = Config::from_toml_str(text, d.path()).expect_err(text);
            assert!(
                matches!(&e, ConfigError::File { line: l, key: k, .. } if *l == line && k == key),
                "{text}: {e:?}"
            );
        }
        assert!(
            Config::from_toml_str("", d.path())
                .expect("ok")
                .proxy
                .is_none()
        );
    }

    #[test]
    fn proxy_flags_build_the_same_settings_and_name_the_flag() {
        use clap::Parser;
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().to_str().expect("utf-8");
        let cli = crate::cli::Cli::try_parse_from([
            "ftp-server",
            "--root",
            root,
            "--proxy-protocol",
            "--proxy-from",
            "127.0.0.1,10.0.0.0/8",
        ])
        .expect("parse");
        let p = Config::try_from(cli).expect("valid").proxy.expect("on");
        assert_eq!(p.from.len(), 2);
        let cli =
            crate::cli::Cli::try_parse_from(["ftp-server", "--root", root, "--proxy-protocol"])
                .expect("parse");
        let e = Config::try_from(cli).expect_err("no balancers");
        assert!(
            matches!(
                e,
                ConfigError::Flag {
                    flag: "--proxy-protocol",
                    ..
                }
            ),
            "{e:?}"
        );
        let cli = crate::cli::Cli::try_parse_from([
            "ftp-server",
            "--root",
            root,
            "--proxy-from",
            "nonsense",
        ])
        .expect("parse");
        let e = Config::try_from(cli).expect_err("no --proxy-protocol");
        assert!(
            matches!(
                e,
                ConfigError::Flag {
                    flag: "--proxy-from",
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
