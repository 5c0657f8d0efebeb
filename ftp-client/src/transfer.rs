//! The three operations (get, ls, put) on top of [`Session`], and the streamed data path.
//!
//! The data path reads the socket into 1 MiB buffers and hands them to a blocking writer (disk
//! or stdout) over a small bounded channel, so the network and the disk work at the same time
//! and memory stays at a handful of buffers whatever the file size. Buffers are recycled, and
//! filled with `read_buf` so they are never zeroed again.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{Config, Output};
use crate::error::ClientError;
use crate::listing;
use crate::reply::Reply;
use crate::session::{Session, Tracer};
use crate::target::{Remote, TypeCode};

/// Size of each data buffer.
const BUF: usize = 1 << 20;
/// Buffers in flight between the socket and the disk.
const IN_FLIGHT: usize = 4;
/// Longest listing line accepted (a hostile server could send one endless line).
const MAX_LIST_LINE: u64 = 64 * 1024;

/// What a finished operation did, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Bytes moved over the data connection in this run (not counting a resumed offset).
    pub bytes: u64,
    /// Time from the first data byte's request to the completion reply.
    pub elapsed: Duration,
    /// "downloaded", "uploaded", "listed".
    pub verb: &'static str,
}

impl Report {
    /// `downloaded 1048576 bytes in 0.42 s (2.50 MB/s)`.
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes as f64 / secs / 1e6
        } else {
            0.0
        };
        format!(
            "{} {} bytes in {:.2} s ({:.2} MB/s)",
            self.verb, self.bytes, secs, rate
        )
    }
}

/// A progress bar on stderr, or nothing.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(show: bool, total: Option<u64>, start: u64) -> Self {
        if !show {
            return Self(None);
        }
        let bar = match total {
            Some(t) => {
                let b = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ) {
                    b.set_style(style);
                }
                b
            }
            None => {
                let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                if let Ok(style) =
                    ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec} {elapsed}")
                {
                    b.set_style(style);
                }
                b
            }
        };
        bar.set_position(start);
        Self(Some(bar))
    }

    fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Connects, logs in, changes directory.
async fn open(
    cfg: &Config,
    trace: &Option<Tracer>,
    dirs: &[String],
) -> Result<Session, ClientError> {
    let mut s = Session::connect(
        &cfg.host,
        cfg.port,
        cfg.timeout,
        trace.clone(),
        cfg.trust_pasv_ip,
    )
    .await?;
    let pass = cfg.password.clone().unwrap_or_default();
    s.login(&cfg.user, &pass).await?;
    s.cwd_all(dirs).await?;
    Ok(s)
}

/// A refused RETR/LIST/MLSD reply as an error.
fn refused(s: &Session, command: &'static str, path: &str, r: &Reply) -> ClientError {
    if r.is_transient() {
        return s.unexpected(command, r);
    }
    if r.code == 550 && command == "RETR" {
        return ClientError::NotFound {
            host: s.host.clone(),
            path: path.to_string(),
            reply: r.one_line(),
        };
    }
    ClientError::Refused {
        host: s.host.clone(),
        command,
        path: path.to_string(),
        reply: r.one_line(),
    }
}

/// The blocking side of a download: writes buffers in order, returns them for reuse.
struct Sink {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Sink {
    fn spawn(mut w: Box<dyn Write + Send>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(IN_FLIGHT);
        let (free_tx, free) = std::sync::mpsc::channel();
        let handle = tokio::task::spawn_blocking(move || {
            while let Some(buf) = rx.blocking_recv() {
                w.write_all(&buf)?;
                let _ = free_tx.send(buf);
            }
            w.flush()
        });
        Self {
            tx: Some(tx),
            free,
            handle,
        }
    }

    fn buffer(&self) -> Vec<u8> {
        let mut b = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUF));
        b.clear();
        b
    }

    /// Queues `buf`; `false` when the writer has stopped (its error comes from `finish`).
    async fn send(&self, buf: Vec<u8>) -> bool {
        match &self.tx {
            Some(tx) => tx.send(buf).await.is_ok(),
            None => false,
        }
    }

    async fn finish(mut self) -> std::io::Result<()> {
        self.tx = None;
        match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Longest file name most Linux file systems accept.
const NAME_MAX: usize = 255;

/// `<file>.part`, where a download grows until it is complete. A name too long for `.part` to
/// fit in 255 bytes (NAME_MAX) is cut to 200 bytes plus a hash of the whole name, so the part
/// name stays deterministic (for -C) and distinct.
pub fn part_path(path: &Path) -> PathBuf {
    let Some(name) = path.file_name() else {
        let mut s = path.as_os_str().to_os_string();
        s.push(".part");
        return PathBuf::from(s);
    };
    let bytes = name.as_encoded_bytes();
    if bytes.len() + ".part".len() <= NAME_MAX {
        let mut s = name.to_os_string();
        s.push(".part");
        return path.with_file_name(s);
    }
    // FNV-1a 64: stable across Rust versions, unlike DefaultHasher.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let lossy = name.to_string_lossy();
    let mut cut = lossy.len().min(200);
    while !lossy.is_char_boundary(cut) {
        cut -= 1;
    }
    path.with_file_name(format!("{}~{hash:016x}.part", &lossy[..cut]))
}

/// Where a download's bytes go.
enum Dest {
    /// Standard output (`-o -`): no file is ever created.
    Stdout,
    /// An existing device or pipe (`-o /dev/null`): written directly, nothing to rename.
    Device(PathBuf),
    /// A regular file: written as `part`, renamed to `fin` only when complete.
    File {
        /// The final name.
        fin: PathBuf,
        /// `<fin>.part`.
        part: PathBuf,
    },
}

/// Downloads `remote.file` to `output`.
///
/// An existing file under the final name is never damaged by a failed download: a plain `get`
/// writes `<file>.part` and renames it only when complete; `-C` on a shorter file found under
/// the final name moves it to `.part` only once the server is sending, and moves it back (with
/// whatever arrived appended) when the transfer fails.
pub async fn get(
    cfg: &Config,
    remote: &Remote,
    output: &Output,
    trace: &Option<Tracer>,
) -> Result<Report, ClientError> {
    let name = remote.file.clone().unwrap_or_default();
    let path_disp = remote.path_display();
    let mut s = open(cfg, trace, &remote.dirs).await?;
    let ascii = remote.type_code == Some(TypeCode::Ascii);
    s.set_type(ascii).await?;
    // In ASCII the byte count differs from SIZE (CRLF), so only binary transfers are checked.
    let size = if ascii { None } else { s.size(&name).await? };

    let dest = match output {
        Output::Stdout => Dest::Stdout,
        Output::File(p) => match std::fs::metadata(p) {
            Ok(m) if !m.is_file() && !m.is_dir() => Dest::Device(p.clone()),
            _ => Dest::File {
                fin: p.clone(),
                part: part_path(p),
            },
        },
    };
    let mut offset = 0u64;
    // -C continues a shorter file found under the final name (from another tool).
    let mut adopt_final = false;
    if let (true, Dest::File { fin, part }) = (cfg.resume, &dest) {
        let part_len = std::fs::metadata(part).map(|m| m.len()).ok();
        let fin_len = std::fs::metadata(fin)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len());
        (offset, adopt_final) = match (part_len, fin_len) {
            (Some(n), _) => (n, false),
            (None, Some(n)) => (n, n > 0),
            (None, None) => (0, false),
        };
        if let Some(sz) = size {
            if offset > sz {
                return Err(ClientError::Resume {
                    host: s.host.clone(),
                    path: path_disp,
                    reason: format!(
                        "the local copy has {offset} bytes, more than the server's {sz}"
                    ),
                });
            }
            if offset == sz && offset > 0 {
                if !adopt_final {
                    rename_final(part, fin)?;
                }
                s.quit().await;
                return Ok(Report {
                    bytes: 0,
                    elapsed: Duration::ZERO,
                    verb: "already complete:",
                });
            }
        }
    }

    let started = Instant::now();
    let rest = (offset > 0).then_some(offset);
    let data = match s.start_transfer(&format!("RETR {name}"), rest).await? {
        Ok(d) => d,
        Err(r) => return Err(refused(&s, "RETR", &path_disp, &r)),
    };

    // Only now, with the server sending, touch the local file system: a refusal leaves nothing.
    let writer: Box<dyn Write + Send> = match &dest {
        Dest::Stdout => Box::new(std::io::stdout()),
        Dest::Device(p) => Box::new(OpenOptions::new().write(true).open(p).map_err(|e| {
            ClientError::LocalWrite {
                path: p.clone(),
                source: e,
            }
        })?),
        Dest::File { fin, part } => {
            if adopt_final {
                std::fs::rename(fin, part).map_err(|e| ClientError::LocalWrite {
                    path: part.clone(),
                    source: e,
                })?;
            }
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .append(offset > 0)
                .truncate(offset == 0)
                .open(part);
            match f {
                Ok(f) => Box::new(f),
                Err(e) => {
                    if adopt_final {
                        let _ = std::fs::rename(part, fin);
                    }
                    return Err(ClientError::LocalWrite {
                        path: part.clone(),
                        source: e,
                    });
                }
            }
        }
    };
    let received = receive(cfg, &mut s, data, writer, &dest, &path_disp, offset, size).await;
    let got = match received {
        Ok(got) => got,
        Err(e) => {
            if let Dest::File { fin, part } = &dest {
                if adopt_final {
                    // Give the file its name back: it holds what it had plus what arrived.
                    let _ = std::fs::rename(part, fin);
                } else if std::fs::metadata(part).is_ok_and(|m| m.len() == 0) {
                    // Nothing to resume from.
                    let _ = std::fs::remove_file(part);
                }
                // Otherwise the partial `.part` stays for -C.
            }
            return Err(e);
        }
    };
    let elapsed = started.elapsed();
    if let Dest::File { fin, part } = &dest {
        rename_final(part, fin)?;
    }
    s.quit().await;
    Ok(Report {
        bytes: got,
        elapsed,
        verb: "downloaded",
    })
}

/// The data path of a download: reads `data` into `writer` until EOF, then checks the
/// completion reply and the byte count. Returns the bytes received in this run.
#[allow(clippy::too_many_arguments)]
async fn receive(
    cfg: &Config,
    s: &mut Session,
    mut data: TcpStream,
    writer: Box<dyn Write + Send>,
    dest: &Dest,
    path_disp: &str,
    offset: u64,
    size: Option<u64>,
) -> Result<u64, ClientError> {
    let sink = Sink::spawn(writer);
    let progress = Progress::new(cfg.progress, size, offset);
    let mut got = 0u64;
    let mut stop: Option<ClientError> = None;
    loop {
        let mut buf = sink.buffer();
        let n = match tokio::time::timeout(s.timeout(), data.read_buf(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                stop = Some(partial(s, path_disp, offset + got, size, e.to_string()));
                break;
            }
            Err(_) => {
                stop = Some(s.timeout_err(format!(
                    "waiting for data of {path_disp:?} after {} bytes",
                    offset + got
                )));
                break;
            }
        };
        if n == 0 {
            break;
        }
        got += n as u64;
        progress.inc(n as u64);
        if !sink.send(buf).await {
            break;
        }
    }
    drop(data);
    drop(progress);
    if let Err(e) = sink.finish().await {
        // A local write error outranks whatever the network did afterwards.
        let path = match dest {
            Dest::Stdout => PathBuf::from("-"),
            Dest::Device(p) => p.clone(),
            Dest::File { part, .. } => part.clone(),
        };
        return Err(ClientError::LocalWrite { path, source: e });
    }
    if let Some(e) = stop {
        return Err(e);
    }
    let reply = match s.read_reply("RETR").await {
        Ok(r) => r,
        Err(e @ ClientError::Timeout { .. }) => return Err(e),
        Err(other) => {
            return Err(partial(s, path_disp, offset + got, size, other.to_string()));
        }
    };
    if !reply.is_ok() {
        // Some servers (libunftp) answer 150 before opening the file and 550 after: nothing
        // arrived, so this is "not found", not a cut transfer.
        if got == 0 && offset == 0 && reply.code == 550 {
            return Err(refused(s, "RETR", path_disp, &reply));
        }
        return Err(partial(s, path_disp, offset + got, size, reply.one_line()));
    }
    if let Some(sz) = size {
        if offset + got < sz {
            return Err(partial(
                s,
                path_disp,
                offset + got,
                size,
                format!(
                    "the server said {:?} but the data stopped short",
                    reply.one_line()
                ),
            ));
        }
    }
    Ok(got)
}

fn rename_final(part: &Path, fin: &Path) -> Result<(), ClientError> {
    std::fs::rename(part, fin).map_err(|e| ClientError::LocalWrite {
        path: fin.to_path_buf(),
        source: e,
    })
}

fn partial(s: &Session, path: &str, got: u64, size: Option<u64>, detail: String) -> ClientError {
    ClientError::Partial {
        host: s.host.clone(),
        path: path.to_string(),
        got,
        expected: size.map(|n| format!(" of {n}")).unwrap_or_default(),
        detail,
    }
}

/// Lists `remote.dirs` into `out`: MLSD when FEAT offers MLST (RFC 3659 §7), else LIST.
pub async fn ls(
    cfg: &Config,
    remote: &Remote,
    raw: bool,
    out: &mut (dyn Write + Send),
    trace: &Option<Tracer>,
) -> Result<Report, ClientError> {
    let path_disp = remote.dir_display();
    let mut s = open(cfg, trace, &remote.dirs).await?;
    s.set_type(false).await?;
    let mlsd = s.features().await?.iter().any(|f| f == "MLST");
    let command = if mlsd { "MLSD" } else { "LIST" };
    let started = Instant::now();
    let data: TcpStream = match s.start_transfer(command, None).await? {
        Ok(d) => d,
        Err(r) => return Err(refused(&s, command, &path_disp, &r)),
    };
    let now = time::OffsetDateTime::now_utc();
    let today = (now.year(), u8::from(now.month()) as u32, now.day() as u32);
    let mut reader = BufReader::with_capacity(64 * 1024, data);
    let mut line = Vec::new();
    let mut bytes = 0u64;
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LIST_LINE + 1);
        let read = limited.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(s.timeout(), read).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(partial(&s, &path_disp, bytes, None, e.to_string())),
            Err(_) => {
                return Err(s.timeout_err(format!("waiting for the listing of {path_disp:?}")));
            }
        };
        if n == 0 {
            break;
        }
        if n as u64 > MAX_LIST_LINE {
            return Err(ClientError::Protocol {
                host: s.host.clone(),
                command: command.to_string(),
                reply: format!("a listing line longer than {MAX_LIST_LINE} bytes"),
                transient: false,
            });
        }
        bytes += n as u64;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let shown = if raw {
            (!text.is_empty()).then(|| filexfer::text::printable(text))
        } else if mlsd {
            listing::parse_mlsd_line(text).map(|e| listing::format_entry(&e))
        } else {
            listing::parse_list_line(text, today).map(|e| listing::format_entry(&e))
        };
        if let Some(l) = shown {
            writeln!(out, "{l}").map_err(|e| ClientError::LocalWrite {
                path: PathBuf::from("-"),
                source: e,
            })?;
        }
    }
    let reply = s.read_reply(command).await?;
    if !reply.is_ok() {
        return Err(partial(&s, &path_disp, bytes, None, reply.one_line()));
    }
    s.quit().await;
    Ok(Report {
        bytes,
        elapsed: started.elapsed(),
        verb: "listed",
    })
}

/// Uploads `local` as `name` into `remote.dirs`; with -C, appends what the server lacks.
pub async fn put(
    cfg: &Config,
    local: &Path,
    remote: &Remote,
    name: &str,
    trace: &Option<Tracer>,
) -> Result<Report, ClientError> {
    let read_err = |e| ClientError::LocalRead {
        path: local.to_path_buf(),
        source: e,
    };
    let mut file = std::fs::File::open(local).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other("not a regular file")));
    }
    let len = meta.len();
    let mut path_disp = remote.dir_display();
    if !path_disp.is_empty() && !path_disp.ends_with('/') {
        path_disp.push('/');
    }
    path_disp.push_str(name);

    let mut s = open(cfg, trace, &remote.dirs).await?;
    s.set_type(false).await?;
    let mut offset = 0;
    if cfg.resume {
        if let Some(sz) = s.size(name).await? {
            if sz > len {
                return Err(ClientError::Resume {
                    host: s.host.clone(),
                    path: path_disp,
                    reason: format!("the server has {sz} bytes, more than the local {len}"),
                });
            }
            offset = sz;
        }
        if offset == len && len > 0 {
            s.quit().await;
            return Ok(Report {
                bytes: 0,
                elapsed: Duration::ZERO,
                verb: "already complete:",
            });
        }
    }
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;

    let started = Instant::now();
    // RFC 959 APPE appends to an existing file: the resume of an upload.
    let cmd = if offset > 0 {
        format!("APPE {name}")
    } else {
        format!("STOR {name}")
    };
    let mut data = match s.start_transfer(&cmd, None).await? {
        Ok(d) => d,
        Err(r) if r.is_transient() => return Err(s.unexpected(&cmd, &r)),
        Err(r) => {
            return Err(ClientError::Upload {
                host: s.host.clone(),
                path: path_disp,
                reply: r.one_line(),
            });
        }
    };

    // Blocking reader: fills recycled buffers from the file.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<(Vec<u8>, usize)>>(IN_FLIGHT);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = free_rx.try_recv().unwrap_or_else(|_| vec![0u8; BUF]);
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok((buf, n))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let progress = Progress::new(cfg.progress, Some(len), offset);
    let mut sent = 0u64;
    let mut failure = None;
    while let Some(chunk) = rx.recv().await {
        let (buf, n) = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(read_err(e));
                break;
            }
        };
        match tokio::time::timeout(s.timeout(), data.write_all(&buf[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(partial(
                    &s,
                    &path_disp,
                    offset + sent,
                    Some(len),
                    e.to_string(),
                ));
                break;
            }
            Err(_) => {
                failure = Some(s.timeout_err(format!("sending data of {path_disp:?}")));
                break;
            }
        }
        sent += n as u64;
        progress.inc(n as u64);
        let _ = free_tx.send(buf);
    }
    drop(rx);
    let _ = reader.await;
    drop(progress);
    if let Some(e) = failure {
        // Reset rather than close the data connection: in stream mode a plain close means
        // "end of file" (RFC 959 §3.4.1), and the server would keep the truncated upload as if
        // it were complete.
        let _ = data.set_zero_linger();
        return Err(e);
    }
    // Closing the data connection is what tells the server the file is complete (RFC 959
    // stream mode), so a failed shutdown is a failed upload.
    match tokio::time::timeout(s.timeout(), data.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(partial(
                &s,
                &path_disp,
                offset + sent,
                Some(len),
                e.to_string(),
            ));
        }
        Err(_) => return Err(s.timeout_err("closing the upload".into())),
    }
    drop(data);
    let reply = s.read_reply(&cmd).await?;
    let elapsed = started.elapsed();
    if !reply.is_ok() {
        return Err(partial(
            &s,
            &path_disp,
            offset + sent,
            Some(len),
            reply.one_line(),
        ));
    }
    // Check what landed, when the server can tell.
    if let Some(sz) = s.size(name).await? {
        if sz != len {
            return Err(partial(
                &s,
                &path_disp,
                sz,
                Some(len),
                format!("the server reports {sz} bytes after the upload"),
            ));
        }
    }
    s.quit().await;
    Ok(Report {
        bytes: sent,
        elapsed,
        verb: "uploaded",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names() {
        assert_eq!(part_path(Path::new("d/f.bin")), Path::new("d/f.bin.part"));
        assert_eq!(
            part_path(Path::new("with space")),
            Path::new("with space.part")
        );
        let long = "L".repeat(251) + ".dat";
        let p = part_path(Path::new(&format!("out/{long}")));
        let n = p.file_name().unwrap().to_str().unwrap();
        assert!(n.len() <= NAME_MAX && n.ends_with(".part"), "{n}");
        assert_eq!(
            p,
            part_path(Path::new(&format!("out/{long}"))),
            "deterministic"
        );
        let other = "L".repeat(251) + ".dau";
        assert_ne!(p, part_path(Path::new(&format!("out/{other}"))), "distinct");
        // Multi-byte characters are not split.
        let uni = "文".repeat(84);
        let n = part_path(Path::new(&uni)).to_string_lossy().into_owned();
        assert!(n.len() <= NAME_MAX, "{}", n.len());
    }
}
