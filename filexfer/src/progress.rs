//! What a transfer shows a person: a progress bar on stderr while it runs (only when stderr is a
//! terminal, decided by the caller) and one summary line when it ends.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr, or nothing. Cleared from the terminal when dropped, so a failed
/// transfer's error message is not drawn over.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    /// The group's total, moved with this bar (see [`Bars::add`]).
    total: Option<ProgressBar>,
}

impl Progress {
    /// A bar labelled `label`, counting towards `total` bytes (a spinner when the total is
    /// unknown), starting at `start` (a resumed prefix). Hidden unless `show`.
    pub fn new(show: bool, label: &str, total: Option<u64>, start: u64) -> Self {
        if !show {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = template_for(total);
        Self {
            bar: Some(styled(bar, template, label, start)),
            total: None,
        }
    }

    /// No bar at all.
    pub fn hidden() -> Self {
        Self {
            bar: None,
            total: None,
        }
    }

    /// Adds `n` bytes (to the group's total too, for a bar from [`Bars::add`]).
    pub fn inc(&self, n: u64) {
        for b in [&self.bar, &self.total].into_iter().flatten() {
            b.inc(n);
        }
    }
}

/// The bar's look: bytes of a total, or a spinner when the total is unknown.
fn template_for(total: Option<u64>) -> &'static str {
    match total {
        Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        None => "{msg} {spinner} {bytes} {bytes_per_sec} {elapsed}",
    }
}

fn styled(bar: ProgressBar, template: &str, label: &str, start: u64) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar.set_position(start);
    bar
}

/// Several bars drawn together on stderr (indicatif's [`MultiProgress`]): a total at the top
/// and one bar per file or segment under it while it moves, each removed when dropped, so
/// parallel transfers do not overwrite each other's line. Nothing at all unless shown.
#[derive(Debug, Clone)]
pub struct Bars {
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
}

impl Bars {
    /// A group whose total bar is labelled `label` and counts towards `total` bytes, starting
    /// at `start`. Hidden unless `show`.
    pub fn new(show: bool, label: &str, total: Option<u64>, start: u64) -> Self {
        if !show {
            return Self::hidden();
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::with_draw_target(
            total,
            ProgressDrawTarget::hidden(),
        ));
        let bar = styled(bar, template_for(total), label, start);
        Self {
            multi: Some(multi),
            total: Some(bar),
        }
    }

    /// No bars at all.
    pub fn hidden() -> Self {
        Self {
            multi: None,
            total: None,
        }
    }

    /// Whether anything is drawn.
    pub fn shown(&self) -> bool {
        self.multi.is_some()
    }

    /// A bar for one file or segment, under the total; what it counts is added to the total
    /// too, and dropping it removes it. `start` is a resumed prefix (not added to the total:
    /// the group's creator counted it or not).
    pub fn add(&self, label: &str, total: Option<u64>, start: u64) -> Progress {
        let Some(multi) = &self.multi else {
            return Progress::hidden();
        };
        let bar = multi.add(ProgressBar::with_draw_target(
            total,
            ProgressDrawTarget::hidden(),
        ));
        Progress {
            bar: Some(styled(bar, template_for(total), label, start)),
            total: self.total.clone(),
        }
    }

    /// Clears every bar from the terminal (also done when the last clone is dropped).
    pub fn finish(&self) {
        if let Some(b) = &self.total {
            b.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// What a finished transfer did, for its summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// What happened: "downloaded", "uploaded", "listed", "already complete:".
    pub verb: &'static str,
    /// Bytes moved in this run (a resumed prefix not counted).
    pub bytes: u64,
    /// Bytes that were already there from an earlier run (`--continue`).
    pub resumed_from: u64,
    /// Time the transfer took.
    pub elapsed: Duration,
    /// Where the bytes went, when that is worth saying (`-` for standard output).
    pub saved_to: Option<String>,
}

impl Summary {
    /// Throughput in MB/s (10^6 bytes per second); 0 for an instant transfer.
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs / 1e6
        } else {
            0.0
        }
    }

    /// `downloaded 1048576 bytes in 0.42 s (2.50 MB/s) to a.bin (resumed at byte 4096)`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {} bytes in {:.2} s ({:.2} MB/s)",
            self.verb,
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.mb_per_s()
        );
        if let Some(to) = &self.saved_to {
            s.push_str(&format!(" to {to}"));
        }
        if self.resumed_from > 0 {
            s.push_str(&format!(" (resumed at byte {})", self.resumed_from));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_of_a_group_moves_the_total() {
        let bars = Bars::new(true, "all", Some(100), 10);
        let a = bars.add("a", Some(60), 0);
        let b = bars.add("b", Some(40), 5);
        a.inc(30);
        b.inc(20);
        let total = bars.total.as_ref().unwrap();
        assert_eq!(total.position(), 60);
        assert_eq!(a.bar.as_ref().unwrap().position(), 30);
        assert_eq!(b.bar.as_ref().unwrap().position(), 25);
        drop((a, b));
        bars.finish();
        let hidden = Bars::hidden();
        assert!(!hidden.shown());
        hidden.add("x", None, 0).inc(1);
    }

    #[test]
    fn summary_lines() {
        let mut s = Summary {
            verb: "downloaded",
            bytes: 2_500_000,
            resumed_from: 0,
            elapsed: Duration::from_secs(1),
            saved_to: None,
        };
        assert_eq!(s.line(), "downloaded 2500000 bytes in 1.00 s (2.50 MB/s)");
        s.saved_to = Some("a b.bin".into());
        s.resumed_from = 4096;
        assert_eq!(
            s.line(),
            "downloaded 2500000 bytes in 1.00 s (2.50 MB/s) to a b.bin (resumed at byte 4096)"
        );
        s.elapsed = Duration::ZERO;
        assert_eq!(s.mb_per_s(), 0.0);
    }
}
