//! FTPS (RFC 4217) for the client: the rustls configuration (which certificates to trust), the
//! connector handed to suppaftp for the control connection, and the TLS of data connections.
//!
//! - Trust: the system's root certificates by default (rustls-native-certs reads the OS store,
//!   e.g. `/etc/ssl/certs`), a CA file with `--cacert`, or a pin with `--pin-sha256`: the
//!   SHA-256 of the server's certificate as `ftp-server` prints it (and as `openssl x509
//!   -fingerprint -sha256` does), which replaces the CA check for a self-signed server.
//!   `--insecure` checks nothing (main warns).
//! - Every connection of a run shares one `ClientConfig`, so a data connection resumes the
//!   control connection's TLS session (rustls keeps sessions per server name): what vsftpd's
//!   `require_ssl_reuse=YES` demands (RFC 4217 §10).
//! - A failure is classified as curl does: 35 (TLS connect error), 60 (the peer's certificate
//!   cannot be authenticated, a pin mismatch included), 64 (the requested TLS level refused).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use suppaftp::tokio::{AsyncRustlsStream, AsyncTlsConnector};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::ClientError;

/// How the session uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain FTP (no flag, an `ftp://` URL).
    Off,
    /// `AUTH TLS` after the greeting (RFC 4217), then `PBSZ 0` and `PROT P`. `required`:
    /// fail (64) when the server refuses; otherwise go on in clear, with a warning.
    Explicit {
        /// `--tls` / `--tls=required` / `--tls-required`, as opposed to `--tls=optional`.
        required: bool,
    },
    /// TLS from the first byte (`ftps://`), data protected from the start.
    Implicit,
}

/// Which server certificates are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's roots.
    System,
    /// The CA certificates of a PEM file (`--cacert`).
    CaFile(std::path::PathBuf),
    /// A certificate with this SHA-256 (`--pin-sha256`), whoever signed it.
    Pin([u8; 32]),
    /// Anything (`--insecure`).
    Insecure,
}

/// Parses a `--pin-sha256` value: 64 hex digits, with or without `:` between bytes, in any
/// case, optionally after `sha256:` or `SHA256 Fingerprint=` (openssl's output).
pub fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let t = s.trim();
    let t = t.split_once('=').map_or(t, |(k, v)| {
        if k.to_ascii_lowercase().contains("sha256") {
            v
        } else {
            t
        }
    });
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex).map_err(|_| {
        format!("--pin-sha256 {s:?}: expected 64 hex digits (AB:CD:... as ftp-server prints it)")
    })?;
    bytes.try_into().map_err(|_| {
        format!("--pin-sha256 {s:?}: expected 32 bytes (64 hex digits), as ftp-server prints it")
    })
}

/// The upper-case, `:`-separated SHA-256 of a DER certificate, as `ftp-server` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(der))
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// What the last handshake of a connector did, for the trace and for the exit code.
#[derive(Debug, Default)]
struct Outcome {
    /// "TLSv1_3 TLS13_AES_256_GCM_SHA384 (resumed)".
    established: Option<String>,
    /// The certificate could not be authenticated (60), with why.
    cert_failure: Option<String>,
}

/// The TLS side of one run: the shared client configuration and the server name.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    domain: String,
    outcome: Arc<Mutex<Outcome>>,
    /// How the certificate is checked, for the trace.
    pub trust: Trust,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("domain", &self.domain)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds the configuration for `host` (a name or an IP address) trusting `trust`.
    pub fn new(host: &str, trust: &Trust) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientError::Usage(format!("TLS configuration: {e}")))?;
        let outcome: Arc<Mutex<Outcome>> = Arc::default();
        let config = match trust {
            Trust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    pin: *pin,
                    provider: provider.clone(),
                }))
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider.clone())))
                .with_no_client_auth(),
            Trust::CaFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| ClientError::Usage(format!("--cacert {}: {e}", path.display())))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| {
                        ClientError::Usage(format!("--cacert {}: {e}", path.display()))
                    })?;
                    roots.add(c).map_err(|e| {
                        ClientError::Usage(format!("--cacert {}: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(ClientError::Usage(format!(
                        "--cacert {}: no certificate in the file",
                        path.display()
                    )));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::System => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(found.certs);
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ClientError::Usage(format!("{host:?} as a TLS server name: {e}")))?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
            domain: host.to_string(),
            outcome,
            trust: trust.clone(),
        })
    }

    /// The server name certificates are checked against.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The connector suppaftp runs the control connection's handshake with.
    pub fn control_connector(&self) -> ControlConnector {
        ControlConnector { tls: self.clone() }
    }

    /// "TLSv1_3 / TLS13_AES_256_GCM_SHA384" of the last handshake, for the trace.
    pub fn established(&self) -> Option<String> {
        lock(&self.outcome).established.clone()
    }

    /// The error for a failed handshake: 60 when the certificate was the problem, else 35.
    pub fn handshake_error(&self, host: &str, what: &str, detail: String) -> ClientError {
        match lock(&self.outcome).cert_failure.take() {
            Some(why) => ClientError::TlsCertificate {
                host: host.to_string(),
                reason: why,
            },
            None => ClientError::TlsConnect {
                host: host.to_string(),
                what: what.to_string(),
                detail,
            },
        }
    }

    /// Runs the handshake over `tcp`, recording what it did.
    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        *lock(&self.outcome) = Outcome::default();
        match self.connector.connect(self.name.clone(), tcp).await {
            Ok(s) => {
                let c = s.get_ref().1;
                let resumed = matches!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
                let described = format!(
                    "{} / {}{}",
                    c.protocol_version()
                        .map_or("?".into(), |v| format!("{v:?}")),
                    c.negotiated_cipher_suite()
                        .map_or("?".into(), |s| format!("{:?}", s.suite())),
                    if resumed { " (session resumed)" } else { "" }
                );
                lock(&self.outcome).established = Some(described);
                Ok(s)
            }
            Err(e) => {
                if let Some(rustls::Error::InvalidCertificate(why)) = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    lock(&self.outcome).cert_failure = Some(describe_cert_error(why));
                }
                Err(e)
            }
        }
    }

    /// Protects a data connection (`PROT P`): the handshake, resuming the control
    /// connection's session.
    pub async fn secure_data(&self, tcp: TcpStream) -> io::Result<DataConn> {
        Ok(DataConn::Tls(Box::new(self.handshake(tcp).await?)))
    }
}

fn describe_cert_error(e: &rustls::CertificateError) -> String {
    match e {
        rustls::CertificateError::Expired => "the certificate has expired".into(),
        rustls::CertificateError::ExpiredContext { time, not_after } => format!(
            "the certificate has expired ({} days ago)",
            time.as_secs().saturating_sub(not_after.as_secs()) / 86_400
        ),
        rustls::CertificateError::NotValidYet
        | rustls::CertificateError::NotValidYetContext { .. } => {
            "the certificate is not valid yet (check the clocks)".into()
        }
        rustls::CertificateError::UnknownIssuer => {
            "the certificate is not signed by a trusted authority (try --cacert FILE, or --pin-sha256 with the server's fingerprint)".into()
        }
        rustls::CertificateError::NotValidForName
        | rustls::CertificateError::NotValidForNameContext { .. } => {
            "the certificate is not valid for this host name".into()
        }
        rustls::CertificateError::ApplicationVerificationFailure => {
            "the certificate does not match --pin-sha256".into()
        }
        other => format!("{other:?}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// suppaftp's side of the control connection's handshake (`AUTH TLS` or implicit).
#[derive(Debug)]
pub struct ControlConnector {
    tls: ClientTls,
}

#[async_trait::async_trait]
impl AsyncTlsConnector for ControlConnector {
    type Stream = AsyncRustlsStream;

    async fn connect(&self, _domain: &str, stream: TcpStream) -> suppaftp::FtpResult<Self::Stream> {
        self.tls
            .handshake(stream)
            .await
            .map(AsyncRustlsStream::from)
            .map_err(|e| suppaftp::FtpError::SecureError(e.to_string()))
    }
}

/// Accepts exactly one certificate, by its SHA-256, and still checks the handshake's
/// signatures with it (so the server must hold the key).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `--insecure`: any certificate (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A data connection: plain, or protected (`PROT P`).
#[derive(Debug)]
pub enum DataConn {
    /// In clear.
    Plain(TcpStream),
    /// TLS over it.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl DataConn {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }

    /// Makes the next close a reset (an upload that failed must not look complete).
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.tcp().set_zero_linger()
    }
}

impl AsyncRead for DataConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_the_forms_people_paste() {
        let fp = fingerprint(b"abc");
        let want = parse_pin(&fp).expect("ftp-server's form");
        for form in [
            fp.to_lowercase(),
            fp.replace(':', ""),
            format!("sha256:{fp}"),
            format!("SHA256 Fingerprint={fp}"),
        ] {
            assert_eq!(parse_pin(&form), Ok(want), "{form}");
        }
        for bad in ["", "AB:CD", "zz", &fp[..fp.len() - 3]] {
            assert!(parse_pin(bad).is_err(), "{bad:?}");
        }
    }
}
