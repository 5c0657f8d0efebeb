//! ftp-client (work in progress).
