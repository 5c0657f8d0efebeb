//! `put`: one local file to the server with STOR, or, with `-C`, only what the server lacks with
//! APPE (RFC 959 §4.1.3), then a SIZE check of what landed.

use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use filexfer::datapath::{Pace, file_to_stream};
use filexfer::progress::{Progress, Summary};
use filexfer::text::printable;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::Config;
use crate::data::{Transfer, settle};
use crate::error::ClientError;
use crate::session::{Session, Tracer};
use crate::target::Remote;
use crate::tls::DataConn;

/// The data socket as the copy sees it: each byte the socket takes moves the progress bar.
struct Counted<'a> {
    inner: &'a mut DataConn,
    progress: &'a Progress,
}

impl AsyncWrite for Counted<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.progress.inc(*n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Uploads `local` as `name` into `remote.dirs`; with -C, appends what the server lacks.
pub async fn put(
    cfg: &Config,
    local: &Path,
    remote: &Remote,
    name: &str,
    trace: &Option<Tracer>,
) -> Result<Summary, ClientError> {
    let read_err = |source| ClientError::LocalRead {
        path: local.to_path_buf(),
        source,
    };
    // Checked before connecting, so a local problem fails before any socket opens.
    std::fs::File::open(local).map_err(read_err)?;
    if !std::fs::metadata(local).map_err(read_err)?.is_file() {
        return Err(read_err(io::Error::other("not a regular file")));
    }
    let mut path = remote.dir_display();
    if !path.is_empty() && !path.ends_with('/') {
        path.push('/');
    }
    path.push_str(name);

    let mut s = super::connect(cfg, trace, &remote.dirs).await?;
    let summary = put_on(&mut s, cfg, local, name, &path).await?;
    s.quit().await;
    Ok(summary)
}

/// The upload itself, on a session already in the target directory: what [`put`] does after
/// connecting, and what `mirror --reverse` does for every file on its one session. `path` is
/// the remote path for messages.
pub(crate) async fn put_on(
    s: &mut Session,
    cfg: &Config,
    local: &Path,
    name: &str,
    path: &str,
) -> Result<Summary, ClientError> {
    let path = path.to_string();
    let read_err = |source| ClientError::LocalRead {
        path: local.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(local).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(io::Error::other("not a regular file")));
    }
    let len = meta.len();
    s.set_type(false).await?;
    let mut offset = 0;
    if cfg.resume {
        if let Some(sz) = s.size(name).await? {
            if sz > len {
                return Err(ClientError::Resume {
                    host: s.host.clone(),
                    path,
                    reason: format!("the server has {sz} bytes, more than the local {len}"),
                });
            }
            offset = sz;
        }
        if offset == len && len > 0 {
            return Ok(super::already_complete(offset, None));
        }
    }
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;

    let started = Instant::now();
    // RFC 959 APPE appends to an existing file: the resume of an upload.
    let command = if offset > 0 { "APPE" } else { "STOR" };
    let t = Transfer::new(command, Some(name), &path);
    let mut data = t.start(s).await?;
    let progress = Progress::new(cfg.progress, &printable(name), Some(len), offset);
    let mut counted = Counted {
        inner: &mut data,
        progress: &progress,
    };
    let copied = file_to_stream(file, &mut counted, s.timeout(), Pace::unlimited()).await;
    drop(progress);
    let sent = match copied {
        Ok(n) => n,
        // `data` is armed to be reset when dropped (crate::data): a plain close would mean "end
        // of file" (RFC 959 §3.4.1) and the server would keep the truncated upload as complete.
        Err(e) => return Err(t.copy_failed(s, e, offset, Some(len), read_err)),
    };
    // Closing the data connection is what tells the server the file is complete (RFC 959
    // stream mode), so a failed shutdown is a failed upload.
    match tokio::time::timeout(s.timeout(), data.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let detail = e.to_string();
            return Err(ClientError::partial(
                &s.host,
                &path,
                offset + sent,
                Some(len),
                detail,
            ));
        }
        Err(_) => return Err(s.timeout_err("closing the upload".into())),
    }
    // The socket stays open until the reply: its send queue tells whether bytes still move.
    t.finish(s, offset + sent, Some(len), Some(data.tcp()))
        .await?;
    // Only the server's 2xx makes the upload complete; until then (a stall while the last
    // bytes drain, a lost control connection) dropping `data` resets it.
    settle(&data);
    drop(data);
    let elapsed = started.elapsed();
    // Check what landed, when the server can tell.
    if let Some(sz) = s.size(name).await? {
        if sz != len {
            return Err(ClientError::partial(
                &s.host,
                &path,
                sz,
                Some(len),
                format!("the server reports {sz} bytes after the upload"),
            ));
        }
    }
    Ok(Summary {
        verb: "uploaded",
        bytes: sent,
        resumed_from: offset,
        elapsed,
        saved_to: None,
    })
}
