//! The chart: throughput and time per file against file size, on log axes, one line per
//! protocol, plus each protocol's set-up time (dashed) in the time panel; drawn with plotters'
//! SVG back-end, so no Python and no font files are needed.

use std::path::Path;

use plotters::prelude::*;
use thiserror::Error;

use crate::config::size_label;
use crate::measure::Protocol;
use crate::report::{Report, SizeRow};

/// Why the chart could not be drawn.
#[derive(Debug, Error)]
#[error("cannot draw the chart {path}: {message}")]
pub struct ChartError {
    /// The file.
    pub path: String,
    /// What failed (plotters' error types are generic; their text is kept).
    pub message: String,
}

/// The colour of a protocol's lines.
fn colour(p: Protocol) -> RGBColor {
    match p {
        Protocol::Tcp => RGBColor(31, 119, 180),
        Protocol::Ftp => RGBColor(214, 39, 40),
        Protocol::Ftps => RGBColor(44, 160, 44),
    }
}

/// Powers of 1024 and the steps between them that fall inside `lo..=hi` (1 KiB, 4 KiB, 16 KiB,
/// 64 KiB, ...): key points that read as file sizes, unlike plotters' powers of ten.
fn size_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut x = 1.0f64;
    while x <= hi * 1.0001 {
        if x >= lo / 1.0001 {
            v.push(x);
        }
        x *= 4.0;
    }
    v
}

/// Powers of ten and their 2 and 5 multiples inside `lo..=hi`.
fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut p = 10f64.powi(lo.log10().floor() as i32);
    while p <= hi {
        for m in [1.0, 2.0, 5.0] {
            let x = p * m;
            if x >= lo && x <= hi {
                v.push(x);
            }
        }
        p *= 10.0;
    }
    v
}

/// A number without needless digits: `0.05`, `2`, `150`, `12000`.
fn short(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        let s = format!("{x:.1}");
        s.trim_end_matches(".0").to_owned()
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.1, 1.0);
    }
    // A decade's margin on a log axis would waste space: half a step each way.
    (lo / 1.5, hi * 1.5)
}

/// Draws `report`'s per-size rows into `path` as SVG.
pub fn draw(report: &Report, path: &Path) -> Result<(), ChartError> {
    let fail = |e: &dyn std::fmt::Display| ChartError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(600);
    let rows = &report.sizes;
    let protocols: Vec<Protocol> = {
        let mut p: Vec<Protocol> = rows.iter().map(|r| r.protocol).collect();
        p.dedup();
        p.sort_by_key(|p| *p as u8);
        p.dedup();
        p
    };
    let series = |p: Protocol, f: &dyn Fn(&SizeRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.protocol == p)
            .map(|r| (r.size as f64, f(r)))
            .filter(|(_, y)| *y > 0.0)
            .collect()
    };
    let (xlo, xhi) = bounds(rows.iter().map(|r| r.size as f64));
    let x_ticks = size_ticks(xlo, xhi);
    let x_fmt = |x: &f64| size_label(x.round() as u64);

    // Left: throughput.
    let (ylo, yhi) = bounds(rows.iter().map(|r| r.mb_per_s));
    let mut chart = ChartBuilder::on(&left)
        .caption("Throughput (higher is better)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (xlo..xhi).log_scale().with_key_points(x_ticks.clone()),
            (ylo..yhi)
                .log_scale()
                .with_key_points(decade_ticks(ylo, yhi)),
        )
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("file size")
        .y_desc("MB/s (10^6 bytes/s)")
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(|e| fail(&e))?;
    for &p in &protocols {
        let c = colour(p);
        let pts = series(p, &|r| r.mb_per_s);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(p.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, c.filled())))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;

    // Right: time per file, and the set-up part of it.
    let (tlo, thi) = bounds(
        rows.iter()
            .flat_map(|r| [r.median_s * 1e3, r.setup_s * 1e3]),
    );
    let mut chart = ChartBuilder::on(&right)
        .caption("Time per file (lower is better)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (xlo..xhi).log_scale().with_key_points(x_ticks),
            (tlo..thi)
                .log_scale()
                .with_key_points(decade_ticks(tlo, thi)),
        )
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("file size")
        .y_desc("milliseconds")
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(|e| fail(&e))?;
    for &p in &protocols {
        let c = colour(p);
        let pts = series(p, &|r| r.median_s * 1e3);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(format!("{} total", p.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, c.filled())))
            .map_err(|e| fail(&e))?;
        let setup = series(p, &|r| r.setup_s * 1e3);
        chart
            .draw_series(DashedLineSeries::new(setup, 6, 4, c.stroke_width(1)))
            .map_err(|e| fail(&e))?
            .label(format!("{} set-up (before the request)", p.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_sizes_and_round_numbers() {
        let t = size_ticks(1000.0, 2.0 * (1u64 << 30) as f64);
        assert_eq!(t.first(), Some(&1024.0));
        assert_eq!(t.last(), Some(&((1u64 << 30) as f64)));
        assert_eq!(
            decade_ticks(0.3, 60.0),
            [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
        );
        assert_eq!(
            (short(0.05), short(2.0), short(12000.0)),
            ("0.05".into(), "2".into(), "12000".into())
        );
    }
}
