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
use crate::data::Transfer;
use crate::error::ClientError;
use crate::listing;
use crate::session::Tracer;
use crate::target::Remote;

/// Longest listing line accepted (a hostile server could send one endless line).
const MAX_LIST_LINE: u64 = 64 * 1024;

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
    let mlsd = s.features().await?.iter().any(|f| f == "MLST");
    let command = if mlsd { "MLSD" } else { "LIST" };
    let started = Instant::now();
    let t = Transfer::new(command, None, &path);
    let data = t.start(&mut s).await?;
    let now = time::OffsetDateTime::now_utc();
    let today = (now.year(), u8::from(now.month()) as u32, now.day() as u32);
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
                    &path,
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
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
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
    }
    drop(reader);
    t.finish(&mut s, bytes, None, None).await?;
    s.quit().await;
    Ok(Summary {
        verb: "listed",
        bytes,
        resumed_from: 0,
        elapsed: started.elapsed(),
        saved_to: None,
    })
}
