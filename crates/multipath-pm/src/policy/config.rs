//! The core's tunables.

use std::time::Duration;

use multipath::ServiceType;

use super::{ContributionGuard, Hysteresis, PathPreference};

/// Tunables, with defaults that suit the lab's 20 ms / 60 ms paths.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Which paths are primary, metered or never used.
    pub paths: PathPreference,
    /// While a path's interface is down, refuse packets from its address
    /// (an `unreachable` policy rule, tagged `proto 77`, removed when the
    /// interface returns and when the manager stops) instead of letting
    /// them leave through another interface. Applied by the manager, not
    /// the core.
    pub quarantine_down_paths: bool,
    /// Handover: open secondary subflows only once the primary degrades
    /// (Apple's behaviour) instead of at once as standby backups.
    pub lazy_secondary: bool,
    /// A join not established within this long is abandoned and retried.
    pub join_timeout: Duration,
    /// First retry delay after a failed join; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Interactive: how much better and for how long another path must be.
    pub hysteresis: Hysteresis,
    /// Handover: when traffic returns to the primary, the secondary's
    /// subflow is withdrawn (the peer resends what was queued on it over the
    /// primary); a fresh backup subflow on it follows this much later.
    pub demote_after: Duration,
    /// Silence on the active path after which it is probed.
    pub silence: Duration,
    /// A probe unanswered this long declares the path dead.
    pub probe_timeout: Duration,
    /// Aggregate: which paths carry data, from measured goodput.
    pub contribution: ContributionGuard,
    /// Service type for connections nobody registered, seen through the
    /// kernel's events. The daemon uses `aggregate` (all paths active, as the
    /// kernel's path manager would) so other MPTCP programs keep working;
    /// `None` leaves them with their initial subflow only.
    pub default_service: Option<ServiceType>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            paths: PathPreference::default(),
            quarantine_down_paths: true,
            lazy_secondary: false,
            join_timeout: Duration::from_secs(3),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(8),
            hysteresis: Hysteresis::default(),
            demote_after: Duration::from_millis(300),
            silence: Duration::from_millis(40),
            probe_timeout: Duration::from_millis(60),
            contribution: ContributionGuard::default(),
            default_service: None,
        }
    }
}
