//! What a recording means: stalls at each event, bytes per path, switches,
//! whether the download survived; as a table, sentences and JSON.

use serde::Serialize;

use super::record::{Recording, Sample};

/// The stretch of a run between one event and the next.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// "start" for the healthy beginning, else the event.
    pub event: String,
    /// Seconds since the first byte.
    pub from_s: f64,
    pub to_s: f64,
    /// Whether the event takes a path away.
    pub failure: bool,
    /// The longest gap between body reads that overlaps the phase, ms.
    pub longest_stall_ms: f64,
    /// Whether any body byte arrived during the phase.
    pub carried_on: bool,
    /// Bytes each path's interface received during the phase.
    pub bytes_per_path: Vec<u64>,
    /// The path a repair brought back.
    pub repaired: Option<String>,
    /// After a repair: ms until the repaired path carried 64 KiB again.
    pub back_on_path_ms: Option<f64>,
}

/// One run, judged.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// "none", "handover", ..., "kernel".
    pub name: String,
    pub description: String,
    /// Whether a `multipath` path manager enforced the service type.
    pub enforced: Option<bool>,
    /// Whether the connection was MPTCP.
    pub multipath: bool,
    /// What the connection said about itself.
    pub status: Option<String>,
    /// "completed", or "broken" when the download stopped (an error, a
    /// corrupt byte) or stood still through a whole failure: it survived
    /// only because the failed path came back, which a phone leaving
    /// Wi-Fi never sees.
    pub result: &'static str,
    /// The event the download did not survive, or the error.
    pub broken_by: Option<String>,
    /// Body bytes received and equal to the file's.
    pub bytes_verified: u64,
    /// Verified bytes over the run's time, Mbit/s.
    pub mbit_per_s: f64,
    /// The paths, in preference order.
    pub paths: Vec<String>,
    /// Bytes each path's interface received over the run.
    pub bytes_per_path: Vec<u64>,
    /// Changes of the set of paths carrying the download (each carrying a
    /// quarter or more of a 200 ms window).
    pub switches: usize,
    /// The healthy start, then one per event.
    pub phases: Vec<Phase>,
    /// Share of the bytes on paths other than the first while all were
    /// healthy.
    pub healthy_share_off_first: f64,
}

/// A repaired path counts as carrying again after this much.
const BACK_BYTES: u64 = 64 * 1024;
/// How far apart a read and an event may be and still count as one moment.
const SLACK_S: f64 = 0.05;

impl Outcome {
    pub fn of(rec: &Recording) -> Outcome {
        let total = rec.samples.last().map_or(0.0, |s| s.t);
        let mut bounds: Vec<(String, f64, bool, Option<usize>)> = vec![("start".into(), 0.0, false, None)];
        for (at, e) in &rec.events {
            let repaired = e.action.is_repair().then(|| rec.paths.iter().position(|p| *p == e.path)).flatten();
            bounds.push((e.to_string(), *at, e.action.is_failure(), repaired));
        }
        let phases: Vec<Phase> = bounds
            .iter()
            .enumerate()
            .map(|(i, (event, from, failure, repaired))| {
                let to = bounds.get(i + 1).map_or(total, |b| b.1);
                // A gap belongs to the phase it began in (the read before
                // a failure may come a moment before it is applied).
                let longest = rec
                    .gaps
                    .iter()
                    .filter(|(a, _)| *a >= from - SLACK_S && *a < to)
                    .map(|(a, b)| (b - a) * 1e3)
                    .fold(0.0, f64::max);
                let (first, last) = (at_or_before(&rec.samples, *from), at_or_before(&rec.samples, to));
                let received: u64 = diff(&last.rx, &first.rx).iter().sum();
                // The network delivered during the phase, and the reads did
                // not stop at its start until its end.
                let carried_on = received >= BACK_BYTES
                    && !rec.gaps.iter().any(|(a, b)| *a <= from + SLACK_S && *b >= to && *a < to);
                let back_on_path_ms = repaired.and_then(|p| {
                    rec.samples
                        .iter()
                        .find(|s| s.t >= *from && s.rx[p].saturating_sub(first.rx[p]) >= BACK_BYTES)
                        .map(|s| (s.t - from) * 1e3)
                });
                Phase {
                    event: event.clone(),
                    from_s: *from,
                    to_s: to,
                    failure: *failure,
                    longest_stall_ms: longest,
                    carried_on,
                    bytes_per_path: diff(&last.rx, &first.rx),
                    repaired: repaired.map(|p| rec.paths[p].clone()),
                    back_on_path_ms,
                }
            })
            .collect();
        let broken_by =
            rec.error.clone().or_else(|| phases.iter().find(|p| p.failure && !p.carried_on).map(|p| p.event.clone()));
        let healthy = &phases[0].bytes_per_path;
        let healthy_total: u64 = healthy.iter().sum();
        let status = rec.status.as_ref();
        Outcome {
            name: rec.contender.name(),
            description: rec.contender.describe().to_owned(),
            enforced: status.map(|s| s.enforced),
            multipath: status.is_some_and(|s| s.is_multipath()),
            status: status.map(|s| s.to_string()),
            result: if broken_by.is_some() { "broken" } else { "completed" },
            broken_by,
            bytes_verified: rec.verified,
            mbit_per_s: if rec.seconds > 0.0 { rec.verified as f64 * 8.0 / rec.seconds / 1e6 } else { 0.0 },
            paths: rec.paths.clone(),
            bytes_per_path: rec.samples.last().map_or_else(Vec::new, |l| diff(&l.rx, &rec.samples[0].rx)),
            switches: switches(&rec.samples),
            healthy_share_off_first: if healthy_total == 0 {
                0.0
            } else {
                healthy[1..].iter().sum::<u64>() as f64 / healthy_total as f64
            },
            phases,
        }
    }

    /// One sentence a newcomer understands, with the kernel's figure for
    /// the same moment beside each of this run's.
    pub fn sentence(&self, kernel: Option<&Outcome>) -> String {
        let first = &self.paths[0];
        let mut parts = Vec::new();
        if self.paths.len() > 1 {
            let healthy = &self.phases[0].bytes_per_path;
            parts.push(format!(
                "{:.1}% of the bytes ({:.2} MB) on {} while {first} was healthy",
                self.healthy_share_off_first * 100.0,
                healthy[1..].iter().sum::<u64>() as f64 / 1e6,
                self.paths[1..].join(" and ")
            ));
        }
        let stall = |p: &Phase| {
            if p.carried_on {
                format!("{:.0} ms stall", p.longest_stall_ms)
            } else {
                "no progress until it was repaired".to_owned()
            }
        };
        let back = |p: &Phase| p.back_on_path_ms.map_or("never".to_owned(), |ms| format!("{ms:.0} ms"));
        for (i, p) in self.phases.iter().enumerate().skip(1) {
            let baseline = kernel.filter(|k| k.name != self.name).and_then(|k| k.phases.get(i));
            let theirs =
                |f: &dyn Fn(&Phase) -> String| baseline.map_or(String::new(), |b| format!(" (kernel: {})", f(b)));
            if p.failure {
                parts.push(format!("{} at {}{}", stall(p), p.event, theirs(&stall)));
            } else if let Some(path) = &p.repaired {
                let again = match p.back_on_path_ms {
                    Some(ms) => format!("{path} carried again {ms:.0} ms after {}", p.event),
                    None => format!("{path} never carried again after {}", p.event),
                };
                parts.push(format!("{again}{}", theirs(&back)));
            }
        }
        let verdict = match &self.broken_by {
            Some(why) if self.phases.iter().any(|p| p.event == *why) => format!(
                "BROKEN: the download stood still from {why} until the path came back (a phone leaving \
                 {first} never gets it back)"
            ),
            Some(why) => format!("BROKEN: {why}"),
            None => format!("completed, {:.1} MB verified", self.bytes_verified as f64 / 1e6),
        };
        format!("{}: {verdict}; {}.", self.name, parts.join("; "))
    }
}

/// The sample at or just before `t`.
fn at_or_before(samples: &[Sample], t: f64) -> &Sample {
    samples.iter().rev().find(|s| s.t <= t).unwrap_or(&samples[0])
}

fn diff(later: &[u64], earlier: &[u64]) -> Vec<u64> {
    later.iter().zip(earlier).map(|(a, b)| a.saturating_sub(*b)).collect()
}

/// Changes of the set of paths carrying the download, over 200 ms
/// windows that carried at least 32 KiB.
fn switches(samples: &[Sample]) -> usize {
    let mut sets = Vec::new();
    let mut from = &samples[0];
    for s in samples {
        if s.t - from.t < 0.2 {
            continue;
        }
        let d = diff(&s.rx, &from.rx);
        let total: u64 = d.iter().sum();
        if total >= 32 * 1024 {
            sets.push(d.iter().map(|b| *b * 4 >= total).collect::<Vec<bool>>());
        }
        from = s;
    }
    sets.windows(2).filter(|w| w[0] != w[1]).count()
}

/// The table of every run.
pub fn table(outcomes: &[Outcome]) -> String {
    let Some(first) = outcomes.first() else { return String::new() };
    let mut head = vec!["run".to_owned(), "result".into(), "MB verified".into(), "Mbit/s".into()];
    head.extend(first.phases.iter().skip(1).map(|p| p.event.clone()));
    head.extend(first.paths.iter().map(|p| format!("MB on {p}")));
    head.push("switches".into());
    let mut rows = vec![head];
    for o in outcomes {
        let mut row = vec![o.name.clone(), o.result.to_owned(), mb(o.bytes_verified), format!("{:.2}", o.mbit_per_s)];
        row.extend(o.phases.iter().skip(1).map(|p| {
            let stall = if p.carried_on { format!("{:.0} ms", p.longest_stall_ms) } else { "no progress".into() };
            match (&p.repaired, p.back_on_path_ms) {
                (None, _) => stall,
                (Some(path), Some(back)) => format!("{stall}; {path} in {back:.0} ms"),
                (Some(path), None) => format!("{stall}; {path} never"),
            }
        }));
        row.extend(o.bytes_per_path.iter().map(|b| mb(*b)));
        row.push(o.switches.to_string());
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.len())).max().unwrap_or(0)).collect();
    let mut out = String::from(
        "Longest stall at each event (after a repair, also how soon the path carried again); MB each path received.\n",
    );
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if i < 2 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}
