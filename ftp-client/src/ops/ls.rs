//! `ls`: one directory listing, MLSD when the server offers it (RFC 3659 §7), else LIST,
//! parsed line by line by [`crate::listing`] and written as a table (or as is, `--raw`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use filexfer::datapath::Watchdog;
use filexfer::progress::Summary;
use filexfer::text::printable;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::config::Config;
use crate::data::{Transfer, settle};
use crate::error::ClientError;
use crate::listing::{self, Entry};
use crate::names::MAX_ENTRIES_PER_DIR;
use crate::session::{Session, Tracer};
use crate::target::Remote;

/// Longest listing line accepted (a hostile server could send one endless line).
const MAX_LIST_LINE: u64 = 64 * 1024;

/// Most bytes one listing may send: with the line bound, this bounds the memory a listing
/// kept for a glob or a mirror can take, and a listing that never ends does end.
pub(crate) const MAX_LIST_BYTES: u64 = 64 * 1024 * 1024;

/// Lists `remote.dirs` into `out`.
pub async fn ls(
    cfg: &Config,
    remote: &Remote,
    raw: bool,
    out: &mut (dyn Write + Send),
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    let path = remote.dir_display();
    let mut s = super::connect(cfg, trace, &remote.dirs).await?;
    s.set_type(false).await?;
    let mlsd = uses_mlsd(&mut s).await?;
    let started = Instant::now();
    let today = today();
    let bytes = each_line(&mut s, mlsd, &path, u64::MAX, |text| {
        let shown = if raw {
            (!text.is_empty()).then(|| printable(text))
        } else if mlsd {
            listing::parse_mlsd_line(text).map(|e| listing::format_entry(&e))
        } else {
            listing::parse_list_line(text, today).map(|e| listing::format_entry(&e))
        };
        if let Some(l) = shown {
            writeln!(out, "{l}").map_err(|source| ClientError::LocalWrite {
                path: PathBuf::from("-"),
                source,
            })?;
        }
        Ok(())
    })
    .await?;
    s.quit().await;
    Ok(Summary {
        verb: "listed",
        bytes,
        resumed_from: 0,
        elapsed: started.elapsed(),
        saved_to: None,
    })
}

/// Whether to list with MLSD: the server names MLST in FEAT (RFC 3659 §7.8).
pub(crate) async fn uses_mlsd(s: &mut Session) -> Result<bool, ClientError> {
    Ok(s.features().await?.iter().any(|f| f == "MLST"))
}

/// Today as `(year, month, day)`, for LIST dates without a year.
pub(crate) fn today() -> (i32, u32, u32) {
    let now = time::OffsetDateTime::now_utc();
    (now.year(), u8::from(now.month()) as u32, now.day() as u32)
}

/// The current directory's entries (MLSD or LIST, parsed; `.` and `..` dropped). More than
/// [`MAX_ENTRIES_PER_DIR`] entries is an error: the listing is not read further.
pub(crate) async fn entries(
    s: &mut Session,
    mlsd: bool,
    path: &str,
) -> Result<Vec<Entry>, ClientError> {
    let today = today();
    let host = s.host.clone();
    let mut out = Vec::new();
    each_line(s, mlsd, path, MAX_LIST_BYTES, |text| {
        let e = if mlsd {
            listing::parse_mlsd_line(text)
        } else {
            listing::parse_list_line(text, today)
        };
        if let Some(e) = e.filter(|e| e.name != "." && e.name != "..") {
            if out.len() >= MAX_ENTRIES_PER_DIR {
                // Stop reading: a listing that never ends must end here, not at the byte bound.
                return Err(ClientError::Protocol {
                    host: host.clone(),
                    command: if mlsd { "MLSD" } else { "LIST" }.to_string(),
                    reply: format!("a listing of more than {MAX_ENTRIES_PER_DIR} entries"),
                    transient: false,
                });
            }
            out.push(e);
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Runs MLSD (or LIST) in the current directory and hands each line, without its line end, to
/// `f`; returns the bytes read. A line over [`MAX_LIST_LINE`] or a listing over `max_bytes` is
/// an error, never unbounded memory or an endless loop.
async fn each_line(
    s: &mut Session,
    mlsd: bool,
    path: &str,
    max_bytes: u64,
    mut f: impl FnMut(&str) -> Result<(), ClientError>,
) -> Result<u64, ClientError> {
    let command = if mlsd { "MLSD" } else { "LIST" };
    let t = Transfer::new(command, None, path);
    let data = t.start(s).await?;
    // The watchdog cuts the listing when no byte arrives for --timeout, however long a line
    // takes to trickle in.
    let mut reader = BufReader::with_capacity(64 * 1024, Watchdog::new(data, s.timeout()));
    let mut line = Vec::new();
    let mut bytes = 0u64;
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_LIST_LINE + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let what = format!("waiting for the listing of {path:?} after {bytes} bytes");
                return Err(s.timeout_err(what));
            }
            Err(e) => {
                return Err(ClientError::partial(
                    &s.host,
                    path,
                    bytes,
                    None,
                    e.to_string(),
                ));
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
        if bytes > max_bytes {
            return Err(ClientError::Protocol {
                host: s.host.clone(),
                command: command.to_string(),
                reply: format!("a listing longer than {max_bytes} bytes"),
                transient: false,
            });
        }
        let text = String::from_utf8_lossy(&line);
        f(text.trim_end_matches(['\r', '\n']))?;
    }
    // The listing's end of file arrived: close with a FIN, not the reset of an abort.
    settle(reader.get_mut().get_mut());
    drop(reader);
    t.finish(s, bytes, None, None).await?;
    Ok(bytes)
}
