//! tcp-fileserv: the socket lessons' file-download pair (the client sends a file name, the server
//! sends the file back), done properly: a framed wire protocol ([`protocol`]), names confined to
//! the served root ([`paths`], [`store`]), a concurrent server with limits and timeouts
//! ([`server`]) whose every byte goes through one adapter ([`connection`]) and whose bodies go
//! out with sendfile(2) ([`filexfer::datapath`]), and a client that downloads atomically
//! ([`client`]). [`cli`] holds the command line and its validation; the binary only
//! wires them together.

pub mod cli;
pub mod client;
pub mod connection;
pub mod paths;
pub mod protocol;
pub mod server;
pub mod store;
