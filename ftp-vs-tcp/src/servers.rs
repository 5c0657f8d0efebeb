//! The servers, started in this process on loopback over one directory, each on a tokio
//! runtime of its own whose threads carry its name (`srv-tcp`, `srv-ftp`, `srv-tls` for FTPS) so that
//! [`crate::cpu::of_threads`] can tell their CPU time apart; and the files they serve.
//!
//! FTPS is a second ftp-server with a certificate (its own self-signed one, made in a
//! temporary state directory outside the served root), not the FTP one with TLS optional: each
//! protocol's server CPU time stays its own, and plain FTP is measured on a server that has no
//! TLS configured at all, as most are.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::oneshot;

/// Thread-name prefix of tcp-fileserv's runtime.
pub const TCP_THREADS: &str = "srv-tcp";
/// Thread-name prefix of ftp-server's runtime.
pub const FTP_THREADS: &str = "srv-ftp";
/// Thread-name prefix of the FTPS ftp-server's runtime (not `srv-ftps`:
/// [`crate::cpu::of_threads`] matches by prefix, and that would count it as FTP's).
pub const FTPS_THREADS: &str = "srv-tls";
/// The directory of the many-small-files scenario, below the served root.
pub const SMALL_DIR: &str = "small";

/// Why the servers could not be started.
#[derive(Debug, Error)]
pub enum StartError {
    /// Writing the files to serve failed.
    #[error("cannot write the files to serve in {0}")]
    Files(PathBuf, #[source] io::Error),
    /// A listener or a runtime could not be set up.
    #[error("cannot start {0}")]
    Server(&'static str, #[source] io::Error),
    /// ftp-server refused its configuration.
    #[error("ftp-server refused to start")]
    Ftp(#[source] ftp_server::ServerError),
    /// The FTPS server's certificate could not be made.
    #[error("cannot make the FTPS server's certificate")]
    Tls(#[source] ftp_server::tls::TlsError),
    /// The certificate's fingerprint did not parse as a pin (a bug).
    #[error("cannot pin the FTPS server's certificate: {0}")]
    Pin(String),
}

/// A file created to be served: its name below the root, size and SHA-256.
#[derive(Debug, Clone)]
pub struct Served {
    /// Name below the served root.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
}

/// Writes `size` pseudo-random bytes (a xorshift stream seeded by `seed`: incompressible,
/// different per file, cheap to make) to `path`, returning their SHA-256.
pub fn write_file(path: &Path, size: u64, seed: u64) -> io::Result<String> {
    let mut f = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut hash = Sha256::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for word in buf[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        hash.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(hex::encode(hash.finalize()))
}

/// The file name used for `size` bytes: `1K.bin`, `64K.bin`, `1M.bin`, `1000.bin`.
pub fn file_name(size: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if size >= 1 << shift && size % (1 << shift) == 0 {
            return format!("{}{unit}.bin", size >> shift);
        }
    }
    format!("{size}.bin")
}

/// Creates one file per size in `root`, and `small` files of 1 KiB in [`SMALL_DIR`].
pub fn create_files(root: &Path, sizes: &[u64], small: u32) -> Result<Vec<Served>, StartError> {
    let err = |e| StartError::Files(root.to_path_buf(), e);
    let mut out = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let name = file_name(size);
        let sha256 = write_file(&root.join(&name), size, i as u64 + 1).map_err(err)?;
        out.push(Served { name, size, sha256 });
    }
    if small > 0 {
        let dir = root.join(SMALL_DIR);
        std::fs::create_dir_all(&dir).map_err(err)?;
        for i in 0..small {
            write_file(&dir.join(small_name(i)), 1024, 1000 + u64::from(i)).map_err(err)?;
        }
    }
    Ok(out)
}

/// The name of small file number `i` in [`SMALL_DIR`].
pub fn small_name(i: u32) -> String {
    format!("{i:04}.bin")
}

/// One server on its own thread and runtime, stopped on drop.
#[derive(Debug)]
struct Running {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A runtime whose every thread (workers, blocking pool) is named `name`, and keeps idle
/// blocking threads for an hour so none takes its CPU count with it while we measure.
pub fn runtime(name: &'static str, workers: usize) -> io::Result<tokio::runtime::Runtime> {
    runtime_in(name, workers, None)
}

/// [`runtime`], with every thread in network namespace `ns` (see [`crate::netns`]).
pub fn runtime_in(
    name: &'static str,
    workers: usize,
    ns: Option<String>,
) -> io::Result<tokio::runtime::Runtime> {
    if let Some(n) = &ns {
        // Fail here, once, rather than in every thread.
        let n = n.clone();
        std::thread::spawn(move || crate::netns::enter(&n))
            .join()
            .map_err(|_| io::Error::other("namespace check panicked"))?
            .map_err(io::Error::other)?;
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(workers)
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all();
    if let Some(n) = ns {
        b.on_thread_start(move || {
            if let Err(e) = crate::netns::enter(&n) {
                tracing::error!(error = %e, "a runtime thread stays outside the namespace");
            }
        });
    }
    b.build()
}

fn spawn_server<F, Fut>(
    name: &'static str,
    listener: std::net::TcpListener,
    ns: Option<String>,
    serve: F,
) -> Result<Running, StartError>
where
    F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let err = |e| StartError::Server(name, e);
    listener.set_nonblocking(true).map_err(err)?;
    let rt = runtime_in(name, 2, ns.clone()).map_err(err)?;
    let (tx, rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(n) = ns {
                if let Err(e) = crate::netns::enter(&n) {
                    tracing::error!(error = %e, "{name}: stays outside the namespace");
                }
            }
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => serve(l, rx).await,
                    Err(e) => tracing::error!(error = %e, "{name}: cannot use the listener"),
                }
            });
        })
        .map_err(err)?;
    Ok(Running {
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// The servers, serving the same directory on loopback; stopped on drop.
#[derive(Debug)]
pub struct Servers {
    /// tcp-fileserv's address.
    pub tcp: SocketAddr,
    /// ftp-server's address (plain FTP).
    pub ftp: SocketAddr,
    /// The FTPS ftp-server's address (explicit FTPS: `AUTH TLS` on this port).
    pub ftps: SocketAddr,
    /// SHA-256 of the FTPS server's certificate, for [`ftp_client::tls::Trust::Pin`].
    pub ftps_pin: [u8; 32],
    _running: Vec<Running>,
    /// The FTPS server's state directory (its certificate); after the servers, removed.
    _state: tempfile::TempDir,
}

impl Servers {
    /// `name` in `dirs` on the plain FTP server, as the anonymous user.
    pub fn ftp_file(&self, dirs: Vec<String>, name: &str) -> crate::measure::FtpFile {
        crate::measure::FtpFile {
            host: self.ftp.ip().to_string(),
            port: self.ftp.port(),
            user: "anonymous".into(),
            password: "ftp-vs-tcp@".into(),
            dirs,
            name: name.to_owned(),
            tls: None,
        }
    }

    /// `name` on the FTPS server, its certificate pinned.
    pub fn ftps_file(&self, name: &str) -> crate::measure::FtpFile {
        crate::measure::FtpFile {
            port: self.ftps.port(),
            tls: Some(ftp_client::tls::Trust::Pin(self.ftps_pin)),
            ..self.ftp_file(Vec::new(), name)
        }
    }

    /// Starts tcp-fileserv and ftp-server (anonymous, read-only) over `root`, on
    /// `127.0.0.1:0`, with connection limits raised for `max_clients` at once.
    pub fn start(root: &Path, max_clients: usize) -> Result<Self, StartError> {
        Self::start_on(root, max_clients, Ipv4Addr::LOCALHOST, None)
    }

    /// [`Servers::start`] on `ip` (port 0), inside network namespace `ns` when given.
    pub fn start_on(
        root: &Path,
        max_clients: usize,
        ip: Ipv4Addr,
        ns: Option<String>,
    ) -> Result<Self, StartError> {
        let n = ns.clone();
        // Bound from a thread inside the namespace: a socket lives where its creator is.
        let bound = std::thread::spawn(move || {
            if let Some(n) = &n {
                crate::netns::enter(n).map_err(io::Error::other)?;
            }
            let bind = || std::net::TcpListener::bind((ip, 0));
            Ok::<_, io::Error>((bind()?, bind()?, bind()?))
        })
        .join()
        .map_err(|_| StartError::Server("servers", io::Error::other("bind thread panicked")))?;
        let (tcp_listener, ftp_listener, ftps_listener) =
            bound.map_err(|e| StartError::Server("tcp-fileserv and ftp-server", e))?;
        let tcp = tcp_listener
            .local_addr()
            .map_err(|e| StartError::Server("tcp-fileserv", e))?;
        let ftp = ftp_listener
            .local_addr()
            .map_err(|e| StartError::Server("ftp-server", e))?;
        let ftps = ftps_listener
            .local_addr()
            .map_err(|e| StartError::Server("ftp-server (FTPS)", e))?;

        // Both serve only the files this comparison made (or was given to compare), so every
        // name is served alike, dotfiles too: both servers hide them by default.
        let mut tcp_config = tcp_fileserv::server::ServerConfig::new(root.to_path_buf());
        tcp_config.max_connections = tcp_config.max_connections.max(max_clients + 8);
        tcp_config.hidden = true;
        let mut ftp_config = ftp_server::Config::new(root);
        ftp_config.hidden = true;
        ftp_config.max_connections = ftp_config.max_connections.max(max_clients + 8);
        ftp_config.max_connections_per_ip = ftp_config.max_connections_per_ip.max(max_clients + 8);
        // A configuration error should surface here, not in a log line from a thread: check it
        // by starting (and at once stopping) a background server with the same settings.
        drop(ftp_server::BackgroundServer::start(ftp_config.clone()).map_err(StartError::Ftp)?);

        // FTPS: the same settings plus ftp-server's own self-signed certificate, made here
        // first so that the client can pin its fingerprint. Anonymous logins may then use TLS
        // (the default for the anonymous class with a certificate is `optional`).
        let state = tempfile::Builder::new()
            .prefix("ftp-vs-tcp-tls.")
            .tempdir()
            .map_err(|e| StartError::Server("ftp-server (FTPS)", e))?;
        let source = ftp_server::config::CertSource::SelfSigned {
            state_dir: state.path().to_path_buf(),
        };
        let material = ftp_server::tls::load(&source).map_err(StartError::Tls)?;
        let ftps_pin =
            ftp_client::tls::parse_pin(&material.fingerprint).map_err(StartError::Pin)?;
        let mut ftps_config = ftp_config.clone();
        ftps_config.tls = Some(ftp_server::config::TlsSettings {
            source,
            implicit_bind: None,
            require_reuse: false,
        });

        let running = vec![
            spawn_server(
                TCP_THREADS,
                tcp_listener,
                ns.clone(),
                move |l, stop| async move {
                    if let Err(e) = tcp_fileserv::server::run(l, tcp_config, stop).await {
                        tracing::error!(error = %e, "tcp-fileserv stopped");
                    }
                },
            )?,
            spawn_server(
                FTP_THREADS,
                ftp_listener,
                ns.clone(),
                move |l, stop| async move {
                    let stop = async {
                        let _ = stop.await;
                    };
                    if let Err(e) = ftp_server::run(l, ftp_config, stop).await {
                        tracing::error!(error = %e, "ftp-server stopped");
                    }
                },
            )?,
            spawn_server(FTPS_THREADS, ftps_listener, ns, move |l, stop| async move {
                let stop = async {
                    let _ = stop.await;
                };
                if let Err(e) = ftp_server::run(l, ftps_config, stop).await {
                    tracing::error!(error = %e, "ftp-server (FTPS) stopped");
                }
            })?,
        ];
        Ok(Self {
            tcp,
            ftp,
            ftps,
            ftps_pin,
            _running: running,
            _state: state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_have_the_size_and_hash_they_claim() {
        let dir = tempfile::tempdir().unwrap();
        let served = create_files(dir.path(), &[1024, 70_000], 3).unwrap();
        for s in &served {
            let bytes = std::fs::read(dir.path().join(&s.name)).unwrap();
            assert_eq!(bytes.len() as u64, s.size);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), s.sha256);
        }
        assert_ne!(served[0].sha256, served[1].sha256);
        assert_eq!(served[1].name, "70000.bin");
        assert_eq!(
            std::fs::read_dir(dir.path().join(SMALL_DIR))
                .unwrap()
                .count(),
            3
        );
        assert_eq!(file_name(1 << 30), "1G.bin");
    }
}
