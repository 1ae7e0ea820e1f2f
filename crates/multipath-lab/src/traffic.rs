//! What the client's interfaces received, sampled over time: how a test
//! sees which path carried a program's download, and for how long nothing
//! arrived, without looking inside the program.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Lab, LabError, Result};

/// Bytes each named interface has received, from the calling thread's
/// network namespace (`/proc/thread-self/net/dev`; `/proc/self` is the main
/// thread's).
pub fn rx_bytes(interfaces: &[String]) -> Result<Vec<u64>> {
    rx_bytes_if_present(interfaces)?
        .into_iter()
        .zip(interfaces)
        .map(|(bytes, name)| {
            bytes.ok_or_else(|| LabError::io("interface counters", std::io::Error::other(format!("no {name}"))))
        })
        .collect()
}

/// [`rx_bytes`], `None` for an interface that does not exist (now).
pub fn rx_bytes_if_present(interfaces: &[String]) -> Result<Vec<Option<u64>>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")
        .map_err(|e| LabError::io("reading /proc/thread-self/net/dev", e))?;
    let counter = |name: &String| {
        text.lines()
            .filter_map(|l| l.trim_start().split_once(':'))
            .find(|(n, _)| n == name)
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
    };
    Ok(interfaces.iter().map(counter).collect())
}

/// Per-interface totals since the first reading, across an interface
/// vanishing and reappearing (its counters then start again from zero).
#[derive(Debug)]
struct Accumulated {
    last: Vec<Option<u64>>,
    total: Vec<u64>,
}

impl Accumulated {
    fn new(first: Vec<Option<u64>>) -> Self {
        Accumulated { total: vec![0; first.len()], last: first }
    }

    fn add(&mut self, now: Vec<Option<u64>>) -> Vec<u64> {
        for ((now, last), total) in now.into_iter().zip(&mut self.last).zip(&mut self.total) {
            *total += match (now, *last) {
                (Some(n), Some(l)) if n >= l => n - l,
                // Appeared, or recreated since the last reading.
                (Some(n), _) => n,
                (None, _) => 0,
            };
            *last = now;
        }
        self.total.clone()
    }
}

/// One sample: when, and each path's received bytes since the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxSample {
    /// Since the recorder started.
    pub at: Duration,
    /// Per path, in the lab's order.
    pub bytes: Vec<u64>,
}

/// Samples the client's path interfaces every `every` on a thread in the
/// client namespace, until stopped (or dropped). An unplugged path's
/// interface counts nothing while it is absent.
#[derive(Debug)]
pub struct RxRecorder {
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<RxSample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RxRecorder {
    /// Starts sampling.
    pub fn start(lab: &Lab, every: Duration) -> Result<RxRecorder> {
        let paths: Vec<String> = lab.paths().iter().map(|p| p.name().to_owned()).collect();
        let mut counted = Accumulated::new(lab.client().run(|| rx_bytes_if_present(&paths))?);
        let (stop, samples) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let started = Instant::now();
        let (stop2, samples2) = (stop.clone(), samples.clone());
        let thread = lab.client().spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(now) = rx_bytes_if_present(&paths) {
                    let bytes = counted.add(now);
                    samples2.lock().unwrap_or_else(|e| e.into_inner()).push(RxSample { at: started.elapsed(), bytes });
                }
                std::thread::sleep(every);
            }
        })?;
        Ok(RxRecorder { started, stop, samples, thread: Some(thread) })
    }

    /// Time since the start, on the samples' clock.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The latest sample's total over all paths.
    pub fn total(&self) -> u64 {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).last().map_or(0, |s| s.bytes.iter().sum())
    }

    /// Stops and hands back every sample.
    pub fn stop(mut self) -> Vec<RxSample> {
        self.halt();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RxRecorder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The longest time from `from` on during which the paths together
/// received less than `quiet_bytes` per sample (ACKs and probe answers are
/// not data): the longest stall, measured from the last sample that
/// brought data (or `from`, if later) to the next one that did. Zero if
/// none.
pub fn longest_stall(samples: &[RxSample], from: Duration, quiet_bytes: u64) -> Duration {
    let total = |s: &RxSample| s.bytes.iter().sum::<u64>();
    let mut longest = Duration::ZERO;
    let mut last_data: Option<Duration> = None;
    for pair in samples.windows(2) {
        if total(&pair[1]).saturating_sub(total(&pair[0])) < quiet_bytes {
            continue;
        }
        // pair[1] brought data; since pair[0] at the latest.
        if let Some(last) = last_data {
            if pair[0].at >= from {
                longest = longest.max(pair[0].at.saturating_sub(last.max(from)));
            }
        }
        last_data = Some(pair[1].at);
    }
    longest
}

/// The share of all bytes received until `until` that came over path
/// number `path` (0..1; 0 when nothing came).
pub fn share_until(samples: &[RxSample], path: usize, until: Duration) -> f64 {
    let Some(s) = samples.iter().take_while(|s| s.at <= until).last() else { return 0.0 };
    let total: u64 = s.bytes.iter().sum();
    if total == 0 {
        return 0.0;
    }
    s.bytes.get(path).copied().unwrap_or(0) as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64, wifi: u64, cell: u64) -> RxSample {
        RxSample { at: Duration::from_millis(ms), bytes: vec![wifi, cell] }
    }

    #[test]
    fn counters_add_up_across_an_interface_unplugged_and_back() {
        let mut acc = Accumulated::new(vec![Some(100), None]);
        assert_eq!(acc.add(vec![Some(150), None]), [50, 0]);
        assert_eq!(acc.add(vec![Some(150), Some(30)]), [50, 30]); // plugged in
        assert_eq!(acc.add(vec![Some(200), None]), [100, 30]); // pulled out
        assert_eq!(acc.add(vec![Some(200), Some(10)]), [100, 40]); // back, counting from 0
    }

    #[test]
    fn a_stall_runs_from_the_last_data_to_the_next() {
        let samples = [
            s(0, 0, 0),
            s(10, 30_000, 0),
            s(20, 60_000, 0),
            s(30, 60_100, 0), // an ACK's worth: quiet
            s(40, 60_100, 200),
            s(150, 60_100, 200),
            s(160, 60_100, 20_000),
            s(170, 60_100, 40_000),
        ];
        assert_eq!(longest_stall(&samples, Duration::ZERO, 3000), Duration::from_millis(130));
        // Counted from the failure, when the data stopped before it.
        assert_eq!(longest_stall(&samples, Duration::from_millis(25), 3000), Duration::from_millis(125));
        assert_eq!(longest_stall(&samples, Duration::from_millis(200), 3000), Duration::ZERO);
        assert!((share_until(&samples, 1, Duration::from_millis(20))).abs() < 1e-9);
        assert!((share_until(&samples, 1, Duration::from_millis(170)) - 0.3996).abs() < 1e-3);
    }
}
