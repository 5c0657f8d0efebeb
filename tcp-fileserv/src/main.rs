//! The `tcp-fileserv` binary: parse flags, validate them, call the library, map errors to the
//! documented exit codes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tcp_fileserv::cli::{Cli, Command, GetConfig, LsArgs, ServeConfig, reachable_addresses};
use tcp_fileserv::client::{self, Client, ClientError, GetOptions, exit};
use tcp_fileserv::protocol::EntryKind;
use tcp_fileserv::server;
use tracing_subscriber::EnvFilter;

fn init_logs(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => {
            init_logs("info");
            serve(ServeConfig::try_from(&a)).map(|()| exit::OK)
        }
        Command::Get(a) => {
            init_logs("warn");
            get(GetConfig::try_from(&a))
        }
        Command::Ls(a) => {
            init_logs("warn");
            ls(&a)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("tcp-fileserv: {e:#}");
            let code = e
                .downcast_ref::<ClientError>()
                .map(ClientError::exit_code)
                .or_else(|| {
                    e.downcast_ref::<tcp_fileserv::cli::ConfigError>()
                        .map(|_| exit::USAGE)
                })
                .unwrap_or(exit::OTHER);
            ExitCode::from(code as u8)
        }
    }
}

fn serve(cfg: Result<ServeConfig, tcp_fileserv::cli::ConfigError>) -> anyhow::Result<()> {
    let cfg = cfg?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .with_context(|| format!("cannot listen on {} (--bind)", cfg.bind))?;
        let bound = listener.local_addr()?;
        println!(
            "tcp-fileserv: serving {} (read-only)",
            cfg.server.root.display()
        );
        for a in reachable_addresses(bound) {
            println!("  tcp-fileserv get {a} NAME");
        }
        std::io::stdout().flush().ok();
        server::run(listener, cfg.server, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown asked for");
}

fn get(cfg: Result<GetConfig, tcp_fileserv::cli::ConfigError>) -> anyhow::Result<i32> {
    let cfg = cfg?;
    let mut conn = Client::connect(&cfg.addr, cfg.timeout)?;
    let opts = GetOptions {
        output: cfg.output.clone(),
        resume: cfg.resume,
        progress: !cfg.quiet && std::io::stderr().is_terminal(),
    };
    let s = client::download(&mut conn, &cfg.name, &opts)?;
    if !cfg.quiet {
        let resumed = if s.resumed_from > 0 {
            format!(" (resumed at byte {})", s.resumed_from)
        } else {
            String::new()
        };
        eprintln!(
            "{}: {} bytes in {:.3} s ({:.1} MB/s){resumed}",
            s.saved_to,
            s.bytes,
            s.elapsed.as_secs_f64(),
            s.mb_per_s()
        );
    }
    Ok(exit::OK)
}

fn ls(a: &LsArgs) -> anyhow::Result<i32> {
    if a.timeout == 0 {
        anyhow::bail!(tcp_fileserv::cli::ConfigError::Invalid {
            flag: "--timeout",
            value: "0".into(),
            reason: "must be at least 1 second".into(),
        });
    }
    let addr = tcp_fileserv::cli::with_default_port(&a.addr);
    let mut conn = Client::connect(&addr, std::time::Duration::from_secs(a.timeout))?;
    let entries = conn.list(&a.dir)?;
    let mut out = std::io::stdout().lock();
    for e in entries {
        let line = match e.kind {
            EntryKind::Dir => format!("{:>14}  {}/", "-", e.name),
            EntryKind::File => format!("{:>14}  {}", e.size, e.name),
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(exit::OK)
}
