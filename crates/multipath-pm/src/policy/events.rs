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
/// - Everything else (announcements, listeners, priorities the peer set)
///   changes nothing.
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
        _ => None,
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
