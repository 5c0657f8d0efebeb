//! `ftp-server`: parse the flags, validate them into a [`ftp_server::Config`], serve until
//! Ctrl-C / SIGTERM. Exit codes: 0 success, 1 runtime error, 2 bad configuration.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use ftp_server::{Cli, Command, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    filexfer::logging::init(
        "info,libunftp=warn,unftp_sbe_fs=warn",
        filexfer::logging::Style::Server,
    );
    match cli.command.clone() {
        Some(Command::HashPassword) => report(hash_password()),
        Some(Command::CheckConfig { file }) => match Config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok (root {}, accounts: {})",
                    file.display(),
                    cfg.root.display(),
                    cfg.classes_summary()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        None => match Config::try_from(cli) {
            Ok(cfg) => report(serve(cfg)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if p != again {
            bail!("the passwords differ");
        }
        p
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("empty password");
    }
    let phc =
        ftp_server::hash_password(&password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{phc}")?;
    Ok(())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    filexfer::fdlimit::ensure_for(cfg.max_connections, ftp_server::DESCRIPTORS_PER_SESSION);
    // Before any socket: directory, xferlog and certificate errors are start-up errors.
    let prepared = ftp_server::Prepared::new(cfg).context("cannot start")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let cfg = prepared.config();
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.bind))?;
        let local = listener.local_addr()?;
        let implicit = match cfg.tls.as_ref().and_then(|t| t.implicit_bind) {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on {a} (--implicit-tls-bind)"))?,
            ),
            None => None,
        };
        let health = match cfg.health_bind {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on {a} (--health-bind)"))?,
            ),
            None => None,
        };
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "Serving {}", cfg.root.display())?;
            for addr in filexfer::banner::reachable_addresses(local) {
                writeln!(out, "  {}", filexfer::banner::url("ftp", addr))?;
            }
            if let Some(l) = &implicit {
                for addr in filexfer::banner::reachable_addresses(l.local_addr()?) {
                    writeln!(out, "  {}", filexfer::banner::url("ftps", addr))?;
                }
            }
            if let Some(fp) = prepared.tls_fingerprint() {
                // What a client pins a self-signed certificate with (ftp-client --pin-sha256).
                writeln!(out, "TLS certificate SHA-256 fingerprint: {fp}")?;
            }
            for w in prepared.tls_warnings() {
                writeln!(out, "WARNING: {w}")?;
            }
            if let Some(t) = cfg.tls_summary() {
                writeln!(out, "TLS: {t}")?;
            }
            if let Some(l) = &health {
                writeln!(out, "Health: http://{}/ready", l.local_addr()?)?;
            }
            writeln!(out, "Accounts: {}", cfg.classes_summary())?;
            out.flush()?;
        }
        ftp_server::run_prepared(
            listener,
            implicit,
            health,
            prepared,
            filexfer::shutdown::signal(),
        )
        .await
        .context("server failed")
    })
}
