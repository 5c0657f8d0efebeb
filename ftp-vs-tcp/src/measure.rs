//! One download, measured: the suite's TCP client ([`tcp_fileserv::client`]) or its FTP client
//! ([`ftp_client::session`] and [`ftp_client::data`], the same calls `ftp-client get` makes),
//! with the time of each phase, the round trips it took and, for a check, the SHA-256 of what
//! arrived.
//!
//! Round trips are counted, not guessed: one per TCP connection opened, plus one per request
//! (tcp-fileserv) or per FTP command whose reply we wait for, read from ftp-client's protocol
//! trace. The `226` that ends a transfer is not counted (it follows the data without a new
//! request), nor is `QUIT` (sent after the clock stops).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filexfer::datapath::{Pace, stream_to_writer};
use ftp_client::data::Transfer;
use ftp_client::session::Session;
use ftp_client::tls::{TlsMode, Trust};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tcp_fileserv::client::Client;
use tcp_fileserv::config::HostPort;
use tcp_fileserv::protocol::Kind;
use thiserror::Error;

/// The protocols compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// tcp-fileserv's framed protocol over one TCP connection.
    Tcp,
    /// FTP (RFC 959): a control connection and a data connection per transfer.
    Ftp,
    /// FTP over TLS (RFC 4217), explicit: `AUTH TLS` on the control connection, `PBSZ 0` and
    /// `PROT P`, and a TLS handshake (resuming the control connection's session) on each data
    /// connection.
    Ftps,
}

impl Protocol {
    /// Short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Ftp => "FTP",
            Self::Ftps => "FTPS",
        }
    }
}

/// A download that failed; the message says which client and what.
#[derive(Debug, Error)]
pub enum MeasureError {
    /// The TCP client failed.
    #[error("TCP download failed")]
    Tcp(#[from] tcp_fileserv::client::ClientError),
    /// The FTP client failed.
    #[error("FTP download failed")]
    Ftp(#[from] ftp_client::ClientError),
    /// The FTP data copy failed.
    #[error("FTP data transfer failed")]
    Copy(#[from] filexfer::datapath::CopyError),
    /// A client thread or task could not run.
    #[error("cannot run a client")]
    Spawn(#[source] io::Error),
}

/// One measured download.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Bytes received.
    pub bytes: u64,
    /// From the first connect to the last byte (and, for FTP, the `226`).
    pub total: Duration,
    /// From the first connect to the first byte of the file.
    pub first_byte: Duration,
    /// Opening the (control) connection; for FTP up to the `220` greeting.
    pub connect: Duration,
    /// FTP: `USER` and `PASS`.
    pub login: Duration,
    /// FTP: `CWD`, `TYPE I`, `SIZE`: what precedes the passive negotiation.
    pub prepare: Duration,
    /// FTP: `EPSV` (or `PASV`) and opening the data connection.
    pub passive: Duration,
    /// FTPS: `AUTH TLS`, the control connection's TLS handshake, `PBSZ 0` and `PROT P`
    /// (after `connect`, before `login`).
    pub tls_control: Duration,
    /// FTPS: the data connection's TLS handshake, from the `150` that answers `RETR` to the
    /// handshake's end (after `setup`, before the first byte).
    pub tls_data: Duration,
    /// Everything before the request for the file is sent (`GET`, `RETR`).
    pub setup: Duration,
    /// Round trips (see the module's documentation).
    pub round_trips: u32,
    /// CPU time of the client threads during this download (zero when unknown).
    pub client_cpu: Duration,
    /// SHA-256 of the bytes received, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A writer that throws the bytes away, hashing them first when asked to; shareable, so the
/// hash can be read after a copy that took the writer by value.
#[derive(Debug, Clone, Default)]
pub struct Sink {
    hash: Option<Arc<Mutex<Sha256>>>,
}

impl Sink {
    /// A sink that hashes (`true`) or only discards.
    pub fn new(hash: bool) -> Self {
        Self {
            hash: hash.then(|| Arc::new(Mutex::new(Sha256::new()))),
        }
    }

    /// The SHA-256 of what was written, hex, if hashing.
    pub fn sha256(&self) -> Option<String> {
        let h = self.hash.as_ref()?;
        let h = h.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(hex::encode(h.clone().finalize()))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(h) = &self.hash {
            h.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .update(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Downloads `name` from tcp-fileserv at `addr` over a new connection, blocking; measures the
/// calling thread's CPU time as the client's.
pub fn tcp_get(
    addr: &HostPort,
    name: &str,
    hash: bool,
    timeout: Duration,
) -> Result<Sample, MeasureError> {
    let cpu0 = crate::cpu::this_thread();
    let t0 = Instant::now();
    let mut client = Client::connect(addr, timeout)?;
    let connect = t0.elapsed();
    let mut s = tcp_more(&mut client, name, hash, t0)?;
    s.connect = connect;
    s.setup = connect;
    s.round_trips += 1;
    s.client_cpu = crate::cpu::this_thread().saturating_sub(cpu0);
    Ok(s)
}

/// One more request on an open tcp-fileserv connection, timed from `t0`.
pub fn tcp_more(
    client: &mut Client,
    name: &str,
    hash: bool,
    t0: Instant,
) -> Result<Sample, MeasureError> {
    let length = client.request(Kind::Get, name, 0)?;
    let mut sink = Sink::new(hash);
    let mut first = None;
    let bytes = client.read_body(name, length, &mut sink, "(memory)", &mut |_| {
        first.get_or_insert_with(|| t0.elapsed());
    })?;
    let total = t0.elapsed();
    Ok(Sample {
        bytes,
        total,
        first_byte: first.unwrap_or(total),
        round_trips: 1,
        sha256: sink.sha256(),
        ..Sample::default()
    })
}

/// What an FTP server and file are, for [`ftp_get`].
#[derive(Debug, Clone)]
pub struct FtpFile {
    /// Host name or address.
    pub host: String,
    /// Control port.
    pub port: u16,
    /// Login name (`anonymous` for our server).
    pub user: String,
    /// Password.
    pub password: String,
    /// Directories to enter, one `CWD` each.
    pub dirs: Vec<String>,
    /// The file's name in the last of them.
    pub name: String,
    /// FTPS (explicit, `AUTH TLS`, data protected) trusting this; `None`: plain FTP.
    pub tls: Option<Trust>,
}

/// The kind of event recorded for a reply (`< ...`): kept for timing, not a round trip.
pub const REPLY: &str = "<";
/// The kind of event recorded when a TLS handshake ended (`* TLS on the control connection`).
pub const TLS_CONTROL: &str = "TLS-CONTROL";
/// The kind of event recorded when a data connection's TLS handshake ended.
pub const TLS_DATA: &str = "TLS-DATA";

/// The protocol trace, timestamped: what ftp-client sent (`> CMD`), the replies, the data
/// connections it opened and the TLS handshakes it finished, so that phases and round trips
/// come from what really happened.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<(Instant, String)>>>);

impl Events {
    /// A tracer for [`Session::connect`] that records into these events.
    pub fn tracer(&self) -> ftp_client::Tracer {
        let events = self.0.clone();
        Arc::new(move |text: &str| {
            let now = Instant::now();
            // One call may carry several lines (`> PBSZ 0` and `> PROT P` after AUTH TLS).
            for line in text.lines() {
                let kind = if let Some(cmd) = line.strip_prefix("> ") {
                    cmd.split(' ').next().unwrap_or("").to_ascii_uppercase()
                } else if line.starts_with("< ") {
                    REPLY.to_owned()
                } else if line.starts_with("* data connection") {
                    "DATA".to_owned()
                } else if line.starts_with("* TLS on the control connection") {
                    TLS_CONTROL.to_owned()
                } else if line.starts_with("* TLS on the data connection") {
                    TLS_DATA.to_owned()
                } else {
                    continue;
                };
                events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((now, kind));
            }
        })
    }

    /// The events so far, leaving them.
    pub fn snapshot(&self) -> Vec<(Instant, String)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The events so far, leaving none.
    pub fn take(&self) -> Vec<(Instant, String)> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// When the first event of `kind` (one of them) happened.
fn first_of(events: &[(Instant, String)], kinds: &[&str]) -> Option<Instant> {
    events
        .iter()
        .find(|(_, k)| kinds.contains(&k.as_str()))
        .map(|(t, _)| *t)
}

/// Round trips of a recorded dialog: one per command, per data connection and per TLS
/// handshake (TLS 1.3: one round trip before the client may send, resumed or not; RFC 8446
/// §2), plus the control connection's own when `connected` is true. Replies are not counted:
/// each answers a command already counted.
pub fn round_trips(events: &[(Instant, String)], connected: bool) -> u32 {
    u32::from(connected) + events.iter().filter(|(_, k)| k != REPLY).count() as u32
}

/// Logs in to an FTP server (connect, USER, PASS, the CWDs, TYPE I), timing each step into a
/// [`Sample`] whose clock started at `t0`.
pub async fn ftp_login(
    f: &FtpFile,
    timeout: Duration,
    events: &Events,
    t0: Instant,
) -> Result<(Session, Sample), MeasureError> {
    let tls = match &f.tls {
        None => (TlsMode::Off, &Trust::System),
        Some(trust) => (TlsMode::Explicit { required: true }, trust),
    };
    let mut s =
        Session::connect(&f.host, f.port, timeout, Some(events.tracer()), false, tls).await?;
    let connected = t0.elapsed();
    // With TLS, the greeting came before AUTH TLS went out; the rest is the handshake.
    let auth = events
        .snapshot()
        .iter()
        .find(|(_, k)| k == "AUTH")
        .map(|(t, _)| *t - t0);
    let (connect, tls_control) = match auth {
        Some(a) => (a, connected.saturating_sub(a)),
        None => (connected, Duration::ZERO),
    };
    s.login(&f.user, &f.password).await?;
    let login = t0.elapsed() - connected;
    s.cwd_all(&f.dirs).await?;
    s.set_type(false).await?;
    Ok((
        s,
        Sample {
            connect,
            tls_control,
            login,
            ..Sample::default()
        },
    ))
}

/// One RETR on a logged-in session (EPSV, data connection, RETR, the bytes, `226`), as
/// `ftp-client get` does it; with `size`, SIZE first, and the byte count checked against it.
pub async fn ftp_retr(
    s: &mut Session,
    name: &str,
    with_size: bool,
    hash: bool,
    t0: Instant,
) -> Result<Sample, MeasureError> {
    let size = if with_size { s.size(name).await? } else { None };
    let t = Transfer::new("RETR", Some(name), name);
    let data = t.start(s).await?;
    let sink = Sink::new(hash);
    let mut first = None;
    let got = stream_to_writer(data, sink.clone(), s.timeout(), Pace::unlimited(), |_| {
        first.get_or_insert_with(|| t0.elapsed());
    })
    .await?;
    t.finish(s, got, size, None).await?;
    let total = t0.elapsed();
    Ok(Sample {
        bytes: got,
        total,
        first_byte: first.unwrap_or(total),
        sha256: sink.sha256(),
        ..Sample::default()
    })
}

/// Downloads one file over a new FTP session, as `ftp-client get` does (connect, USER, PASS,
/// CWD, TYPE I, SIZE, EPSV, data connection, RETR, `226`, QUIT after the clock stops).
pub async fn ftp_get(f: &FtpFile, hash: bool, timeout: Duration) -> Result<Sample, MeasureError> {
    let events = Events::default();
    let t0 = Instant::now();
    let (mut s, head) = ftp_login(f, timeout, &events, t0).await?;
    let body = ftp_retr(&mut s, &f.name, true, hash, t0).await?;
    let ev = events.take();
    s.quit().await;
    let at = |kinds: &[&str]| first_of(&ev, kinds).map(|t| t - t0);
    let passive_at = at(&["EPSV", "PASV"]).unwrap_or_default();
    let setup = at(&["RETR"]).unwrap_or(body.total);
    // The data handshake starts when the 150 answering RETR arrives (RFC 4217 §9).
    let tls_data = ev
        .iter()
        .position(|(_, k)| k == TLS_DATA)
        .and_then(|end| {
            let start = ev[..end].iter().rev().find(|(_, k)| k == REPLY)?.0;
            Some(ev[end].0 - start)
        })
        .unwrap_or_default();
    Ok(Sample {
        connect: head.connect,
        tls_control: head.tls_control,
        login: head.login,
        tls_data,
        prepare: passive_at.saturating_sub(head.connect + head.tls_control + head.login),
        passive: setup.saturating_sub(passive_at),
        setup,
        round_trips: round_trips(&ev, true),
        ..body
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_gives_commands_and_data_connections() {
        let events = Events::default();
        let tracer = events.tracer();
        for line in [
            "> USER anonymous",
            "< 331 Password required",
            "> PASS ****",
            "> EPSV",
            "* data connection to 127.0.0.1:5000",
            "* ignoring the PASV address",
            "> RETR a b.bin",
            "< 150 Sending",
            "* TLS on the data connection: TLSv1_3 (resumed); certificate checked against x",
            "> AUTH TLS",
            "> PBSZ 0\n> PROT P\n* (sent by suppaftp after AUTH TLS; both accepted)",
        ] {
            tracer(line);
        }
        let ev = events.take();
        let kinds: Vec<&str> = ev.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "USER", REPLY, "PASS", "EPSV", "DATA", "RETR", REPLY, TLS_DATA, "AUTH", "PBSZ",
                "PROT"
            ]
        );
        // Replies are not round trips of their own; the handshake and PBSZ, PROT are.
        assert_eq!(round_trips(&ev, true), 10);
        assert!(first_of(&ev, &["PASV", "EPSV"]).is_some());
        assert!(events.take().is_empty(), "taken once");
    }

    #[test]
    fn the_sink_hashes_only_when_asked() {
        let mut s = Sink::new(true);
        s.write_all(b"abc").unwrap();
        assert_eq!(
            s.sha256().unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut s = Sink::new(false);
        s.write_all(b"abc").unwrap();
        assert!(s.sha256().is_none());
    }
}
