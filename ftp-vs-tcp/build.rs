//! Tells the end-to-end tests which real peers (curl, vsftpd, ...) are installed, so a test
//! whose peer is missing shows as ignored (see tests/src/probe.rs; under CI=true it fails).

#[path = "../tests/src/probe.rs"]
mod probe;

fn main() {
    probe::emit_cfgs();
}
