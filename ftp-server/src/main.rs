//! ftp-server binary.

fn main() {}
