//! The comparison itself: creates the files, starts the servers, runs every download in turn
//! (TCP, FTP then FTPS, run after run, so that a change in the machine's load hits all alike),
//! checks the bytes, then the scenarios; returns a [`Report`].

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tcp_fileserv::client::Client;
use tcp_fileserv::config::HostPort;
use thiserror::Error;

use crate::config::{Config, LinkSpec, Target, size_label};
use crate::cpu;
use crate::measure::{
    Events, FtpFile, MeasureError, Protocol, Sample, ftp_get, ftp_login, ftp_retr, round_trips,
    tcp_get, tcp_more,
};
use crate::netns::{Link, LinkError, SERVER_IP};
use crate::report::{
    CPU_METHOD, FTPS_HOW, FTPS_REMOTE, Report, ScenarioRow, Shaped, SizeRow, fill_ratios, median,
    size_row,
};
use crate::servers::{
    self, FTP_THREADS, FTPS_THREADS, SMALL_DIR, Servers, StartError, TCP_THREADS,
};

/// Thread-name prefix of the FTP client's runtime.
pub const FTP_CLIENT_THREADS: &str = "cli-ftp";
/// Name of each TCP client thread.
pub const TCP_CLIENT_THREAD: &str = "cli-tcp";
/// The largest file the concurrency scenario gives each client.
pub const CONCURRENT_MAX_SIZE: u64 = 16 << 20;
/// Uncounted downloads of each protocol before the first counted one.
pub const WARM_UP: u32 = 20;
/// Size of each file of the many-small-files scenario.
pub const SMALL_SIZE: u64 = 1024;

/// Why the comparison stopped.
#[derive(Debug, Error)]
pub enum RunError {
    /// The servers or their files could not be set up.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The shaped link could not be made.
    #[error("cannot make the shaped link")]
    Link(#[from] LinkError),
    /// The FTP client's runtime could not be started.
    #[error("cannot start the FTP client's runtime")]
    Runtime(#[source] io::Error),
    /// A download failed.
    #[error("{what}")]
    Download {
        /// Which download.
        what: String,
        /// Why (boxed: a client error is large, and this one is rare).
        #[source]
        source: Box<MeasureError>,
    },
    /// A download did not deliver the file's bytes.
    #[error("{what}: the bytes differ from {against} (SHA-256 {got} against {want})")]
    Differ {
        /// Which download.
        what: String,
        /// What it was compared with.
        against: String,
        /// The hash of what arrived.
        got: String,
        /// The hash expected.
        want: String,
    },
}

fn failed(what: impl Into<String>) -> impl FnOnce(MeasureError) -> RunError {
    let what = what.into();
    move |source| RunError::Download {
        what,
        source: Box::new(source),
    }
}

/// A job for a TCP client thread.
type Job = Box<dyn FnOnce() + Send>;

/// The TCP client's threads, named [`TCP_CLIENT_THREAD`] (the client blocks), kept from one
/// download to the next, as the FTP client's runtime threads are: a fresh thread per download
/// would charge raw TCP for first touching its 8 MiB receive buffer (measured: the first byte of
/// a 16 MiB download came 2 ms later) while FTP ran on warm threads.
struct TcpClients {
    ns: Option<String>,
    workers: std::sync::Mutex<Vec<std::sync::mpsc::Sender<Job>>>,
}

impl TcpClients {
    fn new(ns: Option<String>) -> Self {
        Self {
            ns,
            workers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs each job on its own worker thread (starting more workers as needed), all at once,
    /// and returns their results in order.
    fn run<T: Send + 'static>(
        &self,
        jobs: Vec<Box<dyn FnOnce() -> Result<T, MeasureError> + Send>>,
    ) -> Result<Vec<T>, MeasureError> {
        let mut workers = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while workers.len() < jobs.len() {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let ns = self.ns.clone();
            std::thread::Builder::new()
                .name(TCP_CLIENT_THREAD.into())
                .spawn(move || {
                    if let Some(n) = ns {
                        if let Err(e) = crate::netns::enter(&n) {
                            tracing::error!(error = %e, "a TCP client thread stays outside");
                            return;
                        }
                    }
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .map_err(MeasureError::Spawn)?;
            workers.push(tx);
        }
        let n = jobs.len();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for (i, (job, w)) in jobs.into_iter().zip(workers.iter()).enumerate() {
            let done = done_tx.clone();
            w.send(Box::new(move || {
                let _ = done.send((i, job()));
            }))
            .map_err(|_| MeasureError::Spawn(io::Error::other("a TCP client thread ended")))?;
        }
        drop(done_tx);
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        for _ in 0..n {
            let (i, r) = done_rx
                .recv()
                .map_err(|_| MeasureError::Spawn(io::Error::other("a TCP client thread died")))?;
            out[i] = Some(r?);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Runs one job on a worker thread.
    fn one<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, MeasureError> + Send + 'static,
    ) -> Result<T, MeasureError> {
        let mut v = self.run(vec![Box::new(job)])?;
        v.pop()
            .ok_or_else(|| MeasureError::Spawn(io::Error::other("no result")))
    }
}

/// The machinery of a local or remote comparison.
struct Bench {
    rt: tokio::runtime::Runtime,
    timeout: Duration,
    bar: ProgressBar,
    /// Server thread-name prefixes (`None`: remote servers, CPU unknown).
    local: bool,
    /// The TCP client's threads.
    tcp: TcpClients,
}

impl Bench {
    fn ftp<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, MeasureError>> + Send + 'static,
    ) -> Result<T, MeasureError> {
        // Spawned, not run by block_on on this thread: the work must happen on the runtime's
        // own (named) threads to be counted as the client's.
        self.rt.block_on(async {
            tokio::spawn(fut)
                .await
                .map_err(|e| MeasureError::Spawn(io::Error::other(e.to_string())))?
        })
    }

    /// Runs `f`, returning its result and the server CPU time of `p` it caused (zero remote).
    fn with_server_cpu<T>(&self, p: Protocol, f: impl FnOnce() -> T) -> (T, Duration) {
        let prefix = match p {
            Protocol::Tcp => TCP_THREADS,
            Protocol::Ftp => FTP_THREADS,
            Protocol::Ftps => FTPS_THREADS,
        };
        if !self.local {
            return (f(), Duration::ZERO);
        }
        let before = cpu::of_threads(prefix);
        let out = f();
        (out, cpu::of_threads(prefix).saturating_sub(before))
    }

    fn tcp_one(
        &self,
        addr: &HostPort,
        name: &str,
        hash: bool,
    ) -> Result<(Sample, Duration), MeasureError> {
        let (addr, name, timeout) = (addr.clone(), name.to_owned(), self.timeout);
        let (r, cpu) = self.with_server_cpu(Protocol::Tcp, || {
            self.tcp.one(move || tcp_get(&addr, &name, hash, timeout))
        });
        Ok((r?, cpu))
    }

    fn ftp_one(&self, f: &FtpFile, hash: bool) -> Result<(Sample, Duration), MeasureError> {
        let protocol = if f.tls.is_some() {
            Protocol::Ftps
        } else {
            Protocol::Ftp
        };
        let (f, timeout) = (f.clone(), self.timeout);
        let before = cpu::of_threads(FTP_CLIENT_THREADS);
        let (r, cpu) = self.with_server_cpu(protocol, || {
            self.ftp(async move { ftp_get(&f, hash, timeout).await })
        });
        let mut s = r?;
        s.client_cpu = cpu::of_threads(FTP_CLIENT_THREADS).saturating_sub(before);
        Ok((s, cpu))
    }
}

/// What one size is compared on.
struct Pair {
    size: u64,
    label: String,
    tcp: HostPort,
    tcp_name: String,
    ftp: FtpFile,
    /// The same file over FTPS (`None`: not measured).
    ftps: Option<FtpFile>,
    /// The expected SHA-256 (`None` remote: the two downloads are compared with each other).
    sha256: Option<String>,
}

fn check(what: &str, got: Option<String>, want: &str, against: &str) -> Result<(), RunError> {
    let got = got.unwrap_or_default();
    if got == want {
        Ok(())
    } else {
        Err(RunError::Differ {
            what: what.to_owned(),
            against: against.to_owned(),
            got,
            want: want.to_owned(),
        })
    }
}

fn measure_pair(b: &Bench, p: &Pair, runs: u32) -> Result<Vec<SizeRow>, RunError> {
    let tcp_what = format!("TCP download of {} ({})", p.tcp_name, p.label);
    let ftp_what = format!("FTP download of {} ({})", p.ftp.name, p.label);
    let ftps_what = format!("FTPS download of {} ({})", p.ftp.name, p.label);
    b.bar
        .set_message(format!("{}: checking the bytes", p.label));
    // The first download of each is hashed (and warms every cache); it is not counted.
    let (t, _) = b
        .tcp_one(&p.tcp, &p.tcp_name, true)
        .map_err(failed(&tcp_what))?;
    b.bar.inc(1);
    let (f, _) = b.ftp_one(&p.ftp, true).map_err(failed(&ftp_what))?;
    b.bar.inc(1);
    let secure = match &p.ftps {
        Some(file) => {
            let (s, _) = b.ftp_one(file, true).map_err(failed(&ftps_what))?;
            b.bar.inc(1);
            Some(s.sha256)
        }
        None => None,
    };
    match &p.sha256 {
        Some(want) => {
            check(&tcp_what, t.sha256, want, "the served file")?;
            check(&ftp_what, f.sha256, want, "the served file")?;
            if let Some(got) = secure {
                check(&ftps_what, got, want, "the served file")?;
            }
        }
        None => check(
            &ftp_what,
            f.sha256,
            t.sha256.as_deref().unwrap_or_default(),
            "the TCP download",
        )?,
    }
    let (mut ts, mut fs, mut ss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tcpu, mut fcpu, mut scpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for i in 0..runs {
        b.bar
            .set_message(format!("{}: run {}/{runs}", p.label, i + 1));
        let (s, c) = b
            .tcp_one(&p.tcp, &p.tcp_name, false)
            .map_err(failed(&tcp_what))?;
        ts.push(s);
        tcpu += c;
        b.bar.inc(1);
        let (s, c) = b.ftp_one(&p.ftp, false).map_err(failed(&ftp_what))?;
        fs.push(s);
        fcpu += c;
        b.bar.inc(1);
        if let Some(file) = &p.ftps {
            let (s, c) = b.ftp_one(file, false).map_err(failed(&ftps_what))?;
            ss.push(s);
            scpu += c;
            b.bar.inc(1);
        }
    }
    let scpu = b.local.then_some(scpu);
    let (tcp_path, ftp_path, tcpu, fcpu) = if b.local {
        // tcp-fileserv sends a body of up to 64 KiB with its header in one write; larger ones
        // go through filexfer's send_range, which uses sendfile on a plain TCP socket.
        // ftp-server gets a boxed writer from libunftp, so send_range copies.
        let tcp_path = if p.size <= 64 << 10 {
            "one write"
        } else {
            "sendfile"
        };
        (tcp_path, "buffered copy", Some(tcpu), Some(fcpu))
    } else {
        ("unknown", "unknown", None, None)
    };
    let mut rows = vec![
        size_row(Protocol::Tcp, p.size, tcp_path, ts, tcpu, true),
        size_row(Protocol::Ftp, p.size, ftp_path, fs, fcpu, true),
    ];
    if p.ftps.is_some() {
        // rustls encrypts from ftp-server's buffer: the same copy, plus AES-GCM.
        rows.push(size_row(
            Protocol::Ftps,
            p.size,
            "buffered copy + TLS",
            ss,
            scpu,
            true,
        ));
    }
    Ok(rows)
}

/// One scenario's runs: `f` returns (wall time, round trips, client CPU) per run.
#[allow(clippy::too_many_arguments)]
fn scenario(
    b: &Bench,
    protocol: Protocol,
    name: String,
    group: &str,
    files: u32,
    clients: usize,
    size: u64,
    runs: u32,
    mut f: impl FnMut() -> Result<(Duration, u32, Duration), MeasureError>,
) -> Result<ScenarioRow, RunError> {
    let (mut walls, mut scpu, mut ccpu, mut rts) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        b.bar.set_message(name.clone());
        let (r, server) = b.with_server_cpu(protocol, &mut f);
        let (wall, rt, client) = r.map_err(failed(format!("{} {name}", protocol.label())))?;
        walls.push(wall.as_secs_f64());
        scpu.push(server.as_secs_f64());
        ccpu.push(client.as_secs_f64());
        rts = rt;
        b.bar.inc(1);
    }
    let median_s = median(&walls);
    let total = size * u64::from(files) * clients as u64;
    Ok(ScenarioRow {
        scenario: name,
        protocol,
        files,
        clients,
        size,
        runs: walls.len(),
        median_s,
        mb_per_s: if median_s > 0.0 {
            total as f64 / median_s / 1e6
        } else {
            0.0
        },
        round_trips: rts,
        server_cpu_s: Some(median(&scpu)),
        client_cpu_s: Some(median(&ccpu)),
        ratio_to_tcp: 0.0,
        group: group.to_owned(),
    })
}

fn many_small(
    b: &Bench,
    tcp: &HostPort,
    ftp: &FtpFile,
    n: u32,
    runs: u32,
) -> Result<Vec<ScenarioRow>, RunError> {
    let names: Arc<Vec<String>> = Arc::new((0..n).map(servers::small_name).collect());
    let tcp_names: Arc<Vec<String>> =
        Arc::new(names.iter().map(|f| format!("{SMALL_DIR}/{f}")).collect());
    let timeout = b.timeout;
    let one = format!("{n} x 1 KiB, one connection or session");
    let each = format!("{n} x 1 KiB, a connection or session per file");
    let mut rows = Vec::new();

    let (addr, list) = (tcp.clone(), tcp_names.clone());
    rows.push(scenario(
        b,
        Protocol::Tcp,
        format!("{n} x 1 KiB, one connection"),
        &one,
        n,
        1,
        SMALL_SIZE,
        runs,
        || {
            let (addr, list) = (addr.clone(), list.clone());
            b.tcp.one(move || {
                let cpu0 = cpu::this_thread();
                let t0 = Instant::now();
                let mut c = Client::connect(&addr, timeout)?;
                for name in list.iter() {
                    tcp_more(&mut c, name, false, t0)?;
                }
                Ok((
                    t0.elapsed(),
                    1 + list.len() as u32,
                    cpu::this_thread().saturating_sub(cpu0),
                ))
            })
        },
    )?);

    let (f, list) = (ftp.clone(), names.clone());
    rows.push(scenario(
        b,
        Protocol::Ftp,
        format!("{n} x 1 KiB, one session"),
        &one,
        n,
        1,
        SMALL_SIZE,
        runs,
        || {
            let (f, list) = (f.clone(), list.clone());
            let c0 = cpu::of_threads(FTP_CLIENT_THREADS);
            let (wall, rt) = b.ftp(async move {
                let events = Events::default();
                let t0 = Instant::now();
                let (mut s, _) = ftp_login(&f, timeout, &events, t0).await?;
                for name in list.iter() {
                    ftp_retr(&mut s, name, false, false, t0).await?;
                }
                let wall = t0.elapsed();
                let rt = round_trips(&events.take(), true);
                s.quit().await;
                Ok((wall, rt))
            })?;
            Ok((
                wall,
                rt,
                cpu::of_threads(FTP_CLIENT_THREADS).saturating_sub(c0),
            ))
        },
    )?);

    let (addr, list) = (tcp.clone(), tcp_names.clone());
    rows.push(scenario(
        b,
        Protocol::Tcp,
        format!("{n} x 1 KiB, a connection per file"),
        &each,
        n,
        1,
        SMALL_SIZE,
        runs,
        || {
            let (addr, list) = (addr.clone(), list.clone());
            b.tcp.one(move || {
                let cpu0 = cpu::this_thread();
                let t0 = Instant::now();
                let mut rt = 0;
                for name in list.iter() {
                    rt += tcp_get(&addr, name, false, timeout)?.round_trips;
                }
                Ok((t0.elapsed(), rt, cpu::this_thread().saturating_sub(cpu0)))
            })
        },
    )?);

    let (f, list) = (ftp.clone(), names);
    rows.push(scenario(
        b,
        Protocol::Ftp,
        format!("{n} x 1 KiB, a session per file"),
        &each,
        n,
        1,
        SMALL_SIZE,
        runs,
        || {
            let (f, list) = (f.clone(), list.clone());
            let c0 = cpu::of_threads(FTP_CLIENT_THREADS);
            let (wall, rt) = b.ftp(async move {
                let t0 = Instant::now();
                let mut rt = 0;
                for name in list.iter() {
                    let file = FtpFile {
                        name: name.clone(),
                        ..f.clone()
                    };
                    rt += ftp_get(&file, false, timeout).await?.round_trips;
                }
                Ok((t0.elapsed(), rt))
            })?;
            Ok((
                wall,
                rt,
                cpu::of_threads(FTP_CLIENT_THREADS).saturating_sub(c0),
            ))
        },
    )?);
    Ok(rows)
}

fn concurrent(
    b: &Bench,
    p: &Pair,
    clients: &[usize],
    runs: u32,
) -> Result<Vec<ScenarioRow>, RunError> {
    let timeout = b.timeout;
    let mut rows = Vec::new();
    for &n in clients {
        let group = format!("{n} clients x {}", p.label);
        let (addr, name) = (p.tcp.clone(), p.tcp_name.clone());
        rows.push(scenario(
            b,
            Protocol::Tcp,
            format!(
                "{n} {} at once x {}",
                if n == 1 { "client" } else { "clients" },
                p.label
            ),
            &group,
            1,
            n,
            p.size,
            runs,
            || {
                let jobs: Vec<Box<dyn FnOnce() -> Result<Sample, MeasureError> + Send>> = (0..n)
                    .map(|_| {
                        let (addr, name) = (addr.clone(), name.clone());
                        Box::new(move || tcp_get(&addr, &name, false, timeout)) as Box<_>
                    })
                    .collect();
                let t0 = Instant::now();
                let results = b.tcp.run(jobs);
                let wall = t0.elapsed();
                let samples = results?;
                let rt = samples.iter().map(|s| s.round_trips).max().unwrap_or(0);
                let cpu = samples.iter().map(|s| s.client_cpu).sum();
                Ok((wall, rt, cpu))
            },
        )?);
        let f = p.ftp.clone();
        rows.push(scenario(
            b,
            Protocol::Ftp,
            format!(
                "{n} {} at once x {}",
                if n == 1 { "client" } else { "clients" },
                p.label
            ),
            &group,
            1,
            n,
            p.size,
            runs,
            || {
                let f = f.clone();
                let c0 = cpu::of_threads(FTP_CLIENT_THREADS);
                let (wall, rt) = b.ftp(async move {
                    let t0 = Instant::now();
                    let tasks: Vec<_> = (0..n)
                        .map(|_| {
                            let f = f.clone();
                            tokio::spawn(async move { ftp_get(&f, false, timeout).await })
                        })
                        .collect();
                    let mut rt = 0;
                    for t in tasks {
                        let s = t
                            .await
                            .map_err(|e| MeasureError::Spawn(io::Error::other(e.to_string())))??;
                        rt = rt.max(s.round_trips);
                    }
                    Ok((t0.elapsed(), rt))
                })?;
                Ok((
                    wall,
                    rt,
                    cpu::of_threads(FTP_CLIENT_THREADS).saturating_sub(c0),
                ))
            },
        )?);
    }
    Ok(rows)
}

/// The largest size measured over the shaped link: at 100mbit a 1 GiB file would take 90 s a
/// download.
pub const SHAPED_MAX_SIZE: u64 = 16 << 20;

/// The sizes (up to [`SHAPED_MAX_SIZE`]) and the small-files scenario again, with the servers
/// in one network namespace and the clients in another, over the shaped veth pair.
fn shaped(
    config: &Config,
    spec: &LinkSpec,
    workdir: &Path,
    served: &[servers::Served],
    small: u32,
    bar: &ProgressBar,
) -> Result<Shaped, RunError> {
    bar.set_message(format!("making the {} link", spec.rate));
    let link = Link::create(&spec.rate, spec.delay_ms)?;
    let srv = Servers::start_on(workdir, 8, SERVER_IP, Some(link.server_ns.clone()))?;
    let rt = servers::runtime_in(FTP_CLIENT_THREADS, 2, Some(link.client_ns.clone()))
        .map_err(RunError::Runtime)?;
    let b = Bench {
        rt,
        timeout: config.timeout,
        bar: bar.clone(),
        local: true,
        tcp: TcpClients::new(Some(link.client_ns.clone())),
    };
    let ftp_file = |dirs: Vec<String>, name: &str| srv.ftp_file(dirs, name);
    let ftps_file = |name: &str| srv.ftps_file(name);
    let mut out = Shaped {
        link: format!(
            "{}, {} ms added each way (tbf{}, a veth pair between two network namespaces)",
            spec.rate,
            spec.delay_ms,
            if spec.delay_ms > 0 {
                " under netem"
            } else {
                ""
            }
        ),
        sizes: Vec::new(),
        scenarios: Vec::new(),
    };
    let sizes = match &config.target {
        Target::Local { sizes } => sizes.clone(),
        Target::Remote { .. } => Vec::new(),
    };
    for s in served
        .iter()
        .filter(|s| sizes.contains(&s.size) && s.size <= SHAPED_MAX_SIZE)
    {
        let p = Pair {
            size: s.size,
            label: size_label(s.size),
            tcp: HostPort::from(srv.tcp),
            tcp_name: s.name.clone(),
            ftp: ftp_file(Vec::new(), &s.name),
            ftps: Some(ftps_file(&s.name)),
            sha256: Some(s.sha256.clone()),
        };
        out.sizes.extend(measure_pair(&b, &p, config.runs)?);
    }
    if small > 0 {
        let f = ftp_file(vec![SMALL_DIR.to_owned()], "");
        out.scenarios.extend(many_small(
            &b,
            &HostPort::from(srv.tcp),
            &f,
            small,
            config.runs,
        )?);
    }
    // Servers and client threads first, then the namespaces they live in.
    drop(b);
    drop(srv);
    drop(link);
    Ok(out)
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    // Drawn on stderr, and only on a terminal (indicatif hides itself otherwise).
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs the comparison `config` asks for; a local one creates its files in `workdir` (which the
/// caller removes).
pub fn run(config: &Config, workdir: &Path) -> Result<Report, RunError> {
    let rt = servers::runtime(FTP_CLIENT_THREADS, 2).map_err(RunError::Runtime)?;
    let runs = config.runs;
    match &config.target {
        Target::Local { sizes } => {
            let small = if config.scenarios {
                config.small_files
            } else {
                0
            };
            let conc_size = sizes
                .iter()
                .copied()
                .filter(|&s| s <= CONCURRENT_MAX_SIZE)
                .max()
                .unwrap_or_else(|| sizes.iter().copied().min().unwrap_or(SMALL_SIZE));
            let steps = sizes.len() as u64 * 3 * (1 + u64::from(runs))
                + if config.scenarios {
                    u64::from(runs)
                        * (if small > 0 { 4 } else { 0 } + 2 * config.clients.len() as u64)
                } else {
                    0
                }
                + if config.link.is_some() {
                    let shaped = sizes.iter().filter(|&&s| s <= SHAPED_MAX_SIZE).count() as u64;
                    shaped * 3 * (1 + u64::from(runs))
                        + if small > 0 { 4 * u64::from(runs) } else { 0 }
                } else {
                    0
                };
            let bar = progress_bar(config.progress, steps);
            bar.set_message("writing the files");
            let mut all = sizes.clone();
            if config.scenarios && !all.contains(&conc_size) {
                all.push(conc_size);
            }
            let served = servers::create_files(workdir, &all, small)?;
            let max_clients = config.clients.iter().copied().max().unwrap_or(1);
            let srv = Servers::start(workdir, max_clients)?;
            let b = Bench {
                rt,
                timeout: config.timeout,
                bar,
                local: true,
                tcp: TcpClients::new(None),
            };
            let ftp_file = |dirs: Vec<String>, name: &str| srv.ftp_file(dirs, name);
            let ftps_file = |name: &str| srv.ftps_file(name);
            let pair = |s: &servers::Served| Pair {
                size: s.size,
                label: size_label(s.size),
                tcp: HostPort::from(srv.tcp),
                tcp_name: s.name.clone(),
                ftp: ftp_file(Vec::new(), &s.name),
                ftps: Some(ftps_file(&s.name)),
                sha256: Some(s.sha256.clone()),
            };
            let mut report = Report {
                target: "loopback, both servers in this process".into(),
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
                cpu_method: CPU_METHOD,
                sizes: Vec::new(),
                scenarios: Vec::new(),
                ftps: FTPS_HOW.into(),
                shaped: None,
            };
            // The first downloads of a fresh process are slower (thread pools growing, code
            // and sockets' memory first touched): measured, the first size's FTP median was
            // 0.3 ms higher than the same size measured later. A few uncounted ones first.
            if let Some(s) = served.iter().min_by_key(|s| s.size) {
                b.bar.set_message("warming up");
                for _ in 0..WARM_UP {
                    b.tcp_one(&pair(s).tcp, &s.name, false)
                        .map_err(failed("TCP warm-up download"))?;
                    b.ftp_one(&pair(s).ftp, false)
                        .map_err(failed("FTP warm-up download"))?;
                    if let Some(f) = &pair(s).ftps {
                        b.ftp_one(f, false)
                            .map_err(failed("FTPS warm-up download"))?;
                    }
                }
            }
            for s in served.iter().filter(|s| sizes.contains(&s.size)) {
                report.sizes.extend(measure_pair(&b, &pair(s), runs)?);
            }
            if config.scenarios {
                if small > 0 {
                    let tcp = HostPort::from(srv.tcp);
                    let f = ftp_file(vec![SMALL_DIR.to_owned()], "");
                    report
                        .scenarios
                        .extend(many_small(&b, &tcp, &f, small, runs)?);
                }
                if let Some(s) = served.iter().find(|s| s.size == conc_size) {
                    report
                        .scenarios
                        .extend(concurrent(&b, &pair(s), &config.clients, runs)?);
                }
            }
            drop(srv);
            if let Some(link) = &config.link {
                report.shaped = Some(shaped(config, link, workdir, &served, small, &b.bar)?);
            }
            b.bar.finish_and_clear();
            fill_ratios(&mut report);
            Ok(report)
        }
        Target::Remote { ftp, tcp, tcp_name } => {
            let bar = progress_bar(config.progress, 2 * (1 + u64::from(runs)));
            let b = Bench {
                rt,
                timeout: config.timeout,
                bar,
                local: false,
                tcp: TcpClients::new(None),
            };
            let file = FtpFile {
                host: ftp.host.clone(),
                port: ftp.port.unwrap_or(21),
                user: ftp.user.clone().unwrap_or_else(|| "anonymous".into()),
                password: ftp.password.clone().unwrap_or_else(|| "ftp-vs-tcp@".into()),
                dirs: ftp.dirs.clone(),
                name: ftp.file.clone().unwrap_or_default(),
                tls: None,
            };
            // The size is what the TCP server announces.
            let probe = b
                .tcp_one(tcp, tcp_name, false)
                .map_err(failed(format!("TCP download of {tcp_name}")))?
                .0;
            let p = Pair {
                size: probe.bytes,
                label: size_label(probe.bytes),
                tcp: tcp.clone(),
                tcp_name: tcp_name.clone(),
                ftp: file,
                ftps: None,
                sha256: None,
            };
            let mut report = Report {
                target: format!("ftp://{}:{} and {tcp}", p.ftp.host, p.ftp.port),
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
                cpu_method: CPU_METHOD,
                sizes: measure_pair(&b, &p, runs)?,
                scenarios: Vec::new(),
                ftps: FTPS_REMOTE.into(),
                shaped: None,
            };
            b.bar.finish_and_clear();
            fill_ratios(&mut report);
            Ok(report)
        }
    }
}
