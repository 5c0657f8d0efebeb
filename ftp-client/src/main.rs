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
        // With nobody to ask, fail before connecting: an empty password sent instead would be
        // a failed login that counts toward the account's lockout on the server.
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "ftp-client: no password for {:?}, and standard input is not a terminal to ask \
                 on: give one with -u USER:PASS, --password, FTP_PASSWORD or --netrc",
                config.user
            );
            return ExitCode::from(2);
        }
        let prompt = format!("Password for {}@{}: ", config.user, config.host);
        config.password = match rpassword::prompt_password(prompt) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("ftp-client: cannot read the password: {e}");
                return ExitCode::from(2);
            }
        };
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
    // Ctrl-C or SIGTERM drops the operation rather than killing the process mid-way: the
    // download's drop puts an adopted file back under its name, and the data connection,
    // dropped before its end, is reset (crate::data) so the server knows it was not complete.
    let result = rt.block_on(async {
        tokio::select! {
            r = ftp_client::run(config, &mut stdout, trace) => Some(r),
            () = filexfer::shutdown::signal() => None,
        }
    });
    // A resolver call abandoned at --timeout runs on a blocking thread that dropping the
    // runtime would wait for without limit; every other blocking task was awaited already.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(match result {
        None => {
            eprintln!("ftp-client: interrupted");
            // 128 + SIGINT, what a shell reports for a process Ctrl-C ended.
            ExitCode::from(130)
        }
        Some(Ok(report)) => {
            if !config.quiet {
                eprintln!("{}", report.line());
            }
            ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            let code = e.exit_code();
            // `{:#}` prints the message and each cause under it, once each, on one line.
            eprintln!("ftp-client: {:#}", anyhow::Error::from(e));
            ExitCode::from(code)
        }
    })
}
