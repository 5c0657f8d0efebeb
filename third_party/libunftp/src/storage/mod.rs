//! Re-exports storage traits/types from unftp-core.

pub(crate) use unftp_core::storage::{Error, ErrorKind, FEATURE_RESTART, FEATURE_SITEMD5, Metadata, StorageBackend};

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
