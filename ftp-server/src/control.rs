//! Whether a session's client is still there, as its uploads ask before they publish a file.
//!
//! In stream mode (RFC 959 §3.4.1) the end of the data is the data connection's close, so a
//! client that dies mid-upload and a client that finished look alike on the data connection
//! (unless the close is a reset, which ftp-client sends when interrupted). The difference shows
//! on the control connection: a client that finished waits there for the final reply; a dead
//! one has closed it too. libunftp's control loop reads that end while the transfer runs and
//! then cancels the token we hand it (`ServerBuilder::session_end_signal`, our libunftp patch
//! 44); [`ControlLink`] is the session's view of that token. Before patch 44 a duplicate of
//! every control socket was kept and peeked at, a second descriptor per session.
//!
//! The two ends do not arrive in a fixed order: Linux closes an exiting process's sockets in
//! the reverse of their descriptor order (the data connection first), a client may close them
//! in either order, and the network may reorder them. Measured on loopback (a 2-core machine
//! under load, 600 cut-off uploads: killed with `kill -9`, or closing data then control, or
//! control then data): the control connection's end came at most 2.6 ms after the data's end
//! was seen (median 2 µs, 99th percentile 1.7 ms); checking only at once missed about 40% of
//! the killed clients. So an upload whose client still looks present waits up to
//! [`UPLOAD_SETTLE`] for the session's end before it publishes; with 5 ms (and with 10 ms) all
//! 600 were caught. The cost is that much latency on every upload's final reply (a 1 kB
//! `STOR` on loopback: about 9 ms instead of 2-3 ms); the remaining window is a client whose
//! control connection ends more than that after its data connection.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long an upload whose data has all arrived and whose client still looks present waits
/// for its session to end before publishing the file (see the module documentation for the
/// measurements).
pub const UPLOAD_SETTLE: Duration = Duration::from_millis(5);

/// One session's view of its control connection: the token libunftp cancels when the session's
/// control loop ends (the client closed or reset the connection, sent `QUIT`, timed out, or the
/// server shut the session down).
#[derive(Debug, Clone)]
pub struct ControlLink {
    ended: CancellationToken,
}

impl ControlLink {
    /// A link that says "gone" once `ended` is cancelled; hand the same token to libunftp's
    /// `ServerBuilder::session_end_signal`.
    pub fn new(ended: CancellationToken) -> Self {
        Self { ended }
    }

    /// Whether the session has ended. Asked once an upload's data has all arrived: a client
    /// that is gone cannot have finished it on purpose, so its file is not published.
    pub fn client_gone(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Whether the client is gone ([`Self::client_gone`]) now or within `settle`: returns as
    /// soon as the session ends, or `false` once `settle` has passed without it.
    pub async fn gone_within(&self, settle: Duration) -> bool {
        tokio::time::timeout(settle, self.ended.cancelled())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_link_is_gone_once_its_session_ends_and_not_before() {
        let ended = CancellationToken::new();
        let link = ControlLink::new(ended.clone());
        assert!(!link.client_gone());
        assert!(!link.gone_within(Duration::from_millis(1)).await);
        let later = ended.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            later.cancel();
        });
        assert!(link.gone_within(Duration::from_secs(10)).await);
        assert!(link.client_gone());
    }
}
