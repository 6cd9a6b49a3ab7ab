//! Plots of a comparison (plotters), each as SVG and PNG: node CPU utilisation over time,
//! modelled online latency over time, offline throughput over time.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cluster::RunResult;

/// A plot that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {reason}")]
pub struct PlotError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

const SIZE: (u32, u32) = (1100, 520);
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

struct Chart<'a> {
    title: &'a str,
    y_desc: &'a str,
    /// Per mode: (name, points (hour, value)).
    lines: Vec<(String, Vec<(f64, f64)>)>,
    /// A horizontal reference line (value, label).
    reference: Option<(f64, String)>,
}

#[allow(clippy::cast_precision_loss)]
fn points(r: &RunResult, value: impl Fn(&crate::metrics::Bucket, f64) -> f64) -> Vec<(f64, f64)> {
    let mut step = 0u64;
    r.series
        .iter()
        .map(|b| {
            let secs = f64::from(b.steps) * f64::from(r.step_secs);
            let hour = (step as f64 + f64::from(b.steps) / 2.0) * f64::from(r.step_secs) / 3600.0;
            step += u64::from(b.steps);
            (hour, value(b, secs.max(1.0)))
        })
        .collect()
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Chart<'_>) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let x_max = c
        .lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let mut y_max = c
        .lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max);
    if let Some((v, _)) = &c.reference {
        y_max = y_max.max(*v);
    }
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(c.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("hours since trace start")
        .y_desc(c.y_desc)
        .draw()
        .map_err(e)?;
    for (i, (name, pts)) in c.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(e)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    if let Some((v, label)) = &c.reference {
        chart
            .draw_series(LineSeries::new(
                [(0.0, *v), (x_max, *v)],
                BLACK.stroke_width(1),
            ))
            .map_err(e)?
            .label(label.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

fn write_both(dir: &Path, stem: &str, c: &Chart<'_>) -> Result<Vec<PathBuf>, PlotError> {
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let fail = |p: &Path| {
        let p = p.display().to_string();
        move |reason| PlotError { path: p, reason }
    };
    draw(&SVGBackend::new(&svg, SIZE).into_drawing_area(), c).map_err(fail(&svg))?;
    draw(&BitMapBackend::new(&png, SIZE).into_drawing_area(), c).map_err(fail(&png))?;
    Ok(vec![svg, png])
}

/// Writes `utilisation`, `latency` and `throughput` as SVG and PNG into `dir`; returns the
/// files written.
///
/// # Errors
/// [`PlotError`] when a file cannot be drawn or written.
#[allow(clippy::cast_precision_loss)]
pub fn write_plots(
    dir: &Path,
    results: &[RunResult],
    slo_p99_ms: f64,
) -> Result<Vec<PathBuf>, PlotError> {
    let named = |f: &dyn Fn(&RunResult) -> Vec<(f64, f64)>| -> Vec<(String, Vec<(f64, f64)>)> {
        results
            .iter()
            .map(|r| (r.summary.mode.clone(), f(r)))
            .collect()
    };
    let mut files = Vec::new();
    files.extend(write_both(
        dir,
        "utilisation",
        &Chart {
            title: "Node CPU utilisation (mean over nodes)",
            y_desc: "CPU utilisation %",
            lines: named(&|r| points(r, |b, _| b.utilisation_pct())),
            reference: None,
        },
    )?);
    files.extend(write_both(
        dir,
        "latency",
        &Chart {
            title: "Online p99, mean over online nodes (contention model, not measured)",
            y_desc: "modelled p99 ms",
            lines: named(&|r| points(r, |b, _| b.p99_mean_ms())),
            reference: Some((slo_p99_ms, format!("SLO {slo_p99_ms} ms"))),
        },
    )?);
    files.extend(write_both(
        dir,
        "throughput",
        &Chart {
            title: "Offline throughput: CPU delivered to batch VMs",
            y_desc: "offline cores (cluster total)",
            lines: named(&|r| points(r, |b, secs| b.offline_mcs as f64 / 1000.0 / secs)),
            reference: None,
        },
    )?);
    Ok(files)
}
