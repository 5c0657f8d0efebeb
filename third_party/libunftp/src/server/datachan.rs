//! Contains code pertaining to the FTP *data* channel

use super::{
    chancomms::{ControlChanMsg, DataChanMsg},
    controlchan::{Reply, ReplyCode},
    tls::FtpsConfig,
};
use crate::server::session::SharedSession;
use crate::{
    auth::UserDetail,
    storage::{Error, ErrorKind, Metadata, StorageBackend},
};
use futures_util::StreamExt;
use unftp_core::storage::{Fileinfo, ListStream};

use crate::server::chancomms::DataChanCmd;
use std::{path::PathBuf, sync::Arc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio_rustls::TlsAcceptor;

use crate::metrics;

#[derive(Debug)]
struct DataCommandExecutor<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    pub user: Arc<Option<User>>,
    pub socket: DataSocket,
    pub control_msg_tx: Sender<ControlChanMsg>,
    pub storage: Arc<Storage>,
    pub cwd: PathBuf,
    pub ftps_mode: FtpsConfig,
    pub logger: slog::Logger,
    pub data_cmd_rx: Option<Receiver<DataChanCmd>>,
    pub data_abort_rx: Option<Receiver<()>>,
    // How long a listing may go without moving a byte (`ServerBuilder::data_stall_timeout`).
    pub stall: Option<Duration>,
    // Listings produced at once (`ServerBuilder::listing_permits`).
    pub listing_permits: Option<Arc<tokio::sync::Semaphore>>,
    // Cancelled when the session's control loop ends.
    pub gone: tokio_util::sync::CancellationToken,
    // Whether a TLS data connection must resume a session (`ServerBuilder::ftps_require_resumption`).
    pub require_resumption: bool,
}

/// A data connection: plain, or TLS once its handshake is done (`PROT P`).
#[derive(Debug)]
enum DataSocket {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<BufReader<TcpStream>>>),
}

/// Bytes read from a TLS data connection's socket at once. rustls reads its transport into
/// its record buffer, at most one record (16 KiB) and often 4 KiB at a time (`read_tls`), so
/// without a buffer below it an upload costs at least one `read(2)` per record; with one it
/// costs one per this many bytes, and rustls's reads are copies from memory.
const DATA_TLS_READ_BUFFER: usize = 256 << 10;

/// The transport under a data connection's TLS: the socket behind a read buffer (writes pass
/// straight through: rustls already writes whole records).
fn tls_transport<S: AsyncRead>(tcp: S) -> BufReader<S> {
    BufReader::with_capacity(DATA_TLS_READ_BUFFER, tcp)
}

impl AsyncRead for DataSocket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DataSocket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            DataSocket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataSocket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            DataSocket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            DataSocket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DataSocket::Plain(s) => Pin::new(s).poll_flush(cx),
            DataSocket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DataSocket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            DataSocket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long a TLS handshake on a data connection may take when no stall limit is set.
const DATA_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

struct MeasuringWriter<W> {
    writer: W,
    command: &'static str,
}

struct MeasuringReader<R> {
    reader: R,
    command: &'static str,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for MeasuringWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> std::task::Poll<Result<usize, std::io::Error>> {
        let this = self.get_mut();

        let result = Pin::new(&mut this.writer).poll_write(cx, buf);
        if let Poll::Ready(Ok(bytes_written)) = &result {
            metrics::inc_sent_bytes(*bytes_written, this.command);
        }

        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.writer).poll_shutdown(cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MeasuringReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.reader).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let bytes_read = buf.filled().len();
            metrics::inc_received_bytes(bytes_read, this.command);
        }
        result
    }
}

impl<W> MeasuringWriter<W> {
    fn new(writer: W, command: &'static str) -> MeasuringWriter<W> {
        Self { writer, command }
    }
}

impl<R> MeasuringReader<R> {
    fn new(reader: R, command: &'static str) -> MeasuringReader<R> {
        Self { reader, command }
    }
}

impl<Storage, User> DataCommandExecutor<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    async fn execute(mut self, session_arc: SharedSession<Storage, User>) {
        let mut data_cmd_rx = self.data_cmd_rx.take().unwrap();
        let mut data_abort_rx = self.data_abort_rx.take().unwrap();
        let mut timeout_delay = Box::pin(tokio::time::sleep(std::time::Duration::from_secs(5 * 60)));
        // TODO: Use configured timeout
        let tx = self.control_msg_tx.clone();
        let logger = self.logger.clone();
        let reply = |code, msg: &'static str| ControlChanMsg::CommandChannelReply(Reply::new(code, msg));
        let gone = self.gone.clone();
        tokio::select! {
            command = data_cmd_rx.recv() => match command {
                // No command comes once the session has dropped its sender: a new PASV, EPSV,
                // PORT or EPRT replaced this data connection, typically after a transfer command
                // was refused before `150` (our patch 23) and left it unused. It is released
                // now rather than held until the timeout below.
                None => slog::debug!(logger, "Data connection released: the session has replaced it"),
                Some(command) => {
                    // The session lock is not held during the transfer: commands that need it (ABOR
                    // above all) must be served while data moves.
                    let start_pos = session_arc.lock().await.start_pos;
                    // Nobody waits for a listing once the session is gone: it stops (RETR and STOR
                    // are left to their own limits, and to a graceful shutdown that waits for them).
                    let listing = matches!(command, DataChanCmd::List { .. } | DataChanCmd::Nlst { .. } | DataChanCmd::Mlsd { .. });
                    tokio::select! {
                        () = gone.cancelled(), if listing => {
                            slog::info!(logger, "Listing stopped: the session has ended");
                        }
                        () = self.handle_incoming(DataChanMsg::ExternalCommand(command), start_pos) => {}
                        Some(()) = data_abort_rx.recv() => {
                            // Dropping the transfer closes the data connection. RFC 959 §4.1.3: the
                            // aborted command gets 426, then ABOR itself 226.
                            slog::info!(logger, "Data transfer aborted by ABOR");
                            let _ = tx.send(reply(ReplyCode::ConnectionClosed, "Connection closed; transfer aborted")).await;
                            let _ = tx.send(reply(ReplyCode::ClosingDataConnection, "ABOR successful")).await;
                        }
                    }
                }
            },
            Some(()) = data_abort_rx.recv() => {
                self.handle_incoming(DataChanMsg::Abort, 0).await;
                let _ = tx.send(reply(ReplyCode::ClosingDataConnection, "ABOR successful, no transfer was running")).await;
            },
            () = gone.cancelled() => {
                slog::debug!(self.logger, "Data channel closed: the session ended before a command came");
            }
            _ = &mut timeout_delay => {
                slog::warn!(self.logger, "Data channel connection timed out");
            }
        };
        // An ABOR that raced with the end of the transfer still gets its answer.
        data_abort_rx.close();
        if data_abort_rx.try_recv().is_ok() {
            let _ = tx.send(reply(ReplyCode::ClosingDataConnection, "ABOR successful, the transfer had already ended")).await;
        }
        let mut session = session_arc.lock().await;
        session.data_busy = false;
    }

    #[tracing_attributes::instrument]
    async fn handle_incoming(self, incoming: DataChanMsg, start_pos: u64) {
        match incoming {
            DataChanMsg::Abort => {
                slog::info!(self.logger, "Data channel abort received");
            }
            DataChanMsg::ExternalCommand(command) => {
                let p = command.path().unwrap_or_default();
                slog::debug!(self.logger, "Data channel command received: {:?}", command; "path" => p);
                self.execute_command(command, start_pos).await;
            }
        }
    }

    /// The TLS handshake of a protected data connection (`PROT P`), before any command uses
    /// it: bounded by the stall limit, and a failed one is a reply, not a panic (a client that
    /// sends garbage instead of a ClientHello used to panic this task and leave its command
    /// unanswered). With `require_resumption`, a full handshake is refused as vsftpd's
    /// `require_ssl_reuse` refuses it.
    async fn secure(mut self) -> Result<Self, Reply> {
        let FtpsConfig::On { tls_config } = self.ftps_mode.clone() else {
            return Ok(self);
        };
        let tcp = match self.socket {
            DataSocket::Plain(tcp) => tcp,
            tls @ DataSocket::Tls(_) => {
                self.socket = tls;
                return Ok(self);
            }
        };
        // No TLS 1.3 session tickets on a data connection: a client that only uploads never
        // reads them, and closing a socket with unread input resets the connection (RFC 1122
        // §4.2.2.13), which can destroy the end of the upload before the server has read it.
        // The tickets of the control connection are the ones a client resumes with. The
        // session cache and ticket keys are shared (they are `Arc`s in the clone).
        let mut data_config = (*tls_config).clone();
        data_config.send_tls13_tickets = 0;
        let acceptor: TlsAcceptor = Arc::new(data_config).into();
        let limit = self.stall.unwrap_or(DATA_HANDSHAKE_TIMEOUT);
        let tls = match tokio::time::timeout(limit, acceptor.accept(tls_transport(tcp))).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                slog::warn!(self.logger, "TLS handshake on the data connection failed: {}", e);
                return Err(Reply::new(ReplyCode::CantOpenDataConnection, "TLS negotiation on the data connection failed"));
            }
            Err(_) => {
                slog::warn!(self.logger, "TLS handshake on the data connection took over {:?}", limit);
                return Err(Reply::new(ReplyCode::CantOpenDataConnection, "TLS negotiation on the data connection timed out"));
            }
        };
        if self.require_resumption && tls.get_ref().1.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
            slog::warn!(self.logger, "Refused a TLS data connection that did not resume a session");
            return Err(Reply::new(
                ReplyCode::UnsupportedNetworkProtocol,
                "TLS data connection must resume the control connection's session (session reuse required)",
            ));
        }
        self.socket = DataSocket::Tls(Box::new(tls));
        Ok(self)
    }

    #[tracing_attributes::instrument]
    async fn execute_command(self, cmd: DataChanCmd, start_pos: u64) {
        let tx = self.control_msg_tx.clone();
        let this = match self.secure().await {
            Ok(this) => this,
            Err(reply) => {
                let _ = tx.send(ControlChanMsg::CommandChannelReply(reply)).await;
                return;
            }
        };
        match cmd {
            DataChanCmd::Retr { path } => {
                this.exec_retr(path, start_pos).await;
            }
            DataChanCmd::Stor { path } => {
                this.exec_stor(path, start_pos).await;
            }
            DataChanCmd::Appe { path } => {
                this.exec_appe(path).await;
            }
            DataChanCmd::List { path, .. } => {
                this.exec_list_variant(path, ListCommand::List).await;
            }
            DataChanCmd::Nlst { path } => {
                this.exec_list_variant(path, ListCommand::Nlst).await;
            }
            DataChanCmd::Mlsd { path } => {
                this.exec_list_variant(path, ListCommand::Mlsd).await;
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_retr(self, path: String, start_pos: u64) {
        let path = self.cwd.join(path);
        let tx: Sender<ControlChanMsg> = self.control_msg_tx.clone();
        let mut output = Self::writer(self.socket, "retr").await;

        let start_time = Instant::now();
        let result = self
            .storage
            .get_into((*self.user).as_ref().unwrap(), path.clone(), start_pos, &mut output)
            .await;

        if let Err(err) = output.shutdown().await {
            match err.kind() {
                std::io::ErrorKind::BrokenPipe => {
                    slog::debug!(self.logger, "Output stream was already closed by peer after RETR: {:?}", err);
                }
                std::io::ErrorKind::NotConnected => {
                    slog::debug!(self.logger, "Output stream was already closed after RETR: {:?}", err);
                }
                _ => slog::warn!(self.logger, "Could not shutdown output stream after RETR: {:?}", err),
            }
        }

        let duration = start_time.elapsed();
        match result {
            Ok(bytes_copied) => {
                slog::info!(
                    self.logger,
                    "Successful RETR {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes_copied),
                    TransferSpeed(bytes_copied as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                // only register transfer of a single file transfer
                if start_pos == 0 {
                    metrics::inc_transferred("retr", "success");
                }

                if let Err(err) = tx
                    .send(ControlChanMsg::SentData {
                        bytes: bytes_copied,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful RETR: {:?}", err);
                }
            }
            Err(err) => {
                let io_error_kind = err.get_io_error().map(|e| e.kind());

                if io_error_kind == Some(std::io::ErrorKind::BrokenPipe) {
                    if start_pos == 0 {
                        slog::warn!(
                            self.logger,
                            "Client halted RETR transfer (BrokenPipe). Certain FTP clients may do this to download file sections separately, in which case RESTarts may occur and will be logged at DEBUG level. Refer to your FTP client's documentation if this causes issues. Path {:?}; Duration {} (number of bytes copied unknown).",
                            &path,
                            HumanDuration(duration)
                        );
                    } else {
                        slog::debug!(
                            self.logger,
                            "RETR transfer stopped by client (BrokenPipe). Remember, this could be standard for some FTP clients. Path {:?}; Duration {} (number of bytes copied unknown); start_pos {}",
                            &path,
                            HumanDuration(duration),
                            start_pos
                        );
                    }
                } else {
                    crate::storage::log_storage_error!(
                        self.logger,
                        err,
                        "Error during RETR {:?} transfer after {}: {:?}; start_pos={}",
                        &path,
                        HumanDuration(duration),
                        err,
                        start_pos
                    );
                }

                // only register transfer errors for a single file transfer once
                if start_pos == 0 {
                    categorize_and_register_error(&self.logger, &err, "retr");
                }

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::warn!(self.logger, "Could not notify control channel of error with RETR: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_stor(self, path: String, start_pos: u64) {
        let path = self.cwd.join(path);
        let tx = self.control_msg_tx.clone();

        let start_time = Instant::now();
        let put_result = self
            .storage
            .put(
                (*self.user).as_ref().unwrap(),
                Self::reader(self.socket, "stor").await,
                path.clone(),
                start_pos,
            )
            .await;
        let duration = start_time.elapsed();

        match put_result {
            Ok(bytes) => {
                slog::info!(
                    self.logger,
                    "Successful STOR {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes),
                    TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                // only register transfer of a single file transfer
                if start_pos == 0 {
                    metrics::inc_transferred("stor", "success");
                }

                if let Err(err) = tx
                    .send(ControlChanMsg::WrittenData {
                        bytes,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful STOR: {:?}", err);
                }
            }
            Err(err) => {
                crate::storage::log_storage_error!(self.logger, err, "Error during STOR transfer after {}: {:?}", HumanDuration(duration), err);

                // only register transfer errors for a single file transfer once
                if start_pos == 0 {
                    categorize_and_register_error(&self.logger, &err, "stor");
                }

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with STOR: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_appe(self, path: String) {
        let path = self.cwd.join(&path);
        let tx = self.control_msg_tx.clone();

        // A back-end that appends by itself is told to (patch 32); for the others, the current
        // size, or 0 if the file doesn't exist (racy: see `storage::FEATURE_APPEND`).
        let start_pos = if self.storage.supported_features() & crate::storage::FEATURE_APPEND != 0 {
            crate::storage::APPEND
        } else {
            match self.storage.metadata((*self.user).as_ref().unwrap(), &path).await {
                Ok(meta) => meta.len(),
                Err(_) => 0,
            }
        };

        let start_time = Instant::now();
        let put_result = self
            .storage
            .put(
                (*self.user).as_ref().unwrap(),
                Self::reader(self.socket, "appe").await,
                path.clone(),
                start_pos,
            )
            .await;
        let duration = start_time.elapsed();

        match put_result {
            Ok(bytes) => {
                slog::info!(
                    self.logger,
                    "Successful APPE {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes),
                    TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                    if start_pos == crate::storage::APPEND { "end".to_string() } else { start_pos.to_string() },
                );

                metrics::inc_transferred("appe", "success");

                if let Err(err) = tx
                    .send(ControlChanMsg::WrittenData {
                        bytes,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful APPE: {:?}", err);
                }
            }
            Err(err) => {
                crate::storage::log_storage_error!(self.logger, err, "Error during APPE transfer after {}: {:?}", HumanDuration(duration), err);

                categorize_and_register_error(&self.logger, &err, "appe");

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with APPE: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_list_variant(self, path: Option<String>, command: ListCommand) {
        let prefix = nlst_prefix(path.as_deref());
        let path = self.resolve_path(path);
        let tx = self.control_msg_tx.clone();
        let mut output = Self::writer(self.socket, command.as_lower_str()).await;

        // Held until the listing is sent: it bounds how many listings are produced at once (and,
        // for a back-end whose `list_stream` is the default, held whole in memory).
        let _permit = listing_permit(&self.listing_permits).await;
        let start_time = Instant::now();

        let user = (*self.user).as_ref().unwrap();
        let list_result = self.storage.list_stream(user, path.clone()).await;
        let line = match command {
            ListCommand::List => Line::List,
            ListCommand::Mlsd => Line::Mlsd,
            // RFC 959: NLST sends "valid pathname strings" for "a program to further process
            // the files automatically", e.g. a multiple get. The names of a directory's
            // entries are relative to it, as the client asked for the directory; but the
            // matches of `sub/*.txt` (or the file `sub/a.txt`) are fetched from the working
            // directory, so they keep the client's directory part, as vsftpd writes them.
            ListCommand::Nlst => Line::Nlst(match prefix {
                Some(prefix) if list_result.is_ok() && !matches!(self.storage.metadata(user, path.clone()).await, Ok(m) if m.is_dir()) => prefix,
                _ => String::new(),
            }),
        };
        let list_result = match command {
            ListCommand::Nlst => list_result.map_err(|e| Error::new(ErrorKind::PermanentDirectoryNotAvailable, e)),
            _ => list_result,
        };

        match list_result {
            Ok(entries) => {
                slog::debug!(self.logger, "Copying future for {}", command.as_str());
                let result = send_entries(entries, &line, &mut output, self.stall).await;

                if let Err(err) = shut_down(&mut output, self.stall).await {
                    match err.kind() {
                        std::io::ErrorKind::BrokenPipe => {
                            slog::debug!(self.logger, "Output stream was already closed by peer after {}: {:?}", command.as_str(), err);
                        }
                        std::io::ErrorKind::NotConnected => {
                            slog::debug!(self.logger, "Output stream was already closed after {}: {:?}", command.as_str(), err);
                        }
                        _ => slog::warn!(self.logger, "Could not shutdown output stream after {}: {:?}", command.as_str(), err),
                    }
                }
                let duration = start_time.elapsed();

                match result {
                    Ok(bytes) => {
                        slog::info!(
                            self.logger,
                            "Successful {} {:?}; Duration {}; Bytes copied {}; Transfer speed {}",
                            command.as_str(),
                            path,
                            HumanDuration(duration),
                            HumanBytes(bytes),
                            TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                        );
                        metrics::inc_transferred(command.as_lower_str(), "success");
                        if let Err(err) = tx.send(ControlChanMsg::DirectorySuccessfullyListed).await {
                            slog::error!(self.logger, "Could not notify control channel of error with {}: {:?}", command.as_str(), err);
                        }
                    }
                    Err(e) => {
                        let duration = start_time.elapsed();
                        slog::warn!(
                            self.logger,
                            "Failed to send directory list for path {:?} ({} command) after {}: {:?}",
                            path,
                            command.as_str(),
                            HumanDuration(duration),
                            e,
                        );

                        let err = Error::from(e);
                        categorize_and_register_error(&self.logger, &err, command.as_lower_str());
                        // The client waits for the end of its command: tell it the listing failed.
                        if let Err(err) = tx.send(listing_aborted()).await {
                            slog::error!(self.logger, "Could not notify control channel of failed {}: {:?}", command.as_str(), err);
                        }
                    }
                }
            }
            Err(err) => {
                let duration = start_time.elapsed();

                crate::storage::log_storage_error!(
                    self.logger,
                    err,
                    "Failed to retrieve directory list for path {:?} ({} command) from storage backend after {}: {:?}",
                    path,
                    command.as_str(),
                    HumanDuration(duration),
                    err,
                );

                categorize_and_register_error(&self.logger, &err, command.as_lower_str());

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with {}: {:?}", command.as_str(), err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn writer(socket: DataSocket, command: &'static str) -> Box<dyn AsyncWrite + Send + Unpin + Sync> {
        Box::new(MeasuringWriter::new(socket, command))
    }

    #[tracing_attributes::instrument]
    async fn reader(socket: DataSocket, command: &'static str) -> Box<dyn AsyncRead + Send + Unpin + Sync> {
        Box::new(MeasuringReader::new(socket, command))
    }

    fn resolve_path(&self, path: Option<String>) -> PathBuf {
        listing_path(&self.cwd, path.as_deref())
    }
}

/// The directory part of an `NLST` argument (up to and including its last `/`), if it has one.
fn nlst_prefix(arg: Option<&str>) -> Option<String> {
    let arg = arg?;
    let end = arg.rfind('/')? + 1;
    Some(arg[..end].to_string())
}

/// Starts processing for the data connection. This will spawn a new async task that will wait for
/// a command from the control channel after which it will start to process the specified socket
/// that is connected to the client.
///
/// logger: logger set up with needed context for use by the data channel.
/// session_arc: the user session that is also shared with the control channel.
/// socket: the data socket we'll be working with.
#[tracing_attributes::instrument]
pub async fn spawn_processing<Storage, User>(logger: slog::Logger, session_arc: SharedSession<Storage, User>, mut socket: TcpStream)
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    // We introduce a block scope here to keep the lock on the session minimal. We basically copy the needed info
    // out and then unlock.

    let command_executor = {
        let mut session = session_arc.lock().await;

        match socket.peer_addr() {
            Ok(datachan_addr) => {
                let controlchan_ip = session.source.ip();
                if controlchan_ip != datachan_addr.ip() {
                    if let Err(err) = socket.shutdown().await {
                        slog::error!(
                            logger,
                            "Couldn't close datachannel for IP ({}) that does not match the IP({}) of the control channel: {:?}",
                            datachan_addr.ip(),
                            controlchan_ip,
                            err
                        )
                    } else {
                        slog::warn!(
                            logger,
                            "Closing datachannel for IP ({}) that does not match the IP({}) of the control channel.",
                            datachan_addr.ip(),
                            controlchan_ip
                        )
                    }
                    return;
                }
            }
            Err(err) => {
                slog::error!(logger, "Couldn't determine data channel address: {:?}", err);
                return;
            }
        }

        let username = session.username.as_ref().cloned().unwrap_or_else(|| String::from("unknown"));
        let logger = logger.new(slog::o!("username" => username));
        let control_msg_tx: Sender<ControlChanMsg> = match session.control_msg_tx {
            Some(ref tx) => tx.clone(),
            None => {
                slog::error!(logger, "Control loop message sender expected to be set up. Aborting data loop.");
                return;
            }
        };
        let data_cmd_rx = match session.data_cmd_rx.take() {
            Some(rx) => rx,
            None => {
                slog::error!(logger, "Data loop command receiver expected to be set up. Aborting data loop.");
                return;
            }
        };
        let data_abort_rx = match session.data_abort_rx.take() {
            Some(rx) => rx,
            None => {
                slog::error!(logger, "Data loop abort receiver expected to be set up. Aborting data loop.");
                return;
            }
        };
        let ftps_mode = if session.data_tls { session.ftps_config.clone() } else { FtpsConfig::Off };
        let command_executor = DataCommandExecutor {
            user: session.user.clone(),
            socket: DataSocket::Plain(socket),
            control_msg_tx,
            storage: Arc::clone(&session.storage),
            cwd: session.cwd.clone(),
            ftps_mode,
            logger,
            data_abort_rx: Some(data_abort_rx),
            data_cmd_rx: Some(data_cmd_rx),
            stall: session.data_stall_timeout,
            listing_permits: session.listing_permits.clone(),
            gone: session.gone.clone(),
            require_resumption: session.ftps_require_resumption,
        };

        // The control channel need to know if the data channel is busy so that it doesn't time out
        // while the session is still in progress.
        session.data_busy = true;

        command_executor
    };

    tokio::spawn(command_executor.execute(session_arc));
}

use std::time::Duration;

/// The directory a listing command (`LIST`, `NLST`, `MLSD`) names: its argument below the working
/// directory, or the working directory itself.
pub(crate) fn listing_path(cwd: &std::path::Path, path: Option<&str>) -> PathBuf {
    match path {
        Some(path) if path != "." => cwd.join(path),
        _ => cwd.to_path_buf(),
    }
}

/// Waits for a permit to produce a listing, if listings are limited (`ServerBuilder::listing_permits`).
pub(crate) async fn listing_permit(permits: &Option<Arc<tokio::sync::Semaphore>>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match permits {
        // The semaphore is never closed; a closed one would just mean no limit.
        Some(permits) => permits.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// The reply to a listing whose data connection failed or stalled.
fn listing_aborted() -> ControlChanMsg {
    ControlChanMsg::CommandChannelReply(Reply::new(ReplyCode::ConnectionClosed, "Connection closed; listing aborted"))
}

fn stalled() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the client read nothing for the data stall timeout")
}

/// Copies a listing to the client. With a stall limit, fails with `TimedOut` as soon as no byte
/// could be written for that long: a client that asks for a listing and reads nothing cannot
/// hold the listing and this task for longer.
async fn send_listing<R, W>(input: &mut R, output: &mut W, stall: Option<Duration>) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let Some(stall) = stall else {
        return tokio::io::copy(input, output).await;
    };
    let mut buf = vec![0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            tokio::time::timeout(stall, output.flush()).await.map_err(|_| stalled())??;
            return Ok(total);
        }
        let mut done = 0;
        while done < n {
            let written = tokio::time::timeout(stall, output.write(&buf[done..n])).await.map_err(|_| stalled())??;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            done += written;
            total += written as u64;
        }
    }
}

/// How a listing writes one entry.
#[derive(Debug)]
enum Line {
    /// `LIST`: the entry as `ls -l` would show it.
    List,
    /// `NLST`: the name, after this directory part (empty for a directory's own entries).
    Nlst(String),
    /// `MLSD`: the facts, then the name (RFC 3659).
    Mlsd,
}

impl Line {
    fn write<M: Metadata>(&self, entry: &Fileinfo<PathBuf, M>, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = match self {
            Line::List => write!(out, "{}\r\n", entry),
            Line::Nlst(prefix) => write!(
                out,
                "{}{}\r\n",
                prefix,
                entry.path.file_name().unwrap_or_else(|| std::ffi::OsStr::new("")).to_str().unwrap_or("")
            ),
            Line::Mlsd => {
                let name = entry
                    .path
                    .as_path()
                    .components()
                    .next_back()
                    .map(|component| component.as_os_str().to_string_lossy())
                    .unwrap_or("unknown".into());
                let facts = crate::server::controlchan::commands::mlst::format_facts(&entry.metadata);
                write!(out, "{} {}\r\n", facts, name)
            }
        };
    }
}

/// A listing is written in chunks of about this many bytes: what it holds in memory besides the
/// back-end's own batch, however large the directory.
const LISTING_CHUNK: usize = 16 * 1024;

/// Writes a listing entry by entry as the client takes it: the next entries are asked of the
/// back-end only once the previous chunk has been written, so a client that reads slowly makes
/// the listing wait rather than pile up. With a stall limit, fails with `TimedOut` as soon as
/// no byte could be written for that long. An error from the back-end ends the listing.
async fn send_entries<M, W>(mut entries: ListStream<M>, line: &Line, output: &mut W, stall: Option<Duration>) -> std::io::Result<u64>
where
    M: Metadata,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = Vec::with_capacity(LISTING_CHUNK + 512);
    let mut total = 0u64;
    loop {
        let entry = entries.next().await;
        if let Some(entry) = &entry {
            match entry {
                Ok(entry) => line.write(entry, &mut buf),
                Err(e) => return Err(std::io::Error::other(format!("the listing failed: {e}"))),
            }
        }
        if buf.len() >= LISTING_CHUNK || (entry.is_none() && !buf.is_empty()) {
            let mut input = &buf[..];
            total += send_listing(&mut input, output, stall).await?;
            buf.clear();
        }
        if entry.is_none() {
            return Ok(total);
        }
    }
}

/// Shuts the data connection down, within the stall limit if there is one.
async fn shut_down<W: AsyncWrite + Unpin + ?Sized>(output: &mut W, stall: Option<Duration>) -> std::io::Result<()> {
    match stall {
        Some(stall) => tokio::time::timeout(stall, output.shutdown()).await.map_err(|_| stalled())?,
        None => output.shutdown().await,
    }
}

struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_secs = self.0.as_secs();

        let hours = total_secs / 3600;
        let minutes = (total_secs % 3600) / 60;
        let seconds = total_secs % 60;
        let millis = self.0.subsec_millis();

        if hours > 0 {
            write!(f, "{}h {}m {}s {}ms", hours, minutes, seconds, millis)
        } else if minutes > 0 {
            write!(f, "{}m {}s {}ms", minutes, seconds, millis)
        } else if seconds > 0 {
            write!(f, "{}s {}ms", seconds, millis)
        } else {
            write!(f, "{}ms", millis)
        }
    }
}

struct HumanBytes(u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1024;
        const MIB: u64 = KIB * 1024;
        const GIB: u64 = MIB * 1024;
        const TIB: u64 = GIB * 1024;

        if self.0 >= TIB {
            write!(f, "{:.2} TiB", (self.0 as f64) / (TIB as f64))
        } else if self.0 >= GIB {
            write!(f, "{:.2} GiB", (self.0 as f64) / (GIB as f64))
        } else if self.0 >= MIB {
            write!(f, "{:.2} MiB", (self.0 as f64) / (MIB as f64))
        } else if self.0 >= KIB {
            write!(f, "{:.2} KiB", (self.0 as f64) / (KIB as f64))
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

struct TransferSpeed(f64);

impl fmt::Display for TransferSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kb_per_second = self.0 / 1024.0;
        if kb_per_second < 1.0 {
            return write!(f, "{:.2} B/s", self.0);
        }

        let mb_per_second = kb_per_second / 1024.0;
        if mb_per_second < 1.0 {
            return write!(f, "{:.2} KB/s", kb_per_second);
        }

        let gb_per_second = mb_per_second / 1024.0;
        if gb_per_second < 1.0 {
            return write!(f, "{:.2} MB/s", mb_per_second);
        }

        write!(f, "{:.2} GB/s", gb_per_second)
    }
}

// Collapse the StorageError kind into a client-error, server-error or unknown-error.
// The PermissionDenied is seperated because it depends on specifics whether it is a server or client error
// Unknown errors should not happen but need to be handled
pub(crate) fn categorize_and_register_error(logger: &slog::Logger, err: &Error, command: &'static str) {
    match err.kind() {
        ErrorKind::PermanentFileNotAvailable => metrics::inc_transferred(command, "client-error"),
        ErrorKind::TransientFileNotAvailable | ErrorKind::LocalError => metrics::inc_transferred(command, "server-error"),
        ErrorKind::PermissionDenied => metrics::inc_transferred(command, "permission-error"),
        ErrorKind::ConnectionClosed => {
            if let Some(io_error) = err.get_io_error() {
                match io_error.kind() {
                    std::io::ErrorKind::ConnectionReset => metrics::inc_transferred(command, "client-interrupted"),
                    std::io::ErrorKind::BrokenPipe => {
                        // Clients like Cyberduck appear to close the connection prematurely for chunked downloading, generating many "errors"
                        if command != "retr" {
                            metrics::inc_transferred(command, "client-interrupted");
                        }
                    }
                    std::io::ErrorKind::ConnectionAborted => metrics::inc_transferred(command, "network-error"), // Could be a network issue
                    _ => {
                        slog::debug!(logger, "Unmapped ConnectionClosed io error: {:?}", io_error);
                        metrics::inc_transferred(command, "server-error")
                    }
                }
            }
        }
        _ => {
            slog::debug!(logger, "Unmapped error: {:?}", err);
            metrics::inc_transferred(command, "unknown-error")
        }
    }
}

#[derive(Debug)]
enum ListCommand {
    List,
    Nlst,
    Mlsd,
}

impl ListCommand {
    fn as_str(&self) -> &'static str {
        match self {
            ListCommand::List => "LIST",
            ListCommand::Nlst => "NLST",
            ListCommand::Mlsd => "MLSD",
        }
    }
    fn as_lower_str(&self) -> &'static str {
        match self {
            ListCommand::List => "list",
            ListCommand::Nlst => "nlst",
            ListCommand::Mlsd => "mlsd",
        }
    }
}

#[cfg(test)]
mod nlst_tests {
    use super::nlst_prefix;

    #[test]
    fn the_directory_part_of_an_nlst_argument() {
        for (arg, want) in [
            (None, None),
            (Some("*.txt"), None),
            (Some("sub/*.txt"), Some("sub/")),
            (Some("/pub/sub dir/a?.bin"), Some("/pub/sub dir/")),
            (Some("sub/"), Some("sub/")),
        ] {
            assert_eq!(nlst_prefix(arg).as_deref(), want, "{arg:?}");
        }
    }
}

#[cfg(test)]
mod tls_transport_tests {
    use super::tls_transport;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

    /// A transport that counts the reads rustls makes of it.
    struct Counting<S> {
        inner: S,
        reads: Arc<AtomicUsize>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Accepts the test certificate unchecked: this test is about the server's reads.
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// A 4 MiB upload over TLS (256 records of 16 KiB) is read from the transport in far fewer
    /// reads than records: without the buffer rustls made one read (one `read(2)` on a
    /// socket) per record or more (265 here).
    #[tokio::test]
    async fn a_tls_upload_is_read_from_the_socket_in_large_reads() {
        let res = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/resources");
        let server = crate::server::tls::new_config(
            res.join("ftps-test.crt"),
            res.join("ftps-test.key"),
            crate::options::TlsFlags::default(),
            crate::options::FtpsClientAuth::Off,
            res.join("ftps-test.crt"),
        )
        .expect("server config");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        let (near, far) = tokio::io::duplex(8 << 20);
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = Counting {
            inner: far,
            reads: reads.clone(),
        };
        let body = vec![0x5au8; 4 << 20];
        let sent = body.clone();
        let uploader = tokio::spawn(async move {
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(ServerName::try_from("localhost").expect("name"), near)
                .await
                .expect("client handshake");
            tls.write_all(&sent).await.expect("upload");
            tls.shutdown().await.expect("close");
        });
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tls_transport(counted))
            .await
            .expect("server handshake");
        let after_handshake = reads.load(Ordering::Relaxed);
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.expect("download");
        uploader.await.expect("uploader");
        assert_eq!(got.len(), body.len());
        let n = reads.load(Ordering::Relaxed) - after_handshake;
        assert!(n < 64, "{n} reads of the transport for 256 TLS records");
    }
}
