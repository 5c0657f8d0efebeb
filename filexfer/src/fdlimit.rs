//! The open-file limit a server needs. Each session holds a few descriptors (a server says how
//! many), and the usual soft limit of 1,024 would stop a server far below its configured
//! connection limit, with errors that look like something else (a failed login, a connection
//! left waiting in the listen backlog).

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a process may always do that) and returns
/// the soft limit now in force.
pub fn raise_to_hard_limit() -> io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, exclusively borrowed rlimit for the duration of each call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above; `raised` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Raises the limit and logs a warning when `sessions` sessions of `per_session` descriptors
/// each (plus a margin for listeners, logs and the runtime) would not fit under it.
pub fn ensure_for(sessions: usize, per_session: usize) {
    let needed = (sessions as libc::rlim_t)
        .saturating_mul(per_session as libc::rlim_t)
        .saturating_add(64);
    match raise_to_hard_limit() {
        Ok(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "the open-file limit is too low for the configured connection limit: raise `ulimit -n` (LimitNOFILE= under systemd) or lower max_connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_to_hard_limit().expect("getrlimit");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid, exclusively borrowed rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(soft, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
