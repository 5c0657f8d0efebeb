//! The command line (`serve`, `get`, `ls`) as clap parses it: raw flags only. What the values
//! mean, and whether they can be used, is decided in [`crate::config`].

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit_codes::ExitCode;
use crate::server::DEFAULT_PORT;

/// Raw command-line flags, as clap parses them.
#[derive(Debug, Parser)]
#[command(
    name = "tcp-fileserv",
    version,
    about = "Serve a directory over a small framed TCP protocol, and download from it",
    long_about = format!(
        "Serve a directory over a small framed TCP protocol, and download from it.\n\n{}",
        ExitCode::summary()
    )
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory, read-only, to any number of clients.
    Serve(ServeArgs),
    /// Download one file.
    Get(GetArgs),
    /// List what the server offers in a directory (names and sizes).
    Ls(LsArgs),
}

/// Flags of `tcp-fileserv serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory to serve (read-only); the current directory by default.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Address and port to listen on; all interfaces on port 7070 by default. Use `[::]:PORT` for
    /// IPv6 (and, on Linux, IPv4 too).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT))]
    pub bind: SocketAddr,
    /// Most clients served at once; more get a "busy" reply.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a connection may wait between requests before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a read or write inside a request may stall before the client is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub io_timeout: u64,
    /// Seconds running transfers may go on after Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub grace: u64,
    /// Also list and serve dotfiles and dot-directories (`.git`, `.env`, `.ssh`), which are
    /// hidden and refused by default.
    #[arg(long)]
    pub hidden: bool,
}

/// Flags of `tcp-fileserv get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The server, as HOST:PORT (the port defaults to 7070).
    #[arg(value_name = "ADDR:PORT")]
    pub addr: String,
    /// The file to download, relative to the server's root (`dir/file.txt`). A name that is not
    /// UTF-8 (`ls` shows its bytes as `\xNN`) is given as those bytes, e.g. `$'bad\xffname'`.
    pub name: OsString,
    /// Where to save it: a path, or `-` for standard output. Default: `./<basename of NAME>`.
    #[arg(short, long, value_name = "PATH|-", allow_hyphen_values = true)]
    pub output: Option<PathBuf>,
    /// Resume a partial download (`<file>.part`) from its current length.
    #[arg(short = 'C', long = "continue")]
    pub resume: bool,
    /// Seconds to wait for the server at each step (connect, reply, every read).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// No progress bar and no summary line.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Flags of `tcp-fileserv ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The server, as HOST:PORT (the port defaults to 7070).
    #[arg(value_name = "ADDR:PORT")]
    pub addr: String,
    /// Directory to list, relative to the server's root; its root by default.
    #[arg(default_value = ".")]
    pub dir: OsString,
    /// Seconds to wait for the server at each step.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("10 resume impossible"), "{help}");
    }

    #[test]
    fn serve_defaults_and_a_bad_bind() {
        let Command::Serve(a) = Cli::try_parse_from(["t", "serve"]).unwrap().command else {
            panic!("not serve")
        };
        assert_eq!(a.bind.port(), DEFAULT_PORT);
        assert!(a.bind.ip().is_unspecified());
        assert!(Cli::try_parse_from(["t", "serve", "--bind", "nonsense"]).is_err());
    }
}
