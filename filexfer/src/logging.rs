//! The `tracing` set-up every binary shares: `RUST_LOG` when set, else the binary's default
//! level; logs go to stderr (results go to stdout), coloured only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Servers: a timestamp and the module on every line, for an operator's log.
    Server,
    /// Command-line clients: just the level and the message.
    Client,
}

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is not set
/// (`"info"`, `"warn"`, ...). A second call does nothing.
pub fn init(default: &str, style: Style) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match style {
        Style::Server => builder.try_init(),
        Style::Client => builder.without_time().with_target(false).try_init(),
    };
}
