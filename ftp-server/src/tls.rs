//! FTPS (RFC 4217): the server's certificate and its rustls configuration, built once per
//! server and shared by every session (so TLS sessions made on a control connection can be
//! resumed by its data connections, and by the next session of the same client).
//!
//! The certificate comes from PEM files (`tls_cert`, `tls_key`) or is self-signed: made on
//! first start with rcgen and kept in a state directory (`$XDG_STATE_HOME/ftp-server`, else
//! `~/.local/state/ftp-server`), so that its SHA-256 fingerprint, printed in the start-up
//! banner, stays the same across restarts and clients can pin it (`ftp-client --pin-sha256`).
//! TLS 1.2 and 1.3 only (all rustls speaks).
//!
//! The certificate's validity is checked at start-up. One that has expired, is not valid yet
//! or expires within [`EXPIRY_WARNING_DAYS`] days gets a warning that names the file and the
//! dates, in the log and in the banner. The server still starts, as nginx and vsftpd do (they
//! say nothing): plain FTP and anonymous access do not need the certificate, a wrong clock
//! should not take a LAN server down, and no security is lost, since clients refuse the
//! certificate themselves (curl exit 60). An expired self-signed certificate is made anew
//! instead; its fingerprint changes, and the warning prints both.

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

/// A certificate that expires within this many days gets a warning at start-up.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

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
    /// Warnings for the operator (already logged): a certificate about to expire, a renewed
    /// self-signed one.
    pub warnings: Vec<String>,
}

/// Where a certificate stands in its validity period at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid for more than [`EXPIRY_WARNING_DAYS`] days.
    Good,
    /// Valid, but expires within [`EXPIRY_WARNING_DAYS`] days.
    ExpiresSoon,
    /// Past its notAfter.
    Expired,
    /// Before its notBefore.
    NotYetValid,
}

/// The validity period (notBefore, notAfter) of a DER certificate.
pub fn validity_period(der: &[u8]) -> Result<(time::OffsetDateTime, time::OffsetDateTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
    let v = cert.validity();
    Ok((v.not_before.to_datetime(), v.not_after.to_datetime()))
}

/// Classifies a validity period at `now`.
pub fn validity_at(
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> Validity {
    if now < not_before {
        Validity::NotYetValid
    } else if now > not_after {
        Validity::Expired
    } else if not_after - now < time::Duration::days(EXPIRY_WARNING_DAYS) {
        Validity::ExpiresSoon
    } else {
        Validity::Good
    }
}

/// A date for messages: `2026-11-29 23:59:59 UTC`.
fn day(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_else(|_| t.to_string())
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
    let now = time::OffsetDateTime::now_utc();
    let mut warnings = Vec::new();
    let (cert_path, key_path) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertSource::SelfSigned { state_dir } => {
            let (cert, key) = ensure_self_signed(state_dir, now)?;
            if let Some(w) = renew_if_expired(state_dir, &cert, now)? {
                warnings.push(w);
            }
            (cert, key)
        }
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
    let (not_before, not_after) =
        validity_period(leaf.as_ref()).map_err(|message| TlsError::Invalid {
            what: "TLS certificate",
            path: cert_path.clone(),
            message,
        })?;
    let period = format!(
        "valid from {} to {}, and it is now {}",
        day(not_before),
        day(not_after),
        day(now)
    );
    let path = cert_path.display();
    match validity_at(not_before, not_after, now) {
        Validity::Expired => warnings.push(format!(
            "TLS certificate {path} HAS EXPIRED ({period}): clients that check it will refuse \
             every TLS connection; renew it"
        )),
        Validity::NotYetValid => warnings.push(format!(
            "TLS certificate {path} IS NOT VALID YET ({period}): clients that check it will \
             refuse every TLS connection; is this machine's clock right?"
        )),
        Validity::ExpiresSoon => warnings.push(format!(
            "TLS certificate {path} expires in {} days ({period}): renew it",
            (not_after - now).whole_days()
        )),
        Validity::Good => {}
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
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
        warnings,
    })
}

/// An expired self-signed certificate in `dir` is replaced by a new one (an expired one would
/// make every start-up fail, and nobody else renews it). Returns the warning that says so,
/// with the old and the new fingerprint: clients that pinned the old one must pin the new.
fn renew_if_expired(
    dir: &Path,
    cert: &Path,
    now: time::OffsetDateTime,
) -> Result<Option<String>, TlsError> {
    let Ok(pem) = std::fs::read(cert) else {
        return Ok(None); // load() reports the unreadable file.
    };
    let Some(Ok(der)) = CertificateDer::pem_slice_iter(&pem).next() else {
        return Ok(None);
    };
    let Ok((not_before, not_after)) = validity_period(der.as_ref()) else {
        return Ok(None);
    };
    if validity_at(not_before, not_after, now) != Validity::Expired {
        return Ok(None);
    }
    let old = fingerprint(der.as_ref());
    make_self_signed(dir, now)?;
    let new = std::fs::read(cert)
        .ok()
        .and_then(|p| CertificateDer::pem_slice_iter(&p).next()?.ok())
        .map(|d| fingerprint(d.as_ref()))
        .unwrap_or_default();
    Ok(Some(format!(
        "the self-signed TLS certificate {} expired on {}: made a new one; its SHA-256 \
         fingerprint changed from {old} to {new} (clients that pinned the old one must pin the new one)",
        cert.display(),
        day(not_after)
    )))
}

/// The self-signed certificate and key in `dir`, made on first use. The key is written with
/// mode 0600 and both files are written under temporary names and renamed, the certificate
/// last, so a crash never leaves a certificate without its key.
fn ensure_self_signed(
    dir: &Path,
    now: time::OffsetDateTime,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    make_self_signed(dir, now)
}

/// Makes (or replaces) the self-signed certificate and key in `dir`, valid from a day before
/// `now` for ten years.
fn make_self_signed(dir: &Path, now: time::OffsetDateTime) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
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

    /// A certificate and key made by rcgen, valid from `from` to `to` days after now, written
    /// into `dir` under hostile names; returns the source.
    fn cert_valid(dir: &Path, from: i64, to: i64) -> CertSource {
        let now = time::OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let pair = rcgen::KeyPair::generate().expect("key");
        let made = params.self_signed(&pair).expect("signed");
        let cert = dir.join(format!("cert {from} 'ünï\\ $x.pem"));
        let key = dir.join(format!("key {from} \"-k\".pem"));
        std::fs::write(&cert, made.pem()).expect("write cert");
        std::fs::write(&key, pair.serialize_pem()).expect("write key");
        CertSource::Files { cert, key }
    }

    #[test]
    fn validity_periods_are_classified() {
        let now = time::OffsetDateTime::now_utc();
        let d = time::Duration::days;
        assert_eq!(validity_at(now - d(1), now + d(365), now), Validity::Good);
        assert_eq!(
            validity_at(now - d(1), now + d(29), now),
            Validity::ExpiresSoon
        );
        assert_eq!(validity_at(now - d(1), now + d(31), now), Validity::Good);
        assert_eq!(validity_at(now - d(9), now - d(1), now), Validity::Expired);
        assert_eq!(
            validity_at(now + d(1), now + d(9), now),
            Validity::NotYetValid
        );
    }

    #[test]
    fn certificates_out_of_date_or_nearly_start_with_a_warning_naming_file_and_dates() {
        let d = tempfile::tempdir().expect("tempdir");
        let now = time::OffsetDateTime::now_utc();
        for (from, to, state) in [
            (-30, -2, "HAS EXPIRED"),
            (3, 400, "IS NOT VALID YET"),
            (-300, 12, "expires in 11 days"),
        ] {
            let source = cert_valid(d.path(), from, to);
            let m = load(&source).expect("starts anyway");
            assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
            let w = &m.warnings[0];
            assert!(w.contains(&m.cert_path.display().to_string()), "{w}");
            assert!(w.contains(state), "{w}");
            for days in [from, to] {
                let date = day(now + time::Duration::days(days));
                assert!(w.contains(&date[..10]), "{w} lacks {date}");
            }
        }
        let fine = cert_valid(d.path(), -1, 90);
        assert_eq!(load(&fine).expect("valid").warnings, Vec::<String>::new());
    }

    #[test]
    fn an_expired_self_signed_certificate_is_renewed_and_its_new_fingerprint_printed() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("state");
        let now = time::OffsetDateTime::now_utc();
        // Made eleven years ago: valid for ten, so expired a year ago.
        make_self_signed(&dir, now - time::Duration::days(11 * 365)).expect("old one");
        let old = fingerprint(
            CertificateDer::from_pem_file(dir.join(SELF_SIGNED_CERT))
                .expect("pem")
                .as_ref(),
        );
        let source = CertSource::SelfSigned {
            state_dir: dir.clone(),
        };
        let m = load(&source).expect("renewed");
        assert_ne!(m.fingerprint, old);
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        let w = &m.warnings[0];
        assert!(w.contains(&old) && w.contains(&m.fingerprint), "{w}");
        assert!(w.contains("expired"), "{w}");
        // Kept: the next start uses the new one, without a warning.
        let again = load(&source).expect("loaded");
        assert_eq!(again.fingerprint, m.fingerprint);
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    }
}
