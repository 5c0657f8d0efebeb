use crate::server::switchboard::SocketAddrPair;
use crate::{
    auth::{AuthenticationPipeline, UserDetail},
    metrics::MetricsMiddleware,
    notification::{DataListener, PresenceListener},
    options::ActivePassiveMode,
    server::{
        Event, Session, SessionState,
        chancomms::{ControlChanMsg, SwitchboardMessage, SwitchboardSender},
        controlchan::{
            Reply, ReplyCode,
            active_passive::ActivePassiveEnforcerMiddleware,
            auth::AuthMiddleware,
            codecs::FtpCodec,
            command::Command,
            commands,
            error::ControlChanError,
            error::ControlChanErrorKind,
            ftps::{FtpsControlChanEnforcerMiddleware, FtpsDataChanEnforcerMiddleware},
            handler::{CommandContext, CommandHandler},
            log::LoggingMiddleware,
            middleware::ControlChanMiddleware,
            notify::EventDispatcherMiddleware,
        },
        failed_logins::FailedLoginsCache,
        ftpserver::options::{FtpsRequired, PassiveHost, SiteCommandHandler, SiteMd5},
        session::SharedSession,
        shutdown,
        tls::FtpsConfig,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use rustls::ServerConnection;
use std::{collections::HashMap, net::SocketAddr, ops::RangeInclusive, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::{
        Mutex,
        mpsc::{Receiver, Sender, channel},
    },
    task::JoinHandle,
};
use tokio_util::codec::{FramedRead, FramedWrite};

trait AsyncReadAsyncWriteSendUnpin: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadAsyncWriteSendUnpin for T {}

#[derive(Debug, Clone)]
pub struct Config<Storage, User>
where
    Storage: StorageBackend<User>,
    User: UserDetail,
{
    pub storage: Storage,
    pub greeting: &'static str,
    pub auth_pipeline: Arc<AuthenticationPipeline<User>>,
    pub passive_ports: RangeInclusive<u16>,
    pub passive_host: PassiveHost,
    pub ftps_config: FtpsConfig,
    pub collect_metrics: bool,
    pub idle_session_timeout: Duration,
    pub login_timeout: Option<Duration>,
    pub listing_permits: Option<Arc<tokio::sync::Semaphore>>,
    pub data_stall_timeout: Option<Duration>,
    pub ftps_implicit: bool,
    pub ftps_require_resumption: bool,
    pub ftps_required_for: Option<crate::options::FtpsRequiredFor>,
    pub close_linger: Option<Duration>,
    pub session_end_signal: Option<tokio_util::sync::CancellationToken>,
    pub logger: slog::Logger,
    pub ftps_required_control_chan: FtpsRequired,
    pub ftps_required_data_chan: FtpsRequired,
    pub site_md5: SiteMd5,
    pub site_handlers: Arc<HashMap<String, Arc<dyn SiteCommandHandler<Storage, User>>>>,
    pub data_listener: Arc<dyn DataListener>,
    pub presence_listener: Arc<dyn PresenceListener>,
    pub active_passive_mode: ActivePassiveMode,
    pub binder: Arc<std::sync::Mutex<Option<Box<dyn crate::options::Binder>>>>,
}

/// Waits up to `linger` (or until a shutdown) for the client to close the control connection,
/// reading and dropping at most 4 KiB of what it still sends (`ServerBuilder::close_linger`).
async fn wait_for_close(mut io: Box<dyn AsyncReadAsyncWriteSendUnpin>, linger: Duration, shutdown: &mut shutdown::Listener) {
    let mut buf = vec![0u8; 512];
    let drain = async {
        for _ in 0..8 {
            match tokio::io::AsyncReadExt::read(&mut io, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = shutdown.listen() => {}
        _ = tokio::time::timeout(linger, drain) => {}
    }
}

/// Does TCP processing when an FTP client connects
#[tracing_attributes::instrument]
pub(crate) async fn spawn<Storage, User>(
    config: Config<Storage, User>,
    tcp_stream: TcpStream,
    // The client's address when the connection comes through a proxy that told it
    // (`Server::service_with_peer`); otherwise the connection's peer is the client.
    client: Option<std::net::SocketAddr>,
    control_connection: Option<SocketAddrPair>,
    switchboard_msg_tx: Option<SwitchboardSender<Storage, User>>,
    mut shutdown: shutdown::Listener,
    failed_logins: Option<Arc<FailedLoginsCache>>,
) -> Result<JoinHandle<()>, ControlChanError>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    let Config {
        storage,
        auth_pipeline,
        passive_ports,
        passive_host,
        ftps_config,
        ftps_required_control_chan,
        ftps_required_data_chan,
        collect_metrics,
        idle_session_timeout,
        login_timeout,
        listing_permits,
        data_stall_timeout,
        ftps_implicit,
        ftps_require_resumption,
        ftps_required_for,
        close_linger,
        session_end_signal,
        logger,
        site_md5: sitemd5,
        site_handlers,
        data_listener,
        presence_listener,
        active_passive_mode,
        binder,
        ..
    } = config;

    let tls_configured = matches!(ftps_config, FtpsConfig::On { .. });
    let storage_features = storage.supported_features();
    let (control_msg_tx, mut control_msg_rx): (Sender<ControlChanMsg>, Receiver<ControlChanMsg>) = channel(1);
    let local_addr = tcp_stream.local_addr()?;
    let mut session: Session<Storage, User> = Session::new(
        Arc::new(storage),
        match client {
            Some(c) => c,
            None => tcp_stream.peer_addr()?,
        },
    )
        .ftps(ftps_config.clone())
        .metrics(collect_metrics)
        .control_msg_tx(control_msg_tx.clone())
        .control_connection(control_connection)
        .failed_logins(failed_logins);
    if let Some(b) = binder.lock().unwrap().take() {
        session = session.binder(b);
    }
    session.data_stall_timeout = data_stall_timeout;
    session.ftps_require_resumption = ftps_require_resumption;
    session.listing_permits = listing_permits;

    let mut logger = logger.new(
        slog::o!("trace-id" => format!("{}", session.trace_id), "source" => format!("{}", session.control_connection.map(|p| p.source).unwrap_or(session.source))),
    );

    // Whatever way the control loop ends, its passive listener goes with it.
    let stop_passive = crate::server::session::StopPassiveOnDrop(session.passive_listener.clone());
    // And so does its listing, if one is running or waiting (patch 19).
    let session_gone = session.gone.clone().drop_guard();
    // The embedder's signal (`ServerBuilder::session_end_signal`) goes with it.
    let session_end = session_end_signal.map(|t| t.drop_guard());
    let shared_session: SharedSession<Storage, User> = Arc::new(Mutex::new(session));

    let event_chain = PrimaryEventHandler {
        logger: logger.clone(),
        session: shared_session.clone(),
        auth_pipeline: auth_pipeline.clone(),
        tls_configured,
        passive_ports,
        passive_host,
        tx_control_chan: control_msg_tx,
        local_addr,
        storage_features,
        tx_proxy_loop: switchboard_msg_tx.clone(),
        sitemd5,
        site_handlers,
    };

    let event_chain = EventDispatcherMiddleware::new(data_listener, presence_listener, event_chain);

    let event_chain = ActivePassiveEnforcerMiddleware {
        mode: active_passive_mode,
        next: event_chain,
    };

    let event_chain = AuthMiddleware {
        session: shared_session.clone(),
        next: event_chain,
    };

    let event_chain = FtpsControlChanEnforcerMiddleware {
        session: shared_session.clone(),
        ftps_requirement: ftps_required_control_chan,
        per_user: ftps_required_for.clone().filter(|_| tls_configured),
        next: event_chain,
    };

    let event_chain = FtpsDataChanEnforcerMiddleware {
        session: shared_session.clone(),
        ftps_requirement: ftps_required_data_chan,
        per_user: ftps_required_for.filter(|_| tls_configured),
        next: event_chain,
    };

    let event_chain = LoggingMiddleware {
        logger: logger.clone(),
        sequence_nr: 0,
        next: event_chain,
    };

    let mut event_chain = MetricsMiddleware {
        collect_metrics,
        next: event_chain,
    };

    let implicit_acceptor: Option<tokio_rustls::TlsAcceptor> = match (ftps_implicit, &ftps_config) {
        (false, _) => None,
        (true, FtpsConfig::On { tls_config }) => Some(tls_config.clone().into()),
        (true, _) => {
            slog::error!(logger, "Implicit FTPS asked for without a TLS configuration");
            return Err(ControlChanError::new(ControlChanErrorKind::IllegalState));
        }
    };
    let greeting = config.greeting;

    let jh = tokio::spawn(async move {
        // Implicit FTPS: the TLS handshake comes first, in this task (not the accept loop's),
        // within the login deadline.
        let io: Box<dyn AsyncReadAsyncWriteSendUnpin> = match implicit_acceptor {
            None => Box::new(tcp_stream),
            Some(acceptor) => {
                let limit = login_timeout.unwrap_or(Duration::from_secs(60));
                match tokio::time::timeout(limit, acceptor.accept(tcp_stream)).await {
                    Ok(Ok(stream)) => {
                        let mut session = shared_session.lock().await;
                        session.cmd_tls = true;
                        session.data_tls = true;
                        if let Some(certs) = stream.get_ref().1.peer_certificates() {
                            session.cert_chain = Some(certs.iter().map(|c| unftp_core::auth::ClientCert(c.as_ref().to_vec())).collect());
                        }
                        Box::new(stream)
                    }
                    Ok(Err(err)) => {
                        slog::warn!(logger, "Closing connection: implicit TLS handshake failed: {}", err);
                        return;
                    }
                    Err(_) => {
                        slog::warn!(logger, "Closing connection: no implicit TLS handshake within {:?}", limit);
                        return;
                    }
                }
            }
        };
        // Small buffers that grow when needed: `Framed` reserves 8 KiB for reading and 8 KiB for
        // writing up front, 16 KiB of the ~22 KiB an idle session costs; commands and replies are
        // tens of bytes.
        let (rd, wr) = tokio::io::split(io);
        let mut command_source = FramedRead::with_capacity(rd, FtpCodec::new(), CONTROL_BUFFER);
        let mut reply_sink = FramedWrite::with_capacity(wr, FtpCodec::new(), CONTROL_BUFFER);
        if reply_sink.send(Reply::new(ReplyCode::ServiceReady, greeting)).await.is_err() || reply_sink.flush().await.is_err() {
            slog::info!(logger, "Could not send the greeting");
            return;
        }
        let _stop_passive = stop_passive;
        let _session_gone = session_gone;
        let _session_end = session_end;
        // Unknown, malformed or login-requiring commands seen before a login (see MAX_PRELOGIN_STRIKES).
        let mut prelogin_strikes: u32 = 0;
        // The login deadline, while not logged in: a client that never logs in is disconnected
        // however busy it keeps the connection (NOOP does not reset it, unlike the idle timer).
        let mut logged_in = false;
        // Some commands (PASS, SIZE, CWD, DELE, ...) are carried out in a task of their own and
        // answered later through `control_msg_rx` (their handler returns `Reply::None`). Until
        // that answer is out, no further command is read, so that pipelined commands (`USER`,
        // `PASS`, `PWD`, `SIZE x`, `NOOP` in one write) are answered in order, each after the
        // commands before it took effect (RFC 959 §4.2: one reply per command, in sequence).
        let mut awaiting_reply = false;
        let login_deadline = tokio::time::sleep(login_timeout.unwrap_or(Duration::MAX / 4));
        tokio::pin!(login_deadline);
        // The control channel event loop
        slog::info!(logger, "Starting control loop");
        loop {
            if !logged_in {
                logged_in = shared_session.lock().await.state == SessionState::WaitCmd;
            }
            let incoming = {
                #[allow(unused_assignments)]
                let mut incoming = None;
                let mut timeout_delay = Box::pin(tokio::time::sleep(idle_session_timeout));
                tokio::select! {
                    cmd = command_source.next(), if !awaiting_reply => {
                        match cmd {
                            Some(cmd_result) => incoming = Some(cmd_result.and_then(|parsed| parsed).map(Event::Command)),
                            None => {
                                slog::info!(logger, "Control connection was closed.");
                                incoming = Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop)))
                            }
                        }
                    },
                    Some(msg) = control_msg_rx.recv() => {
                        incoming = Some(Ok(Event::InternalMsg(msg)));
                    },
                    _ = &mut timeout_delay => {
                        let session = shared_session.lock().await;
                        match session.data_busy {
                            true => incoming = None,
                            false => incoming = Some(Err(ControlChanError::new(ControlChanErrorKind::ControlChannelTimeout)))
                        };
                    },
                    _ = &mut login_deadline, if !logged_in && login_timeout.is_some() => {
                        slog::warn!(logger, "Closing control connection: no login within {:?}", login_timeout.unwrap_or_default());
                        let _ = reply_sink.send(Reply::new(ReplyCode::ServiceNotAvailable, "Login timed out, closing control connection")).await;
                        return;
                    },
                    _ = shutdown.listen() => {
                        slog::info!(logger, "Closing open control connection because of shutdown signal");
                        incoming = Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop)))
                        // TODO: Do we want to wait a bit for a data transfer to complete i.e. session.data_busy is true?
                    }
                }
                incoming
            };
            // Before login, a client has no business sending many commands that fail: it is
            // probing or not speaking FTP at all (an HTTP client, a port scanner).
            let strike = match &incoming {
                Some(Err(e)) => !matches!(e.kind(), ControlChanErrorKind::ControlChannelTimeout),
                Some(Ok(Event::Command(cmd))) => !super::auth::allowed_before_login(cmd),
                _ => false,
            };
            if strike && !logged_in {
                prelogin_strikes += 1;
                if prelogin_strikes > MAX_PRELOGIN_STRIKES {
                    slog::warn!(logger, "Closing control connection: {} failed commands before login", prelogin_strikes);
                    let _ = reply_sink
                        .send(Reply::new(ReplyCode::ServiceNotAvailable, "Too many commands without logging in, closing control connection"))
                        .await;
                    return;
                }
            }
            match incoming {
                None => {} // Loop again
                Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop))) => {
                    let _ = event_chain.handle(Event::InternalMsg(ControlChanMsg::ExitControlLoop)).await;
                    if let Some(tx) = switchboard_msg_tx
                        && let Err(err) = tx.send(SwitchboardMessage::CloseDataPortCommand(shared_session.clone())).await
                    {
                        slog::warn!(logger, "Could not send CloseDataPortCommand to channel: {}", err);
                        return;
                    };
                    if let Some(linger) = close_linger {
                        // RFC 959: after `221` the user-PI closes the control connection. Waiting
                        // for it to do so (`ServerBuilder::close_linger`) leaves the TIME-WAIT on
                        // its side, not one on ours for every session served; what it still sends
                        // meanwhile is read and dropped, a few KiB at most. A shutdown (already
                        // signalled when it is what ended the loop) does not wait.
                        let io = command_source.into_inner().unsplit(reply_sink.into_inner());
                        // Boxed: the wait's state is allocated for a session that ends, rather
                        // than carried in the task of every idle session.
                        Box::pin(wait_for_close(io, linger, &mut shutdown)).await;
                    }
                    slog::debug!(logger, "Exiting control loop");
                    return;
                }
                Some(Ok(Event::InternalMsg(ControlChanMsg::ListingReply(reply, permit)))) => {
                    // A listing sent on the control connection (STAT of a directory): written
                    // under its listing permit, and a client that reads none of it for the data
                    // stall limit is disconnected, so it cannot hold the reply for longer.
                    awaiting_reply = false;
                    let sent = match data_stall_timeout {
                        Some(stall) => match tokio::time::timeout(stall, reply_sink.send(reply)).await {
                            Ok(sent) => sent.map_err(|e| format!("{e:?}")),
                            Err(_) => Err(format!("the client read nothing for {stall:?}")),
                        },
                        None => reply_sink.send(reply).await.map_err(|e| format!("{e:?}")),
                    };
                    drop(permit);
                    if let Err(why) = sent {
                        slog::warn!(logger, "Closing control connection: could not send a listing reply: {}", why);
                        return;
                    }
                }
                Some(Ok(event)) => {

                    if let Event::Command(Command::User { username }) = &event {
                        let s: String = String::from_utf8_lossy(username).into();
                        logger = logger.new(slog::o!("username" => s));
                    }

                    // TODO: Handle Event::InternalMsg(InternalMsg::PlaintextControlChannel)

                    let is_command = matches!(event, Event::Command(_));
                    let is_auth = matches!(event, Event::Command(Command::Auth { .. }));
                    if !is_command {
                        awaiting_reply = false;
                    }
                    let mut upgrade = false;
                    let handle_result = match event_chain.handle(event).await {
                        Err(e) => Err(e),
                        Ok(reply) => {
                            if is_command && matches!(reply, Reply::None) {
                                awaiting_reply = true;
                            }
                            upgrade = is_auth && matches!(reply, Reply::CodeAndMsg { code: ReplyCode::AuthOkayNoDataNeeded, .. });
                            reply_sink.send(reply).await
                        }
                    };

                    if let Err(chan_err) = handle_result {
                        slog::warn!(logger, "Event handler chain error: {:?}. Closing control connection", chan_err);
                        return;
                    }

                    // `234` to AUTH TLS: the next bytes from the client are its ClientHello
                    // (RFC 4217 §4), so the TLS handshake starts here, before anything else is
                    // read. (It used to wait for an internal message from a spawned task, and
                    // the loop could read the ClientHello as a command first and answer it in
                    // clear, which broke the client's handshake.)
                    if upgrade {
                        slog::info!(logger, "Upgrading control channel to TLS");
                        let io = command_source.into_inner().unsplit(reply_sink.into_inner());
                        let acceptor: tokio_rustls::TlsAcceptor = match ftps_config.clone() {
                            FtpsConfig::On { tls_config } => tls_config.into(),
                            _ => panic!("Could not create TLS acceptor. Illegal program state"),
                        };
                        let io: Box<dyn AsyncReadAsyncWriteSendUnpin> = match acceptor.accept(io).await {
                            Ok(stream) => {
                                let s: &ServerConnection = stream.get_ref().1;
                                let mut session = shared_session.lock().await;
                                if let Some(certs) = s.peer_certificates() {
                                    session.cert_chain = Some(certs.iter().map(|c| unftp_core::auth::ClientCert(c.as_ref().to_vec())).collect());
                                }
                                session.cmd_tls = true;
                                Box::new(stream)
                            }
                            Err(err) => {
                                slog::warn!(logger, "Closing control channel. Could not upgrade to TLS: {}", err);
                                return;
                            }
                        };
                        let (rd, wr) = tokio::io::split(io);
                        command_source = FramedRead::with_capacity(rd, FtpCodec::new(), CONTROL_BUFFER);
                        reply_sink = FramedWrite::with_capacity(wr, FtpCodec::new(), CONTROL_BUFFER);
                    }
                }
                Some(Err(e)) => {
                    let (reply, close_connection) = handle_control_channel_error(logger.clone(), e);
                    let result = reply_sink.send(reply).await;
                    if result.is_err() {
                        slog::warn!(logger, "Could not send error reply to client");
                        return;
                    }
                    if close_connection {
                        return;
                    }
                }
            }
        }
    });

    Ok(jh)
}

/// Initial size of the control connection's read and write buffers (they grow for long lines
/// and multi-line replies, up to the codec's line limit for reading).
const CONTROL_BUFFER: usize = 512;

/// How many unknown, malformed or login-requiring commands a client may send before logging in;
/// the next one gets `421` and the connection is closed.
const MAX_PRELOGIN_STRIKES: u32 = 10;

// gets the reply to be sent to the client and tells if the connection should be closed.
fn handle_control_channel_error(logger: slog::Logger, error: ControlChanError) -> (Reply, bool) {
    slog::warn!(logger, "Control channel error: {:?}", error);
    match error.kind() {
        ControlChanErrorKind::UnknownCommand { .. } => (Reply::new(ReplyCode::CommandSyntaxError, "Command not implemented"), false),
        ControlChanErrorKind::Utf8Error => (Reply::new(ReplyCode::CommandSyntaxError, "Invalid UTF8 in command"), true),
        ControlChanErrorKind::InvalidCommand => (Reply::new(ReplyCode::ParameterSyntaxError, "Invalid Parameter"), false),
        ControlChanErrorKind::LineTooLong => (Reply::new(ReplyCode::CommandSyntaxError, "Command line too long"), false),
        ControlChanErrorKind::ControlChannelTimeout => (
            Reply::new(ReplyCode::ClosingControlConnection, "Session timed out. Closing control connection"),
            true,
        ),
        _ => (Reply::new(ReplyCode::LocalError, "Unknown internal server error, please try again later"), true),
    }
}

#[derive(Debug)]
struct PrimaryEventHandler<Storage, User>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    logger: slog::Logger,
    session: SharedSession<Storage, User>,
    auth_pipeline: Arc<AuthenticationPipeline<User>>,
    tls_configured: bool,
    passive_ports: RangeInclusive<u16>,
    passive_host: PassiveHost,
    tx_control_chan: Sender<ControlChanMsg>,
    local_addr: SocketAddr,
    storage_features: u32,
    tx_proxy_loop: Option<SwitchboardSender<Storage, User>>,
    sitemd5: SiteMd5,
    site_handlers: Arc<HashMap<String, Arc<dyn SiteCommandHandler<Storage, User>>>>,
}

impl<Storage, User> PrimaryEventHandler<Storage, User>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle_internal_msg(&self, msg: ControlChanMsg) -> Result<Reply, ControlChanError> {
        use self::ControlChanMsg::*;
        use SessionState::*;

        match msg {
            NotFound => Ok(Reply::new(ReplyCode::FileError, "File not found")),
            PermissionDenied => Ok(Reply::new(ReplyCode::FileError, "Permision denied")),
            SentData { .. } => {
                let mut session = self.session.lock().await;
                session.start_pos = 0;
                Ok(Reply::new(ReplyCode::ClosingDataConnection, "Successfully sent"))
            }
            WriteFailed => Ok(Reply::new(ReplyCode::TransientFileError, "Failed to write file")),
            ConnectionReset => Ok(Reply::new(ReplyCode::ConnectionClosed, "Datachannel unexpectedly closed")),
            WrittenData { .. } => {
                let mut session = self.session.lock().await;
                session.start_pos = 0;
                Ok(Reply::new(ReplyCode::ClosingDataConnection, "File successfully written"))
            }
            DataConnectionClosedAfterStor => Ok(Reply::new(ReplyCode::FileActionOkay, "Data received")),
            DirectorySuccessfullyListed => Ok(Reply::new(ReplyCode::ClosingDataConnection, "Listed the directory")),
            DirectoryListFailure => Ok(Reply::new(ReplyCode::ClosingDataConnection, "Failed to list the directory")),
            CwdSuccess => Ok(Reply::new(ReplyCode::FileActionOkay, "Successfully changed working directory")),
            DelFileSuccess { .. } | RmDirSuccess { .. } => Ok(Reply::new(ReplyCode::FileActionOkay, "Successfully removed")),
            DelFail => Ok(Reply::new(ReplyCode::TransientFileError, "Failed to delete the file")),
            ExitControlLoop => Ok(Reply::none()),
            SecureControlChannel => {
                let mut session = self.session.lock().await;
                session.cmd_tls = true;
                Ok(Reply::none())
            }
            PlaintextControlChannel => {
                let mut session = self.session.lock().await;
                session.cmd_tls = false;
                Ok(Reply::none())
            }
            // RFC 959 §4.2 and Appendix II: 257 "PATHNAME" created.
            MkDirSuccess { path } => Ok(Reply::new_with_string(
                ReplyCode::DirCreated,
                format!("{} created", super::codecs::quote_path(&path)),
            )),
            MkdirFail => Ok(Reply::new(ReplyCode::FileError, "Failed to create directory")),
            RenameSuccess { .. } => Ok(Reply::new(ReplyCode::FileActionOkay, "Renamed")),
            AuthSuccess { .. } => {
                let mut session = self.session.lock().await;
                session.state = WaitCmd;
                Ok(Reply::new(ReplyCode::UserLoggedIn, "User logged in, proceed"))
            }
            AuthFailed => {
                let mut session = self.session.lock().await;
                session.state = New; // According to RFC 959, a PASS command MUST precede a USER command
                Ok(Reply::new(ReplyCode::NotLoggedIn, "Authentication failed"))
            }
            StorageError(error_type) => Ok(Reply::from_storage_error(error_type.kind())),
            CommandChannelReply(reply) => Ok(reply),
            // The control loop writes these itself, under their permit; answered the same way here.
            ListingReply(reply, _) => Ok(reply),
        }
    }

    #[tracing_attributes::instrument]
    async fn handle_command(&self, cmd: Command) -> Result<Reply, ControlChanError> {
        let args = CommandContext {
            parsed_command: cmd.clone(),
            session: self.session.clone(),
            auth_pipeline: self.auth_pipeline.clone(),
            tls_configured: self.tls_configured,
            passive_ports: self.passive_ports.clone(),
            passive_host: self.passive_host.clone(),
            tx_control_chan: self.tx_control_chan.clone(),
            local_addr: self.local_addr,
            storage_features: self.storage_features,
            tx_prebound_loop: self.tx_proxy_loop.clone(),
            logger: self.logger.clone(),
            sitemd5: self.sitemd5,
            site_handlers: self.site_handlers.clone(),
        };

        let handler: Box<dyn CommandHandler<Storage, User>> = match cmd {
            Command::User { username } => Box::new(commands::User::new(username)),
            Command::Pass { password } => Box::new(commands::Pass::new(password)),
            Command::Syst => Box::new(commands::Syst),
            Command::Stat { path } => Box::new(commands::Stat::new(path)),
            Command::Acct { .. } => Box::new(commands::Acct),
            Command::Type => Box::new(commands::Type),
            Command::Stru { structure } => Box::new(commands::Stru::new(structure)),
            Command::Mode { mode } => Box::new(commands::Mode::new(mode)),
            Command::Help => Box::new(commands::Help),
            Command::Noop => Box::new(commands::Noop),
            Command::Pasv => Box::new(commands::Pasv::new()),
            Command::Epsv => Box::new(commands::Epsv::new()),
            Command::Port { addr } => Box::new(commands::Port::new(addr)),
            Command::Eprt { addr } => Box::new(commands::Eprt::new(addr)),
            Command::Retr { .. } => Box::new(commands::Retr),
            Command::Stor { .. } => Box::new(commands::Stor),
            Command::List { .. } => Box::new(commands::List),
            Command::Nlst { .. } => Box::new(commands::Nlst),
            Command::Feat => Box::new(commands::Feat),
            Command::Pwd => Box::new(commands::Pwd),
            Command::Cwd { path } => Box::new(commands::Cwd::new(path)),
            Command::Cdup => Box::new(commands::Cdup),
            Command::Opts { option } => Box::new(commands::Opts::new(option)),
            Command::Dele { path } => Box::new(commands::Dele::new(path)),
            Command::Rmd { path } => Box::new(commands::Rmd::new(path)),
            Command::Quit => Box::new(commands::Quit),
            Command::Mkd { path } => Box::new(commands::Mkd::new(path)),
            Command::Allo { .. } => Box::new(commands::Allo),
            Command::Abor => Box::new(commands::Abor),
            Command::Stou => Box::new(commands::Stou),
            Command::Rnfr { file } => Box::new(commands::Rnfr::new(file)),
            Command::Rnto { file } => Box::new(commands::Rnto::new(file)),
            Command::Auth { protocol } => Box::new(commands::Auth::new(protocol)),
            Command::Pbsz {} => Box::new(commands::Pbsz),
            Command::Ccc => Box::new(commands::Ccc),
            Command::Prot { param } => Box::new(commands::Prot::new(param)),
            Command::Size { file } => Box::new(commands::Size::new(file)),
            Command::Rest { offset } => Box::new(commands::Rest::new(offset)),
            Command::Mdtm { file } => Box::new(commands::Mdtm::new(file)),
            Command::Md5 { file } => Box::new(commands::Md5::new(file)),
            Command::Mlst { path } => Box::new(commands::Mlst::new(path)),
            Command::Mlsd { .. } => Box::new(commands::Mlsd),
            Command::Appe { .. } => Box::new(commands::Appe),
            Command::Site { command, arguments } => Box::new(commands::Site::new(command, arguments)),
            Command::Other { .. } => return Ok(Reply::new(ReplyCode::CommandSyntaxError, "Command not implemented")),
        };

        handler.handle(args).await
    }
}

#[async_trait]
impl<Storage, User> ControlChanMiddleware for PrimaryEventHandler<Storage, User>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    async fn handle(&mut self, event: Event) -> Result<Reply, ControlChanError> {
        match event {
            Event::Command(cmd) => self.handle_command(cmd).await,
            Event::InternalMsg(msg) => self.handle_internal_msg(msg).await,
        }
    }
}
