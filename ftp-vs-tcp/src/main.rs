//! ftp-vs-tcp binary: parse, check, make a temporary directory that is removed even on Ctrl-C,
//! run, print the table, write the files asked for.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ftp_vs_tcp::{Cli, Config, report};

fn main() -> ExitCode {
    filexfer::logging::init("warn", filexfer::logging::Style::Client);
    let config = match Config::try_from(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ftp-vs-tcp: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftp-vs-tcp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Removes `dir` and ends the process on Ctrl-C or SIGTERM: the servers and clients are
/// threads of this process and end with it, but the files (and the shaped link's namespaces)
/// would stay. The handlers are in
/// place when this returns, before any file is written.
fn remove_on_signal(dir: PathBuf, config_has_link: bool) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal watcher")?;
    let (mut int, mut term) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .context("cannot watch Ctrl-C and SIGTERM")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            let _ = std::fs::remove_dir_all(&dir);
            // The shaped link's namespaces, if this run made them.
            if config_has_link {
                ftp_vs_tcp::netns::remove_for(std::process::id());
            }
            eprintln!("ftp-vs-tcp: interrupted; removed {}", dir.display());
            std::process::exit(130);
        })
        .context("cannot start the signal watcher")?;
    Ok(())
}

fn run(config: &Config) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ftp-vs-tcp.")
        .tempdir()
        .context("cannot create a temporary directory")?;
    remove_on_signal(dir.path().to_path_buf(), config.link.is_some())?;
    let report = ftp_vs_tcp::run(config, dir.path())?;
    drop(dir);
    print!("{}", report::markdown(&report));
    if let Some(p) = &config.json {
        let text = report::json(&report).context("cannot encode the JSON")?;
        std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &config.csv {
        std::fs::write(p, report::csv(&report))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &config.chart {
        ftp_vs_tcp::chart::draw(&report, p)?;
    }
    Ok(())
}
