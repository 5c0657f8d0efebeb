//! Load generator for `scripts/bench-tcp-fileserv`: downloads NAME `--count` times from
//! `--concurrency` threads, either over one connection per thread (`--reuse`) or a new connection
//! per download, discards the bytes, and prints one line of figures. Every download must return
//! the announced length, or the run fails.
//!
//! `cargo run --release -p tcp-fileserv --example loadgen -- 127.0.0.1:7070 file.bin --count 1000`

use std::time::{Duration, Instant};

use clap::Parser;
use tcp_fileserv::client::Client;
use tcp_fileserv::config::HostPort;
use tcp_fileserv::protocol::Kind;

#[derive(Parser)]
struct Args {
    /// Server address (`HOST:PORT`).
    addr: HostPort,
    /// File to download.
    name: String,
    /// Total downloads (bounded: at most 1,000,000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
    /// Threads downloading at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    concurrency: u64,
    /// Keep one connection per thread for all its downloads.
    #[arg(long)]
    reuse: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let start = Instant::now();
    let per = a.count / a.concurrency;
    let extra = a.count % a.concurrency;
    let workers: Vec<_> = (0..a.concurrency)
        .map(|i| {
            let (addr, name, reuse) = (a.addr.clone(), a.name.clone(), a.reuse);
            let n = per + u64::from(i < extra);
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let timeout = Duration::from_secs(60);
                let mut conn = None;
                let mut bytes = 0;
                for _ in 0..n {
                    if conn.is_none() || !reuse {
                        conn = Some(Client::connect(&addr, timeout)?);
                    }
                    let c = conn.as_mut().expect("connected above");
                    let len = c.request(Kind::Get, &name, 0)?;
                    bytes += c.read_body(&name, len, &mut std::io::sink(), "sink", &mut |_| {})?;
                }
                Ok(bytes)
            })
        })
        .collect();
    let mut bytes = 0;
    for w in workers {
        bytes += w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "downloads={} concurrency={} reuse={} bytes={} seconds={:.3} per_second={:.0} MBps={:.1}",
        a.count,
        a.concurrency,
        a.reuse,
        bytes,
        secs,
        a.count as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
