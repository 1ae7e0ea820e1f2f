//! `NAME:RATE:RTT[:LOSS][:FAMILIES]` path specifications, e.g.
//! `wifi:20mbit:20ms` or `cell:10mbit:60ms:1%:v6`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use multipath_lab::{Families, PathConfig};

/// Parses one path specification. RATE is `<n>mbit`, `<n>kbit`, `<n>gbit`
/// or `unlimited`; RTT is `<n>ms` or `<n>us`; LOSS is `<n>%`; FAMILIES is
/// `v4`, `v6` or `dual` (the default).
pub fn parse(spec: &str) -> Result<PathConfig> {
    let mut parts: Vec<&str> = spec.split(':').collect();
    let families = match parts.last() {
        Some(last) if parts.len() > 3 && !last.ends_with('%') => {
            let families = last.parse::<Families>().map_err(|e| anyhow!("path {spec:?}: {e}"))?;
            parts.pop();
            families
        }
        _ => Families::Dual,
    };
    if !(3..=4).contains(&parts.len()) {
        bail!(
            "path {spec:?}: expected NAME:RATE:RTT[:LOSS][:v4|v6|dual], e.g. wifi:20mbit:20ms or \
             cell:10mbit:60ms:1%:v6"
        );
    }
    let mut path = PathConfig::new(parts[0]);
    if let Some(mbit) = rate_mbit(parts[1]).with_context(|| format!("path {spec:?}"))? {
        path = path.rate_mbit(mbit);
    }
    path = path.rtt(duration(parts[2]).with_context(|| format!("path {spec:?}"))?);
    if let Some(loss) = parts.get(3) {
        let pct: f64 = loss
            .strip_suffix('%')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("path {spec:?}: loss {loss:?} must look like 1% or 0.5%"))?;
        path = path.loss(pct / 100.0);
    }
    Ok(path.families(families))
}

pub(crate) fn rate_mbit(s: &str) -> Result<Option<f64>> {
    if s == "unlimited" {
        return Ok(None);
    }
    let units = [("gbit", 1000.0), ("mbit", 1.0), ("kbit", 0.001)];
    for (unit, scale) in units {
        if let Some(n) = s.strip_suffix(unit) {
            let n: f64 = n.parse().map_err(|_| anyhow!("rate {s:?} is not a number of {unit}"))?;
            if n <= 0.0 || !n.is_finite() {
                bail!("rate {s:?} must be positive");
            }
            return Ok(Some(n * scale));
        }
    }
    bail!("rate {s:?} must end in kbit, mbit or gbit, or be `unlimited`")
}

pub(crate) fn duration(s: &str) -> Result<Duration> {
    let (n, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else {
        bail!("RTT {s:?} must end in ms or us")
    };
    let n: f64 = n.parse().map_err(|_| anyhow!("RTT {s:?} is not a number"))?;
    if !(0.0..=20_000.0).contains(&(n * scale * 1e3)) {
        bail!("RTT {s:?} must be between 0 and 20 s");
    }
    Ok(Duration::from_secs_f64(n * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let p = parse("wifi:20mbit:20ms").unwrap();
        assert_eq!(p.name, "wifi");
        assert_eq!(p.up.rate_bps, Some(20_000_000));
        assert_eq!(p.up.delay + p.down.delay, Duration::from_millis(20));
        let p = parse("cell:500kbit:60ms:2%").unwrap();
        assert_eq!(p.down.rate_bps, Some(500_000));
        assert!((p.up.loss - 0.02).abs() < 1e-9);
        assert_eq!(parse("x:unlimited:0ms").unwrap().up.rate_bps, None);
        assert_eq!(parse("x:1mbit:1ms").unwrap().families, Families::Dual);
        assert_eq!(parse("cell:1mbit:1ms:v6").unwrap().families, Families::V6);
        let p = parse("cell:1mbit:1ms:2%:v4").unwrap();
        assert_eq!((p.families, p.up.loss), (Families::V4, 0.02));
    }

    /// Random specs made of the grammar's own characters: an error or a
    /// path, never a panic (overflowing numbers included).
    #[test]
    fn random_specs_never_panic() {
        let alphabet: Vec<char> = "wifi:20mbit%.-0123456789kKgGsu :".chars().collect();
        let mut rng = multipath_lab::testing::SeededRng::new(11);
        for _ in 0..20_000 {
            let len = rng.below(32);
            let spec: String = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let _ = parse(&spec);
        }
        let _ = parse("w:99999999999999999999999gbit:99999999999999999999ms:999%");
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "wifi",
            "wifi:20:20ms",
            "wifi:20mbit:20",
            "wifi:-1mbit:2ms",
            "wifi:1mbit:1ms:5",
            "a:b:c:d:e",
            "w:1mbit:1ms:v5",
            "w:1mbit:1ms:v4:1%",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
