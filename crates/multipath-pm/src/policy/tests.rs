//! The core stepped in simulated time through scripted event sequences.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multipath::ServiceType;

use super::*;
use crate::netlink::mptcp_pm::flags;

const TOKEN: u32 = 0xc0ffee;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn server() -> SocketAddr {
    addr("10.0.0.2:443")
}

fn wifi() -> LocalPath {
    LocalPath {
        name: "wifi".into(),
        addrs: vec!["10.1.0.2".parse().unwrap(), "fd00:1::2".parse().unwrap()],
        ifindex: 2,
        rank: 100,
    }
}

fn cell() -> LocalPath {
    LocalPath {
        name: "cell".into(),
        addrs: vec!["10.2.0.2".parse().unwrap(), "fd00:2::2".parse().unwrap()],
        ifindex: 3,
        rank: 200,
    }
}

struct Sim {
    core: Core,
    now: Instant,
}

impl Sim {
    fn new(config: PolicyConfig) -> Sim {
        let mut sim = Sim { core: Core::new(config), now: Instant::now() };
        sim.input(Input::PathUp(cell()));
        sim.input(Input::PathUp(wifi()));
        sim
    }

    fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.core.poll_command()).collect()
    }

    fn input(&mut self, input: Input) -> Vec<Command> {
        self.core.handle(input, self.now);
        self.drain()
    }

    /// Moves time forward, firing timeouts as they fall due.
    fn advance(&mut self, by: Duration) -> Vec<Command> {
        let end = self.now + by;
        let mut out = Vec::new();
        while let Some(at) = self.core.poll_timeout().filter(|&at| at <= end) {
            self.now = self.now.max(at);
            self.core.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }

    fn establish(&mut self, service: ServiceType, on: &str) -> Vec<Command> {
        let local = addr(on);
        self.input(Input::Established { token: TOKEN, service, local, remote: server(), ready: true })
    }

    /// The kernel reports the join `create` asked for as established.
    fn joined(&mut self, create: &Command, port: u16) -> (SocketAddr, Vec<Command>) {
        let Command::SubflowCreate { local, .. } = create else { panic!("not a create: {create:?}") };
        let sock = SocketAddr::new(local.addr, port);
        (sock, self.input(Input::SubflowEstablished { token: TOKEN, local: sock, loc_id: local.id }))
    }

    /// The kernel reports the join `create` asked for as established, and a
    /// measurement of every established subflow then shows the peer
    /// completed it.
    fn joined_and_confirmed(&mut self, create: &Command, port: u16) -> (SocketAddr, Vec<Command>) {
        let (sock, mut cmds) = self.joined(create, port);
        let ends = self.core.subflow_ends(TOKEN).unwrap();
        let samples: Vec<SubflowSample> = ends.into_iter().map(|(local, _, _)| sample(local, 20)).collect();
        cmds.extend(self.sample(&samples));
        (sock, cmds)
    }

    fn sample(&mut self, samples: &[SubflowSample]) -> Vec<Command> {
        self.input(Input::Samples { token: TOKEN, subflows: samples.to_vec() })
    }
}

/// The default policy without aggregate's contribution guard.
fn unguarded() -> PolicyConfig {
    PolicyConfig { contribution: ContributionGuard { enabled: false, ..Default::default() }, ..Default::default() }
}

fn sample(local: SocketAddr, rtt_ms: u32) -> SubflowSample {
    SubflowSample {
        local,
        rtt_us: rtt_ms * 1000,
        min_rtt_us: rtt_ms * 1000,
        backoff: 0,
        unacked: 0,
        total_retrans: 0,
        last_data_recv_ms: 5,
        last_ack_recv_ms: 5,
        bytes_received: 0,
        bytes_acked: 0,
        established: true,
        fully_established: true,
    }
}

/// Samples of a handover pair: wifi (20 ms) silent for `ms`, cell (60 ms)
/// healthy.
fn wifi_silent_for(ms: u32, wifi_sf: SocketAddr, cell_sf: SocketAddr) -> [SubflowSample; 2] {
    [SubflowSample { last_data_recv_ms: ms, last_ack_recv_ms: ms, ..sample(wifi_sf, 20) }, sample(cell_sf, 60)]
}

fn create_on(cmd: &Command, path: &LocalPath, backup: bool) -> bool {
    matches!(cmd, Command::SubflowCreate { token: TOKEN, local, remote }
        if Some(local.addr) == path.addr_for(server().ip()) && local.ifindex == path.ifindex as i32 && *remote == server()
            && (local.flags & flags::BACKUP != 0) == backup && local.id != 0)
}

const WIFI_INITIAL: &str = "10.1.0.2:40000";

/// A handover connection on wifi with its cell backup joined.
fn handover_ready() -> (Sim, SocketAddr) {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Handover, WIFI_INITIAL);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(create_on(&cmds[0], &cell(), true), "cell joins at once, as backup: {cmds:?}");
    let (cell_sf, cmds) = sim.joined(&cmds[0], 50000);
    assert!(cmds.is_empty(), "nothing more to do: {cmds:?}");
    assert!(!sim.core.awaits_confirmation(TOKEN), "a backup join waits for the regular measurements");
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
    (sim, cell_sf)
}

#[test]
fn handover_keeps_cell_as_standby_backup() {
    let (mut sim, cell_sf) = handover_ready();
    // Healthy samples change nothing, however long.
    for _ in 0..100 {
        let cmds = sim.sample(&[sample(addr(WIFI_INITIAL), 20), sample(cell_sf, 60)]);
        assert!(cmds.is_empty(), "{cmds:?}");
        assert!(sim.advance(Duration::from_millis(50)).is_empty());
    }
}

#[test]
fn handover_wifi_down_withdraws_it_then_activates_cell() {
    let (mut sim, cell_sf) = handover_ready();
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert_eq!(
        cmds,
        vec![
            Command::Remove { token: TOKEN, loc_id: 0 },
            Command::SubflowDestroy { token: TOKEN, local: addr(WIFI_INITIAL), remote: server() },
        ],
        "RM_ADDR first, over cell; then destroy"
    );
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
    // MP_PRIO a moment later, so the server resends what wifi lost first.
    assert!(sim.advance(Duration::from_millis(29)).is_empty());
    assert_eq!(
        sim.advance(Duration::from_millis(1)),
        vec![Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false }]
    );
    assert!(sim.advance(Duration::from_secs(30)).is_empty(), "nothing to retry while wifi is down");
}

/// Back on wifi, cell is withdrawn rather than flagged backup: the server
/// resends its cell backlog over wifi, in order, instead of the receiver
/// waiting on the slow path; a fresh backup on cell follows.
#[test]
fn handover_wifi_back_withdraws_cell_then_rejoins_it_as_backup() {
    let (mut sim, cell_sf) = handover_ready();
    sim.input(Input::PathDown { name: "wifi".into() });
    sim.advance(Duration::from_millis(30)); // cell un-backed
    let cmds = sim.input(Input::PathUp(wifi()));
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(create_on(&cmds[0], &wifi(), true), "a fresh wifi subflow, backup until cell is gone: {cmds:?}");
    let Command::SubflowCreate { local, .. } = &cmds[0] else { unreachable!() };
    assert_eq!(local.id, 2, "a new address id, never the dead one's");
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"), "cell carries on until wifi is up");
    let (wifi_sf, cmds) = sim.joined(&cmds[0], 40001);
    assert!(cmds.is_empty(), "nothing changes before the peer completed the wifi join: {cmds:?}");
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
    assert!(sim.core.awaits_confirmation(TOKEN), "measured at every look meanwhile");
    let cmds = sim.sample(&[sample(cell_sf, 60), sample(wifi_sf, 20)]);
    assert!(!sim.core.awaits_confirmation(TOKEN));
    assert_eq!(
        cmds,
        vec![
            Command::Remove { token: TOKEN, loc_id: 1 },
            Command::SubflowDestroy { token: TOKEN, local: cell_sf, remote: server() },
        ]
    );
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
    assert!(sim.advance(Duration::from_millis(29)).is_empty());
    let cmds = sim.advance(Duration::from_millis(1));
    assert_eq!(cmds, vec![Command::SetBackup { token: TOKEN, local: wifi_sf, remote: server(), backup: false }]);
    assert!(sim.advance(Duration::from_millis(269)).is_empty());
    let cmds = sim.advance(Duration::from_millis(1));
    assert!(cmds.len() == 1 && create_on(&cmds[0], &cell(), true), "a fresh backup on cell: {cmds:?}");
}

/// Wifi fails again before cell's fresh join is due: cell joins at once.
#[test]
fn handover_left_without_a_path_rejoins_the_withdrawn_secondary_at_once() {
    let (mut sim, _) = handover_ready();
    sim.input(Input::PathDown { name: "wifi".into() });
    sim.advance(Duration::from_millis(30));
    let cmds = sim.input(Input::PathUp(wifi()));
    sim.joined_and_confirmed(&cmds[0], 40001);
    sim.advance(Duration::from_millis(50));
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert!(cmds.iter().any(|c| create_on(c, &cell(), false)), "{cmds:?}");
}

#[test]
fn handover_rto_on_wifi_fails_over_without_waiting_for_the_kernel() {
    let (mut sim, cell_sf) = handover_ready();
    let stalled = SubflowSample { backoff: 1, unacked: 12, ..sample(addr(WIFI_INITIAL), 20) };
    let cmds = sim.sample(&[stalled, sample(cell_sf, 60)]);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert_eq!(cmds[0], Command::Remove { token: TOKEN, loc_id: 0 });
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
    let cmds = sim.advance(Duration::from_millis(30));
    assert_eq!(cmds, vec![Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false }]);
}

/// A blackholed wifi (link up): the core probes it with fresh joins, backing
/// off, and never loops tightly; once a join works, traffic returns.
#[test]
fn handover_blackholed_wifi_is_retried_with_backoff_then_used_again() {
    let (mut sim, cell_sf) = handover_ready();
    let stalled = SubflowSample { backoff: 1, unacked: 12, ..sample(addr(WIFI_INITIAL), 20) };
    sim.sample(&[stalled, sample(cell_sf, 60)]);
    let mut creates = Vec::new();
    for _ in 0..600 {
        for c in sim.advance(Duration::from_millis(50)) {
            if let Command::SubflowCreate { .. } = c {
                creates.push((sim.now, c));
            }
        }
    }
    // 30 s: joins time out after 3 s, retries back off to 8 s.
    assert!((3..=8).contains(&creates.len()), "{} joins in 30 s", creates.len());
    let gaps: Vec<_> = creates.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "delays never shrink: {gaps:?}");
    // The blackhole clears: the next join establishes, traffic moves back.
    let next = loop {
        let cmds = sim.advance(Duration::from_millis(50));
        if let Some(c) = cmds.into_iter().find(|c| matches!(c, Command::SubflowCreate { .. })) {
            break c;
        }
    };
    let last = next;
    assert!(create_on(&last, &wifi(), true), "a probing join is backup until it works: {last:?}");
    let (wifi_sf, cmds) = sim.joined_and_confirmed(&last, 40002);
    assert_eq!(cmds[1], Command::SubflowDestroy { token: TOKEN, local: cell_sf, remote: server() }, "{cmds:?}");
    let cmds = sim.advance(Duration::from_millis(30));
    assert_eq!(cmds, vec![Command::SetBackup { token: TOKEN, local: wifi_sf, remote: server(), backup: false }]);
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
}

#[test]
fn lazy_handover_opens_cell_only_when_wifi_goes() {
    let mut sim = Sim::new(PolicyConfig { lazy_secondary: true, ..PolicyConfig::default() });
    assert!(sim.establish(ServiceType::Handover, WIFI_INITIAL).is_empty());
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    // The last subflow stays until its replacement is up.
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(create_on(&cmds[0], &cell(), false), "{cmds:?}");
    let (_, cmds) = sim.joined(&cmds[0], 50000);
    assert_eq!(
        cmds,
        vec![
            Command::Remove { token: TOKEN, loc_id: 0 },
            Command::SubflowDestroy { token: TOKEN, local: addr(WIFI_INITIAL), remote: server() },
        ]
    );
}

const SERVER6: &str = "[fd00:9::2]:443";

#[test]
fn ipv6_connections_join_from_each_paths_ipv6_address_and_keep_their_subflow() {
    for service in [ServiceType::Handover, ServiceType::Interactive, ServiceType::Aggregate] {
        let mut sim = Sim::new(PolicyConfig::default());
        let (local, remote) = (addr("[fd00:1::2]:40000"), addr(SERVER6));
        let cmds = sim.input(Input::Established { token: TOKEN, service, local, remote, ready: true });
        assert_eq!(cmds.len(), 1, "{service}: only a join, nothing removed: {cmds:?}");
        let Command::SubflowCreate { local: join, remote: to, .. } = &cmds[0] else { panic!("{cmds:?}") };
        assert_eq!((join.addr, *to), ("fd00:2::2".parse().unwrap(), remote), "{service}");
        assert!(sim.core.manages(TOKEN));
    }
}

#[test]
fn joins_only_where_the_path_has_the_peers_family() {
    let mut sim = Sim::new(PolicyConfig::default());
    // Cell loses its IPv4 default route: only IPv6 is left on it.
    let cell6 = LocalPath { addrs: vec!["fd00:2::2".parse().unwrap()], ..cell() };
    sim.input(Input::PathUp(cell6));
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    assert!(cmds.is_empty(), "no IPv4 on cell: no join, and the initial subflow stays: {cmds:?}");
    assert!(sim.advance(Duration::from_secs(30)).is_empty());
}

#[test]
fn connections_it_cannot_serve_are_never_touched() {
    let cases = [
        ("192.168.7.2:40000", "10.0.0.2:443", "unknown-address"),
        ("[fd00:7::2]:40000", SERVER6, "unknown-address"),
        ("[::ffff:10.1.0.2]:40000", "[fd00::2]:443", "mapped"),
        ("[fd00:1::2]:40000", "[fe80::1]:443", "link-scoped"),
        ("10.1.0.2:40000", "127.0.0.1:443", "link-scoped"),
    ];
    for (local, remote, kind) in cases {
        let mut sim = Sim::new(PolicyConfig::default());
        let (local, remote) = (addr(local), addr(remote));
        assert_eq!(sim.core.servable(local.ip(), remote.ip()).unwrap_err().kind(), kind, "{local} -> {remote}");
        for service in [ServiceType::Handover, ServiceType::Aggregate] {
            let cmds = sim.input(Input::Established { token: TOKEN, service, local, remote, ready: true });
            assert!(cmds.is_empty(), "{local} -> {remote}: {cmds:?}");
            assert!(!sim.core.manages(TOKEN));
            assert!(sim.input(Input::PathDown { name: "wifi".into() }).is_empty());
            assert!(sim.advance(Duration::from_secs(10)).is_empty());
        }
    }
    let err = servable(&[wifi()], "10.1.0.2".parse().unwrap(), "fd00:9::2".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), "mixed-families", "{err}");
}

#[test]
fn the_last_working_subflow_stays_until_a_replacement_is_established() {
    // Interactive, wifi only, then wifi's route vanishes: cell must join
    // before anything is taken from the connection.
    let mut sim = Sim::new(PolicyConfig::default());
    sim.input(Input::PathDown { name: "cell".into() });
    assert!(sim.establish(ServiceType::Interactive, WIFI_INITIAL).is_empty());
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert!(cmds.is_empty(), "no path to replace it: nothing done: {cmds:?}");
    assert!(sim.advance(Duration::from_secs(5)).is_empty());
    let cmds = sim.input(Input::PathUp(cell()));
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    // The join fails: still nothing removed.
    let Command::SubflowCreate { local, .. } = cmds[0] else { panic!("{cmds:?}") };
    let closed = Input::SubflowClosed { token: TOKEN, local: SocketAddr::new(local.addr, 0), loc_id: local.id };
    // Its address id goes (the kernel keeps it listed otherwise, and
    // refuses the next join from that address under a new id).
    assert_eq!(sim.input(closed), vec![Command::Remove { token: TOKEN, loc_id: local.id }]);
    let retry = sim.advance(Duration::from_secs(1));
    assert!(matches!(retry.as_slice(), [Command::SubflowCreate { .. }]), "{retry:?}");
    let (_, cmds) = sim.joined(&retry[0], 50001);
    assert_eq!(cmds[0], Command::Remove { token: TOKEN, loc_id: 0 }, "{cmds:?}");
}

#[test]
fn a_final_refusal_is_not_retried_until_the_path_changes() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    let refusal = Refusal::classify(libc::EINVAL, Some("families mismatch"));
    assert_eq!(refusal, Refusal::Final);
    assert!(sim.input(Input::CommandFailed { command: cmds[0].clone(), refusal }).is_empty());
    assert!(sim.advance(Duration::from_secs(60)).is_empty(), "never asked again");
    // Cell comes back with a new address: worth a try.
    let renumbered = LocalPath { addrs: vec!["10.2.0.9".parse().unwrap()], ..cell() };
    let cmds = sim.input(Input::PathUp(renumbered));
    assert!(matches!(cmds.as_slice(), [Command::SubflowCreate { .. }]), "{cmds:?}");
}

#[test]
fn an_unknown_token_forgets_the_connection() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    let refusal = Refusal::classify(libc::EINVAL, Some("invalid token"));
    assert_eq!(refusal, Refusal::UnknownConnection);
    assert!(sim.input(Input::CommandFailed { command: cmds[0].clone(), refusal }).is_empty());
    assert!(!sim.core.manages(TOKEN));
    assert_eq!(sim.core.poll_timeout(), None, "no timer left behind");
}

#[test]
fn refusals_are_classified_by_errno_and_text() {
    assert_eq!(Refusal::classify(libc::EADDRNOTAVAIL, None), Refusal::Final);
    assert_eq!(Refusal::classify(libc::ENOTCONN, None), Refusal::Transient);
    assert_eq!(Refusal::classify(libc::EINVAL, Some("subflow not found")), Refusal::Transient);
    assert_eq!(Refusal::classify(libc::ENOBUFS, None), Refusal::Transient);
}

#[test]
fn failed_joins_back_off_and_a_refused_create_is_retried() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Handover, WIFI_INITIAL);
    let Command::SubflowCreate { local, .. } = cmds[0].clone() else { panic!() };
    // The kernel refused the command itself.
    assert!(
        sim.input(Input::CommandFailed { command: cmds[0].clone(), refusal: Refusal::Transient }).is_empty(),
        "no immediate retry"
    );
    let retry = sim.advance(Duration::from_millis(250));
    assert_eq!(retry.len(), 1, "retried after 250 ms: {retry:?}");
    // The join went out and was refused by the peer.
    let closed = Input::SubflowClosed { token: TOKEN, local: SocketAddr::new(local.addr, 0), loc_id: local.id + 1 };
    assert_eq!(sim.input(closed), vec![Command::Remove { token: TOKEN, loc_id: local.id + 1 }], "its id goes");
    assert!(sim.advance(Duration::from_millis(400)).is_empty(), "second delay is 500 ms");
    assert_eq!(sim.advance(Duration::from_millis(100)).len(), 1);
}

/// A server at its subflow limit lets each join establish and then resets
/// it. The retries must still back off (they did not: 2.7 joins a second
/// for as long as the connection lasted), and start afresh only once a
/// join is confirmed.
#[test]
fn joins_the_peer_resets_after_establishing_back_off_too() {
    let mut sim = Sim::new(PolicyConfig::default());
    let mut create = sim.establish(ServiceType::Aggregate, WIFI_INITIAL).remove(0);
    let mut waits = Vec::new();
    for port in 50000..50005 {
        let Command::SubflowCreate { local, .. } = create.clone() else { panic!("{create:?}") };
        let (sock, _) = sim.joined(&create, port);
        sim.input(Input::SubflowClosed { token: TOKEN, local: sock, loc_id: local.id });
        let started = sim.now;
        let retry = loop {
            let cmds = sim.advance(Duration::from_millis(50));
            if let Some(c) = cmds.into_iter().find(|c| matches!(c, Command::SubflowCreate { .. })) {
                break c;
            }
            assert!(sim.now - started < Duration::from_secs(30), "never retried");
        };
        waits.push((sim.now - started).as_millis() / 50 * 50);
        create = retry;
    }
    assert_eq!(waits, [250, 500, 1000, 2000, 4000], "doubling from retry_min");
    // Confirmed by a measurement: the next failure waits retry_min again.
    let Command::SubflowCreate { local, .. } = create.clone() else { panic!() };
    let (sock, _) = sim.joined_and_confirmed(&create, 50010);
    sim.input(Input::SubflowClosed { token: TOKEN, local: sock, loc_id: local.id });
    assert!(sim.advance(Duration::from_millis(200)).is_empty());
    let retry = sim.advance(Duration::from_millis(100));
    assert!(retry.iter().any(|c| matches!(c, Command::SubflowCreate { .. })), "{retry:?}");
}

#[test]
fn a_refused_set_backup_is_asked_again() {
    let (mut sim, cell_sf) = handover_ready();
    sim.input(Input::PathDown { name: "wifi".into() });
    let cmds = sim.advance(Duration::from_millis(30));
    let unbackup = cmds[0].clone();
    assert!(matches!(unbackup, Command::SetBackup { backup: false, .. }), "{cmds:?}");
    let again = sim.input(Input::CommandFailed { command: unbackup.clone(), refusal: Refusal::Transient });
    assert!(again.is_empty(), "not at once: {again:?}");
    assert_eq!(sim.advance(Duration::from_millis(20)), vec![unbackup.clone()], "re-issued after a short wait");
    // Refused again and again: the waits double (40, 80, 160 ms), no storm.
    let mut waits = Vec::new();
    for _ in 0..3 {
        sim.input(Input::CommandFailed { command: unbackup.clone(), refusal: Refusal::Transient });
        let from = sim.now;
        let mut cmds = Vec::new();
        while cmds.is_empty() {
            cmds = sim.advance(Duration::from_millis(10));
        }
        assert_eq!(cmds, vec![unbackup.clone()]);
        waits.push((sim.now - from).as_millis());
    }
    assert_eq!(waits, [40, 80, 160], "doubling waits");
    let _ = cell_sf;
}

#[test]
fn a_join_the_peer_never_completed_is_replaced() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    let half_open = SubflowSample { fully_established: false, ..sample(cell_sf, 60) };
    let timeout = PolicyConfig::default().join_timeout;
    // Within the join timeout, a join may still be completing.
    sim.advance(timeout / 2);
    assert!(sim.sample(&[sample(wifi_sf, 20), half_open]).is_empty());
    // Past it: withdrawn, address first, then asked for again after a backoff.
    sim.advance(timeout);
    let cmds = sim.sample(&[sample(wifi_sf, 20), half_open]);
    assert_eq!(
        cmds,
        vec![
            Command::Remove { token: TOKEN, loc_id: 1 },
            Command::SubflowDestroy { token: TOKEN, local: cell_sf, remote: server() }
        ]
    );
    let again = sim.advance(PolicyConfig::default().retry_min + Duration::from_millis(1));
    assert!(again.len() == 1 && create_on(&again[0], &cell(), true), "a fresh cell join: {again:?}");
    // Or, in a stalled connection, told by the kernel's refusal of its
    // backup flag ("subflow not found") past the join timeout.
    let (mut sim, cell_sf) = handover_ready();
    sim.advance(timeout);
    sim.input(Input::PathDown { name: "wifi".into() });
    let cmds = sim.advance(Duration::from_millis(30));
    let unbackup = Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false };
    assert!(cmds.contains(&unbackup), "{cmds:?}");
    let cmds = sim.input(Input::CommandFailed { command: unbackup, refusal: Refusal::Transient });
    assert_eq!(
        cmds[..2],
        [
            Command::Remove { token: TOKEN, loc_id: 1 },
            Command::SubflowDestroy { token: TOKEN, local: cell_sf, remote: server() }
        ]
    );
    // A join that completed is left alone, however old.
    let (mut sim, cell_sf) = handover_ready();
    sim.advance(timeout * 3);
    assert!(sim.sample(&[sample(wifi_sf, 20), sample(cell_sf, 60)]).is_empty());
}

#[test]
fn interactive_follows_the_lower_rtt_with_hysteresis() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Interactive, WIFI_INITIAL);
    assert!(create_on(&cmds[0], &cell(), true), "{cmds:?}");
    let (cell_sf, _) = sim.joined(&cmds[0], 50000);
    let wifi_sf = addr(WIFI_INITIAL);
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));

    // Close RTTs, or cell barely better: no switch, ever.
    for rtts in [(20, 60), (60, 55), (55, 60), (60, 50)] {
        for _ in 0..20 {
            let cmds = sim.sample(&[sample(wifi_sf, rtts.0), sample(cell_sf, rtts.1)]);
            assert!(cmds.is_empty(), "{rtts:?}: {cmds:?}");
            sim.advance(Duration::from_millis(50));
        }
    }
    // Wifi becomes clearly slower: the switch waits for the hold time.
    let mut switched_at = None;
    for i in 0..30 {
        let cmds = sim.sample(&[sample(wifi_sf, 120), sample(cell_sf, 60)]);
        if !cmds.is_empty() {
            assert_eq!(
                cmds,
                vec![
                    Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false },
                    Command::SetBackup { token: TOKEN, local: wifi_sf, remote: server(), backup: true },
                ],
                "un-backup the new path before backing up the old"
            );
            switched_at = Some(i);
            break;
        }
        sim.advance(Duration::from_millis(50));
    }
    assert_eq!(switched_at, Some(10), "after 500 ms of samples 50 ms apart");
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
}

#[test]
fn interactive_leaves_a_lossy_path_at_once() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Interactive, WIFI_INITIAL);
    let (cell_sf, _) = sim.joined(&cmds[0], 50000);
    let wifi_sf = addr(WIFI_INITIAL);
    assert!(sim.sample(&[sample(wifi_sf, 20), sample(cell_sf, 60)]).is_empty());
    let lossy = SubflowSample { total_retrans: 3, ..sample(wifi_sf, 20) };
    let cmds = sim.sample(&[lossy, sample(cell_sf, 60)]);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
}

#[test]
fn aggregate_uses_every_path_and_restores_a_returning_one() {
    // Without the contribution guard: a young connection's join would be
    // backup until its RTT is known (tested below).
    let mut sim = Sim::new(unguarded());
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    assert!(create_on(&cmds[0], &cell(), false), "{cmds:?}");
    let (cell_sf, _) = sim.joined(&cmds[0], 50000);
    let cmds = sim.input(Input::PathDown { name: "cell".into() });
    assert_eq!(
        cmds,
        vec![
            Command::Remove { token: TOKEN, loc_id: 1 },
            Command::SubflowDestroy { token: TOKEN, local: cell_sf, remote: server() },
        ]
    );
    let cmds = sim.input(Input::PathUp(cell()));
    assert!(create_on(&cmds[0], &cell(), false), "{cmds:?}");
    // RTOs do not make aggregate drop a path: the kernel's scheduler copes.
    let stalled = SubflowSample { backoff: 2, unacked: 5, ..sample(addr(WIFI_INITIAL), 20) };
    let Command::SubflowCreate { .. } = &cmds[0] else { panic!() };
    let (cell_again, _) = sim.joined(&cmds[0], 50001);
    assert!(sim.sample(&[stalled, sample(cell_again, 60)]).is_empty());
}

#[test]
fn unmanaged_and_closed_connections_get_nothing() {
    let mut sim = Sim::new(PolicyConfig::default());
    assert!(sim.establish(ServiceType::None, WIFI_INITIAL).is_empty());
    assert_eq!(sim.core.tokens().count(), 0);
    sim.establish(ServiceType::Handover, WIFI_INITIAL);
    assert!(sim.input(Input::Closed { token: TOKEN }).is_empty());
    assert!(sim.input(Input::PathDown { name: "wifi".into() }).is_empty());
    assert_eq!(sim.core.poll_timeout(), None);
    let unknown = Input::SubflowEstablished { token: 1, local: addr("10.2.0.2:1"), loc_id: 3 };
    assert!(sim.input(unknown).is_empty());
}

/// Paths flapping many times leave exactly one subflow per path behind.
#[test]
fn no_subflow_leaks_after_flaps() {
    let (mut sim, _) = handover_ready();
    let mut port = 41000;
    for _ in 0..20 {
        sim.input(Input::PathDown { name: "wifi".into() });
        let cmds = sim.input(Input::PathUp(wifi()));
        let create = cmds.iter().find(|c| matches!(c, Command::SubflowCreate { .. })).unwrap().clone();
        port += 1;
        sim.joined_and_confirmed(&create, port);
    }
    let conn = sim.core.conns.get(&TOKEN).unwrap();
    assert_eq!(conn.subflows.len(), 2, "{:?}", conn.subflows);
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
}

#[test]
fn silence_is_probed_and_an_unanswered_probe_fails_over() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    let silent = |ms| wifi_silent_for(ms, wifi_sf, cell_sf);
    sim.advance(Duration::from_millis(100));
    assert!(sim.sample(&silent(30)).is_empty());
    assert_eq!(sim.core.poll_probe(), None, "30 ms of silence is normal");
    sim.sample(&silent(60));
    let probe = sim.core.poll_probe().expect("60 ms of silence: probe");
    assert_eq!(
        (probe.path.as_str(), probe.from, probe.to),
        ("wifi", wifi().addr_for(server().ip()).unwrap(), server().ip())
    );
    sim.sample(&silent(70));
    assert_eq!(sim.core.poll_probe(), None, "one probe at a time");
    let cmds = sim.advance(Duration::from_millis(100));
    assert_eq!(cmds.first(), Some(&Command::Remove { token: TOKEN, loc_id: 0 }), "{cmds:?}");
    assert!(cmds.contains(&Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false }));
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
}

#[test]
fn an_idle_connection_is_probed_ever_less_often() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    let mut probes = Vec::new();
    sim.advance(Duration::from_millis(100));
    for i in 0..1000u32 {
        // Idle for 10 s: silence grows, every probe is answered.
        let idle =
            SubflowSample { last_data_recv_ms: 60 + i * 10, last_ack_recv_ms: 60 + i * 10, ..sample(wifi_sf, 20) };
        assert!(sim.sample(&[idle, sample(cell_sf, 60)]).is_empty());
        if let Some(p) = sim.core.poll_probe() {
            probes.push(sim.now);
            sim.input(Input::ProbeAnswered { token: TOKEN, path: p.path });
        }
        sim.advance(Duration::from_millis(10));
    }
    // At the silence threshold, then 0.25, 0.5, 1, 2, 4 s apart.
    assert_eq!(probes.len(), 6, "{} probes in 10 s of idleness", probes.len());
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"), "no false switch");
}

/// Events lost in an overrun: the samples alone bring the core back in
/// line with the kernel, without duplicate joins.
#[test]
fn samples_repair_what_lost_events_left_stale() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Handover, WIFI_INITIAL);
    assert!(create_on(&cmds[0], &cell(), true));
    // SUB_ESTABLISHED was lost; the samples show the cell subflow up.
    let cell_sf = addr("10.2.0.2:50000");
    let cmds = sim.sample(&[sample(addr(WIFI_INITIAL), 20), sample(cell_sf, 60)]);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(
        sim.advance(Duration::from_secs(10)).iter().all(|c| !matches!(c, Command::SubflowCreate { .. })),
        "no duplicate join"
    );
    // SUB_CLOSED of cell was lost too: it vanishes from the samples.
    let cmds = sim.sample(&[sample(addr(WIFI_INITIAL), 20)]);
    assert_eq!(cmds, vec![Command::Remove { token: TOKEN, loc_id: 1 }], "its id goes; re-created only after a backoff");
    let cmds = sim.advance(Duration::from_millis(300));
    assert!(cmds.iter().any(|c| create_on(c, &cell(), true)), "{cmds:?}");
}

/// The kernel's ESTABLISHED reaches the daemon before the program's
/// registration: the default applies first, the registration then wins.
#[test]
fn a_registration_after_the_event_replaces_the_default_service() {
    let mut sim = Sim::new(unguarded());
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    assert!(create_on(&cmds[0], &cell(), false), "default: all paths active");
    let (cell_sf, _) = sim.joined(&cmds[0], 50000);
    let cmds = sim.establish(ServiceType::Handover, WIFI_INITIAL);
    assert_eq!(cmds, vec![Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: true }]);
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
}

#[test]
fn a_refused_create_is_retried_for_every_service_type() {
    for service in [ServiceType::Handover, ServiceType::Interactive, ServiceType::Aggregate] {
        let mut sim = Sim::new(PolicyConfig::default());
        let cmds = sim.establish(service, WIFI_INITIAL);
        assert_eq!(cmds.len(), 1, "{service}: {cmds:?}");
        // Before data has flowed, the kernel refuses joins (ENOTCONN).
        let again = sim.input(Input::CommandFailed { command: cmds[0].clone(), refusal: Refusal::Transient });
        assert!(again.is_empty(), "{service}: {again:?}");
        let retry = sim.advance(Duration::from_millis(250));
        assert!(
            // Aggregate's too: a young connection's join waits for its RTT.
            retry.len() == 1 && create_on(&retry[0], &cell(), true),
            "{service}: {retry:?}"
        );
    }
}

#[test]
fn creates_refused_before_the_connection_is_ready_go_out_when_it_is() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Handover, WIFI_INITIAL);
    assert!(sim.input(Input::CommandFailed { command: cmds[0].clone(), refusal: Refusal::Transient }).is_empty());
    sim.advance(Duration::from_millis(10));
    let retry = sim.input(Input::Ready { token: TOKEN });
    assert!(retry.len() == 1 && create_on(&retry[0], &cell(), true), "{retry:?}");
    // Ready again (a duplicate event) changes nothing: the join is under way.
    assert!(sim.input(Input::Ready { token: TOKEN }).is_empty());
}

/// Two connections to the same peer over the same path share one probe:
/// its answer clears both, its silence fails both.
#[test]
fn connections_to_one_peer_share_their_probes() {
    const OTHER: u32 = 0xbeef;
    for answered in [true, false] {
        let (mut sim, cell_sf) = handover_ready();
        let other_wifi = addr("10.1.0.2:40001");
        sim.core.handle(
            Input::Established {
                token: OTHER,
                service: ServiceType::Handover,
                local: other_wifi,
                remote: server(),
                ready: true,
            },
            sim.now,
        );
        let other_cell = addr("10.2.0.2:50001");
        sim.drain();
        sim.core.handle(Input::SubflowEstablished { token: OTHER, local: other_cell, loc_id: 1 }, sim.now);
        sim.drain();
        sim.advance(Duration::from_millis(100));
        let silent = |wifi_sf, cell_sf| {
            [SubflowSample { last_data_recv_ms: 60, last_ack_recv_ms: 60, ..sample(wifi_sf, 20) }, sample(cell_sf, 60)]
        };
        sim.sample(&silent(addr(WIFI_INITIAL), cell_sf));
        let probe = sim.core.poll_probe().expect("the first silent connection probes");
        sim.core.handle(Input::Samples { token: OTHER, subflows: silent(other_wifi, other_cell).to_vec() }, sim.now);
        assert_eq!(sim.core.poll_probe(), None, "the second waits for the same probe");
        if answered {
            sim.input(Input::ProbeAnswered { token: probe.token, path: probe.path });
            assert!(sim.advance(Duration::from_millis(200)).is_empty(), "both alive: no switch");
            assert_eq!((sim.core.active_path(TOKEN), sim.core.active_path(OTHER)), (Some("wifi"), Some("wifi")));
        } else {
            sim.advance(Duration::from_millis(100));
            assert_eq!((sim.core.active_path(TOKEN), sim.core.active_path(OTHER)), (Some("cell"), Some("cell")));
        }
    }
}

/// An upload receives no data, only acknowledgements: they show the path
/// works, so a healthy upload is never probed.
#[test]
fn acknowledgements_count_as_hearing_from_the_path() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    sim.advance(Duration::from_millis(100));
    for _ in 0..100 {
        let uploading =
            SubflowSample { last_data_recv_ms: 5_000, last_ack_recv_ms: 3, unacked: 20, ..sample(wifi_sf, 20) };
        assert!(sim.sample(&[uploading, sample(cell_sf, 60)]).is_empty());
        sim.advance(Duration::from_millis(10));
    }
    assert_eq!(sim.core.poll_probe(), None, "no probe of a path that acknowledges");
}

/// The driver may skip measuring a connection that stands still when the
/// core has nothing to learn from it: aggregate always, the others while
/// an answered probe vouches for the idle path.
#[test]
fn samples_are_needed_until_a_probe_vouches_for_an_idle_path() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    assert!(sim.core.needs_samples(TOKEN, sim.now));
    sim.advance(Duration::from_millis(100));
    sim.sample(&[
        SubflowSample { last_data_recv_ms: 60, last_ack_recv_ms: 60, ..sample(wifi_sf, 20) },
        sample(cell_sf, 60),
    ]);
    let probe = sim.core.poll_probe().expect("silence is probed");
    assert!(sim.core.needs_samples(TOKEN, sim.now), "the verdict is still out");
    sim.input(Input::ProbeAnswered { token: TOKEN, path: probe.path });
    assert!(!sim.core.needs_samples(TOKEN, sim.now), "alive and idle");
    sim.advance(Duration::from_millis(300));
    assert!(sim.core.needs_samples(TOKEN, sim.now), "time to look again");

    let mut aggregate = Sim::new(PolicyConfig::default());
    aggregate.establish(ServiceType::Aggregate, WIFI_INITIAL);
    assert!(!aggregate.core.needs_samples(TOKEN, aggregate.now));
}

/// A registration before the kernel's ESTABLISHED: no join is tried (the
/// kernel would refuse it) until the event, or a second without it.
#[test]
fn joins_wait_for_the_kernel_to_report_the_connection_established() {
    let mut sim = Sim::new(PolicyConfig::default());
    let early = Input::Established {
        token: TOKEN,
        service: ServiceType::Handover,
        local: addr(WIFI_INITIAL),
        remote: server(),
        ready: false,
    };
    assert!(sim.input(early.clone()).is_empty(), "no join before the event");
    assert!(sim.advance(Duration::from_millis(500)).is_empty());
    let cmds = sim.input(Input::Ready { token: TOKEN });
    assert!(cmds.len() == 1 && create_on(&cmds[0], &cell(), true), "{cmds:?}");

    // The event lost: joins are tried after a second anyway.
    let mut sim = Sim::new(PolicyConfig::default());
    assert!(sim.input(early).is_empty());
    assert!(sim.advance(Duration::from_millis(900)).is_empty());
    let cmds = sim.advance(Duration::from_millis(200));
    assert!(cmds.len() == 1 && create_on(&cmds[0], &cell(), true), "{cmds:?}");
}

#[test]
fn connections_found_open_are_adopted_with_their_subflows() {
    let mut sim = Sim::new(PolicyConfig::default());
    let (wifi_sf, cell_sf) = (addr(WIFI_INITIAL), addr("10.2.0.2:50000"));
    // A handover connection a crashed daemon managed: wifi initial, cell
    // joined as id 3, backup.
    let adopt = Input::Adopt {
        token: TOKEN,
        service: ServiceType::Handover,
        remote: server(),
        subflows: vec![(wifi_sf, 0, false), (cell_sf, 3, true)],
    };
    assert!(sim.input(adopt.clone()).is_empty(), "everything is as handover wants it");
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
    assert!(sim.input(adopt).is_empty(), "adopted once");
    // Wifi goes: handled as for any managed connection.
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert_eq!(cmds[0], Command::Remove { token: TOKEN, loc_id: 0 }, "{cmds:?}");
    // Wifi back: its new join takes an id after those in use.
    let cmds = sim.input(Input::PathUp(wifi()));
    let Some(Command::SubflowCreate { local, .. }) = cmds.first() else { panic!("{cmds:?}") };
    assert_eq!(local.id, 4);
    let _ = cell_sf;
}

#[test]
fn connections_found_open_on_unknown_addresses_are_left_alone() {
    let mut sim = Sim::new(PolicyConfig::default());
    let adopt = Input::Adopt {
        token: TOKEN,
        service: ServiceType::Aggregate,
        remote: server(),
        subflows: vec![(addr(WIFI_INITIAL), 0, false), (addr("192.168.9.9:5000"), 1, false)],
    };
    assert!(sim.input(adopt).is_empty());
    assert!(!sim.core.manages(TOKEN));
    assert_eq!(
        Refusal::classify(libc::EINVAL, Some("invalid request; userspace PM not selected")),
        Refusal::UnknownConnection
    );
}

#[test]
fn a_still_connection_is_judged_on_its_aged_measurements() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    let heard = |ms| wifi_silent_for(ms, wifi_sf, cell_sf);
    sim.advance(Duration::from_millis(100));
    assert!(sim.sample(&heard(10)).is_empty());
    assert_eq!(sim.core.poll_probe(), None);
    assert!(sim.input(Input::Still { token: TOKEN }).is_empty());
    assert_eq!(sim.core.poll_probe(), None, "10 ms, aged by nothing");
    // 50 ms later, with nothing received since, wifi has been silent 60 ms.
    sim.advance(Duration::from_millis(50));
    sim.input(Input::Still { token: TOKEN });
    let probe = sim.core.poll_probe().expect("the aged silence is probed");
    assert_eq!(probe.path, "wifi");
    // Unknown or never-measured connections: nothing.
    assert!(sim.input(Input::Still { token: 77 }).is_empty());
}

/// Between measurements of its subflows, a busy connection is judged on
/// when anything last arrived on it (its counters say): taken for the
/// active path, so a steady flow is never probed and a silence is.
#[test]
fn a_connection_is_judged_between_measurements_on_when_anything_arrived() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    let threshold = |sim: &Sim| sim.core.silence_watch(TOKEN).map(|w| w.threshold);
    assert_eq!(threshold(&sim), Some(PolicyConfig::default().silence), "before any samples");
    sim.advance(Duration::from_millis(100));
    assert!(sim.sample(&wifi_silent_for(5, wifi_sf, cell_sf)).is_empty());
    assert_eq!(threshold(&sim), Some(Duration::from_millis(40)), "wifi's 20 ms RTT, twice");
    // 300 ms of data flowing, looked at through the counters only.
    for _ in 0..10 {
        sim.advance(Duration::from_millis(30));
        assert!(sim.input(Input::Heard { token: TOKEN, heard_ms: 3 }).is_empty());
        assert_eq!(sim.core.poll_probe(), None, "data arrived 3 ms ago");
    }
    // Then nothing for 45 ms.
    sim.advance(Duration::from_millis(45));
    sim.input(Input::Heard { token: TOKEN, heard_ms: 45 });
    assert_eq!(sim.core.poll_probe().map(|p| p.path), Some("wifi".into()), "the silence is probed");

    // Silence decides nothing for aggregate: the driver need not hurry.
    let mut aggregate = Sim::new(PolicyConfig::default());
    aggregate.establish(ServiceType::Aggregate, WIFI_INITIAL);
    assert_eq!(threshold(&aggregate), None);
    // A slow path's silence is judged on its own scale.
    let (mut slow, cell_sf) = handover_ready();
    slow.sample(&[sample(wifi_sf, 100), sample(cell_sf, 60)]);
    assert_eq!(threshold(&slow), Some(Duration::from_millis(200)));
}

/// A join given up on (its path went down before it came up) whose SYN
/// gets through later is destroyed when it comes up, not left to pile up.
#[test]
fn a_join_given_up_on_is_destroyed_when_it_comes_up_late() {
    let (mut sim, cell_sf) = handover_ready();
    // Wifi goes: the connection moves to cell; wifi returns and a join
    // from it is asked for; wifi goes again before the join is up.
    sim.input(Input::PathDown { name: "wifi".into() });
    sim.input(Input::SubflowClosed { token: TOKEN, local: addr(WIFI_INITIAL), loc_id: 0 });
    let cmds = sim.input(Input::PathUp(wifi()));
    let Some(Command::SubflowCreate { local, .. }) = cmds.iter().find(|c| matches!(c, Command::SubflowCreate { .. }))
    else {
        panic!("{cmds:?}")
    };
    let join_id = local.id;
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert!(cmds.contains(&Command::Remove { token: TOKEN, loc_id: join_id }), "{cmds:?}");
    // Its SYN got through after all.
    let late = addr("10.1.0.2:41000");
    let cmds = sim.input(Input::SubflowEstablished { token: TOKEN, local: late, loc_id: join_id });
    assert_eq!(cmds, [Command::SubflowDestroy { token: TOKEN, local: late, remote: server() }]);
    // The connection's only working subflow is never destroyed.
    let _ = cell_sf;
}

/// Under load, the echo waits in the same queue as the data: a loaded
/// path answers late, and must not be taken for dead (1,000 busy
/// connections on a full wifi once failed over 1,600 times in 5 s).
#[test]
fn a_loaded_path_is_given_the_time_its_queue_takes() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    sim.advance(Duration::from_millis(100));
    // Base delay 20 ms, smoothed RTT 90 ms: a standing queue.
    let loaded = SubflowSample { rtt_us: 90_000, last_data_recv_ms: 50, last_ack_recv_ms: 50, ..sample(wifi_sf, 20) };
    sim.sample(&[loaded, sample(cell_sf, 60)]);
    assert!(sim.core.poll_probe().is_some(), "silent by its base delay: probed");
    assert!(sim.advance(Duration::from_millis(150)).is_empty(), "not dead before twice its queued RTT");
    sim.input(Input::ProbeAnswered { token: TOKEN, path: "wifi".into() });
    assert!(sim.advance(Duration::from_millis(200)).is_empty());
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
}

/// Data on the active path after its probe left answers the probe: under
/// load the echo waits in the same queue as the data, which may come
/// first. The connection's counters are taken as that sign too (the
/// others carry nothing while the active path works).
#[test]
fn data_after_a_probe_counts_as_its_answer() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    sim.advance(Duration::from_millis(100));
    sim.sample(&wifi_silent_for(60, wifi_sf, cell_sf));
    assert!(sim.core.poll_probe().is_some());
    sim.advance(Duration::from_millis(30));
    sim.sample(&wifi_silent_for(5, wifi_sf, cell_sf));
    assert!(sim.advance(Duration::from_millis(200)).is_empty(), "wifi's own subflow answered");
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));

    // The counters only: something arrived, taken to be on wifi; a
    // silence after it is probed afresh.
    let (mut sim, cell_sf) = handover_ready();
    sim.advance(Duration::from_millis(100));
    sim.sample(&wifi_silent_for(60, wifi_sf, cell_sf));
    assert!(sim.core.poll_probe().is_some());
    sim.advance(Duration::from_millis(30));
    sim.input(Input::Heard { token: TOKEN, heard_ms: 5 });
    assert!(sim.advance(Duration::from_millis(50)).is_empty(), "answered by the data");
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
    sim.input(Input::Heard { token: TOKEN, heard_ms: 60 });
    assert!(sim.core.poll_probe().is_some(), "the new silence");
    let cmds = sim.advance(Duration::from_millis(100));
    assert_eq!(cmds.first(), Some(&Command::Remove { token: TOKEN, loc_id: 0 }), "unanswered: {cmds:?}");
}

#[test]
fn a_long_idle_connection_asks_twice_before_leaving_its_path() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    let heard = |ms| wifi_silent_for(ms, wifi_sf, cell_sf);
    sim.advance(Duration::from_millis(100));
    // Idle for 2 s: silent, probed; the echo goes unanswered.
    sim.sample(&heard(2000));
    assert!(sim.core.poll_probe().is_some());
    assert!(sim.advance(Duration::from_millis(100)).is_empty(), "one late echo changes nothing");
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
    sim.input(Input::Still { token: TOKEN });
    assert!(sim.core.poll_probe().is_some(), "asked again");
    let cmds = sim.advance(Duration::from_millis(100));
    assert_eq!(cmds.first(), Some(&Command::Remove { token: TOKEN, loc_id: 0 }), "twice unanswered: dead: {cmds:?}");
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
}

#[test]
fn a_probe_sent_late_is_waited_for_from_when_it_left() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    sim.advance(Duration::from_millis(100));
    sim.sample(&[
        SubflowSample { last_data_recv_ms: 60, last_ack_recv_ms: 60, ..sample(wifi_sf, 20) },
        sample(cell_sf, 60),
    ]);
    let probe = sim.core.poll_probe().expect("probed");
    // The driver was busy: the echo left 500 ms after the core asked.
    let left = sim.now + Duration::from_millis(500);
    sim.core.probe_sent(&probe, left);
    assert!(sim.advance(Duration::from_millis(520)).is_empty(), "not dead before its answer could come");
    sim.input(Input::ProbeAnswered { token: TOKEN, path: "wifi".into() });
    assert!(sim.advance(Duration::from_millis(200)).is_empty());
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
}

#[test]
fn a_closed_connection_leaves_nothing_behind() {
    let (mut sim, cell_sf) = handover_ready();
    let wifi_sf = addr(WIFI_INITIAL);
    sim.advance(Duration::from_millis(100));
    sim.sample(&wifi_silent_for(60, wifi_sf, cell_sf));
    assert!(sim.core.poll_probe().is_some());
    let t = sim.core.tables();
    assert_eq!((t.connections, t.path_probes, t.peers), (1, 1, 1), "{t:?}");
    assert!(t.timers > 0, "the probe's wait is a deadline: {t:?}");
    sim.input(Input::Closed { token: TOKEN });
    sim.drain();
    assert_eq!(sim.core.tables(), CoreTables::default(), "the probe of its only peer goes with it");
}

fn eth() -> LocalPath {
    LocalPath { name: "eth".into(), addrs: vec!["10.3.0.2".parse().unwrap()], ifindex: 4, rank: 50 }
}

/// Wifi renumbered (a DHCP renewal with a new address, a roam): its
/// subflow, left on an address that no longer exists, is replaced by a
/// join from the new one at once; the data moves to cell meanwhile, and
/// back once the new join is confirmed.
#[test]
fn a_renumbered_path_is_joined_again_from_its_new_address() {
    let (mut sim, cell_sf) = handover_ready();
    let renumbered = LocalPath { addrs: vec!["10.1.0.3".parse().unwrap()], ..wifi() };
    let cmds = sim.input(Input::PathUp(renumbered.clone()));
    assert!(cmds.contains(&Command::Remove { token: TOKEN, loc_id: 0 }), "the old address withdrawn: {cmds:?}");
    assert!(cmds.contains(&Command::SubflowDestroy { token: TOKEN, local: addr(WIFI_INITIAL), remote: server() }));
    // As backup, like any recovering primary (see reconcile, step 4).
    let create = cmds.iter().find(|c| create_on(c, &renumbered, true)).expect("a join from the new address");
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"), "cell carries the data meanwhile: {cmds:?}");
    let (new_sf, _) = sim.joined_and_confirmed(&create.clone(), 41000);
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"));
    let view = sim.core.view(TOKEN).unwrap();
    assert!(view.subflows.iter().any(|s| s.local == new_sf && !s.backup), "{view:?}");
    assert!(view.subflows.iter().any(|s| s.local == cell_sf && s.backup), "{view:?}");
}

/// Alone on a renumbered path, the old subflow stays until the new one is
/// up: it is the connection's last.
#[test]
fn a_renumbered_only_path_keeps_its_old_subflow_until_the_new_one_is_up() {
    let mut sim = Sim { core: Core::new(PolicyConfig::default()), now: Instant::now() };
    sim.input(Input::PathUp(wifi()));
    sim.establish(ServiceType::Handover, WIFI_INITIAL);
    let renumbered = LocalPath { addrs: vec!["10.1.0.3".parse().unwrap()], ..wifi() };
    let cmds = sim.input(Input::PathUp(renumbered.clone()));
    assert!(!cmds.iter().any(|c| matches!(c, Command::SubflowDestroy { .. })), "{cmds:?}");
    let create = cmds.iter().find(|c| create_on(c, &renumbered, false)).expect("a join from the new address");
    let (_, cmds) = sim.joined(&create.clone(), 41000);
    assert!(cmds.contains(&Command::SubflowDestroy { token: TOKEN, local: addr(WIFI_INITIAL), remote: server() }));
}

/// With the kernel's subflow limit at 1, an aggregate connection over
/// three paths joins the best other path only, says so, and takes the
/// third when the limit rises.
#[test]
fn the_kernels_subflow_limit_caps_the_joins_and_says_which_paths_wait() {
    let mut sim = Sim::new(unguarded());
    sim.input(Input::PathUp(eth()));
    sim.input(Input::Limits { subflows: 1 });
    let cmds = sim.establish(ServiceType::Aggregate, "10.3.0.2:40000");
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(create_on(&cmds[0], &wifi(), false), "the best other path: {cmds:?}");
    assert_eq!(sim.core.view(TOKEN).unwrap().held_back, ["cell"]);
    let cmds = sim.input(Input::Limits { subflows: 2 });
    assert!(cmds.len() == 1 && create_on(&cmds[0], &cell(), false), "{cmds:?}");
    assert!(sim.core.view(TOKEN).unwrap().held_back.is_empty());
    // Lowered again: the worst join goes.
    let (cell_sf, _) = sim.joined(&cmds[0], 50000);
    let cmds = sim.input(Input::Limits { subflows: 1 });
    assert!(cmds.contains(&Command::SubflowDestroy { token: TOKEN, local: cell_sf, remote: server() }), "{cmds:?}");
}

/// A path that reaches the peer only through an address the peer announced
/// (ADD_ADDR): a v4-only wifi and a v6-only cell, to a dual-stack server.
fn split_families() -> Sim {
    let mut sim = Sim { core: Core::new(PolicyConfig::default()), now: Instant::now() };
    sim.input(Input::PathUp(LocalPath { addrs: vec!["10.1.0.2".parse().unwrap()], ..wifi() }));
    sim.input(Input::PathUp(LocalPath { addrs: vec!["fd00:2::2".parse().unwrap()], ..cell() }));
    sim
}

/// An IPv6 socket talking IPv4 (mapped addresses) joins cell over IPv6, to
/// the address the server announced; handover moves there when wifi goes.
#[test]
fn an_ipv4_connection_of_an_ipv6_socket_joins_an_ipv6_only_path_to_the_announced_address() {
    let mut sim = split_families();
    let (local, remote) = (addr("[::ffff:10.1.0.2]:40000"), addr("[::ffff:10.0.0.2]:443"));
    let cmds =
        sim.input(Input::Established { token: TOKEN, service: ServiceType::Handover, local, remote, ready: true });
    assert!(cmds.is_empty(), "cell has no IPv4 and nothing is announced yet: {cmds:?}");
    assert!(sim.core.manages(TOKEN));
    let cmds = sim.input(Input::Announced { token: TOKEN, rem_id: 1, addr: addr("[fd00::2]:0") });
    let [Command::SubflowCreate { local: join, remote: to, .. }] = &cmds[..] else { panic!("{cmds:?}") };
    assert_eq!((join.addr, *to), ("fd00:2::2".parse().unwrap(), addr("[fd00::2]:443")), "the connection's port");
    let (cell_sf, _) = sim.joined(&cmds[0].clone(), 50000);
    // Wifi goes: the mapped initial subflow is withdrawn as the kernel
    // knows it, and cell carries the connection.
    let mut cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert!(cmds.contains(&Command::SubflowDestroy { token: TOKEN, local, remote }), "{cmds:?}");
    // Un-backup a moment after the withdrawal (see reconcile, step 3).
    cmds.extend(sim.advance(Duration::from_secs(1)));
    assert!(
        cmds.contains(&Command::SetBackup {
            token: TOKEN,
            local: cell_sf,
            remote: addr("[fd00::2]:443"),
            backup: false
        }),
        "{cmds:?}"
    );
    assert_eq!(sim.core.active_path(TOKEN), Some("cell"));
}

/// The reverse: an IPv6 connection over cell joins the IPv4-only wifi to
/// the server's announced IPv4 address, which then carries it.
#[test]
fn an_ipv6_connection_joins_an_ipv4_only_path_to_the_announced_address() {
    let mut sim = split_families();
    let (local, remote) = (addr("[fd00:2::2]:40000"), addr("[fd00::2]:443"));
    sim.input(Input::Established { token: TOKEN, service: ServiceType::Handover, local, remote, ready: true });
    let cmds = sim.input(Input::Announced { token: TOKEN, rem_id: 2, addr: addr("10.0.0.2:443") });
    let [create @ Command::SubflowCreate { local: join, remote: to, .. }] = &cmds[..] else { panic!("{cmds:?}") };
    assert_eq!((join.addr, *to), ("10.1.0.2".parse().unwrap(), addr("10.0.0.2:443")));
    assert_eq!(join.flags & flags::BACKUP, flags::BACKUP, "joins as backup until confirmed");
    sim.joined_and_confirmed(&create.clone(), 41000);
    assert_eq!(sim.core.active_path(TOKEN), Some("wifi"), "the better path, reached over IPv4");
}

/// An IPv4 socket cannot take an IPv6 subflow: the announcement changes
/// nothing. Nor do announcements of addresses no path should use.
#[test]
fn announcements_an_ipv4_socket_cannot_use_or_that_are_useless_change_nothing() {
    let mut sim = split_families();
    sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    for (id, announced) in [(1, "[fd00::2]:0"), (2, "[fe80::1]:443"), (3, "0.0.0.0:443"), (4, "10.0.0.2:443")] {
        let cmds = sim.input(Input::Announced { token: TOKEN, rem_id: id, addr: addr(announced) });
        assert!(cmds.is_empty(), "{announced}: {cmds:?}");
    }
    let mut dual = split_families();
    let (local, remote) = (addr("[::ffff:10.1.0.2]:40000"), addr("[::ffff:10.0.0.2]:443"));
    dual.input(Input::Established { token: TOKEN, service: ServiceType::Aggregate, local, remote, ready: true });
    for (id, announced) in [(2, "[fe80::1]:443"), (3, "[::]:443"), (4, "[ff02::1]:443")] {
        let cmds = dual.input(Input::Announced { token: TOKEN, rem_id: id, addr: addr(announced) });
        assert!(cmds.is_empty(), "{announced}: {cmds:?}");
    }
}

/// A connection of an IPv6 socket found open by a restarted daemon: its
/// mapped initial subflow and plain IPv4 join are adopted; its IPv6 join
/// (to an announced address no longer known) is left as it is.
#[test]
fn an_ipv6_sockets_mixed_connection_is_adopted_with_its_ipv4_subflows() {
    let mut sim = Sim::new(PolicyConfig::default());
    let found = vec![
        (addr("[::ffff:10.1.0.2]:40000"), 0, false),
        (addr("10.2.0.2:50000"), 1, true),
        (addr("[fd00:2::2]:50001"), 2, true),
    ];
    let remote = addr("[::ffff:10.0.0.2]:443");
    sim.input(Input::Adopt { token: TOKEN, service: ServiceType::Handover, remote, subflows: found });
    let view = sim.core.view(TOKEN).expect("adopted");
    assert_eq!(view.remote, server());
    assert_eq!(view.subflows.len(), 2, "{view:?}");
    let ends = sim.core.subflow_ends(TOKEN).unwrap();
    assert!(ends.contains(&(addr("[::ffff:10.1.0.2]:40000"), remote, 2)), "{ends:?}");
    assert!(ends.contains(&(addr("10.2.0.2:50000"), server(), 3)), "{ends:?}");
}

/// Aggregate's contribution guard through the core. A young connection's
/// slow cell joins as backup and carries data once the connection has been
/// busy four of its RTTs; a cell that costs goodput is flagged backup
/// again; once wifi is gone it carries data, never left backup as the last
/// path.
#[test]
fn aggregate_flags_a_path_that_costs_goodput_backup_but_never_the_last_one() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    assert!(create_on(&cmds[0], &cell(), true), "{cmds:?}");
    let (cell_sf, _) = sim.joined(&cmds[0], 40001);
    let wifi_sf = addr(WIFI_INITIAL);
    // The first measurement: cell's 200 ms is 10 times wifi's, it waits.
    assert!(sim.sample(&[sample(wifi_sf, 20), sample(cell_sf, 200)]).is_empty());
    let (mut bytes, mut cell_backup, mut flags) = ([0u64; 2], true, Vec::new());
    // 16 + 1 Mbit/s with cell active, 19 without, sampled every 250 ms.
    for step in 0..40 {
        let (w, c) = if cell_backup { (19e6, 0.0) } else { (16e6, 1e6) };
        bytes[0] += (w / 8.0 / 4.0) as u64;
        bytes[1] += (c / 8.0 / 4.0) as u64;
        sim.advance(Duration::from_millis(250));
        let samples = [
            SubflowSample { bytes_received: bytes[0], ..sample(wifi_sf, 20) },
            SubflowSample { bytes_received: bytes[1], ..sample(cell_sf, 200) },
        ];
        for cmd in sim.sample(&samples) {
            if let Command::SetBackup { local, backup, .. } = cmd {
                assert_eq!(local, cell_sf);
                cell_backup = backup;
                flags.push((step, backup));
            }
        }
    }
    // Active once busy 800 ms (4 RTTs), backup again after its trial.
    assert_eq!(flags.iter().map(|f| f.1).collect::<Vec<_>>(), [false, true], "{flags:?}");
    assert!((3..=5).contains(&flags[0].0), "{flags:?}");
    assert_eq!(sim.core.view(TOKEN).unwrap().backed_off, ["cell"]);
    // Wifi's link goes: cell is all there is, and carries data.
    let cmds = sim.input(Input::PathDown { name: "wifi".into() });
    assert!(
        cmds.contains(&Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false }),
        "{cmds:?}"
    );
    assert!(sim.core.view(TOKEN).unwrap().backed_off.is_empty());
}

/// A young connection whose cell is much faster than the wifi it started
/// on moves its data to cell at once and keeps wifi as backup until it has
/// been busy four wifi RTTs.
#[test]
fn a_young_aggregate_connection_starts_on_its_fastest_path() {
    let mut sim = Sim::new(PolicyConfig::default());
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    let (cell_sf, _) = sim.joined(&cmds[0], 40001);
    let wifi_sf = addr(WIFI_INITIAL);
    let mut bytes = 0u64;
    // The first measurement: cell carries data, then wifi is backup.
    let first = sim.sample(&[sample(wifi_sf, 150), sample(cell_sf, 30)]);
    assert_eq!(
        first,
        [
            Command::SetBackup { token: TOKEN, local: cell_sf, remote: server(), backup: false },
            Command::SetBackup { token: TOKEN, local: wifi_sf, remote: server(), backup: true },
        ]
    );
    let mut flags = Vec::new();
    for step in 0..8 {
        bytes += 500_000;
        sim.advance(Duration::from_millis(250));
        let samples = [
            SubflowSample { bytes_received: bytes / 5, ..sample(wifi_sf, 150) },
            SubflowSample { bytes_received: bytes, ..sample(cell_sf, 30) },
        ];
        for cmd in sim.sample(&samples) {
            if let Command::SetBackup { local, backup, .. } = cmd {
                flags.push((step, local == cell_sf, backup));
            }
        }
    }
    // Wifi active once busy 600 ms.
    assert_eq!(flags, [(2, false, false)], "{flags:?}");
}

/// A new aggregate connection's join starts from what earlier connections
/// measured of its path: active on a path of similar delay, backup on one
/// ten times slower.
#[test]
fn a_new_aggregate_connection_starts_from_the_paths_known_delays() {
    for (cell_ms, backup) in [(60, false), (200, true)] {
        let mut sim = Sim::new(PolicyConfig::default());
        let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
        let (cell_sf, _) = sim.joined(&cmds[0], 40001);
        sim.sample(&[sample(addr(WIFI_INITIAL), 20), sample(cell_sf, cell_ms)]);
        sim.input(Input::Closed { token: TOKEN });
        let cmds = sim.establish(ServiceType::Aggregate, "10.1.0.2:40002");
        assert!(create_on(&cmds[0], &cell(), backup), "cell {cell_ms} ms: {cmds:?}");
        // A sample before the join is up keeps what was known of cell: its
        // flag stays as created once it is established.
        sim.sample(&[sample(addr("10.1.0.2:40002"), 20)]);
        let (_, cmds) = sim.joined(&cmds[0], 40003);
        assert!(!cmds.iter().any(|c| matches!(c, Command::SetBackup { .. })), "cell {cell_ms} ms: {cmds:?}");
    }
}

/// A busy aggregate download over wifi (20 ms) and cell (200 ms) at
/// 40 Mbit/s in all: `windows` of 250 ms sampled.
fn busy_aggregate(sim: &mut Sim, windows: u64) {
    let cmds = sim.establish(ServiceType::Aggregate, WIFI_INITIAL);
    let (cell_sf, _) = sim.joined(&cmds[0], 40001);
    for i in 0..=windows {
        let bytes = i * 625_000; // 20 Mbit/s each, per 250 ms
        let mut wifi = sample(addr(WIFI_INITIAL), 20);
        let mut cell = sample(cell_sf, 200);
        (wifi.bytes_received, cell.bytes_received) = (bytes, bytes);
        sim.sample(&[wifi, cell]);
        sim.advance(Duration::from_millis(250));
    }
}

#[test]
fn an_aggregate_connection_needing_more_receive_buffer_than_the_host_allows_says_so() {
    for (cap, short) in [(256 * 1024, true), (32 << 20, false)] {
        let mut sim = Sim::new(PolicyConfig::default());
        sim.input(Input::ReceiveBufferMax(cap));
        busy_aggregate(&mut sim, 8);
        let view = sim.core.view(TOKEN).unwrap();
        match view.receive_buffer {
            // 40 Mbit/s for 200 ms, twice: 2 MB.
            Some(s) if short => {
                assert_eq!((s.cap, s.rtt_us), (cap, 200_000));
                assert!((1_900_000..2_100_000).contains(&s.need), "{s:?}");
            }
            None if !short => {}
            other => panic!("cap {cap}: {other:?}"),
        }
    }
}

#[test]
fn new_connections_start_on_the_path_measured_fastest() {
    let mut sim = Sim::new(PolicyConfig::default());
    let remote = server().ip();
    let race = multipath::FirstPath::Race(vec!["10.1.0.2".parse().unwrap(), "10.2.0.2".parse().unwrap()]);
    assert_eq!(sim.core.first_path(remote, sim.now), race, "nothing measured");
    busy_aggregate(&mut sim, 2);
    let ordered = multipath::FirstPath::Ordered(vec!["10.1.0.2".parse().unwrap(), "10.2.0.2".parse().unwrap()]);
    assert_eq!(sim.core.first_path(remote, sim.now), ordered);
    sim.input(Input::Closed { token: TOKEN });
    assert_eq!(sim.core.first_path(remote, sim.now), ordered, "kept after the connection");
    sim.advance(Duration::from_secs(61));
    assert_eq!(sim.core.first_path(remote, sim.now), race, "forgotten after a minute");
}
