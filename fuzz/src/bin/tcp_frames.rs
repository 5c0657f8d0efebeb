//! AFL target: see `ftp_suite_fuzz::tcp_frames` for what is fed and checked (docs/fuzzing.md).
//! Built by `cargo afl build` (`cfg(fuzzing)`) it is the fuzz target; built plainly it
//! replays the files named on its command line, to reproduce a crash under a debugger.
fn main() {
    #[cfg(fuzzing)]
    afl::fuzz!(|data: &[u8]| ftp_suite_fuzz::tcp_frames(data));
    #[cfg(not(fuzzing))]
    ftp_suite_fuzz::replay(ftp_suite_fuzz::tcp_frames);
}
