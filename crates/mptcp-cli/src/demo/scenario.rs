//! The demo's event script: what happens to which path, and when.
//!
//! A scenario is TOML:
//!
//! ```toml
//! seconds = 10            # how long the download runs
//!
//! [[event]]
//! at = 2.0                # seconds after the first byte
//! path = "wifi"
//! action = "down"         # down, up, blackhole, clear, rate 5mbit, delay 200ms, loss 1%
//! ```
//!
//! Errors name the file and the line.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

/// What happens to a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The client's interface goes down; its routes vanish.
    Down,
    /// The interface comes back with its routes.
    Up,
    /// Every packet of the path is dropped silently; the link stays up.
    Blackhole,
    /// The blackhole ends.
    Clear,
    /// New rate both ways, Mbit/s (`None`: unshaped).
    Rate(Option<f64>),
    /// New round-trip time (half each way).
    Delay(Duration),
    /// New loss probability each way, 0.0 to 1.0.
    Loss(f64),
}

impl Action {
    /// Whether the action takes the path away (a failure the connection
    /// must survive on another path).
    pub fn is_failure(&self) -> bool {
        matches!(self, Action::Down | Action::Blackhole)
    }

    /// Whether the action undoes a failure.
    pub fn is_repair(&self) -> bool {
        matches!(self, Action::Up | Action::Clear)
    }

    fn parse(text: &str) -> Result<Action> {
        let mut words = text.split_whitespace();
        let (verb, value) = (words.next().unwrap_or(""), words.next());
        if words.next().is_some() {
            bail!("action {text:?}: one word and at most one value");
        }
        let needs = |what: &str| value.ok_or_else(|| anyhow!("action {verb:?} needs a value, e.g. {what:?}"));
        let action = match verb {
            "down" => Action::Down,
            "up" => Action::Up,
            "blackhole" => Action::Blackhole,
            "clear" => Action::Clear,
            "rate" => Action::Rate(crate::pathspec::rate_mbit(needs("rate 5mbit")?)?),
            "delay" => Action::Delay(crate::pathspec::duration(needs("delay 200ms")?)?),
            "loss" => {
                let v = needs("loss 1%")?;
                let pct: f64 = v
                    .strip_suffix('%')
                    .and_then(|n| n.parse().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| anyhow!("loss {v:?} must look like 1% or 0.5%, at most 100%"))?;
                Action::Loss(pct / 100.0)
            }
            _ => bail!("unknown action {verb:?}: expected down, up, blackhole, clear, rate R, delay D or loss L%"),
        };
        if value.is_some() && matches!(action, Action::Down | Action::Up | Action::Blackhole | Action::Clear) {
            bail!("action {verb:?} takes no value");
        }
        Ok(action)
    }
}

/// One event of the script.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// When, from the first byte of the download.
    pub at: Duration,
    /// The path's name, as the lab calls it.
    pub path: String,
    /// What happens.
    pub action: Action,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.path;
        match &self.action {
            Action::Down => write!(f, "{p} down"),
            Action::Up => write!(f, "{p} back up"),
            Action::Blackhole => write!(f, "{p} blackholed"),
            Action::Clear => write!(f, "{p} cleared"),
            Action::Rate(Some(mbit)) => write!(f, "{p} rate {mbit} Mbit/s"),
            Action::Rate(None) => write!(f, "{p} unshaped"),
            Action::Delay(rtt) => write!(f, "{p} RTT {} ms", rtt.as_secs_f64() * 1e3),
            Action::Loss(p_loss) => write!(f, "{p} loss {}%", p_loss * 100.0),
        }
    }
}

/// A whole script.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// How long the download runs.
    pub duration: Duration,
    /// In time order.
    pub events: Vec<Event>,
}

/// The default run: wifi fails twice, in the two ways Wi-Fi fails.
const DEFAULT: &str = r#"
seconds = 10
[[event]]
at = 2
path = "wifi"
action = "down"
[[event]]
at = 4
path = "wifi"
action = "up"
[[event]]
at = 6
path = "wifi"
action = "blackhole"
[[event]]
at = 8
path = "wifi"
action = "clear"
"#;

/// `--quick`: the same story in less time (for CI).
const QUICK: &str = r#"
seconds = 6.5
[[event]]
at = 1
path = "wifi"
action = "down"
[[event]]
at = 2.5
path = "wifi"
action = "up"
[[event]]
at = 3.5
path = "wifi"
action = "blackhole"
[[event]]
at = 5
path = "wifi"
action = "clear"
"#;

/// The file's shape, with positions for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    seconds: Spanned<f64>,
    #[serde(default)]
    event: Vec<Spanned<RawEvent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: Spanned<f64>,
    path: Spanned<String>,
    action: Spanned<String>,
}

/// The longest download a scenario may ask for.
const MAX_SECONDS: f64 = 600.0;
/// The most events a scenario may hold.
const MAX_EVENTS: usize = 1000;

impl Scenario {
    /// The default scenario.
    pub fn standard() -> Scenario {
        Scenario::parse(DEFAULT, "default scenario", &["wifi"]).expect("the default scenario parses")
    }

    /// The short scenario of `--quick`.
    pub fn quick() -> Scenario {
        Scenario::parse(QUICK, "quick scenario", &["wifi"]).expect("the quick scenario parses")
    }

    /// Reads a scenario file whose events name paths among `paths`.
    pub fn from_file(file: &Path, paths: &[&str]) -> Result<Scenario> {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        Scenario::parse(&text, &file.display().to_string(), paths)
    }

    /// Parses `text`; errors start with `name:LINE:`.
    pub fn parse(text: &str, name: &str, paths: &[&str]) -> Result<Scenario> {
        let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(String::new(), |s| format!("{}:", line(s.start)));
            anyhow!("{name}:{at} {}", e.message())
        })?;
        let fail = |at: usize, what: String| anyhow!("{name}:{}: {what}", line(at));
        let seconds = *file.seconds.get_ref();
        if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
            return Err(fail(file.seconds.span().start, format!("seconds = {seconds}: between 0 and {MAX_SECONDS}")));
        }
        if file.event.len() > MAX_EVENTS {
            bail!("{name}: {} events; at most {MAX_EVENTS}", file.event.len());
        }
        let mut events = Vec::with_capacity(file.event.len());
        for raw in &file.event {
            let raw = raw.get_ref();
            let at = *raw.at.get_ref();
            if !(at >= 0.0 && at < seconds) {
                return Err(fail(raw.at.span().start, format!("at = {at}: must lie within the {seconds} s run")));
            }
            let path = raw.path.get_ref();
            if !paths.contains(&path.as_str()) {
                let known = paths.join(", ");
                return Err(fail(raw.path.span().start, format!("unknown path {path:?}; the lab has {known}")));
            }
            let action =
                Action::parse(raw.action.get_ref()).map_err(|e| fail(raw.action.span().start, e.to_string()))?;
            events.push(Event { at: Duration::from_secs_f64(at), path: path.clone(), action });
        }
        events.sort_by_key(|e| e.at);
        Ok(Scenario { duration: Duration::from_secs_f64(seconds), events })
    }

    /// The paths the events name, each once.
    pub fn paths(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for e in &self.events {
            if !names.contains(&e.path.as_str()) {
                names.push(&e.path);
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: &[&str] = &["wifi", "cell"];

    #[test]
    fn the_built_in_scenarios_fail_and_repair_wifi_twice() {
        for s in [Scenario::standard(), Scenario::quick()] {
            let actions: Vec<_> = s.events.iter().map(|e| e.action.clone()).collect();
            assert_eq!(actions, [Action::Down, Action::Up, Action::Blackhole, Action::Clear]);
            assert!(s.events.iter().all(|e| e.at < s.duration && e.path == "wifi"));
        }
        assert_eq!(Scenario::standard().duration, Duration::from_secs(10));
    }

    #[test]
    fn parses_every_action_in_time_order() {
        let text = r#"
seconds = 12
[[event]]
at = 5
path = "cell"
action = "rate 5mbit"
[[event]]
at = 1.5
path = "wifi"
action = "delay 200ms"
[[event]]
at = 7
path = "wifi"
action = "loss 2%"
[[event]]
at = 8
path = "cell"
action = "rate unlimited"
"#;
        let s = Scenario::parse(text, "t.toml", PATHS).unwrap();
        assert_eq!(s.duration, Duration::from_secs(12));
        assert_eq!(s.events[0].action, Action::Delay(Duration::from_millis(200)));
        assert_eq!(s.events[0].at, Duration::from_millis(1500));
        assert_eq!(s.events[1].action, Action::Rate(Some(5.0)));
        assert_eq!(s.events[2].action, Action::Loss(0.02));
        assert_eq!(s.events[3].action, Action::Rate(None));
        assert_eq!(s.paths(), ["wifi", "cell"]);
        assert_eq!(s.events[1].to_string(), "cell rate 5 Mbit/s");
    }

    /// Each bad file is refused with its name and the line at fault.
    #[test]
    fn bad_files_are_refused_naming_the_line() {
        let head = "seconds = 10\n[[event]]\nat = 1\npath = \"wifi\"\n";
        let cases = [
            (format!("{head}action = \"explode\"\n"), "t.toml:5:", "unknown action"),
            (format!("{head}action = \"rate\"\n"), "t.toml:5:", "needs a value"),
            (format!("{head}action = \"rate fast\"\n"), "t.toml:5:", "kbit, mbit or gbit"),
            (format!("{head}action = \"down now\"\n"), "t.toml:5:", "takes no value"),
            (format!("{head}action = \"loss 120%\"\n"), "t.toml:5:", "at most 100%"),
            (
                "seconds = 10\n[[event]]\nat = 1\npath = \"wfii\"\naction = \"down\"\n".into(),
                "t.toml:4:",
                "unknown path",
            ),
            ("seconds = 10\n[[event]]\nat = 11\npath = \"wifi\"\naction = \"down\"\n".into(), "t.toml:3:", "within"),
            ("seconds = -1\n".into(), "t.toml:1:", "between 0"),
            ("seconds = 10\n[[event]]\nat = 1\npath = \"wifi\"\n".into(), "t.toml:", "action"),
            ("seconds = 10\nsecs = 3\n".into(), "t.toml:2:", "unknown field"),
            ("seconds = 10\n[[event]]\nat = \"soon\"\n".into(), "t.toml:3:", "expected f64"),
            ("seconds = \n".into(), "t.toml:1:", ""),
        ];
        for (text, place, what) in cases {
            let e = Scenario::parse(&text, "t.toml", PATHS).expect_err(&text).to_string();
            assert!(e.starts_with(place), "{text:?}: {e}");
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    /// Random bytes of the grammar's own characters: an error or a
    /// scenario, never a panic.
    #[test]
    fn random_files_never_panic() {
        let alphabet: Vec<char> = "seconds=at path\"wifi\"action[[event]]\n.-019 mbit%ms".chars().collect();
        let mut rng = multipath_lab::testing::SeededRng::new(12);
        for _ in 0..20_000 {
            let len = rng.below(80);
            let text: String = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let _ = Scenario::parse(&text, "r", PATHS);
        }
    }
}
