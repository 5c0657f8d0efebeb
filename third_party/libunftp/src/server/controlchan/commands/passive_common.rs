//! Contains shared code for the PASV and EPSV commands.

use crate::{
    auth::UserDetail,
    server::{
        ControlChanErrorKind, ControlChanMsg,
        chancomms::{DataChanCmd, PortAllocationError, SwitchboardMessage, SwitchboardSender},
        controlchan::{Reply, ReplyCode, error::ControlChanError, handler::CommandContext},
        datachan,
        session::SharedSession,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::{
    fmt::Debug,
    io,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    time::Duration,
};
use tokio::net::TcpSocket;
use tokio::sync::{
    mpsc::{Receiver, Sender, channel},
    oneshot,
};


#[async_trait]
pub(crate) trait LegacyReplyProducer<Storage, User>: Send + Sync + Debug
where
    Storage: StorageBackend<User> + 'static,
    User: UserDetail + 'static,
{
    async fn build_reply(&self, args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError>;
}

/// Binds a port of `passive_ports` on `local_addr`'s IP: from a random port of the range (so
/// that the next data port cannot be guessed, RFC 2577 §5), trying each port of the range in
/// turn, so that a free port is found whenever there is one.
#[tracing_attributes::instrument]
pub(crate) fn try_port_range(local_addr: SocketAddr, passive_ports: RangeInclusive<u16>) -> io::Result<TcpSocket> {
    let ip = local_addr.ip();
    let (first, last) = (*passive_ports.start() as u32, *passive_ports.end() as u32);
    if first > last {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty passive port range"));
    }
    let rng_length = last - first + 1;
    let start = {
        let mut data = [0; 4];
        getrandom::fill(&mut data).map_err(io::Error::other)?;
        u32::from_ne_bytes(data) % rng_length
    };
    for i in 0..rng_length {
        let port = first + (start + i) % rng_length;
        let s = match ip {
            std::net::IpAddr::V4(_) => TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        s.set_reuseaddr(true)?;
        if s.bind(std::net::SocketAddr::new(ip, port as u16)).is_ok() {
            return Ok(s);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "every port of the passive range is in use"))
}

/// The address as the host it names: an IPv4-mapped IPv6 address is its IPv4 address.
pub(crate) fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[tracing_attributes::instrument]
pub(crate) async fn setup_inter_loop_comms<S, U>(session: SharedSession<S, U>, control_loop_tx: Sender<ControlChanMsg>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    let (cmd_tx, cmd_rx): (Sender<DataChanCmd>, Receiver<DataChanCmd>) = channel(1);
    let (data_abort_tx, data_abort_rx): (Sender<()>, Receiver<()>) = channel(1);

    let mut session = session.lock().await;
    session.data_cmd_tx = Some(cmd_tx);
    session.data_cmd_rx = Some(cmd_rx);
    session.data_abort_tx = Some(data_abort_tx);
    session.data_abort_rx = Some(data_abort_rx);
    session.control_msg_tx = Some(control_loop_tx);
}

// For legacy mode we choose a data port here and start listening on it while letting the control
// channel know (via method return) what the address is that the client should connect to.
#[tracing_attributes::instrument]
pub(crate) async fn handle_legacy_mode<S, U, T>(cmd: &T, args: CommandContext<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
    T: LegacyReplyProducer<S, U>,
{
    // One passive port per session: free the previous one before taking another.
    let (slot, control_peer) = {
        let session = args.session.lock().await;
        (session.passive_listener.clone(), host_of(session.source.ip()))
    };
    slot.clear().await;
    let listener = match args.session.lock().await.binder {
        Some(ref mut binder) => binder.bind(args.local_addr.ip(), args.passive_ports.clone()).await,
        _ => try_port_range(args.local_addr, args.passive_ports.clone()),
    };
    let listener = match listener {
        Err(e) => {
            slog::warn!(args.logger, "No passive port: {}", e);
            return Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No passive port is free, try again later"));
        }
        Ok(l) => l,
    };
    let listener = listener.listen(1024)?;

    let port = listener.local_addr()?.port();

    let reply = cmd.build_reply(&args, port).await?;
    if reply.is_positive() {
        setup_inter_loop_comms(args.session.clone(), args.tx_control_chan.clone()).await;
        let task = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                match tokio::time::timeout_at(deadline, listener.accept()).await {
                    // Only the client's own host may connect (RFC 2577 §4, "port stealing"):
                    // anyone else is hung up on and the listener keeps waiting for the client.
                    Ok(Ok((socket, peer))) if host_of(peer.ip()) != control_peer => {
                        slog::warn!(args.logger, "Refused a data connection from {} (the control connection is from {})", peer, control_peer);
                        drop(socket);
                    }
                    Ok(Ok((socket, _))) => {
                        datachan::spawn_processing(args.logger, args.session, socket).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        slog::error!(args.logger, "Error waiting for data connection: {}", e);
                        return;
                    }
                    Err(_) => {
                        slog::warn!(args.logger, "Client did not connect to data port in time");
                        return;
                    }
                }
            }
        });
        slot.set(task);
    }

    Ok(reply)
}

#[tracing_attributes::instrument]
pub(crate) async fn handle_delegated_mode<S, U>(args: CommandContext<S, U>, tx: SwitchboardSender<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    setup_inter_loop_comms(args.session.clone(), args.tx_control_chan).await;

    let (oneshot_tx, oneshot_rx) = oneshot::channel::<Result<Reply, PortAllocationError>>();

    tx.send(SwitchboardMessage::AssignDataPortCommand(args.session.clone(), oneshot_tx))
        .await
        .map_err(|_| ControlChanErrorKind::InternalServerError)?;

    match oneshot_rx.await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Could not allocate passive port")),
        Err(_) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Internal error: Channel closed")),
    }
}
