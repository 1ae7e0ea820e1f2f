//! Finding and removing labs left behind (a killed test, a crashed CLI).

use std::fs;

use crate::lab::NAMESPACE_PREFIX;
use crate::netns;

/// A lab found by its namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabInfo {
    /// The lab's name, `mpl<pid>x<n>`.
    pub name: String,
    /// The process that built it.
    pub owner_pid: u32,
    /// Whether that process still runs.
    pub owner_alive: bool,
    /// Its namespaces.
    pub namespaces: Vec<String>,
}

/// Parses `mpl<pid>x<n>-<role>` into (lab name, pid).
fn parse(ns: &str) -> Option<(String, u32)> {
    let rest = ns.strip_prefix(NAMESPACE_PREFIX)?;
    let (lab, role) = rest.rsplit_once('-')?;
    let (pid, n) = lab.split_once('x')?;
    let ok = ["cli", "rtr", "srv"].contains(&role) && n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty();
    ok.then(|| pid.parse().ok()).flatten().map(|pid| (format!("{NAMESPACE_PREFIX}{lab}"), pid))
}

/// Whether `pid` runs (a zombie does not: it has exited, unreaped).
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which may itself contain ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Every lab whose namespaces exist on this machine.
pub fn list_labs() -> Vec<LabInfo> {
    let mut names: Vec<String> = fs::read_dir("/run/netns")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    let mut labs: Vec<LabInfo> = Vec::new();
    for ns in names {
        let Some((lab, pid)) = parse(&ns) else { continue };
        match labs.iter_mut().find(|l| l.name == lab) {
            Some(l) => l.namespaces.push(ns),
            None => {
                labs.push(LabInfo { name: lab, owner_pid: pid, owner_alive: process_alive(pid), namespaces: vec![ns] })
            }
        }
    }
    labs
}

/// Removes labs (their processes and namespaces): all of them, or only
/// those whose owner process is gone. Returns the names removed.
pub fn remove_labs(only_stale: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for lab in list_labs() {
        if only_stale && lab.owner_alive {
            continue;
        }
        for ns in &lab.namespaces {
            if let Err(e) = netns::destroy(ns) {
                tracing::warn!(netns = %ns, error = %e, "cannot remove");
            }
        }
        removed.push(lab.name);
    }
    removed
}

pub(crate) fn remove_stale_labs() {
    for name in remove_labs(true) {
        tracing::info!(lab = %name, "removed a lab whose owner is gone");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_impossible_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }

    #[test]
    fn parses_only_lab_namespaces() {
        assert_eq!(parse("mpl123x0-cli"), Some(("mpl123x0".into(), 123)));
        assert_eq!(parse("mpl7x12-srv"), Some(("mpl7x12".into(), 7)));
        for other in ["mpl123x0-foo", "mplx0-cli", "mpl12-cli", "other", "mpl1x-cli", "dltest-a", "mplAx0-cli"] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
