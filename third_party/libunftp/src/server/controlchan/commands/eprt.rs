//! The RFC 2428 Extended Data Port (`EPRT`) command: `PORT` for IPv4 and IPv6.
//
// EPRT<space><d><net-prt><d><net-addr><d><tcp-port><d>
//
// where <d> is a delimiter character (ASCII 33-126, usually `|`), <net-prt> is 1 for IPv4 and
// 2 for IPv6, <net-addr> the address in its usual text form and <tcp-port> a decimal port:
//
// EPRT |1|132.235.1.2|6275|
// EPRT |2|1080::8:800:200C:417A|5282|

use super::port::open_active;
use crate::{
    auth::UserDetail,
    server::controlchan::{
        Reply, ReplyCode,
        error::ControlChanError,
        handler::{CommandContext, CommandHandler},
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug)]
pub struct Eprt {
    arg: String,
}

impl Eprt {
    pub fn new(arg: String) -> Self {
        Eprt { arg }
    }
}

/// Why an `EPRT` argument was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EprtError {
    /// Not of the form `<d>proto<d>addr<d>port<d>`.
    Syntax,
    /// A network protocol other than 1 (IPv4) or 2 (IPv6): RFC 2428 §2 wants `522`.
    Protocol,
}

/// Parses an `EPRT` argument into the address to connect to.
pub(crate) fn parse_eprt(arg: &str) -> Result<SocketAddr, EprtError> {
    let arg = arg.trim();
    let delim = arg.chars().next().ok_or(EprtError::Syntax)?;
    if !(33..=126).contains(&(delim as u32)) || delim.is_ascii_alphanumeric() {
        return Err(EprtError::Syntax);
    }
    let fields: Vec<&str> = arg.split(delim).collect();
    // "", proto, addr, port, "" : the argument starts and ends with the delimiter.
    let [first, proto, addr, port, last] = fields[..] else {
        return Err(EprtError::Syntax);
    };
    if !first.is_empty() || !last.is_empty() {
        return Err(EprtError::Syntax);
    }
    let port: u16 = port.parse().map_err(|_| EprtError::Syntax)?;
    let ip: IpAddr = match proto {
        "1" => IpAddr::V4(addr.parse().map_err(|_| EprtError::Syntax)?),
        "2" => IpAddr::V6(addr.parse().map_err(|_| EprtError::Syntax)?),
        _ => return Err(EprtError::Protocol),
    };
    Ok(SocketAddr::new(ip, port))
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Eprt
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        match parse_eprt(&self.arg) {
            Ok(addr) => open_active(args, addr, "EPRT").await,
            Err(EprtError::Syntax) => Ok(Reply::new(ReplyCode::ParameterSyntaxError, "Invalid EPRT argument, expected |1|address|port| or |2|address|port|")),
            Err(EprtError::Protocol) => Ok(Reply::new(ReplyCode::UnsupportedNetworkProtocol, "Network protocol not supported, use (1,2)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eprt_arguments() {
        assert_eq!(parse_eprt("|1|132.235.1.2|6275|"), Ok("132.235.1.2:6275".parse().unwrap()));
        assert_eq!(parse_eprt("|2|1080::8:800:200C:417A|5282|"), Ok("[1080::8:800:200C:417A]:5282".parse().unwrap()));
        assert_eq!(parse_eprt("!1!10.0.0.1!1024!"), Ok("10.0.0.1:1024".parse().unwrap()));
        assert_eq!(parse_eprt("|3|x|1|"), Err(EprtError::Protocol));
        for bad in ["", "|", "|1|10.0.0.1|99999|", "|1|::1|2000|", "|2|10.0.0.1|2000|", "|1|10.0.0.1|2000", "1|10.0.0.1|2000|", "|1|10.0.0.1|2000|x|", "a1a10.0.0.1a2000a", "|1|10.0.0.1|-1|"] {
            assert_eq!(parse_eprt(bad), Err(EprtError::Syntax), "{bad:?}");
        }
    }
}
