//! tcp-fileserv: the socket lessons' file-download pair (the client sends a file name, the server
//! sends the file back), done properly: a framed wire protocol ([`protocol`]), names confined to
//! the served root ([`paths`], [`store`]), a concurrent server with limits and timeouts
//! ([`server`]) that sends bodies with sendfile(2) ([`sendfile`]), and a client that downloads
//! atomically ([`client`]). [`cli`] holds the command line and its validation; the binary only
//! wires them together.

pub mod cli;
pub mod client;
pub mod paths;
pub mod protocol;
pub mod sendfile;
pub mod server;
pub mod store;
