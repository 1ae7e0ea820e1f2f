//! Reconciling one connection: from the paths that are up and healthy, the
//! service type decides which path carries data (the *active* one) and
//! which subflows should exist; the difference to the subflows that do
//! exist becomes commands, in the order the kernel needs, one numbered
//! step after another.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use multipath::ServiceType;

use super::conn::{Conn, Subflow, SubflowState, UNBACKUP_AFTER_WITHDRAWAL};
use super::{LocalPath, PolicyConfig};
use crate::netlink::mptcp_pm::{flags, Command, LocalAddr};

/// Where a subflow on `path` goes: from the path's address in the family
/// of the peer's first address, to that address. A path without that
/// family (an IPv6-only cell to an IPv4 server) may reach an address the
/// peer announced instead, if the connection's socket takes both families.
///
/// Announced addresses are alternatives only, for every service type:
/// a second subflow over the same path to another address of the same
/// server shares the path's bottleneck (the access link, nearly always)
/// and adds no capacity. Apple's client, as far as its documentation and
/// behaviour show, does the same: one subflow per interface.
pub(super) fn target(path: &LocalPath, conn: &Conn) -> Option<(IpAddr, SocketAddr)> {
    if let Some(addr) = path.addr_for(conn.remote.ip()) {
        return Some((addr, conn.remote));
    }
    if !conn.dual {
        return None;
    }
    conn.announced.iter().find_map(|&(_, peer)| path.addr_for(peer.ip()).map(|addr| (addr, peer)))
}

/// The paths a connection may use now: up, and either healthy or due for
/// another try.
pub(super) fn usable<'a>(paths: &'a [LocalPath], conn: &Conn, now: Instant) -> Vec<&'a LocalPath> {
    paths
        .iter()
        // Only paths that reach an address of the peer can join.
        .filter(|p| target(p, conn).is_some())
        // A failed path is out while it waits for its next try; then a
        // fresh join probes it. A refused one is out until it changes.
        .filter(|p| {
            !conn.health.get(&p.name).is_some_and(|h| h.refused || (h.failed && h.retry_at.is_some_and(|at| now < at)))
        })
        .collect()
}

/// Whether a subflow still leaves from an address of its path: one whose
/// address vanished (a DHCP renewal, a roam) carries nothing any more,
/// whatever its path does.
fn on_its_address(paths: &[LocalPath], sf: &Subflow) -> bool {
    paths.iter().find(|p| p.name == sf.path).is_some_and(|p| p.holds(sf.local.ip().to_canonical()))
}

/// Makes one connection's subflows match its service type. `join_limit`:
/// the kernel's subflow limit (`ip mptcp limits`), joins per connection.
pub(super) fn reconcile(
    config: &PolicyConfig,
    paths: &[LocalPath],
    join_limit: Option<u32>,
    token: u32,
    conn: &mut Conn,
    now: Instant,
    out: &mut VecDeque<Command>,
) {
    let usable = usable(paths, conn, now);
    let is_usable = |name: &str| usable.iter().any(|p| p.name == name);
    let is_failed = |conn: &Conn, name: &str| conn.health.get(name).is_some_and(|h| h.failed);
    let current = |s: &Subflow| on_its_address(paths, s);

    // 1. Subflows on dead or failed paths go: withdraw the address first,
    // over a working subflow, so the peer stops using the dead one at once
    // (it would otherwise wait for its own timeouts), then destroy.
    // Never the last established subflow, though, before another one is
    // established to take over: until then it stays, as the kernel would
    // keep it (its path may come back), and the replacement joins below.
    let (dead, mut alive): (Vec<Subflow>, Vec<Subflow>) =
        std::mem::take(&mut conn.subflows).into_iter().partition(|s| {
            !is_usable(&s.path) || !current(s) || (is_failed(conn, &s.path) && s.state == SubflowState::Established)
        });
    let (dead, alive) = if alive.iter().any(|s| s.state == SubflowState::Established) {
        (dead, alive)
    } else {
        let (last, dead): (Vec<Subflow>, Vec<Subflow>) =
            dead.into_iter().partition(|s| s.state == SubflowState::Established);
        alive.extend(last);
        (dead, alive)
    };
    conn.subflows = alive;
    let withdrew = !dead.is_empty();
    for sf in dead {
        out.push_back(Command::Remove { token, loc_id: sf.loc_id });
        if sf.state == SubflowState::Established {
            out.push_back(Command::SubflowDestroy { token, local: sf.local, remote: sf.remote });
        }
    }

    // 2. Which path carries data.
    let established: Vec<&str> = usable
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| {
            conn.subflows.iter().any(|s| s.path == *name && s.state == SubflowState::Established && current(s))
        })
        .filter(|name| !is_failed(conn, name))
        .collect();
    let active = match conn.service {
        ServiceType::Aggregate | ServiceType::None => None,
        // A better path takes over once the peer completed its join (one it
        // dropped is established on this side only, and the secondary
        // withdrawn for it would leave nothing working); a failed active
        // path is left at once.
        ServiceType::Handover => {
            let confirmed = |name: &str| {
                conn.subflows.iter().any(|s| s.path == name && s.state == SubflowState::Established && s.confirmed)
            };
            let held = match (established.first(), conn.active.as_deref()) {
                (Some(best), Some(current))
                    if *best != current && established.contains(&current) && !confirmed(best) =>
                {
                    Some(current.to_owned())
                }
                _ => None,
            };
            conn.waits_for_join = held.is_some();
            held.or_else(|| established.first().map(|s| s.to_string()))
        }
        ServiceType::Interactive => {
            conn.interactive.choose(conn.active.as_deref(), &established, &config.hysteresis, now)
        }
    };
    // 2b. A handover back on its primary withdraws the secondary that
    // carried the data instead of flagging it backup. The peer then resends
    // what it had queued there over the primary, in order, where draining
    // that backlog over the slower path would leave the receiver waiting on
    // it, a full secondary RTT at each of its losses. A fresh backup
    // subflow follows `demote_after` later. (Only a better path becoming
    // established moves a handover off a live active path.)
    let mut withdrew = withdrew;
    if let (ServiceType::Handover, Some(old), Some(new)) = (conn.service, conn.active.clone(), active.as_ref()) {
        let carrying = |s: &Subflow| s.path == old && s.state == SubflowState::Established && !s.backup;
        if &old != new {
            if let Some(i) = conn.subflows.iter().position(carrying) {
                let sf = conn.subflows.remove(i);
                out.push_back(Command::Remove { token, loc_id: sf.loc_id });
                out.push_back(Command::SubflowDestroy { token, local: sf.local, remote: sf.remote });
                conn.health.entry(old).or_default().rejoin_at = Some(now + config.demote_after);
                withdrew = true;
            }
        }
    }
    // Aggregate: a path the contribution guard holds back is backup, as
    // long as another established path carries data; with none left, the
    // held paths are released (what they were measured against is gone).
    if !established.iter().any(|p| !conn.guard.holds_back(p)) {
        for path in &established {
            conn.guard.release(path);
        }
    }
    let carriers: Vec<&str> = established.iter().copied().filter(|p| !conn.guard.holds_back(p)).collect();
    let wants_backup = |conn: &Conn, path: &str| match conn.service {
        ServiceType::Aggregate => conn.guard.holds_back(path) && carriers.iter().any(|p| *p != path),
        ServiceType::None => false,
        _ => active.as_deref() != Some(path),
    };

    // 3. The new active path stops being backup before anything else is.
    // Right after a withdrawal, a moment later: the peer must act on the
    // RM_ADDR first, resending what the dead path lost, before MP_PRIO
    // invites it to push new data onto this path ahead of that hole.
    let flag_ready = |s: &Subflow| s.state == SubflowState::Established && s.flag_retry_at.is_none_or(|at| now >= at);
    if let Some(name) = &active {
        if withdrew {
            for sf in conn.subflows.iter_mut().filter(|s| &s.path == name && s.backup && flag_ready(s)) {
                sf.flag_retry_at = Some(now + UNBACKUP_AFTER_WITHDRAWAL);
            }
        }
        for sf in conn.subflows.iter_mut().filter(|s| &s.path == name && s.backup && flag_ready(s)) {
            sf.backup = false;
            sf.flag_retry_at = None;
            out.push_back(Command::SetBackup { token, local: sf.local, remote: sf.remote, backup: false });
        }
    }

    // 4. Subflows on usable paths that have none.
    let wanted: Vec<&LocalPath> = match conn.service {
        ServiceType::Handover if config.lazy_secondary => {
            // Apple's way: the secondary only once the primary is gone.
            usable.iter().copied().take(1).collect()
        }
        _ => usable.clone(),
    };
    let wanted = within_limit(token, conn, wanted, active.as_deref(), join_limit, paths, out);
    for path in wanted {
        let has = conn.subflows.iter().any(|s| s.path == path.name && current(s));
        // A withdrawn secondary waits for its fresh join, unless the
        // connection has nothing else left.
        let pending = |at: Option<Instant>| at.is_some_and(|at| now < at);
        let waiting = conn
            .health
            .get(&path.name)
            .is_some_and(|h| pending(h.retry_at) || (pending(h.rejoin_at) && active.is_some()))
            || conn.joins_from.is_some_and(|at| now < at);
        if has || waiting || conn.next_id == u8::MAX {
            continue;
        }
        // Handover joins as backup, a recovering primary too: nothing may be
        // queued on it before the secondary is withdrawn (2b), so that the
        // peer's resending of the secondary's backlog comes first on it.
        // With no active path there is nothing to protect.
        let backup = match conn.service {
            ServiceType::Handover => active.is_some(),
            _ => wants_backup(conn, &path.name),
        };
        let Some((addr, remote)) = target(path, conn) else { continue };
        let loc_id = conn.next_id;
        conn.next_id += 1;
        if let Some(h) = conn.health.get_mut(&path.name) {
            h.retry_at = None; // this join is the try
            h.rejoin_at = None;
        }
        let local = LocalAddr {
            id: loc_id,
            addr,
            port: 0,
            ifindex: path.ifindex as i32,
            flags: if backup { flags::BACKUP } else { 0 },
        };
        out.push_back(Command::SubflowCreate { token, local, remote });
        let joining = Subflow {
            path: path.name.clone(),
            ifindex: path.ifindex,
            loc_id,
            local: SocketAddr::new(addr, 0),
            remote,
            backup,
            state: SubflowState::Joining(now),
            flag_retry_at: None,
            flag_refusals: 0,
            created: Some(now),
            confirmed: false,
        };
        conn.subflows.push(joining);
    }

    // 5. Every other established subflow gets the flag its role wants,
    // those that carry data first: the peer never sees every subflow
    // backup. (Not one kept on a dead path for want of a replacement: its
    // MP_PRIO would go nowhere.)
    let order: Vec<usize> = (0..conn.subflows.len())
        .filter(|&i| !wants_backup(conn, &conn.subflows[i].path))
        .chain((0..conn.subflows.len()).filter(|&i| wants_backup(conn, &conn.subflows[i].path)))
        .collect();
    for i in order {
        let sf = &conn.subflows[i];
        let want = wants_backup(conn, &sf.path);
        if flag_ready(sf) && sf.backup != want && is_usable(&sf.path) {
            let sf = &mut conn.subflows[i];
            sf.backup = want;
            sf.flag_retry_at = None;
            out.push_back(Command::SetBackup { token, local: sf.local, remote: sf.remote, backup: want });
        }
    }
    if active != conn.active {
        conn.prober.active_since = active.clone().map(|a| (a, now));
        conn.prober.outstanding = None;
    }
    let unconfirmed_active = conn.subflows.iter().any(|s| {
        !s.confirmed
            && s.state == SubflowState::Established
            && s.local.port() != 0
            && active.as_deref() == Some(&s.path)
    });
    conn.awaits = conn.waits_for_join || unconfirmed_active;
    conn.active = active;
}

/// 4a. The kernel's subflow limit: of the `wanted` paths (best first), the
/// active one and the initial subflow's keep their subflows, and the best
/// others get the joins the limit allows. A join on a path left out is
/// withdrawn (never the last established subflow). The decision is logged
/// when it changes, and shown in the connection's view.
///
/// The userspace path manager is not held to the limit by the kernel on
/// this side, but the peer's kernel is held to its own (stock: 2), and a
/// host that lowered the limit asked for fewer subflows.
fn within_limit<'a>(
    token: u32,
    conn: &mut Conn,
    wanted: Vec<&'a LocalPath>,
    active: Option<&str>,
    join_limit: Option<u32>,
    paths: &[LocalPath],
    out: &mut VecDeque<Command>,
) -> Vec<&'a LocalPath> {
    let Some(limit) = join_limit else { return wanted };
    let initial = conn.subflows.iter().find(|s| s.loc_id == 0 && on_its_address(paths, s)).map(|s| s.path.clone());
    let mut budget = limit as usize;
    let mut order: Vec<&LocalPath> = wanted.clone();
    // The active path first: it carries the data.
    order.sort_by_key(|p| Some(p.name.as_str()) != active);
    let (mut kept, mut left_out) = (Vec::new(), Vec::new());
    for path in order {
        if initial.as_deref() == Some(path.name.as_str()) {
            kept.push(path.name.clone());
        } else if budget > 0 {
            budget -= 1;
            kept.push(path.name.clone());
        } else {
            left_out.push(path.name.clone());
        }
    }
    let established = |s: &Subflow| s.state == SubflowState::Established;
    for name in &left_out {
        let others_working = |conn: &Conn| conn.subflows.iter().any(|s| established(s) && &s.path != name);
        while let Some(i) = conn.subflows.iter().position(|s| &s.path == name && s.loc_id != 0) {
            if established(&conn.subflows[i]) && !others_working(conn) {
                break;
            }
            let sf = conn.subflows.remove(i);
            out.push_back(Command::Remove { token, loc_id: sf.loc_id });
            if established(&sf) {
                out.push_back(Command::SubflowDestroy { token, local: sf.local, remote: sf.remote });
            }
        }
    }
    if left_out != conn.held_back {
        if !left_out.is_empty() {
            tracing::info!(
                token,
                limit,
                joined = ?kept,
                left_out = ?left_out,
                "the kernel's subflow limit (ip mptcp limits) leaves paths without a subflow"
            );
        }
        conn.held_back = left_out;
    }
    wanted.into_iter().filter(|p| kept.contains(&p.name)).collect()
}
