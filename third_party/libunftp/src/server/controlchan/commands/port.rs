//! The RFC 959 Data Port (`PORT`) command
//
// The argument is a HOST-PORT specification for the data port
// to be used in data connection.  There are defaults for both
// the user and server data ports, and under normal
// circumstances this command and its reply are not needed.  If
// this command is used, the argument is the concatenation of a
// 32-bit internet host address and a 16-bit TCP port address.
// This address information is broken into 8-bit fields and the
// value of each field is transmitted as a decimal number (in
// character string representation).  The fields are separated
// by commas.  A port command would be:
//
// PORT h1,h2,h3,h4,p1,p2
//
// where h1 is the high order 8 bits of the internet host
// address.

use crate::{
    auth::UserDetail,
    server::{
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
        datachan,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long the server waits for the client to accept an active data connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Port {
    addr: String,
}

impl Port {
    pub fn new(addr: String) -> Self {
        Port { addr }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Port
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        // RFC 959 §4.1.2: exactly six decimal numbers 0-255. Anything else is a syntax error,
        // not a best guess.
        let fields: Vec<&str> = self.addr.trim().split(',').collect();
        let bytes: Option<Vec<u8>> = fields.iter().map(|x| x.trim().parse::<u8>().ok()).collect();
        let bytes = match bytes {
            Some(b) if b.len() == 6 => b,
            _ => return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "Invalid address format")),
        };
        let port = ((bytes[4] as u16) << 8) | bytes[5] as u16;
        let addr = SocketAddrV4::new(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]), port);

        open_active(args, SocketAddr::V4(addr), "PORT").await
    }
}

/// Opens the active-mode data connection of `PORT` or `EPRT` (`command`) to `addr`.
///
/// RFC 2577 §3 and §4: only to the client's own host (no "FTP bounce" to a third host) and never
/// to a privileged port, checked before any connection is attempted.
pub(crate) async fn open_active<Storage, User>(args: CommandContext<Storage, User>, addr: SocketAddr, command: &str) -> Result<Reply, ControlChanError>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    let CommandContext {
        logger,
        tx_control_chan: tx,
        session,
        ..
    } = args;
    let client = {
        let s = session.lock().await;
        let source = s.control_connection.map(|pair| pair.source).unwrap_or(s.source);
        super::passive_common::host_of(source.ip())
    };
    if super::passive_common::host_of(addr.ip()) != client || addr.port() < 1024 {
        slog::warn!(logger, "Refused {} {} from {}: only the client's own address and ports 1024 and up", command, addr, client);
        return Ok(Reply::new_with_string(
            ReplyCode::CommandNotImplementedForParameter,
            format!("{command} refused: the address must be your own and the port 1024 or above"),
        ));
    }

    let stream: io::Result<TcpStream> = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    let stream = match stream {
        Err(e) => {
            slog::error!(logger, "Could not connect to client for active mode: {}", e);
            return Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Could not establish data connection"));
        }
        Ok(s) => s,
    };

    super::passive_common::setup_inter_loop_comms(session.clone(), tx).await;
    datachan::spawn_processing(logger, session, stream).await;

    Ok(Reply::new_with_string(ReplyCode::CommandOkay, format!("{command} command successful")))
}
