//! What the kernel's path-manager events mean for the core: a decision, so
//! it is made here, beside the core, and tested without a kernel.

use multipath::ServiceType;

use super::Input;
use crate::netlink::mptcp_pm::Event;

/// The input an event makes for the core, if any.
///
/// - A connection the core does not manage yet is adopted, with the
///   `default` service type, when the kernel reports it established and it
///   is a client's (a server's joins are its peers' business). The caller
///   checks first that the core can serve it at all.
/// - For one the core manages: established (joins are accepted from now
///   on), subflows established or closed, the connection closed.
/// - The peer's announced addresses, and their withdrawal, for a managed
///   connection (the driver keeps those of a connection not managed yet).
/// - Everything else (listeners, priorities the peer set) changes nothing.
pub fn input_for_event(event: &Event, managed: bool, default: Option<ServiceType>) -> Option<Input> {
    match event {
        Event::Established(c) if !managed => {
            let service = default.filter(|_| !c.server_side)?;
            Some(Input::Established { token: c.token, service, local: c.local, remote: c.remote, ready: true })
        }
        _ if !managed => None,
        Event::Established(c) => Some(Input::Ready { token: c.token }),
        Event::SubEstablished(s) => {
            Some(Input::SubflowEstablished { token: s.token, local: s.local, loc_id: s.loc_id })
        }
        Event::SubClosed(s) => Some(Input::SubflowClosed { token: s.token, local: s.local, loc_id: s.loc_id }),
        Event::Closed { token } => Some(Input::Closed { token: *token }),
        Event::Announced { token, rem_id, addr } => {
            Some(Input::Announced { token: *token, rem_id: *rem_id, addr: *addr })
        }
        Event::Removed { token, rem_id } => Some(Input::Withdrawn { token: *token, rem_id: *rem_id }),
        _ => None,
    }
}

/// Addresses peers announced for connections the core does not manage
/// (yet): the kernel announces right after ESTABLISHED, and a program
/// registers its connection later. Bounded: at most `EARLY_CONNECTIONS`
/// connections (all forgotten when full, as a lost CLOSED would otherwise
/// keep one forever) of `MAX_ANNOUNCED` addresses each.
#[derive(Debug, Default)]
pub struct EarlyAnnouncements {
    by_token: std::collections::HashMap<u32, Vec<(u8, std::net::SocketAddr)>>,
}

const EARLY_CONNECTIONS: usize = 1024;

impl EarlyAnnouncements {
    /// Takes note of `event` for a connection not `managed`; forgets a
    /// connection at its CLOSED.
    pub fn hear(&mut self, event: &Event, managed: bool) {
        match *event {
            Event::Announced { token, rem_id, addr } if !managed => {
                if self.by_token.len() >= EARLY_CONNECTIONS && !self.by_token.contains_key(&token) {
                    self.by_token.clear();
                }
                let addrs = self.by_token.entry(token).or_default();
                if addrs.len() < super::conn::MAX_ANNOUNCED {
                    addrs.push((rem_id, addr));
                }
            }
            Event::Removed { token, rem_id } => {
                if let Some(addrs) = self.by_token.get_mut(&token) {
                    addrs.retain(|(id, _)| *id != rem_id);
                }
            }
            Event::Closed { token } => {
                self.by_token.remove(&token);
            }
            _ => {}
        }
    }

    /// What was announced for `token`, forgotten here.
    pub fn take(&mut self, token: u32) -> Vec<(u8, std::net::SocketAddr)> {
        self.by_token.remove(&token).unwrap_or_default()
    }

    /// Connections with announcements kept.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::mptcp_pm::{ConnectionEvent, SubflowEvent};

    fn conn(server_side: bool) -> ConnectionEvent {
        ConnectionEvent {
            token: 9,
            local: "10.1.0.2:40000".parse().unwrap(),
            remote: "10.0.0.2:443".parse().unwrap(),
            server_side,
        }
    }

    fn subflow() -> SubflowEvent {
        SubflowEvent {
            token: 9,
            loc_id: 3,
            rem_id: 0,
            local: "10.2.0.2:50000".parse().unwrap(),
            remote: "10.0.0.2:443".parse().unwrap(),
            backup: false,
            ifindex: None,
            error: None,
        }
    }

    #[test]
    fn unmanaged_client_connections_are_adopted_with_the_default_service() {
        let agg = Some(ServiceType::Aggregate);
        let adopted = input_for_event(&Event::Established(conn(false)), false, agg);
        assert!(matches!(
            adopted,
            Some(Input::Established { token: 9, service: ServiceType::Aggregate, ready: true, .. })
        ));
        assert_eq!(input_for_event(&Event::Established(conn(true)), false, agg), None, "server side");
        assert_eq!(input_for_event(&Event::Established(conn(false)), false, None), None, "no default");
        assert_eq!(input_for_event(&Event::SubEstablished(subflow()), false, agg), None, "not ours");
        assert_eq!(input_for_event(&Event::Closed { token: 9 }, false, agg), None);
    }

    #[test]
    fn announcements_before_management_are_kept_bounded_and_forgotten_at_close() {
        let announced = |token, rem_id| Event::Announced { token, rem_id, addr: "[fd00::2]:443".parse().unwrap() };
        let mut early = EarlyAnnouncements::default();
        early.hear(&announced(9, 1), false);
        early.hear(&announced(9, 2), true); // managed: the core hears it
        early.hear(&announced(8, 1), false);
        early.hear(&Event::Closed { token: 8 }, false);
        assert_eq!(early.len(), 1);
        assert_eq!(early.take(9), vec![(1, "[fd00::2]:443".parse().unwrap())]);
        assert!(early.is_empty());
        for token in 0..3000 {
            for id in 0..20 {
                early.hear(&announced(token, id), false);
            }
        }
        assert!(early.len() <= EARLY_CONNECTIONS);
        assert_eq!(early.take(2999).len(), crate::policy::conn::MAX_ANNOUNCED);
    }

    #[test]
    fn managed_connections_hear_their_subflows_and_their_end() {
        let s = subflow();
        assert_eq!(input_for_event(&Event::Established(conn(false)), true, None), Some(Input::Ready { token: 9 }));
        assert_eq!(
            input_for_event(&Event::SubEstablished(s), true, None),
            Some(Input::SubflowEstablished { token: 9, local: s.local, loc_id: 3 })
        );
        assert_eq!(
            input_for_event(&Event::SubClosed(s), true, None),
            Some(Input::SubflowClosed { token: 9, local: s.local, loc_id: 3 })
        );
        assert_eq!(input_for_event(&Event::Closed { token: 9 }, true, None), Some(Input::Closed { token: 9 }));
        assert_eq!(input_for_event(&Event::SubPriority(s), true, None), None);
        assert_eq!(input_for_event(&Event::Created(conn(false)), true, None), None);
    }
}
