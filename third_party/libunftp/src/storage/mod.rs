//! Re-exports storage traits/types from unftp-core.

pub(crate) use unftp_core::storage::{Error, ErrorKind, FEATURE_RESTART, FEATURE_SITEMD5, Metadata, StorageBackend};

/// Whether a storage error is the back-end refusing what the client asked (a name that does not
/// exist, a permission, a name not allowed), as opposed to the server failing. A refusal is
/// the client's business, answered with its reply, and logged at `info`; a failure is logged at
/// `warn`, for the operator (patch 34).
pub(crate) fn is_refusal(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::PermissionDenied
            | ErrorKind::PermanentFileNotAvailable
            | ErrorKind::PermanentDirectoryNotAvailable
            | ErrorKind::PermanentDirectoryNotEmpty
            | ErrorKind::FileNameNotAllowedError
            | ErrorKind::CommandNotImplemented
    )
}

/// Logs a storage error at `info` when it is a refusal ([`is_refusal`]), else at `warn`.
macro_rules! log_storage_error {
    ($logger:expr, $err:expr, $($fmt:tt)+) => {
        if $crate::storage::is_refusal(&$err) {
            slog::info!($logger, $($fmt)+)
        } else {
            slog::warn!($logger, $($fmt)+)
        }
    };
}
pub(crate) use log_storage_error;

/// A storage back-end that sets this bit in `supported_features` appends by itself: `APPE`
/// then calls `put` with `start_pos` = [`APPEND`] instead of looking up the file's length
/// first. (unftp-core's `FEATURE_*` bits are the low ones; this one is libunftp's own.)
///
/// Looking up the length and then writing at it is racy: two clients appending at once both
/// write at the same offset and one append is lost; and a back-end whose `metadata` describes a
/// symlink itself gives the link's length, not its target's. A back-end that appends in one step
/// (`O_APPEND` on a file system) avoids both.
pub const FEATURE_APPEND: u32 = 1 << 31;

/// The `start_pos` with which `APPE` asks a back-end advertising [`FEATURE_APPEND`] to append
/// to the end of the file as it is when the data is written (creating it if missing).
pub const APPEND: u64 = u64::MAX;
