//! The one I/O adapter of the control connection: suppaftp's [`AsyncRustlsFtpStream`] (plain
//! or TLS) underneath, with what it lacks added here (docs/ftp-client.md, "How it works", says
//! why each matters):
//!
//! - every wait runs under `--timeout` (suppaftp only times the connect);
//! - our own protocol trace, with the PASS argument masked (suppaftp's `log` output prints it);
//! - `TYPE I` is sent by the caller before SIZE/REST/RETR (suppaftp never sends it);
//! - EPSV first, PASV when EPSV is refused, and the PASV address replaced by the control
//!   connection's peer unless `--trust-pasv-ip` (suppaftp has no fallback and trusts PASV);
//! - FTPS (RFC 4217, [`crate::tls`]): `AUTH TLS` through suppaftp's `into_secure` (which sends
//!   `PBSZ 0` and `PROT P` after it) or implicit TLS; the trace shows the TLS version and
//!   cipher; a refusal is exit 64 unless `--tls=optional`, which reconnects in clear, saying so;
//! - data connections are opened and read by [`crate::data`], not through suppaftp's
//!   `TransferStream`, whose `finish()` reports success after a short read: we count bytes
//!   ourselves.
//!
//! Commands go through `custom_command(line, &[])`: with no expected code every reply comes
//! back as `UnexpectedResponse`, i.e. the whole reply, which we classify ourselves. suppaftp
//! still does the parts it does well: it refuses a command line containing CR/LF, doubles
//! Telnet IAC bytes, assembles multi-line replies, and bounds a reply at 256 KiB (an endless
//! reply line is an error after 256 KiB, not unbounded memory).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use suppaftp::FtpError;
use suppaftp::tokio::AsyncRustlsFtpStream;
use tokio::net::TcpStream;

use filexfer::text::printable;

use crate::error::{ClientError, Step};
use crate::reply::{Reply, mask_command, parse_epsv, parse_pasv};
use crate::tls::{ClientTls, DataConn, TlsMode, Trust};

/// Why securing a session failed: a refusal `--tls=optional` may excuse, or anything else.
enum Refusal {
    /// The server answered AUTH TLS with this refusal.
    Refused(String),
    /// Any other failure.
    Failed(ClientError),
}

/// Receives each line of the protocol dialog (`> ` for what we send, `< ` for replies).
pub type Tracer = Arc<dyn Fn(&str) + Send + Sync>;

/// A logged-in (or about to be) control connection.
pub struct Session {
    ftp: AsyncRustlsFtpStream,
    /// The server name as the user gave it, for messages.
    pub host: String,
    peer: SocketAddr,
    timeout: Duration,
    trace: Option<Tracer>,
    trust_pasv_ip: bool,
    epsv_refused: bool,
    /// The TYPE the server last accepted (`Some(true)` for ASCII), so a session kept from
    /// file to file (mirror, glob get) sends it once, not once per file.
    type_ascii: Option<bool>,
    /// The TLS of the session, when it has one; data connections are then protected
    /// (`PROT P`) with it.
    tls: Option<ClientTls>,
}

/// Runs `fut` under `timeout`, turning expiry into [`ClientError::Timeout`].
pub async fn timed<T>(
    host: &str,
    timeout: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            host: host.to_string(),
            what: what(),
            secs: timeout.as_secs_f64(),
        }),
    }
}

impl Session {
    /// Resolves `host`, connects (trying each address), reads the greeting, and secures the
    /// session as `tls` says (RFC 4217: `AUTH TLS`, `PBSZ 0`, `PROT P`; or implicit TLS).
    pub async fn connect(
        host: &str,
        port: u16,
        timeout: Duration,
        trace: Option<Tracer>,
        trust_pasv_ip: bool,
        tls: (TlsMode, &Trust),
    ) -> Result<Self, ClientError> {
        let (mode, trust) = tls;
        if mode == TlsMode::Off {
            return Self::connect_plain(host, port, timeout, trace, trust_pasv_ip).await;
        }
        let tls = ClientTls::new(host, trust)?;
        if *trust == Trust::Insecure {
            tracing::warn!(
                "--insecure: the server's certificate is not checked; anyone on the path can read and change this session"
            );
        }
        if mode == TlsMode::Implicit {
            return Self::connect_implicit(host, port, timeout, trace, trust_pasv_ip, tls).await;
        }
        let required = mode == (TlsMode::Explicit { required: true });
        let plain = Self::connect_plain(host, port, timeout, trace.clone(), trust_pasv_ip).await?;
        match plain.secure(tls).await {
            Ok(s) => Ok(s),
            Err(Refusal::Refused(reply)) if !required => {
                tracing::warn!(
                    "{host}: the server refused AUTH TLS ({reply}); going on WITHOUT TLS as --tls=optional allows: the password and data cross the network in clear"
                );
                let s =
                    Self::connect_plain(host, port, timeout, trace.clone(), trust_pasv_ip).await?;
                s.trace(|| "* continuing without TLS (--tls=optional)".to_string());
                Ok(s)
            }
            Err(Refusal::Refused(reply)) => Err(ClientError::TlsRefused {
                host: host.to_string(),
                command: "AUTH TLS".into(),
                reply,
            }),
            Err(Refusal::Failed(e)) => Err(e),
        }
    }

    /// `AUTH TLS` on a plain session: suppaftp's `into_secure` sends it, runs the handshake,
    /// then sends `PBSZ 0` and `PROT P` (RFC 4217 §§4, 8, 9).
    async fn secure(self, tls: ClientTls) -> Result<Self, Refusal> {
        let Self {
            ftp,
            host,
            peer,
            timeout,
            trace,
            trust_pasv_ip,
            epsv_refused,
            tls: _,
            type_ascii: _,
        } = self;
        let say = |l: &str| {
            if let Some(t) = &trace {
                t(l);
            }
        };
        say("> AUTH TLS");
        let secured = tokio::time::timeout(
            timeout,
            ftp.into_secure(tls.control_connector(), tls.domain()),
        )
        .await;
        let ftp = match secured {
            Ok(Ok(ftp)) => ftp,
            Ok(Err(FtpError::UnexpectedResponse(resp))) => {
                let reply = Reply::from_bytes(&resp.body);
                say(&format!("< {}", printable(&reply.one_line())));
                // Refused after the handshake: PBSZ or PROT, which --tls=optional does not
                // excuse either.
                if tls.established().is_some() {
                    return Err(Refusal::Failed(ClientError::TlsRefused {
                        host,
                        command: "PBSZ 0 / PROT P".into(),
                        reply: reply.one_line(),
                    }));
                }
                return Err(Refusal::Refused(reply.one_line()));
            }
            Ok(Err(FtpError::SecureError(detail))) => {
                return Err(Refusal::Failed(tls.handshake_error(
                    &host,
                    "on the control connection",
                    detail,
                )));
            }
            Ok(Err(e)) => {
                return Err(Refusal::Failed(ClientError::from_ftp_error(
                    &host, "AUTH TLS", e,
                )));
            }
            Err(_) => {
                return Err(Refusal::Failed(ClientError::Timeout {
                    host,
                    what: "securing the control connection (AUTH TLS)".into(),
                    secs: timeout.as_secs_f64(),
                }));
            }
        };
        let s = Self {
            ftp,
            host,
            peer,
            timeout,
            trace,
            trust_pasv_ip,
            epsv_refused,
            tls: Some(tls),
            // Set again after the upgrade: nothing sent in clear is assumed to carry over.
            type_ascii: None,
        };
        s.trace_tls("control connection");
        s.trace(|| "> PBSZ 0\n> PROT P\n* (sent by suppaftp after AUTH TLS; both accepted)".into());
        Ok(s)
    }

    /// Implicit FTPS: TLS from the first byte, then the greeting; `PBSZ 0` and `PROT P` are
    /// sent anyway (servers protect data by default on implicit connections, not all do).
    async fn connect_implicit(
        host: &str,
        port: u16,
        timeout: Duration,
        trace: Option<Tracer>,
        trust_pasv_ip: bool,
        tls: ClientTls,
    ) -> Result<Self, ClientError> {
        let addrs = Self::resolve(host, port, timeout).await?;
        let mut last = None;
        for addr in &addrs {
            if let Some(t) = &trace {
                t(&format!("* connecting to {addr} (implicit TLS)"));
            }
            let attempt = tokio::time::timeout(
                timeout,
                AsyncRustlsFtpStream::connect_secure_implicit(
                    *addr,
                    tls.control_connector(),
                    tls.domain(),
                ),
            )
            .await;
            let ftp = match attempt {
                Ok(Ok(ftp)) => ftp,
                Ok(Err(FtpError::ConnectionError(e))) => {
                    last = Some(ClientError::Connect {
                        what: "server",
                        addr: addr.to_string(),
                        source: e,
                    });
                    continue;
                }
                Ok(Err(FtpError::SecureError(detail))) => {
                    return Err(tls.handshake_error(host, "on the control connection", detail));
                }
                Ok(Err(e)) => return Err(ClientError::from_ftp_error(host, "(greeting)", e)),
                Err(_) => {
                    last = Some(ClientError::Timeout {
                        host: host.to_string(),
                        what: format!("connecting to {addr} (implicit TLS)"),
                        secs: timeout.as_secs_f64(),
                    });
                    continue;
                }
            };
            let _ = ftp.get_ref().await.set_nodelay(true);
            let mut s = Self {
                ftp,
                host: host.to_string(),
                peer: *addr,
                timeout,
                trace,
                trust_pasv_ip,
                epsv_refused: false,
                tls: Some(tls),
                type_ascii: None,
            };
            s.trace_tls("control connection");
            if let Some(w) = s.ftp.get_welcome_msg() {
                for l in w.lines() {
                    s.trace(|| format!("< {}", printable(l)));
                }
            }
            for cmd in ["PBSZ 0", "PROT P"] {
                let r = s.command(cmd).await?;
                if !r.is_ok() {
                    return Err(ClientError::TlsRefused {
                        host: host.to_string(),
                        command: cmd.into(),
                        reply: r.one_line(),
                    });
                }
            }
            return Ok(s);
        }
        Err(last.unwrap_or_else(|| ClientError::Resolve {
            host: host.to_string(),
            source: std::io::Error::other("no address"),
        }))
    }

    /// Traces the TLS version and cipher of the last handshake, and how the certificate was
    /// checked.
    fn trace_tls(&self, on: &str) {
        let Some(tls) = &self.tls else { return };
        let how = match &tls.trust {
            Trust::System => "the system's root certificates".to_string(),
            Trust::CaFile(p) => format!("the CA file {}", p.display()),
            Trust::Pin(_) => "the pinned SHA-256 fingerprint".to_string(),
            Trust::Insecure => "nothing (--insecure)".to_string(),
        };
        let what = tls.established().unwrap_or_else(|| "?".into());
        self.trace(|| format!("* TLS on the {on}: {what}; certificate checked against {how}"));
    }

    /// Whether data connections are protected (`PROT P`).
    pub fn data_protected(&self) -> bool {
        self.tls.is_some()
    }

    /// Protects a data connection after its command was accepted (RFC 4217 §9: the client
    /// starts the handshake once the server answered 1xx), resuming this session's TLS session.
    pub async fn secure_data(&self, tcp: TcpStream) -> Result<DataConn, ClientError> {
        let Some(tls) = &self.tls else {
            return Ok(DataConn::Plain(tcp));
        };
        match tokio::time::timeout(self.timeout, tls.secure_data(tcp)).await {
            Ok(Ok(d)) => {
                self.trace_tls("data connection");
                Ok(d)
            }
            Ok(Err(e)) => {
                Err(tls.handshake_error(&self.host, "on the data connection", e.to_string()))
            }
            Err(_) => Err(self.timeout_err("securing the data connection".into())),
        }
    }

    async fn resolve(
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, ClientError> {
        timed(host, timeout, || "resolving the host name".into(), async {
            tokio::net::lookup_host((host, port))
                .await
                .map(Iterator::collect)
                .map_err(|source| ClientError::Resolve {
                    host: host.to_string(),
                    source,
                })
        })
        .await
    }

    /// Connects without TLS and reads the greeting.
    async fn connect_plain(
        host: &str,
        port: u16,
        timeout: Duration,
        trace: Option<Tracer>,
        trust_pasv_ip: bool,
    ) -> Result<Self, ClientError> {
        let addrs = Self::resolve(host, port, timeout).await?;
        let mut last = None;
        let mut stream = None;
        for addr in &addrs {
            if let Some(t) = &trace {
                t(&format!("* connecting to {addr}"));
            }
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => {
                    last = Some(ClientError::Connect {
                        what: "server",
                        addr: addr.to_string(),
                        source: e,
                    })
                }
                Err(_) => {
                    last = Some(ClientError::Timeout {
                        host: host.to_string(),
                        what: format!("connecting to {addr}"),
                        secs: timeout.as_secs_f64(),
                    })
                }
            }
        }
        let Some(stream) = stream else {
            return Err(last.unwrap_or_else(|| ClientError::Resolve {
                host: host.to_string(),
                source: std::io::Error::other("no address"),
            }));
        };
        // Commands and replies are small: don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map_err(|e| ClientError::Network {
            host: host.to_string(),
            what: "after connecting".into(),
            source: e,
        })?;
        let host_s = host.to_string();
        let ftp = timed(
            host,
            timeout,
            || "waiting for the server's greeting".into(),
            async {
                AsyncRustlsFtpStream::connect_with_stream(stream)
                    .await
                    .map_err(|e| ClientError::from_ftp_error(&host_s, "(greeting)", e))
            },
        )
        .await;
        let ftp = match ftp {
            Ok(f) => f,
            Err(ClientError::Protocol {
                reply, transient, ..
            }) => {
                if let Some(t) = &trace {
                    t(&format!("< {reply}"));
                }
                return Err(ClientError::Protocol {
                    host: host.to_string(),
                    command: "(greeting)".into(),
                    reply,
                    transient,
                });
            }
            Err(e) => return Err(e),
        };
        if let (Some(t), Some(w)) = (&trace, ftp.get_welcome_msg()) {
            for l in w.lines() {
                t(&format!("< {}", printable(l)));
            }
        }
        Ok(Self {
            ftp,
            host: host.to_string(),
            peer,
            timeout,
            trace,
            trust_pasv_ip,
            epsv_refused: false,
            type_ascii: None,
            tls: None,
        })
    }

    /// Writes one line to the protocol trace, when there is one (`* ...` for what is neither a
    /// command nor a reply).
    pub fn trace(&self, line: impl FnOnce() -> String) {
        if let Some(t) = &self.trace {
            t(&line());
        }
    }

    fn reply_of(
        &self,
        shown: &str,
        r: Result<suppaftp::types::Response, FtpError>,
    ) -> Result<Reply, ClientError> {
        let reply = match r {
            Ok(resp) | Err(FtpError::UnexpectedResponse(resp)) => Reply::from_bytes(&resp.body),
            Err(e) => return Err(ClientError::from_ftp_error(&self.host, shown, e)),
        };
        if reply.code < 100 {
            return Err(ClientError::Protocol {
                host: self.host.clone(),
                command: shown.to_string(),
                reply: reply.one_line(),
                transient: false,
            });
        }
        for l in reply.text.lines() {
            self.trace(|| format!("< {}", printable(l)));
        }
        Ok(reply)
    }

    /// Sends one command line and returns its reply, whatever the code, under the timeout.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let shown = mask_command(line);
        self.trace(|| format!("> {shown}"));
        let r = match tokio::time::timeout(self.timeout, self.ftp.custom_command(line, &[])).await {
            Ok(r) => r,
            Err(_) => return Err(self.timeout_err(format!("waiting for the reply to {shown}"))),
        };
        self.reply_of(&shown, r)
    }

    /// Reads one more reply (the completion of a transfer), under the timeout.
    pub async fn read_reply(&mut self, after: &str) -> Result<Reply, ClientError> {
        match tokio::time::timeout(self.timeout, self.read_reply_untimed(after)).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_err(format!("waiting for the end of {after}"))),
        }
    }

    /// Reads one more reply with no limit: for a caller that runs its own clock (see
    /// [`crate::data`]).
    pub async fn read_reply_untimed(&mut self, after: &str) -> Result<Reply, ClientError> {
        let r = self.ftp.read_response_in(&[]).await;
        self.reply_of(after, r)
    }

    /// A [`ClientError::Timeout`] for this server.
    pub fn timeout_err(&self, what: String) -> ClientError {
        ClientError::Timeout {
            host: self.host.clone(),
            what,
            secs: self.timeout.as_secs_f64(),
        }
    }

    /// The configured wait limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The error for a reply that is not what `step` needed (see [`ClientError::from_reply`]).
    pub fn refused(&self, step: Step<'_>, r: &Reply) -> ClientError {
        ClientError::from_reply(&self.host, step, r)
    }

    /// USER, then PASS when asked (RFC 959 §5.4: 230 after USER means no password needed).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let r = self.command(&format!("USER {user}")).await?;
        match r.code {
            230 => return Ok(()),
            331 | 332 => {}
            _ => return Err(self.refused(Step::Login { user }, &r)),
        }
        let r = self.command(&format!("PASS {password}")).await?;
        match r.code {
            230 | 202 => Ok(()),
            _ => Err(self.refused(Step::Login { user }, &r)),
        }
    }

    /// One CWD per directory segment (RFC 1738 §3.2.2).
    pub async fn cwd_all(&mut self, dirs: &[String]) -> Result<(), ClientError> {
        for dir in dirs {
            let r = self.command(&format!("CWD {dir}")).await?;
            if !r.is_ok() {
                return Err(self.refused(Step::Cwd { dir }, &r));
            }
        }
        Ok(())
    }

    /// `TYPE I` (or `TYPE A`): must precede SIZE, REST and every transfer, since servers start
    /// in ASCII and some (pyftpdlib) then refuse SIZE and REST. The type stays in force for the
    /// session (RFC 959 §4.1.2: "until changed"), so it is sent only when it changes: one round
    /// trip less per file for mirror's workers.
    pub async fn set_type(&mut self, ascii: bool) -> Result<(), ClientError> {
        if self.type_ascii == Some(ascii) {
            return Ok(());
        }
        let cmd = if ascii { "TYPE A" } else { "TYPE I" };
        let r = self.command(cmd).await?;
        if r.is_ok() {
            self.type_ascii = Some(ascii);
            Ok(())
        } else {
            self.type_ascii = None;
            Err(self.refused(Step::Command(cmd), &r))
        }
    }

    /// `SIZE name`; `None` when the server does not say.
    pub async fn size(&mut self, name: &str) -> Result<Option<u64>, ClientError> {
        let r = self.command(&format!("SIZE {name}")).await?;
        if r.code == 421 {
            return Err(self.refused(Step::Command("SIZE"), &r));
        }
        Ok(crate::reply::parse_size(&r))
    }

    /// FEAT's feature names (empty when refused).
    pub async fn features(&mut self) -> Result<Vec<String>, ClientError> {
        let r = self.command("FEAT").await?;
        if r.code == 421 {
            return Err(self.refused(Step::Command("FEAT"), &r));
        }
        Ok(if r.code == 211 {
            crate::reply::parse_feat(&r.text)
        } else {
            Vec::new()
        })
    }

    /// The data address: EPSV (RFC 2428) and the control peer's IP; if the server does not
    /// know EPSV, PASV, whose IP is replaced by the control peer's unless `--trust-pasv-ip`
    /// (a server behind NAT, or a hostile one pointing us at a third host: RFC 2577 §3).
    pub async fn passive_address(&mut self) -> Result<SocketAddr, ClientError> {
        if !self.epsv_refused {
            let r = self.command("EPSV").await?;
            if r.code == 229 {
                return match parse_epsv(&r.text) {
                    Some(port) => Ok(SocketAddr::new(self.peer.ip(), port)),
                    None => Err(self.refused(Step::Passive, &r)),
                };
            }
            if r.code == 421 {
                return Err(self.refused(Step::Command("EPSV"), &r));
            }
            // 500/502 unknown, 501/504/522 not for this protocol: fall back to PASV for the
            // rest of the session.
            self.epsv_refused = true;
        }
        let r = self.command("PASV").await?;
        let given = match (r.code, parse_pasv(&r.text)) {
            (227, Some(given)) => given,
            _ => return Err(self.refused(Step::Passive, &r)),
        };
        if self.trust_pasv_ip {
            return Ok(SocketAddr::from(given));
        }
        let ip: IpAddr = self.peer.ip();
        if ip != IpAddr::V4(*given.ip()) {
            self.trace(|| format!("* ignoring the PASV address {}, using {ip}", given.ip()));
        }
        Ok(SocketAddr::new(ip, given.port()))
    }

    /// QUIT, best effort (the transfer outcome is already known).
    pub async fn quit(mut self) {
        let t = self.timeout.min(Duration::from_secs(2));
        let _ = tokio::time::timeout(t, self.command("QUIT")).await;
    }
}
