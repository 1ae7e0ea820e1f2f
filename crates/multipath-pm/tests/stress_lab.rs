//! The path manager under a flapping wifi: a 200 MB download, handover and
//! aggregate, while wifi fails 50 times (link down and blackhole mixed,
//! each for 0.2-2 s, back for 0.2-1 s). Every byte is checked, the
//! subflows are counted all along, and the commands sent are counted: no
//! stall that kills the connection, no subflow leak, no retry storm. Needs
//! root; without it the test reports itself SKIPPED.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use multipath::{blocking, Parameters, ServiceType};
use multipath_lab::testing::{lab_test, SeededRng};
use multipath_lab::{Lab, LabConfig};
use multipath_pm::policy::PolicyConfig;
use multipath_pm::{Command, Manager};

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// The download verified under the flaps, at least.
const DOWNLOAD: u64 = 200_000_000;

/// Flaps of wifi: how many, and the seed of their kinds and lengths.
const FLAPS: usize = 50;

/// A duration in `from..to` ms from the seeded script.
fn millis(rng: &mut SeededRng, from: u64, to: u64) -> Duration {
    Duration::from_millis(from + rng.next_u64() % (to - from))
}

fn flapping(name: &str, service: ServiceType) {
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let params = Parameters::tcp().multipath_service_type(service);
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().unwrap(), &params)).unwrap();
    let server = SocketAddr::new(lab.server_addr().into(), listener.local_addr().unwrap().port());
    // An endless stream of the pattern, until the client closes.
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut hello = [0u8; 2];
        conn.read_exact(&mut hello).unwrap();
        conn.write_all(&hello).unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        loop {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = byte_at(at + i as u64);
            }
            if conn.write_all(&chunk).is_err() {
                return;
            }
            at += chunk.len() as u64;
        }
    });
    let (log, sent) = std::sync::mpsc::sync_channel(1 << 16);
    let (manager, mut conn) = lab.client().run(|| {
        let manager = Manager::start_with_log(PolicyConfig::default(), Some(log)).unwrap();
        (manager, blocking::Connection::connect(server, &params).unwrap())
    });
    conn.write_all(b"hi").unwrap();
    conn.read_exact(&mut [0u8; 2]).unwrap();
    let token = manager.manage(conn.as_fd(), service).unwrap();

    // The script, in its own thread: fail, restore, FLAPS times.
    let script = {
        let mut rng = SeededRng::new(0x5eed ^ service as u64);
        let steps: Vec<(bool, Duration, Duration)> = (0..FLAPS)
            .map(|_| (rng.next_u64().is_multiple_of(2), millis(&mut rng, 200, 2000), millis(&mut rng, 200, 1000)))
            .collect();
        let lab = &lab;
        let done = std::sync::atomic::AtomicBool::new(false);
        let done = &done;
        let steps = &steps;
        std::thread::scope(|scope| {
            let flaps = scope.spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                for &(link_down, failed, back) in steps {
                    if link_down {
                        lab.set_link("wifi", false).unwrap();
                    } else {
                        lab.set_blackhole("wifi", true).unwrap();
                    }
                    std::thread::sleep(failed);
                    if link_down {
                        lab.set_link("wifi", true).unwrap();
                    } else {
                        lab.set_blackhole("wifi", false).unwrap();
                    }
                    std::thread::sleep(back);
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            // Read and check every byte while the script runs and 3 s more,
            // and at least `DOWNLOAD` bytes in all.
            let mut buf = vec![0u8; 64 * 1024];
            let (mut got, mut most_subflows, mut longest_gap) = (0u64, 0usize, Duration::ZERO);
            let (mut last, mut sampled) = (Instant::now(), Instant::now());
            let mut ended: Option<Instant> = None;
            while got < DOWNLOAD || ended.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
                let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("{service}: after {got} B: {e}"));
                assert!(n > 0, "{service}: closed after {got} B");
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, byte_at(got + i as u64), "{service}: byte {} corrupted", got + i as u64);
                }
                got += n as u64;
                longest_gap = longest_gap.max(last.elapsed());
                last = Instant::now();
                if sampled.elapsed() > Duration::from_millis(100) {
                    let subflows = conn.subflows().unwrap_or_default();
                    let open = subflows.iter().filter(|s| s.is_open()).count();
                    if open > most_subflows && open > 4 {
                        let states: Vec<String> = subflows
                            .iter()
                            .filter(|s| s.is_open())
                            .map(|s| format!("{} {:?}", s.local, s.tcp.state))
                            .collect();
                        eprintln!("{service}: {open} subflows open: {states:?}");
                    }
                    most_subflows = most_subflows.max(open);
                    sampled = Instant::now();
                }
                if ended.is_none() && done.load(std::sync::atomic::Ordering::SeqCst) {
                    ended = Some(Instant::now());
                }
            }
            flaps.join().unwrap();
            (got, most_subflows, longest_gap)
        })
    };
    let (got, most_subflows, longest_gap) = script;
    let commands: Vec<_> = sent.try_iter().collect();
    let creates = commands.iter().filter(|c| matches!(c.command, Command::SubflowCreate { .. })).count();
    let refused = commands.iter().filter(|c| c.refused.is_some()).count();
    if std::env::var_os("STRESS_TRACE").is_some() {
        let t0 = commands.first().map(|c| c.at);
        for c in &commands {
            let t = t0.map(|t0| c.at.duration_since(t0).as_millis()).unwrap_or(0);
            eprintln!("CMD {t:>6} {:?} {}", c.command, c.refused.as_deref().unwrap_or_default());
        }
        let end: Vec<String> =
            conn.subflows().unwrap_or_default().iter().map(|s| format!("{} {:?}", s.local, s.tcp.state)).collect();
        eprintln!("END subflows {end:?}");
    }
    eprintln!(
        "{service}: {FLAPS} flaps survived; {got} B verified ({:.1} MB); at most {most_subflows} subflows open; \
         longest gap {longest_gap:?}; {} commands ({creates} joins, {refused} refused)",
        got as f64 / 1e6,
        commands.len()
    );
    assert!(most_subflows <= 4, "{service}: {most_subflows} subflows open at once (two paths)");
    // Each flap needs a few commands (withdraw, join, flags, and back):
    // many more would be a retry storm.
    assert!(commands.len() <= FLAPS * 12, "{service}: {} commands for {FLAPS} flaps", commands.len());
    assert!(refused <= FLAPS * 2, "{service}: {refused} refused commands");
    if service == ServiceType::Handover {
        let deadline = Instant::now() + Duration::from_secs(3);
        while manager.active_path(token).unwrap().as_deref() != Some("wifi") {
            assert!(Instant::now() < deadline, "handover: not back on wifi after the last flap");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn handover_survives_a_wifi_that_flaps_fifty_times() {
    flapping("handover_survives_a_wifi_that_flaps_fifty_times", ServiceType::Handover);
}

#[test]
fn aggregate_survives_a_wifi_that_flaps_fifty_times() {
    flapping("aggregate_survives_a_wifi_that_flaps_fifty_times", ServiceType::Aggregate);
}
