//! tcp-fileserv: the socket lessons' file-download pair (the client sends a file name, the server
//! sends the file back), done properly.
//!
//! - [`protocol`]: the framed wire protocol, as a pure codec (no sockets).
//! - [`connection`]: the server's one adapter between a socket and the codec (buffer, timeouts).
//! - [`server`]: accept loop, limits, dispatch, graceful shutdown.
//! - [`paths`], [`store`]: names confined to the served root.
//! - [`client`]: a blocking client; downloads land atomically through [`filexfer::download`].
//! - [`cli`] (raw flags) → [`config`] (validated, typed settings) → [`commands`] (what each
//!   subcommand does) → [`exit_codes`] (how the process ends). The binary only wires them
//!   together.

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod connection;
pub mod exit_codes;
pub mod paths;
pub mod protocol;
pub mod server;
pub mod store;
