//! ftp-client binary: parse, check, run, map the error to curl's exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ftp_client::{Cli, Config, Tracer};

fn main() -> ExitCode {
    filexfer::logging::init("warn", filexfer::logging::Style::Client);
    // clap exits with 2 on a usage error, as curl does.
    let cli = Cli::parse();
    let mut config = match Config::try_from(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ftp-client: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if config.password.is_none() {
        // A named user without a password: ask, without echo, when someone is there to answer.
        let prompt = format!("Password for {}@{}: ", config.user, config.host);
        config.password = Some(if std::io::stdin().is_terminal() {
            match rpassword::prompt_password(prompt) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ftp-client: cannot read the password: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            String::new()
        });
    }
    config.progress = !config.quiet && std::io::stderr().is_terminal();
    match run(&config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ftp-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let trace: Option<Tracer> = config
        .verbose
        .then(|| Arc::new(|l: &str| eprintln!("{l}")) as Tracer);
    let mut stdout = std::io::stdout();
    let result = rt.block_on(ftp_client::run(config, &mut stdout, trace));
    // A resolver call abandoned at --timeout runs on a blocking thread that dropping the
    // runtime would wait for without limit; every other blocking task was awaited already.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(match result {
        Ok(report) => {
            if !config.quiet {
                eprintln!("{}", report.line());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            // `{:#}` prints the message and each cause under it, once each, on one line.
            eprintln!("ftp-client: {:#}", anyhow::Error::from(e));
            ExitCode::from(code)
        }
    })
}
