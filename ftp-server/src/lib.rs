//! An FTP server (RFC 959, with RFC 2428 EPSV and RFC 3659 extensions from libunftp) with the
//! classic account model: anonymous, real and guest accounts, each chrooted to its home.
//!
//! The library takes an already bound listener, a validated [`Config`] and a shutdown future, so
//! tests serve on `127.0.0.1:0` in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ftp_server::Config::new("/srv/ftp"); // anonymous, read-only
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! ftp_server::run(listener, config, filexfer::shutdown::signal()).await?;
//! # Ok(()) }
//! ```
//!
//! or, from synchronous code, [`BackgroundServer::start`].
//!
//! Modules, one job each: [`config`] (file and flags → [`Config`]), [`cli`] (the flags),
//! [`account`] (classes, access, the permission table), [`auth`] (logins: passwords, lockout),
//! [`storage`] (the libunftp storage adapter), [`listing`] (what a path is: metadata, listings,
//! globs), [`names`] (names on the wire, dotfiles), [`transfer`] (the data path: copies, atomic
//! uploads), [`path`] (confinement), [`xferlog`], [`server`] (accept loop, limits, shutdown),
//! [`preflight`] (what a transfer command is refused before its `150`),
//! [`tls`] (FTPS: the certificate, self-signed or from files, and its fingerprint),
//! [`control`] (the sessions' control connections: is an uploading client still there?).

pub mod account;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod health;
pub mod listing;
pub mod names;
pub mod path;
pub mod preflight;
pub mod proxy;
pub mod server;
pub mod storage;
pub mod tls;
pub mod transfer;
pub mod xferlog;

pub use auth::{hash_password, hash_password_with_cost};
pub use cli::{Cli, Command};
pub use config::{Config, ConfigError};
pub use server::{
    BackgroundServer, DESCRIPTORS_PER_SESSION, Prepared, ServerError, run, run_prepared,
};
