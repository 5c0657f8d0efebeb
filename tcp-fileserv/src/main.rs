//! The `tcp-fileserv` binary: parse flags, validate them into a config, call the library, and
//! map the one error, if any, to its exit code.

use clap::Parser;
use filexfer::logging::{self, Style};
use tcp_fileserv::cli::{Cli, Command};
use tcp_fileserv::commands::{self, Error};
use tcp_fileserv::config::{GetConfig, LsConfig, ServeConfig};
use tcp_fileserv::exit_codes::ExitCode;

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(a) => {
            logging::init("info", Style::Server);
            ServeConfig::try_from(&a)
                .map_err(Error::from)
                .and_then(commands::serve)
        }
        Command::Get(a) => {
            logging::init("warn", Style::Client);
            GetConfig::try_from(&a)
                .map_err(Error::from)
                .and_then(commands::get)
        }
        Command::Ls(a) => {
            logging::init("warn", Style::Client);
            LsConfig::try_from(&a)
                .map_err(Error::from)
                .and_then(commands::ls)
        }
    };
    match result {
        Ok(()) => ExitCode::Success.into(),
        Err(e) => {
            let code = e.exit_code();
            // `{:#}` prints the chain of causes, each once, on one line. Escaped as a whole: a
            // local path in it may come from a remote name (ESC, BEL, CR and all).
            let line = format!("{:#}", anyhow::Error::new(e));
            eprintln!("tcp-fileserv: {}", filexfer::text::printable(&line));
            code.into()
        }
    }
}
