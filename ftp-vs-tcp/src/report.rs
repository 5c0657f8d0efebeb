//! The results, and their three renderings: a Markdown table (stdout), CSV and JSON. Pure:
//! numbers in, text out; [`crate::chart`] draws the same rows.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::config::size_label;
use crate::measure::{Protocol, Sample};

/// Bytes in a GiB, for CPU time per GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// One size and protocol: the medians of its counted downloads.
#[derive(Debug, Clone, Serialize)]
pub struct SizeRow {
    /// The protocol.
    pub protocol: Protocol,
    /// File size in bytes.
    pub size: u64,
    /// How the server sent the bytes (`sendfile`, `buffered copy`, `unknown` for a remote).
    pub data_path: &'static str,
    /// Counted downloads.
    pub runs: usize,
    /// Median time per download, seconds.
    pub median_s: f64,
    /// `size` over the median time, MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Median time to the first byte of the file, seconds.
    pub first_byte_s: f64,
    /// Median time to connect (FTP: to the greeting), seconds.
    pub connect_s: f64,
    /// Median time of USER and PASS, seconds (0 for TCP).
    pub login_s: f64,
    /// Median time of TYPE I and SIZE, seconds (0 for TCP).
    pub prepare_s: f64,
    /// Median time of EPSV and the data connection, seconds (0 for TCP).
    pub passive_s: f64,
    /// FTPS: median time of AUTH TLS, the control connection's handshake, PBSZ and PROT,
    /// seconds (0 otherwise); part of `setup_s`.
    pub tls_control_s: f64,
    /// FTPS: median time of the data connection's TLS handshake, after RETR's `150`, seconds
    /// (0 otherwise); not part of `setup_s` (it follows the request), part of `first_byte_s`.
    pub tls_data_s: f64,
    /// Median time before the request for the file went out, seconds.
    pub setup_s: f64,
    /// Round trips per download.
    pub round_trips: u32,
    /// Server CPU seconds per GiB moved (`None`: not measurable, a remote server).
    pub server_cpu_s_per_gib: Option<f64>,
    /// Client CPU seconds per GiB moved.
    pub client_cpu_s_per_gib: Option<f64>,
    /// Median time over TCP's median time for the same size.
    pub ratio_to_tcp: f64,
    /// Whether the checked download was byte-identical to the file.
    pub verified: bool,
    /// Every counted download.
    pub samples: Vec<Sample>,
}

/// A scenario beyond one file: many small files, or concurrent clients.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRow {
    /// What was done, e.g. `200 x 1 KiB, one connection`.
    pub scenario: String,
    /// The protocol.
    pub protocol: Protocol,
    /// Files downloaded per run.
    pub files: u32,
    /// Clients at once.
    pub clients: usize,
    /// Bytes of each file.
    pub size: u64,
    /// Runs (the median is reported).
    pub runs: usize,
    /// Median wall time of a run, seconds.
    pub median_s: f64,
    /// All bytes of a run over its median time, MB/s.
    pub mb_per_s: f64,
    /// Round trips per run.
    pub round_trips: u32,
    /// Median server CPU seconds per run.
    pub server_cpu_s: Option<f64>,
    /// Median client CPU seconds per run.
    pub client_cpu_s: Option<f64>,
    /// Median time over TCP's for the same scenario (the TCP row of the same `group`).
    pub ratio_to_tcp: f64,
    /// Rows of one group are compared with each other (same files, same clients).
    pub group: String,
}

/// Everything one run of the tool measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `loopback (in-process servers)` or the servers measured.
    pub target: String,
    /// Cores the machine has (servers and clients share them on loopback).
    pub cores: usize,
    /// How CPU time was measured.
    pub cpu_method: &'static str,
    /// Per size and protocol.
    pub sizes: Vec<SizeRow>,
    /// The scenarios beyond one file.
    pub scenarios: Vec<ScenarioRow>,
    /// How FTPS was measured, or why it was not.
    pub ftps: String,
    /// The same over a rate-limited link, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shaped: Option<Shaped>,
}

/// Results over the shaped link.
#[derive(Debug, Clone, Serialize)]
pub struct Shaped {
    /// The link, e.g. `100mbit, 1 ms each way (tbf + netem, veth between two namespaces)`.
    pub link: String,
    /// Per size and protocol.
    pub sizes: Vec<SizeRow>,
    /// The scenarios run over it.
    pub scenarios: Vec<ScenarioRow>,
}

/// How the FTPS rows were measured, as the report says it.
pub const FTPS_HOW: &str = "explicit FTPS (RFC 4217): AUTH TLS, PBSZ 0, PROT P; a second in-process ftp-server with its own self-signed certificate, pinned by the client; each data connection resumes the control connection's TLS session";

/// What the report says of FTPS against remote servers.
pub const FTPS_REMOTE: &str = "not measured against remote servers (--ftp is plain FTP)";

/// How CPU time is measured, as the report says it.
pub const CPU_METHOD: &str = "per-thread time on CPU from /proc/self/task/*/schedstat: each server runs on a tokio runtime of its own whose threads carry its name; FTP client threads likewise; a TCP client thread measures itself (CLOCK_THREAD_CPUTIME_ID)";

/// The median of `xs` (the mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn med(samples: &[Sample], f: impl Fn(&Sample) -> Duration) -> f64 {
    median(
        &samples
            .iter()
            .map(|s| f(s).as_secs_f64())
            .collect::<Vec<_>>(),
    )
}

/// The row of `samples` (the counted downloads of one size and protocol); `server_cpu` is
/// their total server CPU time, `None` when it cannot be measured. The ratio is filled in by
/// [`fill_ratios`].
pub fn size_row(
    protocol: Protocol,
    size: u64,
    data_path: &'static str,
    samples: Vec<Sample>,
    server_cpu: Option<Duration>,
    verified: bool,
) -> SizeRow {
    let median_s = med(&samples, |s| s.total);
    let moved: u64 = samples.iter().map(|s| s.bytes).sum();
    let per_gib = |d: Duration| (moved > 0).then(|| d.as_secs_f64() * GIB / moved as f64);
    let client: Duration = samples.iter().map(|s| s.client_cpu).sum();
    SizeRow {
        protocol,
        size,
        data_path,
        runs: samples.len(),
        median_s,
        mb_per_s: if median_s > 0.0 {
            size as f64 / median_s / 1e6
        } else {
            0.0
        },
        first_byte_s: med(&samples, |s| s.first_byte),
        connect_s: med(&samples, |s| s.connect),
        login_s: med(&samples, |s| s.login),
        prepare_s: med(&samples, |s| s.prepare),
        passive_s: med(&samples, |s| s.passive),
        tls_control_s: med(&samples, |s| s.tls_control),
        tls_data_s: med(&samples, |s| s.tls_data),
        setup_s: med(&samples, |s| s.setup),
        round_trips: samples.iter().map(|s| s.round_trips).max().unwrap_or(0),
        server_cpu_s_per_gib: server_cpu.and_then(per_gib),
        client_cpu_s_per_gib: (client > Duration::ZERO).then(|| per_gib(client)).flatten(),
        ratio_to_tcp: 0.0,
        verified,
        samples,
    }
}

/// Sets each row's time ratio to the TCP row of the same size (and each scenario's to the TCP
/// row of its group).
pub fn fill_ratios(report: &mut Report) {
    ratios(&mut report.sizes, &mut report.scenarios);
    if let Some(s) = &mut report.shaped {
        ratios(&mut s.sizes, &mut s.scenarios);
    }
}

fn ratios(sizes: &mut [SizeRow], scenarios: &mut [ScenarioRow]) {
    let tcp: Vec<(u64, f64)> = sizes
        .iter()
        .filter(|r| r.protocol == Protocol::Tcp)
        .map(|r| (r.size, r.median_s))
        .collect();
    for r in sizes.iter_mut() {
        if let Some((_, t)) = tcp.iter().find(|(s, _)| *s == r.size) {
            r.ratio_to_tcp = if *t > 0.0 { r.median_s / t } else { 0.0 };
        }
    }
    let tcp: Vec<(String, f64)> = scenarios
        .iter()
        .filter(|r| r.protocol == Protocol::Tcp)
        .map(|r| (r.group.clone(), r.median_s))
        .collect();
    for r in scenarios.iter_mut() {
        if let Some((_, t)) = tcp.iter().find(|(g, _)| *g == r.group) {
            r.ratio_to_tcp = if *t > 0.0 { r.median_s / t } else { 0.0 };
        }
    }
}

/// A duration in seconds as `0.123 ms`, `12.3 ms` or `1.23 s`.
pub fn fmt_time(secs: f64) -> String {
    if secs < 0.001 {
        format!("{:.3} ms", secs * 1e3)
    } else if secs < 1.0 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

fn fmt_opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".to_owned(), f)
}

/// Column headers of the per-size table.
pub const SIZE_COLUMNS: [&str; 11] = [
    "size",
    "protocol",
    "time (median)",
    "MB/s",
    "first byte",
    "set-up (connect + [AUTH TLS +] login + TYPE/SIZE + EPSV/data conn.) [; data TLS]",
    "round trips",
    "server CPU s/GiB",
    "client CPU s/GiB",
    "time / TCP",
    "server data path",
];

/// Column headers of the scenario table.
pub const SCENARIO_COLUMNS: [&str; 9] = [
    "scenario",
    "protocol",
    "time (median)",
    "per file",
    "MB/s",
    "round trips",
    "server CPU",
    "client CPU",
    "time / TCP",
];

fn md_row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn md_head(out: &mut String, cols: &[&str]) {
    let _ = writeln!(out, "| {} |", cols.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(cols.len()));
}

fn md_sizes(out: &mut String, sizes: &[SizeRow]) {
    md_head(out, &SIZE_COLUMNS);
    for s in sizes {
        let setup = match s.protocol {
            Protocol::Tcp => fmt_time(s.setup_s),
            Protocol::Ftp => format!(
                "{} = {} + {} + {} + {}",
                fmt_time(s.setup_s),
                fmt_time(s.connect_s),
                fmt_time(s.login_s),
                fmt_time(s.prepare_s),
                fmt_time(s.passive_s)
            ),
            // The data connection's handshake comes after RETR, so it is not in the sum.
            Protocol::Ftps => format!(
                "{} = {} + TLS {} + {} + {} + {}; data TLS {}",
                fmt_time(s.setup_s),
                fmt_time(s.connect_s),
                fmt_time(s.tls_control_s),
                fmt_time(s.login_s),
                fmt_time(s.prepare_s),
                fmt_time(s.passive_s),
                fmt_time(s.tls_data_s)
            ),
        };
        md_row(
            out,
            &[
                size_label(s.size),
                s.protocol.label().to_owned(),
                fmt_time(s.median_s),
                format!("{:.1}", s.mb_per_s),
                fmt_time(s.first_byte_s),
                setup,
                s.round_trips.to_string(),
                fmt_opt(s.server_cpu_s_per_gib, |x| format!("{x:.2}")),
                fmt_opt(s.client_cpu_s_per_gib, |x| format!("{x:.2}")),
                format!("{:.2}x", s.ratio_to_tcp),
                s.data_path.to_owned(),
            ],
        );
    }
}

fn md_scenarios(out: &mut String, scenarios: &[ScenarioRow]) {
    if !scenarios.is_empty() {
        out.push('\n');
        md_head(out, &SCENARIO_COLUMNS);
        for s in scenarios {
            let files = f64::from(s.files.max(1));
            md_row(
                out,
                &[
                    s.scenario.clone(),
                    s.protocol.label().to_owned(),
                    fmt_time(s.median_s),
                    fmt_time(s.median_s / files),
                    format!("{:.1}", s.mb_per_s),
                    s.round_trips.to_string(),
                    fmt_opt(s.server_cpu_s, fmt_time),
                    fmt_opt(s.client_cpu_s, fmt_time),
                    format!("{:.2}x", s.ratio_to_tcp),
                ],
            );
        }
    }
}

/// The report as Markdown tables (what the tool prints).
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ftp-vs-tcp: {}, {} cores; medians of {} downloads per row; MB/s = 10^6 bytes/s\n",
        r.target,
        r.cores,
        r.sizes.first().map_or(0, |s| s.runs)
    );
    md_sizes(&mut out, &r.sizes);
    let _ = writeln!(out, "\nFTPS: {}", r.ftps);
    md_scenarios(&mut out, &r.scenarios);
    if let Some(sh) = &r.shaped {
        let _ = writeln!(out, "\nOver a shaped link: {}\n", sh.link);
        md_sizes(&mut out, &sh.sizes);
        md_scenarios(&mut out, &sh.scenarios);
    }
    out
}

/// Column headers of the CSV (one row per size and protocol, then one per scenario row).
pub const CSV_COLUMNS: [&str; 22] = [
    "kind",
    "scenario",
    "protocol",
    "size_bytes",
    "files",
    "clients",
    "runs",
    "median_s",
    "mb_per_s",
    "first_byte_s",
    "connect_s",
    "login_s",
    "prepare_s",
    "passive_s",
    "setup_s",
    "round_trips",
    "server_cpu_s",
    "client_cpu_s",
    "ratio_to_tcp",
    "data_path",
    "tls_control_s",
    "tls_data_s",
];

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The report as CSV. For sizes the CPU columns are seconds per GiB; for scenarios, seconds
/// per run.
pub fn csv(r: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    csv_rows(&mut out, "", &r.sizes, &r.scenarios);
    if let Some(sh) = &r.shaped {
        csv_rows(&mut out, "shaped ", &sh.sizes, &sh.scenarios);
    }
    out
}

fn csv_rows(out: &mut String, prefix: &str, sizes: &[SizeRow], scenarios: &[ScenarioRow]) {
    let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let mut line = |cells: Vec<String>| {
        let cells: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    };
    for s in sizes {
        line(vec![
            format!("{prefix}size"),
            size_label(s.size),
            s.protocol.label().into(),
            s.size.to_string(),
            "1".into(),
            "1".into(),
            s.runs.to_string(),
            s.median_s.to_string(),
            s.mb_per_s.to_string(),
            s.first_byte_s.to_string(),
            s.connect_s.to_string(),
            s.login_s.to_string(),
            s.prepare_s.to_string(),
            s.passive_s.to_string(),
            s.setup_s.to_string(),
            s.round_trips.to_string(),
            opt(s.server_cpu_s_per_gib),
            opt(s.client_cpu_s_per_gib),
            s.ratio_to_tcp.to_string(),
            s.data_path.into(),
            s.tls_control_s.to_string(),
            s.tls_data_s.to_string(),
        ]);
    }
    for s in scenarios {
        line(vec![
            format!("{prefix}scenario"),
            s.scenario.clone(),
            s.protocol.label().into(),
            s.size.to_string(),
            s.files.to_string(),
            s.clients.to_string(),
            s.runs.to_string(),
            s.median_s.to_string(),
            s.mb_per_s.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            s.round_trips.to_string(),
            opt(s.server_cpu_s),
            opt(s.client_cpu_s),
            s.ratio_to_tcp.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
}

/// The report as pretty-printed JSON, every sample included.
pub fn json(r: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64) -> Sample {
        Sample {
            bytes: 1 << 20,
            total: Duration::from_millis(ms),
            client_cpu: Duration::from_millis(1),
            ..Sample::default()
        }
    }

    fn report() -> Report {
        let mut r = Report {
            target: "test".into(),
            cores: 2,
            cpu_method: CPU_METHOD,
            sizes: vec![
                size_row(
                    Protocol::Tcp,
                    1 << 20,
                    "sendfile",
                    vec![sample(2), sample(4), sample(3)],
                    Some(Duration::from_millis(3)),
                    true,
                ),
                size_row(
                    Protocol::Ftp,
                    1 << 20,
                    "buffered copy",
                    vec![sample(6), sample(6)],
                    None,
                    true,
                ),
            ],
            scenarios: vec![],
            ftps: FTPS_HOW.into(),
            shaped: None,
        };
        fill_ratios(&mut r);
        r
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let r = report();
        assert!((r.sizes[0].median_s - 0.003).abs() < 1e-9);
        assert!((r.sizes[1].ratio_to_tcp - 2.0).abs() < 1e-9);
        assert!((r.sizes[0].server_cpu_s_per_gib.unwrap() - 1.024).abs() < 1e-9);
        assert_eq!(r.sizes[1].server_cpu_s_per_gib, None);
    }

    #[test]
    fn csv_quotes_and_has_one_line_per_row() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        let text = csv(&report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines
                .iter()
                .all(|l| l.split(',').count() == CSV_COLUMNS.len())
        );
    }

    #[test]
    fn the_table_has_a_row_per_size_and_protocol() {
        let t = markdown(&report());
        assert_eq!(t.lines().filter(|l| l.starts_with("| 1 MiB |")).count(), 2);
        assert!(t.contains("FTPS: explicit"));
        fmt_time(0.0005).contains("ms").then_some(()).unwrap();
        assert_eq!(fmt_time(2.5), "2.50 s");
    }
}
