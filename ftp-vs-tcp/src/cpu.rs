//! CPU time of the threads that do one side's work. Servers and clients all run in this one
//! process, so `getrusage(RUSAGE_SELF)` would mix them: instead every side runs on threads of
//! its own name (`srv-tcp`, `srv-ftp`, `cli-ftp`; the tokio runtimes name their worker *and*
//! blocking-pool threads) and we sum the time on CPU of the threads with that name, read from
//! `/proc/self/task/<tid>/schedstat` (nanoseconds; `stat`'s utime/stime only count 10 ms
//! ticks). The runtimes keep their idle blocking threads for an hour, so no thread that did
//! work exits (and takes its count with it) while we measure. A TCP client thread, which runs
//! one blocking download at a time, measures each with [`this_thread`].

use std::time::Duration;

/// Total time on CPU of this process's threads whose name starts with `prefix`; zero where
/// `/proc` is not there (not Linux), which the report then shows as unknown.
pub fn of_threads(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
            ns += parse_schedstat(&s).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// The first field of a `schedstat` line: nanoseconds spent on a CPU.
pub fn parse_schedstat(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// CPU time of the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`).
pub fn this_thread() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_lines_give_their_first_field() {
        assert_eq!(
            parse_schedstat("85855994 235258095 356\n"),
            Some(85_855_994)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn a_busy_named_thread_is_counted_while_it_lives() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (busy_tx, busy_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("cputest-busy".into())
            .spawn(move || {
                let mut x = 0u64;
                while this_thread() < Duration::from_millis(30) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                busy_tx.send(()).unwrap();
                // Stay alive while the test reads our count.
                let _ = done_rx.recv();
            })
            .unwrap();
        busy_rx.recv().unwrap();
        if std::path::Path::new("/proc/self/task").exists() {
            let got = of_threads("cputest-busy");
            assert!(got >= Duration::from_millis(25), "{got:?}");
        }
        assert_eq!(of_threads("no-such-thread-name"), Duration::ZERO);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
