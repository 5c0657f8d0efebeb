//! ftp-vs-tcp: what FTP costs next to a plain TCP stream, measured with the suite's own servers
//! (ftp-server, tcp-fileserv) and clients (ftp-client, tcp-fileserv's client), which send file
//! bytes through the same `filexfer::datapath::send_range`.
//!
//! - [`config`]: the flags ([`config::Cli`]) checked into a [`config::Config`].
//! - [`servers`]: the files, and both servers started in-process on loopback.
//! - [`measure`]: one download of either protocol, with its phases and round trips.
//! - [`cpu`]: CPU time per side, by thread name.
//! - [`netns`]: the rate-limited link of the shaped scenario (two namespaces, a veth pair).
//! - [`mod@run`]: the whole comparison, scenarios included, into a [`report::Report`].
//! - [`report`]: the table, CSV and JSON; [`chart`]: the SVG chart.
//!
//! See docs/comparison.md for what the figures mean.

pub mod chart;
pub mod config;
pub mod cpu;
pub mod measure;
pub mod netns;
pub mod report;
pub mod run;
pub mod servers;

pub use config::{Cli, Config, ConfigError};
pub use run::{RunError, run};
