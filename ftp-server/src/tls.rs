//! FTPS (RFC 4217): the server's certificate and its rustls configuration, built once per
//! server and shared by every session (so TLS sessions made on a control connection can be
//! resumed by its data connections, and by the next session of the same client).
//!
//! The certificate comes from PEM files (`tls_cert`, `tls_key`) or is self-signed: made on
//! first start with rcgen and kept in a state directory (`$XDG_STATE_HOME/ftp-server`, else
//! `~/.local/state/ftp-server`), so that its SHA-256 fingerprint, printed in the start-up
//! banner, stays the same across restarts and clients can pin it (`ftp-client --pin-sha256`).
//! TLS 1.2 and 1.3 only (all rustls speaks).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::CertSource;

/// File names of the self-signed certificate and key inside the state directory.
const SELF_SIGNED_CERT: &str = "tls-cert.pem";
const SELF_SIGNED_KEY: &str = "tls-key.pem";

/// Why the TLS configuration could not be built. Each names the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// "TLS certificate" or "TLS key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but holds no usable PEM item.
    #[error("{what} {}: {message}", path.display())]
    Invalid {
        /// "TLS certificate" or "TLS key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("TLS certificate {} with key {}: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// The self-signed certificate could not be made or stored.
    #[error("cannot create the self-signed certificate in {}: {message}", dir.display())]
    SelfSigned {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
}

/// The server's TLS configuration, ready for libunftp, and what the banner shows.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// Shared by every session.
    pub server_config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), as [`fingerprint`] formats it.
    pub fingerprint: String,
    /// The certificate file in use.
    pub cert_path: PathBuf,
}

/// The default state directory: `$XDG_STATE_HOME/ftp-server`, else
/// `$HOME/.local/state/ftp-server` (XDG Base Directory Specification).
pub fn default_state_dir() -> Option<PathBuf> {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").and_then(non_empty) {
        return Some(d.join("ftp-server"));
    }
    std::env::var_os("HOME")
        .and_then(non_empty)
        .map(|h| h.join(".local/state/ftp-server"))
}

/// The SHA-256 fingerprint of a DER certificate as `openssl x509 -fingerprint -sha256` prints
/// it: upper-case hex bytes joined by `:`. `ftp-client --pin-sha256` takes it as is.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex = hex::encode_upper(digest);
    hex.as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads (or, for a self-signed source, makes once) the certificate and builds the rustls
/// configuration.
pub fn load(source: &CertSource) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertSource::SelfSigned { state_dir } => ensure_self_signed(state_dir)?,
    };
    let cert_pem = std::fs::read(&cert_path).map_err(|source| TlsError::Read {
        what: "TLS certificate",
        path: cert_path.clone(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            what: "TLS certificate",
            path: cert_path.clone(),
            message: format!("not valid PEM ({e})"),
        })?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::Invalid {
            what: "TLS certificate",
            path: cert_path,
            message: "holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)".into(),
        });
    };
    let fingerprint = fingerprint(leaf.as_ref());
    let key_pem = std::fs::read(&key_path).map_err(|source| TlsError::Read {
        what: "TLS key",
        path: key_path.clone(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        what: "TLS key",
        path: key_path.clone(),
        message: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (expected a PEM \"BEGIN PRIVATE KEY\" block)".into()
            }
            e => format!("not a valid PEM private key ({e})"),
        },
    })?;
    let pair_err = |source| TlsError::Pair {
        cert: cert_path.clone(),
        key: key_path.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(pair_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(pair_err)?;
    // Resumption, so that data connections (and vsftpd-style `require_tls_reuse`) can resume
    // the control connection's session: session IDs for TLS 1.2, stateless tickets for 1.3.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(pair_err)?;
    Ok(TlsMaterial {
        server_config: Arc::new(config),
        fingerprint,
        cert_path,
    })
}

/// The self-signed certificate and key in `dir`, made on first use. The key is written with
/// mode 0600 and both files are written under temporary names and renamed, the certificate
/// last, so a crash never leaves a certificate without its key.
fn ensure_self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let fail = |message: String| TlsError::SelfSigned {
        dir: dir.to_path_buf(),
        message,
    };
    make_private_dir(dir).map_err(|e| fail(format!("creating the directory: {e}")))?;
    let host = hostname();
    let mut names = vec!["localhost".to_string()];
    if !host.is_empty() && host != "localhost" {
        names.push(host.clone());
    }
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| fail(format!("parameters: {e}")))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!(
            "ftp-server on {}",
            if host.is_empty() { "localhost" } else { &host }
        ),
    );
    params.subject_alt_names.extend([
        rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        rcgen::SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ]);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let pair = rcgen::KeyPair::generate().map_err(|e| fail(format!("key: {e}")))?;
    let made = params
        .self_signed(&pair)
        .map_err(|e| fail(format!("signing: {e}")))?;
    write_new(&key, pair.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| fail(format!("writing {}: {e}", key.display())))?;
    write_new(&cert, made.pem().as_bytes(), 0o644)
        .map_err(|e| fail(format!("writing {}: {e}", cert.display())))?;
    tracing::info!(cert = %cert.display(), "made a self-signed TLS certificate");
    Ok((cert, key))
}

/// Creates `dir` (and its parents) with mode 0700 where it does not exist.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to `path` through a temporary file created with `mode`, then renames it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// This machine's host name, for the self-signed certificate's names ("" if unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_openssl_style() {
        let f = fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF:8F:01:CF:EA"), "{f}");
    }

    #[test]
    fn self_signed_is_made_once_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("state/ftp-server");
        let source = CertSource::SelfSigned {
            state_dir: dir.clone(),
        };
        let a = load(&source).expect("made");
        let b = load(&source).expect("loaded");
        assert_eq!(a.fingerprint, b.fingerprint, "kept across restarts");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(SELF_SIGNED_KEY)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn errors_name_the_file_and_the_cause() {
        let d = tempfile::tempdir().expect("tempdir");
        let made = load(&CertSource::SelfSigned {
            state_dir: d.path().to_path_buf(),
        })
        .expect("made");
        let cert = made.cert_path;
        let key = d.path().join(SELF_SIGNED_KEY);
        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").expect("write");
        let other = tempfile::tempdir().expect("tempdir");
        load(&CertSource::SelfSigned {
            state_dir: other.path().to_path_buf(),
        })
        .expect("another");
        let other_key = other.path().join(SELF_SIGNED_KEY);
        let missing = d.path().join("missing.pem");
        let cases = [
            (missing.clone(), key.clone(), "cannot read TLS certificate"),
            (cert.clone(), missing.clone(), "cannot read TLS key"),
            (junk.clone(), key.clone(), "holds no certificate"),
            (cert.clone(), junk.clone(), "holds no private key"),
            (cert.clone(), other_key, "with key"),
        ];
        for (c, k, needle) in cases {
            let e = load(&CertSource::Files {
                cert: c.clone(),
                key: k.clone(),
            })
            .expect_err("refused");
            let msg = format!("{e}");
            assert!(msg.contains(needle), "{msg}");
            assert!(
                msg.contains(&c.display().to_string()) || msg.contains(&k.display().to_string()),
                "{msg}"
            );
        }
    }
}
