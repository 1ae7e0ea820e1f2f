//! What `mptcp run` asked for, read from the environment once, at load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use multipath::daemon_client::Daemon;
use multipath::ServiceType;

/// The daemon, found once at load (`MULTIPATH_PMD_SOCKET` or this
/// namespace's): the environment is not read again inside the program's
/// `connect`, where another thread may be changing it.
static DAEMON: OnceLock<Daemon> = OnceLock::new();

/// The service type, as an index into [`ServiceType::ALL`] plus one; 0:
/// inactive (nothing set, or set wrongly).
static SERVICE: AtomicU8 = AtomicU8::new(0);
/// Whether connections are registered with the daemon.
static REGISTER: AtomicU8 = AtomicU8::new(0);

/// The settings `MULTIPATH_RUN_SERVICE` and `MULTIPATH_RUN_REGISTER` give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub service: ServiceType,
    pub register: bool,
}

/// Reads the two variables' values; `Ok(None)`: not asked to do anything.
pub(crate) fn parse(service: Option<&[u8]>, register: Option<&[u8]>) -> Result<Option<Settings>, String> {
    let Some(service) = service else { return Ok(None) };
    let text = std::str::from_utf8(service).map_err(|_| "MULTIPATH_RUN_SERVICE is not text".to_owned())?;
    let service: ServiceType = text.parse().map_err(|e| format!("MULTIPATH_RUN_SERVICE: {e}"))?;
    let register = match register {
        None | Some(b"1") => true,
        Some(b"0") => false,
        Some(other) => {
            return Err(format!("MULTIPATH_RUN_REGISTER must be 0 or 1, not {:?}", String::from_utf8_lossy(other)))
        }
    };
    Ok(Some(Settings { service, register }))
}

/// Takes the settings for the rest of the process's life.
pub(crate) fn install(settings: Settings) {
    let index = ServiceType::ALL.iter().position(|&s| s == settings.service).expect("one of ALL");
    let _ = DAEMON.set(Daemon::discover());
    REGISTER.store(settings.register as u8, Ordering::Relaxed);
    SERVICE.store(index as u8 + 1, Ordering::Release);
}

/// The service type asked for, if any.
pub(crate) fn service() -> Option<ServiceType> {
    match SERVICE.load(Ordering::Acquire) {
        0 => None,
        n => ServiceType::ALL.get(usize::from(n) - 1).copied(),
    }
}

/// Whether TCP sockets become MPTCP: every service type but `none`.
pub(crate) fn converts() -> bool {
    service().is_some_and(|s| s != ServiceType::None)
}

/// The daemon connections go to (set with the settings).
pub(crate) fn daemon() -> Option<&'static Daemon> {
    DAEMON.get()
}

/// Whether connections go to the daemon.
pub(crate) fn registers() -> bool {
    converts() && REGISTER.load(Ordering::Relaxed) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_reads_strictly() {
        assert_eq!(parse(None, Some(b"0")), Ok(None));
        assert_eq!(
            parse(Some(b"handover"), None),
            Ok(Some(Settings { service: ServiceType::Handover, register: true }))
        );
        assert_eq!(
            parse(Some(b"Aggregate"), Some(b"0")),
            Ok(Some(Settings { service: ServiceType::Aggregate, register: false }))
        );
        let e = parse(Some(b"redundant"), None).unwrap_err();
        assert!(e.contains("MULTIPATH_RUN_SERVICE") && e.contains("redundant"), "{e}");
        assert!(parse(Some(b"handover"), Some(b"yes")).unwrap_err().contains("0 or 1"));
        assert!(parse(Some(b"\xff"), None).is_err());
    }
}
