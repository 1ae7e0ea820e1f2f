//! What the demo says while it runs, on stderr: a progress bar redrawn in
//! place on a terminal, plain lines (one a second) otherwise.

use std::io::{IsTerminal, Write};

use super::record::Sample;
use super::scenario::Event;

/// The live output of one demo.
pub struct Live {
    terminal: bool,
    /// Whether a progress bar is on screen, to be cleared before a line.
    bar_shown: bool,
    /// The last whole second a plain line was printed for.
    last_line: i64,
}

/// Width of the bar, in cells.
const BAR: usize = 24;

impl Live {
    /// Live output to stderr; bars only when it is a terminal.
    pub fn new() -> Live {
        Live { terminal: std::io::stderr().is_terminal(), bar_shown: false, last_line: -1 }
    }

    /// A run begins.
    pub fn begin(&mut self, index: usize, of: usize, name: &str, describe: &str) {
        self.last_line = -1;
        self.line(&format!("[{index}/{of}] {name}: {describe}"));
    }

    /// A scenario event was applied at `t` seconds.
    pub fn event(&mut self, event: &Event, t: f64) {
        self.line(&format!("      {t:>5.2} s  {event}"));
    }

    /// A line that stays.
    pub fn line(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.bar_shown {
            let _ = write!(err, "\r\x1b[2K");
            self.bar_shown = false;
        }
        let _ = writeln!(err, "{text}");
    }

    /// The download's state after the latest sample.
    pub fn progress(&mut self, samples: &[Sample], paths: &[String], total: f64) {
        let Some(now) = samples.last() else { return };
        let rates = rates(samples, paths);
        let mb = now.verified as f64 / 1e6;
        if self.terminal {
            let done = ((now.t / total).clamp(0.0, 1.0) * BAR as f64) as usize;
            let bar: String = "#".repeat(done) + &".".repeat(BAR - done);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K      {:>5.1} s  [{bar}]  {rates}  {mb:.1} MB verified", now.t);
            let _ = err.flush();
            self.bar_shown = true;
        } else if now.t.floor() as i64 > self.last_line {
            self.last_line = now.t.floor() as i64;
            self.line(&format!("      {:>5.1} s  {rates}  {mb:.1} MB verified", now.t));
        }
    }

    /// The run is over.
    pub fn end(&mut self, summary: &str) {
        self.line(&format!("      {summary}"));
    }
}

/// Each path's receive rate over the last half second, as text.
fn rates(samples: &[Sample], paths: &[String]) -> String {
    let now = samples.last().expect("a sample");
    let before = samples.iter().rev().find(|s| now.t - s.t >= 0.5).unwrap_or(&samples[0]);
    let dt = (now.t - before.t).max(1e-3);
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{p} {:>5.1} Mbit/s", now.rx[i].saturating_sub(before.rx[i]) as f64 * 8.0 / dt / 1e6))
        .collect::<Vec<_>>()
        .join("  ")
}
