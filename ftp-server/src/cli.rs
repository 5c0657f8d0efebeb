//! The command line: raw flags only. [`crate::Config::try_from`] turns them into a validated
//! configuration, so a bad flag fails before any socket opens.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An FTP server with anonymous, real and guest accounts.
///
/// With no arguments it serves the current directory anonymously and read-only on port 2121 of
/// every interface. Flags override the config file's keys.
#[derive(Debug, Clone, Parser)]
#[command(name = "ftp-server", version, about, long_about = None)]
pub struct Cli {
    /// Directory every home is below (default: the current directory).
    #[arg(long, value_name = "DIR", env = "FTP_SERVER_ROOT")]
    pub root: Option<PathBuf>,

    /// Address and port to listen on, IPv4 or IPv6 (default `0.0.0.0:2121`; IPv6 as `[::]:2121`).
    #[arg(long, value_name = "ADDR:PORT", env = "FTP_SERVER_BIND")]
    pub bind: Option<String>,

    /// Ports offered for passive data connections (default 49152-65535).
    #[arg(long, value_name = "LOW-HIGH", env = "FTP_SERVER_PASSIVE_PORTS")]
    pub passive_ports: Option<String>,

    /// IPv4 address or host name to advertise in PASV replies (behind NAT).
    #[arg(long, value_name = "HOST", env = "FTP_SERVER_PASSIVE_HOST")]
    pub passive_host: Option<String>,

    /// TOML config file with accounts and limits (see docs/ftp-server.md).
    #[arg(long, short = 'c', value_name = "FILE", env = "FTP_SERVER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Also log every transfer to FILE in the classic xferlog format.
    #[arg(long, value_name = "FILE", env = "FTP_SERVER_XFERLOG")]
    pub xferlog: Option<PathBuf>,

    /// Refuse active mode (PORT and EPRT); by default it is offered, connecting only to the
    /// client's own address and ports 1024 and up.
    #[arg(long)]
    pub passive_only: bool,

    /// List and serve dotfiles (`.git`, `.env`, ...), which are hidden and refused by default.
    #[arg(long)]
    pub hidden: bool,

    /// Connections served at once (default 200).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// FTPS: the certificate chain (PEM, leaf first); needs --tls-key. Real and guest accounts
    /// then require TLS unless their `tls` key says otherwise (docs/ftp-server.md, "TLS").
    #[arg(
        long,
        value_name = "FILE",
        env = "FTP_SERVER_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// FTPS: the certificate's private key (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "FTP_SERVER_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// FTPS with a self-signed certificate, made on first start and kept in the state
    /// directory, so its fingerprint (printed at start-up) stays the same across restarts.
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,

    /// Where --tls-self-signed keeps its certificate (default `$XDG_STATE_HOME/ftp-server`,
    /// else `~/.local/state/ftp-server`).
    #[arg(long, value_name = "DIR", env = "FTP_SERVER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Also serve implicit FTPS (`ftps://`, TLS from the first byte) on this address (port 990
    /// by convention); needs a certificate.
    #[arg(long, value_name = "ADDR:PORT", env = "FTP_SERVER_IMPLICIT_TLS_BIND")]
    pub implicit_tls_bind: Option<String>,

    /// Refuse TLS data connections that do not resume the control connection's TLS session
    /// (vsftpd's `require_ssl_reuse`; Python's ftplib cannot do it).
    #[arg(long)]
    pub require_tls_reuse: bool,

    /// Behind a load balancer: every control connection must come from a `--proxy-from`
    /// address and start with a PROXY protocol header (v1 or v2) naming the client, whose
    /// address the limits, lockout, data-connection checks and logs then see.
    #[arg(long, env = "FTP_SERVER_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// The load balancers allowed to send PROXY headers: addresses or networks
    /// (`10.0.0.0/8`), comma-separated or repeated.
    #[arg(
        long,
        value_name = "CIDR",
        value_delimiter = ',',
        env = "FTP_SERVER_PROXY_FROM"
    )]
    pub proxy_from: Vec<String>,

    /// Serve HTTP health checks on this address: `GET /ready` (200 while accepting, 503 while
    /// shutting down), `/live`, and `/metrics` (Prometheus).
    #[arg(long, value_name = "ADDR:PORT", env = "FTP_SERVER_HEALTH_BIND")]
    pub health_bind: Option<String>,

    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands that do not serve.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Read a password (without echo on a terminal, else one line of stdin) and print its
    /// argon2id PHC string for the config's `password` keys.
    HashPassword,
    /// Validate a config file; exit non-zero with a message naming the key and its line.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "ftp-server",
            "--root",
            "/srv",
            "--bind",
            "[::]:21",
            "--passive-ports",
            "50000-50010",
        ])
        .expect("parse");
        assert_eq!(cli.bind.as_deref(), Some("[::]:21"));
        let cli = Cli::try_parse_from(["ftp-server", "check-config", "x.toml"]).expect("parse");
        assert!(matches!(cli.command, Some(Command::CheckConfig { .. })));
    }
}
