//! The classic `xferlog` format (wu-ftpd, ProFTPD, vsftpd), one line per transfer:
//!
//! ```text
//! current-time transfer-time remote-host file-size filename transfer-type special-action-flag
//! direction access-mode username service-name authentication-method authenticated-user-id
//! completion-status
//! ```
//!
//! e.g. `Mon Jan  5 14:03:07 2026 1 192.0.2.7 1048576 /pub/file.bin b _ o a me@example.org ftp 0 * c`.
//! Times are UTC. White space and control characters in the file name and user are replaced by
//! `_` so that every line keeps its 14 space-separated fields.
//!
//! Lines are written by a thread of their own, fed through a bounded channel: a transfer on a
//! runtime worker never waits on the disk (a slow or full disk would otherwise stall every
//! session on that worker).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::account::Class;

/// Transfer direction, from the server's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// RETR: the client downloads.
    Outgoing,
    /// STOR / APPE: the client uploads.
    Incoming,
}

impl Direction {
    /// `download` or `upload`, for the tracing log.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "download",
            Direction::Incoming => "upload",
        }
    }
}

/// One finished (or failed) transfer.
#[derive(Debug)]
pub struct XferRecord<'a> {
    /// When it ended.
    pub when: OffsetDateTime,
    /// How long it took.
    pub duration: Duration,
    /// The client.
    pub peer: IpAddr,
    /// Bytes moved.
    pub bytes: u64,
    /// The file, as a path below the server root.
    pub path: &'a Path,
    /// Download or upload.
    pub direction: Direction,
    /// Account class of the user.
    pub class: Class,
    /// Login name, or the e-mail an anonymous user gave.
    pub user: &'a str,
    /// Whether the transfer completed.
    pub complete: bool,
}

fn field(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.is_empty() { "_".to_string() } else { out }
}

/// Formats one xferlog line (without the trailing newline).
pub fn format_line(r: &XferRecord<'_>) -> String {
    let fmt = format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
    );
    let when = r.when.format(&fmt).unwrap_or_else(|_| "-".to_string());
    let secs = r.duration.as_secs() + u64::from(r.duration.subsec_nanos() > 0);
    format!(
        "{when} {secs} {peer} {bytes} {path} b _ {dir} {mode} {user} ftp 0 * {status}",
        peer = r.peer,
        bytes = r.bytes,
        path = field(&r.path.to_string_lossy()),
        dir = match r.direction {
            Direction::Outgoing => 'o',
            Direction::Incoming => 'i',
        },
        mode = match r.class {
            Class::Anonymous => 'a',
            Class::Guest => 'g',
            Class::Real => 'r',
        },
        user = field(r.user),
        status = if r.complete { 'c' } else { 'i' },
    )
}

/// Lines waiting for the writer thread; beyond this, new lines are dropped (and that logged)
/// rather than block a transfer.
const QUEUE: usize = 4096;

/// An xferlog file opened for appending, with its writer thread. Dropping it writes the queued
/// lines and ends the thread.
#[derive(Debug)]
pub struct XferLog {
    lines: Option<std::sync::mpsc::SyncSender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl XferLog {
    /// Opens (creating) `path` for appending and starts its writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("xferlog".into())
            .spawn(move || {
                for line in rx {
                    // O_APPEND and one write per line: lines never interleave.
                    if let Err(e) = file.write_all(line.as_bytes()) {
                        tracing::error!(error = %e, "cannot write to the xferlog");
                    }
                }
            })?;
        Ok(Self {
            lines: Some(tx),
            writer: Some(writer),
        })
    }

    /// Queues one record; never blocks, and a failure is logged, never fatal to the transfer.
    pub fn write(&self, r: &XferRecord<'_>) {
        let mut line = format_line(r);
        line.push('\n');
        let Some(tx) = &self.lines else { return };
        if let Err(e) = tx.try_send(line) {
            tracing::error!(error = %e, "xferlog line dropped: the writer is behind or gone");
        }
    }
}

impl Drop for XferLog {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what is queued.
        self.lines = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lines_written_by_the_thread_are_all_there_after_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("xferlog");
        let log = XferLog::open(&path).expect("open");
        for bytes in 0..100u64 {
            log.write(&XferRecord {
                when: datetime!(2026-01-05 14:03:07 UTC),
                duration: Duration::from_millis(1),
                peer: [192, 0, 2, 7].into(),
                bytes,
                path: Path::new("/f"),
                direction: Direction::Incoming,
                class: Class::Real,
                user: "alice",
                complete: true,
            });
        }
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        let sizes: Vec<u64> = text
            .lines()
            .map(|l| {
                l.split(' ')
                    .nth(8)
                    .and_then(|b| b.parse().ok())
                    .expect("size")
            })
            .collect();
        assert_eq!(sizes, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn classic_line() {
        let r = XferRecord {
            when: datetime!(2026-01-05 14:03:07 UTC),
            duration: Duration::from_millis(1500),
            peer: [192, 0, 2, 7].into(),
            bytes: 1_048_576,
            path: Path::new("/pub/with space.bin"),
            direction: Direction::Outgoing,
            class: Class::Anonymous,
            user: "me@example.org",
            complete: true,
        };
        assert_eq!(
            format_line(&r),
            "Mon Jan  5 14:03:07 2026 2 192.0.2.7 1048576 /pub/with_space.bin b _ o a me@example.org ftp 0 * c"
        );
        assert_eq!(
            format_line(&r).split(' ').filter(|s| !s.is_empty()).count(),
            18
        );
    }
}
