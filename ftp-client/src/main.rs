//! ftp-client binary.

fn main() {}
