//! Every seed input passes its target's checks: a plain `cargo test` in `fuzz/` (no AFL needed)
//! shows the harnesses and corpora are sound before any fuzzing time is spent on them.

use std::path::Path;

fn each_seed(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn ftp_control_seeds() {
    each_seed("ftp_control", ftp_suite_fuzz::ftp_control);
}

#[test]
fn tcp_frames_seeds() {
    each_seed("tcp_frames", ftp_suite_fuzz::tcp_frames);
}

#[test]
fn ftp_reply_seeds() {
    each_seed("ftp_reply", ftp_suite_fuzz::ftp_reply);
}

#[test]
fn ftp_listing_seeds() {
    each_seed("ftp_listing", ftp_suite_fuzz::ftp_listing);
}

#[test]
fn netrc_seeds() {
    each_seed("netrc", ftp_suite_fuzz::netrc);
}
