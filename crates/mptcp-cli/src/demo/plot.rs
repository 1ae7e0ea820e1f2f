//! The demo's pictures (SVG, drawn with plotters): each run's throughput
//! per path over time with the scenario's events marked and stalls shaded,
//! and all runs stacked in one figure to compare.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::record::Recording;
use super::report::Outcome;

/// Each path's colour, in path order (then repeating).
const COLORS: [RGBColor; 4] =
    [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xff, 0x7f, 0x0e), RGBColor(0x2c, 0xa0, 0x2c), RGBColor(0x94, 0x67, 0xbd)];
const EVENT: RGBColor = RGBColor(0x55, 0x55, 0x55);
const STALL: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Gaps between reads from this long are shaded.
const SHADE_FROM_S: f64 = 0.1;
/// Throughput is averaged over windows this long.
const WINDOW_S: f64 = 0.2;

/// The colour of path `index`, as `#RRGGBB`.
pub fn color_hex(index: usize) -> String {
    let RGBColor(r, g, b) = COLORS[index % COLORS.len()];
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// One run's timeline.
pub fn timeline(rec: &Recording, outcome: &Outcome) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (strip, rest) = root.split_vertically(KEY_HEIGHT);
        key(&strip, &rec.paths)?;
        panel(&rest, rec, outcome, max_rate(std::slice::from_ref(rec)))?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Every run, one above the other, on the same axes.
pub fn comparison(recs: &[Recording], outcomes: &[Outcome]) -> Result<String> {
    let mut svg = String::new();
    {
        let height = 40 + KEY_HEIGHT + 220 * recs.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root
            .titled("The same failing Wi-Fi under each service type and the kernel", ("sans-serif", 20))
            .map_err(err)?;
        let (strip, rest) = root.split_vertically(KEY_HEIGHT);
        key(&strip, recs.first().map_or(&[][..], |r| &r.paths[..]))?;
        let top = max_rate(recs);
        for (area, (rec, outcome)) in rest.split_evenly((recs.len(), 1)).iter().zip(recs.iter().zip(outcomes)) {
            panel(area, rec, outcome, top)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// The highest rate any path of any run reached, for a common scale.
fn max_rate(recs: &[Recording]) -> f64 {
    recs.iter().flat_map(|r| rates(r).into_iter().flatten().map(|(_, y)| y)).fold(1.0, f64::max) * 1.15
}

/// Mbit/s of each path, per window.
fn rates(rec: &Recording) -> Vec<Vec<(f64, f64)>> {
    let mut series = vec![Vec::new(); rec.paths.len()];
    let Some(mut from) = rec.samples.first() else { return series };
    for s in &rec.samples {
        let dt = s.t - from.t;
        if dt < WINDOW_S {
            continue;
        }
        for (p, line) in series.iter_mut().enumerate() {
            let mbit = s.rx[p].saturating_sub(from.rx[p]) as f64 * 8.0 / dt / 1e6;
            line.push((s.t, mbit));
        }
        from = s;
    }
    series
}

fn caption(o: &Outcome) -> String {
    let stalls: Vec<String> = o
        .phases
        .iter()
        .filter(|p| p.failure)
        .map(|p| {
            if p.carried_on {
                format!("{:.0} ms stall at {}", p.longest_stall_ms, p.event)
            } else {
                format!("no progress while {}", p.event)
            }
        })
        .collect();
    format!("{} ({}): {}; {}", o.name, o.description, o.result, stalls.join(", "))
}

/// Height of the key above the panels, pixels.
const KEY_HEIGHT: u32 = 30;

/// What the colours and marks mean, in one row.
fn key(area: &DrawingArea<SVGBackend, Shift>, paths: &[String]) -> Result<()> {
    let font = ("sans-serif", 13).into_font();
    let (mut x, y) = (60, KEY_HEIGHT as i32 / 2);
    let label = |x: &mut i32, text: &str| -> Result<()> {
        area.draw(&Text::new(text.to_owned(), (*x + 24, y - 7), font.clone())).map_err(err)?;
        *x += 24 + 8 * text.len() as i32 + 24;
        Ok(())
    };
    for (i, p) in paths.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        area.draw(&PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))).map_err(err)?;
        label(&mut x, &format!("received on {p}"))?;
    }
    area.draw(&Rectangle::new([(x, y - 6), (x + 18, y + 6)], STALL.mix(0.18).filled())).map_err(err)?;
    label(&mut x, "stall: no byte for 100 ms or more")?;
    area.draw(&PathElement::new(vec![(x + 9, y - 8), (x + 9, y + 8)], EVENT.stroke_width(1))).map_err(err)?;
    label(&mut x, "scenario event")
}

fn panel(area: &DrawingArea<SVGBackend, Shift>, rec: &Recording, o: &Outcome, top: f64) -> Result<()> {
    let end = rec.seconds.max(0.1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption(o), ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..end, 0f64..top)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds").y_desc("Mbit/s").light_line_style(WHITE).draw().map_err(err)?;
    let shade = STALL.mix(0.18).filled();
    chart
        .draw_series(
            rec.gaps
                .iter()
                .filter(|(a, b)| b - a >= SHADE_FROM_S)
                .map(|(a, b)| Rectangle::new([(*a, 0.0), (*b, top)], shade)),
        )
        .map_err(err)?;
    for (at, event) in &rec.events {
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(*at, 0.0), (*at, top)], EVENT.stroke_width(1))))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                event.to_string(),
                (*at + end * 0.005, top * 0.97),
                ("sans-serif", 12).into_font().color(&EVENT),
            )))
            .map_err(err)?;
    }
    for (p, line) in rates(rec).into_iter().enumerate() {
        let color = COLORS[p % COLORS.len()];
        chart.draw_series(LineSeries::new(line, color.stroke_width(2))).map_err(err)?;
    }
    Ok(())
}
