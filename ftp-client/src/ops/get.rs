//! `get`: one file from the server into a [`Download`], which keeps the promise that an
//! existing local file is never destroyed by a failed transfer (see [`filexfer::download`]).

use std::time::Instant;

use crate::tls::DataConn;
use filexfer::datapath::{CopyError, Pace, stream_to_writer};
use filexfer::download::{Download, DownloadError, Output};
use filexfer::progress::Summary;
use filexfer::text::printable;
use tokio::io::AsyncReadExt;

use crate::config::Config;
use crate::data::{Transfer, ends_here, settle};
use crate::error::ClientError;
use crate::session::{Session, Tracer};
use crate::target::{Remote, TypeCode};

/// A local failure of the download, as the error of its exit code.
pub(crate) fn local_error(host: &str, path: &str, e: DownloadError) -> ClientError {
    match e {
        DownloadError::IsDirectory(_) => ClientError::Usage(e.to_string()),
        DownloadError::LocalLonger { .. } => ClientError::Resume {
            host: host.to_string(),
            path: path.to_string(),
            reason: e.to_string(),
        },
        DownloadError::Write { path, source } => ClientError::LocalWrite { path, source },
    }
}

/// Whether the data connection ends right after the `sz` bytes SIZE announced (`at` counts the
/// resumed prefix too), as the error of this transfer when it does not end or stalls.
async fn data_end(
    data: &mut DataConn,
    s: &Session,
    t: &Transfer<'_>,
    at: u64,
    sz: u64,
) -> Result<bool, ClientError> {
    ends_here(data, s.timeout()).await.map_err(|source| {
        let e = CopyError::Network { moved: 0, source };
        t.copy_failed(s, e, at, Some(sz), |source| ClientError::Network {
            host: s.host.clone(),
            what: "reading the data connection".into(),
            source,
        })
    })
}

/// The error of a download that brought more than SIZE announced: 18, or 36 when resuming,
/// since then the likeliest cause is a server that ignored the REST offset it accepted.
fn too_long(host: &str, path: &str, offset: u64, sz: u64) -> ClientError {
    if offset == 0 {
        return ClientError::TooLong {
            host: host.to_string(),
            path: path.to_string(),
            expected: sz,
        };
    }
    ClientError::Resume {
        host: host.to_string(),
        path: path.to_string(),
        reason: format!(
            "the server sent more than the {} bytes SIZE ({sz}) leaves after byte {offset}: \
             it did not start at the REST offset it accepted, or the file changed",
            sz - offset
        ),
    }
}

/// Downloads `remote.file` to `output`. The local file system is touched only once the server
/// is sending (a refusal leaves nothing behind), and the file gets its final name only once the
/// server said 226 and the byte count matches SIZE.
pub async fn get(
    cfg: &Config,
    remote: &Remote,
    output: &Output,
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    let name = remote.file.clone().unwrap_or_default();
    let path = remote.path_display();
    // Planned before connecting, so a local problem fails before any socket opens.
    let dl =
        Download::plan(output.clone(), cfg.resume).map_err(|e| local_error(&cfg.host, &path, e))?;
    let mut s = super::connect(cfg, trace, &remote.dirs).await?;
    let ascii = remote.type_code == Some(TypeCode::Ascii);
    let to_stdout = *output == Output::Stdout;
    let summary = get_on(&mut s, cfg, &name, &path, ascii, dl, to_stdout).await?;
    s.quit().await;
    Ok(summary)
}

/// The download itself, on a session already in the file's directory: what [`get`] does after
/// connecting, and what each `mirror` worker does for every file on its one session. `path` is
/// the remote path for messages.
pub(crate) async fn get_on(
    s: &mut Session,
    cfg: &Config,
    name: &str,
    path: &str,
    ascii: bool,
    mut dl: Download,
    to_stdout: bool,
) -> Result<Summary, ClientError> {
    let local = |e| local_error(&cfg.host, path, e);
    s.set_type(ascii).await?;
    // In ASCII the byte count differs from SIZE (CRLF), so only binary transfers are checked.
    let size = if ascii { None } else { s.size(name).await? };
    let offset = dl.offset();
    let saved_to = (!to_stdout).then(|| printable(&dl.display()));
    if let Some(sz) = size {
        if dl.is_complete(sz).map_err(local)? {
            dl.commit().map_err(local)?;
            return Ok(super::already_complete(offset, saved_to));
        }
    }

    let started = Instant::now();
    let t = Transfer::new("RETR", Some(name), path).resume_at(offset);
    let mut data = t.start(s).await?;
    // Only now, with the server sending, touch the local file system.
    let writer = dl.open().map_err(local)?;
    let progress = super::file_progress(cfg, &printable(name), size, offset);
    // Never more than SIZE announced (`is_complete` checked offset <= SIZE): what a server
    // sends beyond it is not read, let alone buffered or written.
    let cap = size.map_or(u64::MAX, |sz| sz - offset);
    let copied = stream_to_writer(
        (&mut data).take(cap),
        writer,
        s.timeout(),
        Pace::unlimited(),
        |n| progress.inc(n),
    )
    .await;
    drop(progress);
    let got = copied.map_err(|e| {
        t.copy_failed(s, e, offset, size, |source| ClientError::LocalWrite {
            path: dl.writing_to(),
            source,
        })
    })?;
    if let Some(sz) = size.filter(|_| got == cap) {
        let ended = data_end(&mut data, s, &t, offset + got, sz).await?;
        if !ended {
            // Too many bytes: a file that grew while it was sent, a hostile server, or one that
            // accepted REST (350) and then sent from byte 0. Either way what was written
            // cannot be trusted, and kept it would turn the next -C into a corrupt file.
            dl.discard_new_bytes().map_err(local)?;
            return Err(too_long(&s.host, path, offset, sz));
        }
    }
    settle(&data);
    drop(data);
    t.finish(s, offset + got, size, None).await?;
    // The last check before the final name: the file holds exactly SIZE bytes, the resumed
    // prefix included (a prefix that changed under us would show here).
    if let (Some(sz), Some(len)) = (size, dl.local_len().map_err(local)?) {
        if len != sz {
            let reason = format!("the local file has {len} bytes after the transfer, not {sz}");
            return Err(if offset > 0 {
                ClientError::Resume {
                    host: s.host.clone(),
                    path: path.to_string(),
                    reason,
                }
            } else {
                ClientError::partial(&s.host, path, len, size, reason)
            });
        }
    }
    let elapsed = started.elapsed();
    dl.commit().map_err(local)?;
    Ok(Summary {
        verb: "downloaded",
        bytes: got,
        resumed_from: offset,
        elapsed,
        saved_to,
    })
}
