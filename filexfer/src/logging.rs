//! The `tracing` set-up every binary shares: `RUST_LOG` when set, else the binary's default
//! level; logs go to stderr (results go to stdout).
//!
//! Log lines carry text from the network (user names, passwords tried, file names, server
//! replies), which is hostile until escaped: every control character in a line, but the newline
//! that ends it, is written as `\xNN` ([`EscapingWriter`]), so no client can move an operator's
//! cursor, recolour the terminal or forge a log line. This covers the lines of libraries we log
//! through (libunftp's too), not only ours; the price is that lines are never coloured.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Servers: a timestamp and the module on every line, for an operator's log.
    Server,
    /// Command-line clients: just the level and the message.
    Client,
}

/// Libraries whose debug lines carry secrets, capped at the level given whatever `RUST_LOG`
/// asks: suppaftp logs every command it sends at `debug`, `PASS` and its password included
/// (ftp-client's own `-v` trace masks it).
const CAPPED: &[&str] = &["suppaftp=info"];

/// The filter [`init`] installs: `rust_log` (the `RUST_LOG` value) when it parses, else
/// `default`, with the libraries that log secrets capped on top (suppaftp at `info`).
pub fn filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    for cap in CAPPED {
        if let Ok(d) = cap.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is not set
/// (`"info"`, `"warn"`, ...). A second call does nothing.
pub fn init(default: &str, style: Style) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(rust_log.as_deref(), default);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(EscapedStderr)
        .with_ansi(false);
    let _ = match style {
        Style::Server => builder.try_init(),
        Style::Client => builder.without_time().with_target(false).try_init(),
    };
}

/// Makes an [`EscapingWriter`] over stderr for each log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = EscapingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(io::stderr())
    }
}

/// Writes what it is given with every control character written as `\xNN`, except a newline
/// that ends a write (the end of a log line): a newline inside a message is escaped too, so a
/// name cannot start a forged line.
#[derive(Debug)]
pub struct EscapingWriter<W>(pub W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let mut out = match std::str::from_utf8(body) {
            // Every control character, C1 (U+0080-U+009F, which some terminals act on) included.
            Ok(text) => crate::text::printable(text).into_bytes(),
            Err(_) => {
                let mut out = Vec::with_capacity(body.len() + 8);
                for &b in body {
                    if b < 0x20 || b == 0x7f {
                        out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                    } else {
                        out.push(b);
                    }
                }
                out
            }
        };
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_that_log_passwords_stay_capped_whatever_rust_log_says() {
        for asked in [
            "suppaftp=trace",
            "trace",
            "debug,suppaftp=debug",
            "not a filter [",
        ] {
            let shown = filter(Some(asked), "warn").to_string();
            assert!(shown.contains("suppaftp=info"), "{asked}: {shown}");
            assert!(!shown.contains("suppaftp=debug"), "{asked}: {shown}");
            assert!(!shown.contains("suppaftp=trace"), "{asked}: {shown}");
        }
    }

    #[test]
    fn control_characters_in_a_line_are_escaped_its_end_kept() {
        let mut w = EscapingWriter(Vec::new());
        w.write_all(b"login user=\x1b[31mevil\r\nFAKE LINE\tx\x7f\n")
            .unwrap();
        w.write_all("ünï 文件 \u{9b}2J\n".as_bytes()).unwrap();
        w.write_all(b"not utf-8 \xff\x1b\n").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&w.0),
            "login user=\\x1b[31mevil\\x0d\\x0aFAKE LINE\\x09x\\x7f\nünï 文件 \\x9b2J\nnot utf-8 \u{fffd}\\x1b\n"
        );
    }
}
