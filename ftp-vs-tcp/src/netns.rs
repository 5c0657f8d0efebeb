//! A rate-limited link for the comparison, made here and removed here: two network namespaces
//! of this process's own (`ftpvstcp<pid>s` for the servers, `ftpvstcp<pid>c` for the clients),
//! a veth pair between them with addresses of our choosing ([`SERVER_IP`], [`CLIENT_IP`], used
//! nowhere else), and a `tbf` qdisc (RFC-free: Linux traffic control) on both ends, with an
//! optional `netem` delay under it. Needs root, `ip` and `tc` (iproute2).
//!
//! Threads join a namespace with setns(2): a socket belongs to the namespace of the thread that
//! created it, so the servers' runtimes (their listeners, accepted and passive sockets) run in
//! the server namespace and the clients' threads in the client namespace. Nothing outside the
//! two namespaces is touched; deleting them removes the veth pair with them.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use thiserror::Error;

/// The servers' address, on their end of the veth pair.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 13, 1);
/// The clients' address, on the other end.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 13, 2);

/// Why the link could not be made.
#[derive(Debug, Error)]
pub enum LinkError {
    /// A command failed (its argv and what it printed are in the message).
    #[error("{0}")]
    Command(String),
    /// A namespace could not be joined.
    #[error("cannot enter network namespace {name}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Checks a `tc` rate (`100mbit`, `1gbit`, `512kbit`): digits, then one of `kbit`, `mbit`,
/// `gbit`; returns it as typed.
pub fn parse_rate(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
        && matches!(unit, "kbit" | "mbit" | "gbit");
    if ok {
        Ok(lower)
    } else {
        Err(format!(
            "{s:?} is not a rate like 100mbit, 1gbit or 512kbit"
        ))
    }
}

/// The namespace names for process `pid`: (servers, clients).
pub fn names(pid: u32) -> (String, String) {
    (format!("ftpvstcp{pid}s"), format!("ftpvstcp{pid}c"))
}

/// Deletes this process's namespaces if they exist (what the Ctrl-C handler calls too).
pub fn remove_for(pid: u32) {
    let (s, c) = names(pid);
    for n in [s, c] {
        let _ = Command::new("ip")
            .args(["netns", "del", &n])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The commands that build the link, in order: each an argv for `ip` or `tc`.
pub fn setup_commands(pid: u32, rate: &str, delay_ms: u32) -> Vec<Vec<String>> {
    let (s, c) = names(pid);
    let (vs, vc) = (format!("fvt{pid}s"), format!("fvt{pid}c"));
    let mut cmds: Vec<Vec<&str>> = vec![
        vec!["ip", "netns", "add", &s],
        vec!["ip", "netns", "add", &c],
        vec![
            "ip", "link", "add", &vs, "type", "veth", "peer", "name", &vc,
        ],
        vec!["ip", "link", "set", &vs, "netns", &s],
        vec!["ip", "link", "set", &vc, "netns", &c],
    ];
    let s_addr = format!("{SERVER_IP}/24");
    let c_addr = format!("{CLIENT_IP}/24");
    let burst = "64kb";
    let limit = "1mb";
    let delay = format!("{delay_ms}ms");
    for (ns, dev, addr) in [(&s, &vs, &s_addr), (&c, &vc, &c_addr)] {
        cmds.push(vec!["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        cmds.push(vec!["ip", "-n", ns, "link", "set", "lo", "up"]);
        cmds.push(vec!["ip", "-n", ns, "link", "set", dev, "up"]);
        if delay_ms > 0 {
            // netem delays every packet; tbf under it sets the rate.
            cmds.push(vec![
                "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                "delay", &delay,
            ]);
            cmds.push(vec![
                "tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:",
                "tbf", "rate", rate, "burst", burst, "limit", limit,
            ]);
        } else {
            cmds.push(vec![
                "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst",
                burst, "limit", limit,
            ]);
        }
    }
    cmds.into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect()
}

/// The two namespaces and the link between them; deleted on drop.
#[derive(Debug)]
pub struct Link {
    pid: u32,
    /// The servers' namespace.
    pub server_ns: String,
    /// The clients' namespace.
    pub client_ns: String,
}

impl Link {
    /// Makes the link: `rate` each way, `delay_ms` added each way (so a round trip gains twice
    /// that).
    pub fn create(rate: &str, delay_ms: u32) -> Result<Self, LinkError> {
        let pid = std::process::id();
        let (server_ns, client_ns) = names(pid);
        // Left over from a killed run of a process with the same pid.
        remove_for(pid);
        let link = Self {
            pid,
            server_ns,
            client_ns,
        };
        for argv in setup_commands(pid, rate, delay_ms) {
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .output()
                .map_err(|e| LinkError::Command(format!("cannot run {}: {e}", argv.join(" "))))?;
            if !out.status.success() {
                let hint = if argv.iter().any(|a| a == "netem") {
                    " (--link-delay needs the kernel's sch_netem; --link-delay 0 uses tbf alone)"
                } else {
                    ""
                };
                return Err(LinkError::Command(format!(
                    "{} failed ({}): {}{hint}",
                    argv.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(link)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        remove_for(self.pid);
    }
}

/// Moves the calling thread into network namespace `name` (its later sockets live there).
pub fn enter(name: &str) -> Result<(), LinkError> {
    let err = |source| LinkError::Enter {
        name: name.to_owned(),
        source,
    };
    let f = File::open(format!("/run/netns/{name}")).map_err(err)?;
    // SAFETY: a valid descriptor of a network namespace file, held open for the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_tc_rates() {
        assert_eq!(parse_rate("100Mbit").as_deref(), Ok("100mbit"));
        assert_eq!(parse_rate("1gbit").as_deref(), Ok("1gbit"));
        for bad in [
            "", "100", "mbit", "0mbit", "10 mbit", "1.5mbit", "100mbps", "-1kbit",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_link_uses_only_our_namespaces_and_addresses() {
        let cmds = setup_commands(4242, "100mbit", 1);
        let (s, c) = names(4242);
        // Every address is ours, and every command after the first three acts inside (or
        // moves a device into) one of our namespaces.
        for argv in &cmds {
            let line = argv.join(" ");
            assert!(argv[0] == "ip" || argv[0] == "tc", "{line}");
            if line.contains("addr add") {
                assert!(line.contains("10.200.13."), "{line}");
            }
            if argv[1] == "-n" {
                assert!(argv[2] == s || argv[2] == c, "{line}");
            }
        }
        assert!(cmds.iter().any(|a| a.contains(&"tbf".to_owned())));
        assert!(cmds.iter().any(|a| a.contains(&"netem".to_owned())));
        assert!(
            setup_commands(1, "1gbit", 0)
                .iter()
                .all(|a| !a.contains(&"netem".to_owned()))
        );
        assert!(format!("fvt{}s", u32::MAX).len() <= 15, "IFNAMSIZ");
    }
}
