//! ftp-server (work in progress).
