//! filexfer: the pieces that two or more of the suite's tools need, in one place so that they
//! behave the same everywhere.
//!
//! - [`download`]: where a download's bytes land (`<file>.part`, resume, rename on success, an
//!   existing file never destroyed by a failed transfer) and which remote names are safe local
//!   names.
//! - [`datapath`]: moving file bytes to and from a socket (sendfile(2) or an overlapped buffered
//!   copy), with a stall timeout that means "no byte moved for that long".
//! - [`progress`]: the progress bar and the end-of-transfer summary line.
//! - [`shutdown`]: the Ctrl-C / SIGTERM signal servers stop on.
//! - [`fdlimit`]: the open-file limit a server's connection limit needs.
//! - [`banner`]: which addresses a server prints for peers to use.
//! - [`logging`]: the `tracing` set-up every binary shares.
//! - [`text`]: showing names and text from the network without their control characters.

pub mod banner;
pub mod datapath;
pub mod download;
pub mod fdlimit;
pub mod logging;
pub mod progress;
pub mod shutdown;
pub mod text;
