//! The four multipath service types, with Apple's meaning.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a connection may use the paths a host has, as Apple defines it for
/// `URLSessionConfiguration.multipathServiceType` and `NWParameters`.
///
/// The numbering matches Apple's (`none = 0` … `aggregate = 3`). Which of
/// these behaviours is actually *enforced* on a connection depends on the
/// path manager handling it; [`MultipathStatus`](crate::MultipathStatus)
/// says so for every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// No multipath: a plain TCP connection on one path. The default, as
    /// on Apple's platforms.
    #[default]
    None = 0,
    /// Data on the primary path only (Wi-Fi, Ethernet); secondary paths
    /// (cellular) stand by and take the traffic when the primary fails, for
    /// as long as it is down. For long-lived connections.
    Handover = 1,
    /// Subflows on every usable path from the start; data on the
    /// lowest-latency one, switching on loss, timeouts or high RTT. For
    /// low-latency, low-volume traffic.
    Interactive = 2,
    /// All paths at once, to sum their throughput. Uses a lot of cellular
    /// data; Apple reserves it for experimentation behind an entitlement,
    /// and so does the `multipath` path manager.
    Aggregate = 3,
}

impl ServiceType {
    /// Every service type, in Apple's order.
    pub const ALL: [ServiceType; 4] =
        [ServiceType::None, ServiceType::Handover, ServiceType::Interactive, ServiceType::Aggregate];

    /// The lowercase name used by `Display`, `FromStr` and serde.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::None => "none",
            ServiceType::Handover => "handover",
            ServiceType::Interactive => "interactive",
            ServiceType::Aggregate => "aggregate",
        }
    }

    /// Whether this type asks for an MPTCP socket at all.
    pub fn is_multipath(self) -> bool {
        self != ServiceType::None
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text given to [`ServiceType::from_str`] names no service type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown multipath service type {0:?} (expected none, handover, interactive or aggregate)")]
pub struct UnknownServiceType(pub String);

impl FromStr for ServiceType {
    type Err = UnknownServiceType;

    /// Parses the lowercase name, ignoring ASCII case and surrounding blanks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        ServiceType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownServiceType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ServiceType::ALL {
            assert_eq!(t.to_string().parse::<ServiceType>(), Ok(t));
        }
        assert_eq!(" Handover ".parse(), Ok(ServiceType::Handover));
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = "redundant".parse::<ServiceType>().unwrap_err();
        assert!(err.to_string().contains("redundant"), "{err}");
        assert!("".parse::<ServiceType>().is_err());
    }

    #[test]
    fn apple_numbering() {
        let numbers: Vec<u8> = ServiceType::ALL.iter().map(|t| *t as u8).collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
    }
}
