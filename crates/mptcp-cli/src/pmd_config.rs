//! The daemon's TOML configuration file. `docs/pmd.toml` documents every
//! key with its default; a test holds the two together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use multipath::ServiceType;
use multipath_pm::policy::{Hysteresis, PathPreference, PolicyConfig};
use multipath_pm::rules::{Decision, Prefix, Rule, Rules, Subject};
use multipath_pm::DaemonConfig;
use serde::Deserialize;

/// The documented configuration, defaults included.
pub const DOCUMENTED: &str = include_str!("../../../docs/pmd.toml");

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct File {
    socket: Option<PathBuf>,
    default_service: Option<ServiceType>,
    entitlements: Entitlements,
    limits: Limits,
    paths: Paths,
    handover: Handover,
    interactive: Interactive,
    aggregate: Aggregate,
    joins: Joins,
    rule: Vec<RuleEntry>,
}

/// One `[[rule]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: Option<String>,
    exe: Option<PathBuf>,
    uid: Option<u32>,
    cgroup: Option<String>,
    /// A port, or `"LOW-HIGH"`.
    port: Option<PortSpec>,
    /// `ADDR` or `ADDR/LEN`.
    address: Option<String>,
    service: ServiceType,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortSpec {
    One(u16),
    Range(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Entitlements {
    aggregate_uids: Vec<u32>,
    aggregate_executables: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Limits {
    max_registrations_per_uid: Option<usize>,
    event_buffer_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Paths {
    primary: Vec<String>,
    metered: Vec<String>,
    exclude: Vec<String>,
    quarantine_down: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Handover {
    lazy_secondary: Option<bool>,
    silence_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    demote_after_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Interactive {
    hysteresis_margin: Option<f64>,
    hysteresis_hold_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Aggregate {
    contribution_guard: Option<bool>,
    share_floor: Option<f64>,
    margin: Option<f64>,
    retry_first_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Joins {
    timeout_ms: Option<u64>,
    retry_min_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

/// The daemon's configuration when no file is given.
pub fn defaults() -> DaemonConfig {
    DaemonConfig {
        policy: PolicyConfig { default_service: Some(ServiceType::Aggregate), ..PolicyConfig::default() },
        event_buffer: Some(multipath_pm::EventSocket::DEFAULT_BUFFER),
        ..DaemonConfig::default()
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<DaemonConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Parses configuration text; missing keys keep their defaults.
pub fn parse(text: &str) -> Result<DaemonConfig> {
    let file: File = toml::from_str(text)?;
    let mut config = defaults();
    let policy = &mut config.policy;
    if let Some(socket) = file.socket {
        if !socket.is_absolute() {
            bail!("socket: {} is not an absolute path", socket.display());
        }
        config.socket = Some(socket);
    }
    match file.limits.max_registrations_per_uid {
        Some(0) => bail!("limits.max_registrations_per_uid must be above 0"),
        Some(n) => config.max_per_uid = n,
        None => {}
    }
    match file.limits.event_buffer_bytes {
        Some(n) if !(1024..=1 << 30).contains(&n) => bail!("limits.event_buffer_bytes must be between 1024 and 1 GiB"),
        Some(n) => config.event_buffer = Some(n),
        None => {}
    }
    if let Some(service) = file.default_service {
        policy.default_service = Some(service);
    }
    config.aggregate_uids = file.entitlements.aggregate_uids;
    config.aggregate_executables = file.entitlements.aggregate_executables;
    if let Some(exe) = config.aggregate_executables.iter().find(|p| !p.is_absolute()) {
        bail!("entitlements.aggregate_executables: {} is not an absolute path", exe.display());
    }
    let Paths { primary, metered, exclude, quarantine_down } = file.paths;
    policy.quarantine_down_paths = quarantine_down.unwrap_or(policy.quarantine_down_paths);
    for pattern in primary.iter().chain(&metered).chain(&exclude) {
        if pattern.is_empty() || pattern.len() > libc::IFNAMSIZ * 4 {
            bail!("paths: {pattern:?} cannot match an interface name");
        }
    }
    policy.paths = PathPreference { primary, metered, exclude };
    let ms = |key: &str, value: Option<u64>, default: Duration| -> Result<Duration> {
        match value {
            None => Ok(default),
            Some(0) => bail!("{key} must be above 0"),
            Some(v) if v > 3_600_000 => bail!("{key} = {v} is over an hour"),
            Some(v) => Ok(Duration::from_millis(v)),
        }
    };
    let h = file.handover;
    policy.lazy_secondary = h.lazy_secondary.unwrap_or(policy.lazy_secondary);
    policy.silence = ms("handover.silence_ms", h.silence_ms, policy.silence)?;
    policy.probe_timeout = ms("handover.probe_timeout_ms", h.probe_timeout_ms, policy.probe_timeout)?;
    policy.demote_after = ms("handover.demote_after_ms", h.demote_after_ms, policy.demote_after)?;
    let i = file.interactive;
    let margin = i.hysteresis_margin.unwrap_or(policy.hysteresis.margin);
    if !(0.0..1.0).contains(&margin) {
        bail!("interactive.hysteresis_margin = {margin} must be at least 0 and below 1");
    }
    let hold = ms("interactive.hysteresis_hold_ms", i.hysteresis_hold_ms, policy.hysteresis.hold)?;
    policy.hysteresis = Hysteresis { margin, hold };
    let a = file.aggregate;
    let guard = &mut policy.contribution;
    guard.enabled = a.contribution_guard.unwrap_or(guard.enabled);
    guard.share_floor = a.share_floor.unwrap_or(guard.share_floor);
    if !(guard.share_floor > 0.0 && guard.share_floor <= 0.5) {
        bail!("aggregate.share_floor = {} must be above 0 and at most 0.5", guard.share_floor);
    }
    guard.margin = a.margin.unwrap_or(guard.margin);
    if !(0.0..1.0).contains(&guard.margin) {
        bail!("aggregate.margin = {} must be at least 0 and below 1", guard.margin);
    }
    guard.retry_first = ms("aggregate.retry_first_ms", a.retry_first_ms, guard.retry_first)?;
    guard.retry_max = ms("aggregate.retry_max_ms", a.retry_max_ms, guard.retry_max)?;
    if guard.retry_first > guard.retry_max {
        bail!("aggregate.retry_first_ms is above aggregate.retry_max_ms");
    }
    let j = file.joins;
    policy.join_timeout = ms("joins.timeout_ms", j.timeout_ms, policy.join_timeout)?;
    policy.retry_min = ms("joins.retry_min_ms", j.retry_min_ms, policy.retry_min)?;
    policy.retry_max = ms("joins.retry_max_ms", j.retry_max_ms, policy.retry_max)?;
    if policy.retry_min > policy.retry_max {
        bail!("joins.retry_min_ms is above joins.retry_max_ms");
    }
    config.rules = Rules(file.rule.into_iter().enumerate().map(|(i, r)| rule(i, r)).collect::<Result<_>>()?);
    Ok(config)
}

/// A `[[rule]]` table, checked; `index` from 0 names it in errors.
fn rule(index: usize, r: RuleEntry) -> Result<Rule> {
    let label = match &r.name {
        Some(name) => format!("rule {} ({name:?})", index + 1),
        None => format!("rule {}", index + 1),
    };
    let at = || label.clone();
    if let Some(name) = &r.name {
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{}: name must be 1 to 64 characters without spaces", at());
        }
    }
    if let Some(exe) = r.exe.as_ref().filter(|e| !e.is_absolute()) {
        bail!("{}: exe {} is not an absolute path", at(), exe.display());
    }
    if let Some(cgroup) = r.cgroup.as_ref().filter(|c| !c.starts_with('/')) {
        bail!("{}: cgroup {cgroup:?} must start with / (from the cgroup root)", at());
    }
    let ports = match r.port {
        None => None,
        Some(PortSpec::One(p)) => Some(p..=p),
        Some(PortSpec::Range(text)) => {
            let range = text.split_once('-').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
            match range {
                Some((low, high)) if low <= high => Some(low..=high),
                _ => bail!("{}: port {text:?} is not a port or LOW-HIGH", at()),
            }
        }
    };
    let address = r.address.as_deref().map(Prefix::parse).transpose().map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    let rule = Rule { name: r.name, exe: r.exe, uid: r.uid, cgroup: r.cgroup, ports, address, service: r.service };
    if rule.exe.is_none()
        && rule.uid.is_none()
        && rule.cgroup.is_none()
        && rule.ports.is_none()
        && rule.address.is_none()
    {
        bail!("{}: matches every connection; set default_service instead", at());
    }
    Ok(rule)
}

/// A sample connection for `mptcp pmd --check-config --sample`:
/// `exe=PATH,uid=N,cgroup=PATH,port=N,address=IP` (any of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    exe: Option<PathBuf>,
    uid: Option<u32>,
    cgroup: Option<String>,
    remote: Option<std::net::SocketAddr>,
}

impl std::str::FromStr for Sample {
    type Err = String;

    fn from_str(text: &str) -> Result<Sample, String> {
        let mut sample = Sample::default();
        let (mut port, mut address) = (None, None);
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| format!("{item:?} is not KEY=VALUE"))?;
            match key {
                "exe" => sample.exe = Some(value.into()),
                "uid" => sample.uid = Some(value.parse().map_err(|_| format!("uid {value:?} is not a number"))?),
                "cgroup" => sample.cgroup = Some(value.into()),
                "port" => port = Some(value.parse::<u16>().map_err(|_| format!("port {value:?} is not a port"))?),
                "address" => {
                    address =
                        Some(value.parse::<std::net::IpAddr>().map_err(|_| format!("{value:?} is not an address"))?)
                }
                _ => return Err(format!("unknown key {key:?} (exe, uid, cgroup, port, address)")),
            }
        }
        if port.is_some() || address.is_some() {
            let ip = address.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            sample.remote = Some(std::net::SocketAddr::new(ip, port.unwrap_or(0)));
        }
        Ok(sample)
    }
}

/// What `config` decides for `sample`, in a sentence.
pub fn explain(config: &DaemonConfig, sample: &Sample) -> String {
    let subject = Subject {
        exe: sample.exe.as_deref(),
        uid: sample.uid,
        cgroup: sample.cgroup.as_deref(),
        remote: sample.remote,
    };
    let default = config.policy.default_service.map_or("none".into(), |s| s.to_string());
    match config.decide(&subject) {
        Decision::Rule { index, service } => format!("{}: {service}", config.rules.name(index)),
        Decision::NotEntitled { index } => format!(
            "{} gives aggregate, but neither the uid nor the program is entitled: the default, {default}",
            config.rules.name(index)
        ),
        Decision::Default => format!("no rule matches: the default, {default}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &DaemonConfig, b: &DaemonConfig) {
        assert_eq!(a.socket, b.socket);
        assert_eq!(a.max_per_uid, b.max_per_uid);
        assert_eq!(a.event_buffer, b.event_buffer);
        assert_eq!(a.aggregate_uids, b.aggregate_uids);
        assert_eq!(a.aggregate_executables, b.aggregate_executables);
        assert_eq!(a.policy, b.policy);
        assert_eq!(a.rules, b.rules);
    }

    /// The documented file with characters replaced, cut or repeated: an
    /// error (naming where, for TOML) or a configuration, never a panic.
    #[test]
    fn mangled_files_are_refused_cleanly() {
        let doc: Vec<char> = DOCUMENTED.chars().collect();
        let mut rng = multipath_lab::testing::SeededRng::new(7);
        let mut next = || rng.next_u64();
        let noise = ['"', '=', '[', ']', '\n', '#', '0', '-', 'x', '\\', '.', ' ', '\u{0}', 'é'];
        for _ in 0..3_000 {
            let mut text = doc.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % text.len() as u64) as usize;
                match next() % 3 {
                    0 => text[at] = noise[(next() % noise.len() as u64) as usize],
                    1 => text.truncate(at),
                    _ => text.insert(at, noise[(next() % noise.len() as u64) as usize]),
                }
                if text.is_empty() {
                    break;
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(e) = parse(&text) {
                assert!(!format!("{e:#}").is_empty());
            }
        }
        let e = parse("socket = \"/x\"\n[limits\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }

    #[test]
    fn the_documented_file_states_the_defaults() {
        same(&parse(DOCUMENTED).unwrap(), &defaults());
        same(&parse("").unwrap(), &defaults());
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            r#"
            socket = "/tmp/x.sock"
            default_service = "handover"
            [entitlements]
            aggregate_uids = [1000]
            aggregate_executables = ["/usr/bin/backup"]
            [paths]
            primary = ["wl*"]
            metered = ["rmnet*"]
            quarantine_down = false
            [handover]
            lazy_secondary = true
            silence_ms = 70
            [interactive]
            hysteresis_margin = 0.3
            [aggregate]
            contribution_guard = false
            [joins]
            retry_max_ms = 4000
            [limits]
            event_buffer_bytes = 8192
            "#,
        )
        .unwrap();
        assert_eq!(c.socket.as_deref(), Some(Path::new("/tmp/x.sock")));
        assert_eq!(c.policy.default_service, Some(ServiceType::Handover));
        assert_eq!(c.aggregate_uids, [1000]);
        assert_eq!(c.policy.paths.primary, ["wl*"]);
        assert_eq!(c.policy.paths.metered, ["rmnet*"]);
        assert!(!c.policy.quarantine_down_paths);
        assert!(c.policy.lazy_secondary);
        assert_eq!(c.policy.silence, Duration::from_millis(70));
        assert_eq!(c.policy.hysteresis.margin, 0.3);
        assert!(!c.policy.contribution.enabled);
        assert_eq!(c.policy.retry_max, Duration::from_secs(4));
        assert_eq!(c.event_buffer, Some(8192));
        assert_eq!(c.policy.probe_timeout, defaults().policy.probe_timeout, "untouched keys keep defaults");
    }

    #[test]
    fn rules_are_read_in_order_and_samples_explained() {
        let c = parse(
            r#"
            default_service = "handover"
            [entitlements]
            aggregate_uids = [1000]
            [[rule]]
            name = "backups"
            exe = "/usr/bin/rsync"
            service = "aggregate"
            [[rule]]
            port = "8000-8999"
            address = "fd00::/8"
            service = "interactive"
            [[rule]]
            cgroup = "/user.slice"
            uid = 1001
            port = 22
            service = "none"
            "#,
        )
        .unwrap();
        assert_eq!(c.rules.0.len(), 3);
        assert_eq!(c.rules.0[1].ports, Some(8000..=8999));
        let explain = |sample: &str| explain(&c, &sample.parse().unwrap());
        assert_eq!(explain("exe=/usr/bin/rsync,uid=1000"), "backups: aggregate");
        assert!(explain("exe=/usr/bin/rsync,uid=7")
            .contains("neither the uid nor the program is entitled: the default, handover"));
        assert_eq!(explain("port=8080,address=fd00::2"), "rule 2: interactive");
        assert_eq!(explain("port=8080,address=10.0.0.2"), "no rule matches: the default, handover");
        assert_eq!(explain("uid=1001,cgroup=/user.slice/u.scope,port=22"), "rule 3: none");
        assert!("colour=blue".parse::<Sample>().unwrap_err().contains("unknown key"));
        assert!("uid=me".parse::<Sample>().unwrap_err().contains("not a number"));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("sokcet = \"/x\"", "sokcet"),
            ("default_service = \"fastest\"", "fastest"),
            ("[handover]\nsilence_ms = 0", "handover.silence_ms must be above 0"),
            ("[handover]\nsilence_ms = -5", "silence_ms"),
            ("[interactive]\nhysteresis_margin = 1.5", "hysteresis_margin"),
            ("[joins]\nretry_min_ms = 9000", "retry_min_ms is above"),
            ("[aggregate]\nshare_floor = 0.9", "aggregate.share_floor"),
            ("[aggregate]\nmargin = -0.1", "aggregate.margin"),
            ("[aggregate]\nretry_first_ms = 90000", "retry_first_ms is above"),
            ("[aggregate]\nguard = false", "guard"),
            ("[entitlements]\naggregate_executables = [\"backup\"]", "not an absolute path"),
            ("[paths]\nprimary = [\"\"]", "cannot match"),
            ("[paths\nprimary = []", "TOML"),
            ("socket = \"pmd.sock\"", "not an absolute path"),
            ("[limits]\nmax_registrations_per_uid = 0", "must be above 0"),
            ("[limits]\nevent_buffer_bytes = 10", "between 1024 and 1 GiB"),
            ("[[rule]]\nservice = \"handover\"", "rule 1: matches every connection"),
            ("[[rule]]\nuid = 1\nservice = \"fast\"", "fast"),
            ("[[rule]]\nexe = \"curl\"\nservice = \"handover\"", "rule 1: exe curl is not an absolute path"),
            ("[[rule]]\nname = \"a b\"\nuid = 1\nservice = \"handover\"", "without spaces"),
            ("[[rule]]\nport = \"9-1\"\nservice = \"handover\"", "not a port or LOW-HIGH"),
            ("[[rule]]\nport = 70000\nservice = \"handover\"", "port"),
            ("[[rule]]\naddress = \"10.0.0.0/40\"\nservice = \"handover\"", "prefix length"),
            ("[[rule]]\ncgroup = \"user.slice\"\nservice = \"handover\"", "must start with /"),
            ("[[rule]]\nuid = 1\nservice = \"handover\"\ncolour = 1", "colour"),
        ];
        for (text, expect) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }
}
