//! What a lab looks like: its paths and how each is shaped.

use std::time::Duration;

use crate::{LabError, Result};

/// Shaping of one direction of a path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkShape {
    /// Rate in bits per second; `None` for unshaped.
    pub rate_bps: Option<u64>,
    /// One-way delay.
    pub delay: Duration,
    /// Probability that a packet is dropped, 0.0 to 1.0.
    pub loss: f64,
}

impl LinkShape {
    /// No rate limit, no delay, no loss.
    pub const UNSHAPED: LinkShape = LinkShape { rate_bps: None, delay: Duration::ZERO, loss: 0.0 };

    /// A shape of `mbit` Mbit/s and `delay` one way, without loss.
    pub fn new(mbit: f64, delay: Duration) -> Self {
        LinkShape { rate_bps: Some((mbit * 1e6) as u64), delay, loss: 0.0 }
    }

    pub(crate) fn validate(&self, path: &str) -> Result<()> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(LabError::Config(format!("path {path}: loss {} is not a probability (0.0 to 1.0)", self.loss)));
        }
        if self.rate_bps == Some(0) {
            return Err(LabError::Config(format!("path {path}: a rate of 0 would carry nothing; use a blackhole")));
        }
        if self.delay > Duration::from_secs(10) {
            return Err(LabError::Config(format!("path {path}: delay {:?} is over 10 s", self.delay)));
        }
        Ok(())
    }
}

impl Default for LinkShape {
    fn default() -> Self {
        LinkShape::UNSHAPED
    }
}

/// The IP families a path gives the client: an address and a default
/// route of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Families {
    /// IPv4 only (a legacy hotspot).
    V4,
    /// IPv6 only (many cellular networks).
    V6,
    /// Both.
    #[default]
    Dual,
}

impl Families {
    /// Whether the path carries IPv4.
    pub fn v4(self) -> bool {
        self != Families::V6
    }
    /// Whether the path carries IPv6.
    pub fn v6(self) -> bool {
        self != Families::V4
    }
    /// Whether the path carries the family of `ip`.
    pub fn carries(self, ip: std::net::IpAddr) -> bool {
        if ip.is_ipv4() {
            self.v4()
        } else {
            self.v6()
        }
    }
}

impl std::str::FromStr for Families {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "v4" => Ok(Families::V4),
            "v6" => Ok(Families::V6),
            "dual" => Ok(Families::Dual),
            _ => Err(LabError::Config(format!("families {s:?}: expected v4, v6 or dual"))),
        }
    }
}

impl std::fmt::Display for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Families::V4 => "v4",
            Families::V6 => "v6",
            Families::Dual => "dual",
        })
    }
}

/// One path between the client and the router, e.g. "wifi" or "cell".
#[derive(Clone, Debug, PartialEq)]
pub struct PathConfig {
    /// Interface name on the client and router (1 to 8 of `a-z0-9`).
    pub name: String,
    /// Client to server.
    pub up: LinkShape,
    /// Server to client.
    pub down: LinkShape,
    /// The families the client gets on it.
    pub families: Families,
    /// Whether its interface exists when the lab comes up; one that does
    /// not appears later with [`Lab::set_plugged`](crate::Lab::set_plugged)
    /// (a USB modem plugged in mid-download).
    pub plugged: bool,
}

impl PathConfig {
    /// An unshaped path.
    pub fn new(name: &str) -> Self {
        PathConfig {
            name: name.to_owned(),
            up: LinkShape::UNSHAPED,
            down: LinkShape::UNSHAPED,
            families: Families::Dual,
            plugged: true,
        }
    }

    /// The families the client gets on this path (dual stack by default).
    pub fn families(mut self, families: Families) -> Self {
        self.families = families;
        self
    }

    /// The path's interface is absent when the lab comes up.
    pub fn unplugged(mut self) -> Self {
        self.plugged = false;
        self
    }

    /// The same rate both ways.
    pub fn rate_mbit(mut self, mbit: f64) -> Self {
        let bps = Some((mbit * 1e6) as u64);
        self.up.rate_bps = bps;
        self.down.rate_bps = bps;
        self
    }

    /// A round-trip time, half of it each way.
    pub fn rtt(mut self, rtt: Duration) -> Self {
        self.up.delay = rtt / 2;
        self.down.delay = rtt - rtt / 2;
        self
    }

    /// The same random loss both ways.
    pub fn loss(mut self, probability: f64) -> Self {
        self.up.loss = probability;
        self.down.loss = probability;
        self
    }

    fn validate(&self) -> Result<()> {
        let n = &self.name;
        let ok = (1..=8).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok || ["lo", "srv"].contains(&n.as_str()) {
            return Err(LabError::Config(format!(
                "path name {n:?} must be 1 to 8 characters of a-z and 0-9, and not lo or srv"
            )));
        }
        self.up.validate(n)?;
        self.down.validate(n)
    }
}

/// How the lab delays and drops packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayMode {
    /// The kernel's netem qdisc, where the kernel has it.
    Netem,
    /// The lab's own TUN relay in the router (this kernel has no netem).
    TunRelay,
}

/// A whole lab: client, router, server, and the paths between client and
/// router, in preference order (the first gets the lowest route metric).
#[derive(Clone, Debug, PartialEq)]
pub struct LabConfig {
    /// The paths.
    pub paths: Vec<PathConfig>,
    /// Force a delay mode; `None` picks netem when available. The
    /// `MULTIPATH_LAB_DELAY` environment variable (`netem`, `relay`)
    /// overrides it.
    pub delay_mode: Option<DelayMode>,
}

impl LabConfig {
    /// A lab without paths yet.
    pub fn new() -> Self {
        LabConfig { paths: Vec::new(), delay_mode: None }
    }

    /// Adds a path.
    pub fn path(mut self, path: PathConfig) -> Self {
        self.paths.push(path);
        self
    }

    /// The reference lab of the project: "wifi" 20 Mbit/s with 20 ms RTT,
    /// "cell" 10 Mbit/s with 60 ms RTT.
    pub fn wifi_cell() -> Self {
        LabConfig::new()
            .path(PathConfig::new("wifi").rate_mbit(20.0).rtt(Duration::from_millis(20)))
            .path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.paths.is_empty() {
            return Err(LabError::Config("a lab needs at least one path".into()));
        }
        // Routing tables 100 + index must stay clear of 253..255.
        if self.paths.len() > 100 {
            return Err(LabError::Config("at most 100 paths".into()));
        }
        for (i, p) in self.paths.iter().enumerate() {
            p.validate()?;
            if self.paths[..i].iter().any(|q| q.name == p.name) {
                return Err(LabError::Config(format!("two paths named {:?}", p.name)));
            }
        }
        Ok(())
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig::wifi_cell()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_lab_is_valid() {
        let lab = LabConfig::wifi_cell();
        lab.validate().unwrap();
        assert_eq!(lab.paths[0].up.delay + lab.paths[0].down.delay, Duration::from_millis(20));
        assert_eq!(lab.paths[1].down.rate_bps, Some(10_000_000));
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        let cases = [
            (LabConfig::new(), "at least one path"),
            (LabConfig::new().path(PathConfig::new("Wi-Fi")), "a-z"),
            (LabConfig::new().path(PathConfig::new("toolongname")), "1 to 8"),
            (LabConfig::new().path(PathConfig::new("lo")), "not lo"),
            (LabConfig::new().path(PathConfig::new("a")).path(PathConfig::new("a")), "two paths"),
            (LabConfig::new().path(PathConfig::new("a").loss(1.5)), "probability"),
            (LabConfig::new().path(PathConfig::new("a").rate_mbit(0.0)), "rate of 0"),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
