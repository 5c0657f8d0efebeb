//! Which addresses a server tells its users to connect to.
//!
//! One rule for every server in the suite: a server bound to a specific address is reachable at
//! that address only; a server bound to the unspecified address (`0.0.0.0` or `[::]`) is
//! reachable at every interface address it covers, LAN addresses first and loopback last, IPv4
//! before IPv6. A socket bound to `[::]` also takes IPv4 on Linux (bindv6only=0), so IPv4
//! addresses are listed for it too; one bound to `0.0.0.0` gets no IPv6 addresses. Link-local
//! IPv6 addresses are left out: they need a zone id (`%eth0`) that URLs and most clients cannot
//! carry.

use std::net::{IpAddr, SocketAddr};

/// The addresses a peer can use to reach a server bound to `bound` (see the module docs for the
/// rule). Never empty: with no interface found, the loopback address of the bound family.
pub fn reachable_addresses(bound: SocketAddr) -> Vec<SocketAddr> {
    let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .collect();
    reachable_from(bound, &interfaces)
}

/// [`reachable_addresses`] over a given list of interface addresses (pure, for tests).
pub fn reachable_from(bound: SocketAddr, interfaces: &[IpAddr]) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let want_v6 = bound.is_ipv6();
    let mut ips: Vec<IpAddr> = interfaces
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() || want_v6)
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6(), *ip));
    ips.dedup();
    if ips.is_empty() {
        ips.push(if want_v6 {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        });
    }
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

/// `scheme://host:port/` for an address, with IPv6 in brackets (RFC 3986 §3.2.2).
pub fn url(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{addr}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn table_of_cases() {
        let ifs = [
            ip("127.0.0.1"),
            ip("::1"),
            ip("192.168.1.20"),
            ip("fe80::1"),
            ip("2001:db8::5"),
            ip("10.0.0.3"),
        ];
        let cases: [(&str, &[&str]); 4] = [
            ("192.168.1.20:21", &["192.168.1.20:21"]),
            (
                "0.0.0.0:21",
                &["10.0.0.3:21", "192.168.1.20:21", "127.0.0.1:21"],
            ),
            (
                "[::]:21",
                &[
                    "10.0.0.3:21",
                    "192.168.1.20:21",
                    "[2001:db8::5]:21",
                    "127.0.0.1:21",
                    "[::1]:21",
                ],
            ),
            ("[::1]:2121", &["[::1]:2121"]),
        ];
        for (bound, want) in cases {
            let got: Vec<String> = reachable_from(bound.parse().unwrap(), &ifs)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, want, "bound to {bound}");
        }
    }

    #[test]
    fn never_empty() {
        let got = reachable_from("0.0.0.0:7070".parse().unwrap(), &[]);
        assert_eq!(got, ["127.0.0.1:7070".parse::<SocketAddr>().unwrap()]);
        let got = reachable_from("[::]:7070".parse().unwrap(), &[ip("fe80::2")]);
        assert_eq!(got, ["[::1]:7070".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            url("ftp", "[2001:db8::5]:21".parse().unwrap()),
            "ftp://[2001:db8::5]:21/"
        );
        assert_eq!(
            url("ftp", "10.0.0.3:2121".parse().unwrap()),
            "ftp://10.0.0.3:2121/"
        );
    }
}
