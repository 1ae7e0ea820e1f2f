//! What the lab tests of the path manager share: a verified download
//! through a lab with events applied at fixed times, judged from the
//! client's interface counters.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use multipath::{blocking, Parameters, ServiceType};
use multipath_lab::traffic::{longest_stall, RxRecorder, RxSample};
use multipath_lab::{Lab, LinkShape};
use multipath_pm::policy::{ConnView, PolicyConfig};
use multipath_pm::Manager;

/// The byte at `i` of what the lab's servers send.
pub fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// What happens to the client's network during a download.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Link(&'static str, bool),
    Renumber(&'static str),
    Plug(&'static str, bool),
    DefaultRoute(&'static str, bool),
    /// A path's new shape, both ways.
    Shape(&'static str, LinkShape),
}

impl Event {
    pub fn apply(self, lab: &Lab) {
        match self {
            Event::Link(path, up) => lab.set_link(path, up).unwrap(),
            Event::Renumber(path) => drop(lab.renumber(path).unwrap()),
            Event::Plug(path, plugged) => lab.set_plugged(path, plugged).unwrap(),
            Event::DefaultRoute(path, present) => lab.set_default_route(path, present).unwrap(),
            Event::Shape(path, shape) => lab.set_shape(path, shape, shape).unwrap(),
        }
    }
}

/// A download's record.
pub struct Download {
    pub samples: Vec<RxSample>,
    /// When each event ran, on the samples' clock.
    pub applied: Vec<(Duration, Event)>,
    pub paths: Vec<String>,
    pub manager: Manager,
    pub token: u32,
    /// The connection, still open.
    pub conn: blocking::Connection,
    /// Bytes read and verified so far.
    pub received: usize,
}

pub const QUIET_BYTES: u64 = 3000;

impl Download {
    /// What the manager holds of the connection now.
    pub fn view(&self) -> ConnView {
        let all = self.manager.connections().unwrap();
        all.into_iter().find(|c| c.token == self.token).expect("the connection is managed").view
    }

    /// Bytes `path` received between `from_ms` and `to_ms`.
    pub fn carried(&self, path: &str, from_ms: u64, to_ms: u64) -> u64 {
        let i = self.paths.iter().position(|p| p == path).expect("a lab path");
        let at = |ms: u64| {
            let t = Duration::from_millis(ms);
            self.samples.iter().take_while(|s| s.at <= t).last().map_or(0, |s| s.bytes[i])
        };
        at(to_ms).saturating_sub(at(from_ms))
    }

    /// The share of what arrived between `from_ms` and `to_ms` that came
    /// over `path`.
    pub fn share(&self, path: &str, from_ms: u64, to_ms: u64) -> f64 {
        let all: u64 = self.paths.iter().map(|p| self.carried(p, from_ms, to_ms)).sum();
        assert!(all > 64 * 1024, "only {all} B arrived between {from_ms} and {to_ms} ms");
        self.carried(path, from_ms, to_ms) as f64 / all as f64
    }

    /// The longest stall after event number `n`, up to the next event.
    pub fn stall_after(&self, n: usize) -> Duration {
        let from = self.applied[n].0;
        let until = self.applied.get(n + 1).map_or(Duration::MAX, |e| e.0);
        let window: Vec<RxSample> = self.samples.iter().filter(|s| s.at <= until).cloned().collect();
        longest_stall(&window, from, QUIET_BYTES)
    }

    /// Asserts that `path` carried at least `share` of the bytes between
    /// `from_ms` and `to_ms`.
    pub fn assert_carried(&self, path: &str, share: f64, from_ms: u64, to_ms: u64) {
        let got = self.share(path, from_ms, to_ms);
        assert!(got >= share, "{path} carried {got:.2} of the bytes between {from_ms} and {to_ms} ms, wanted {share}");
    }
}

/// A server in the lab that answers a 2-byte hello with the same, then
/// streams the pattern ([`byte_at`]) until the client goes; its address at
/// `server_ip`. Dual stack: one IPv6 listener, not IPv6-only (a connection
/// accepted by an IPv4 listener can take no IPv6 join: the kernel resets
/// it, whatever the server announces).
pub fn pattern_server(lab: &Lab, server_ip: IpAddr, params: &Parameters) -> SocketAddr {
    let any: SocketAddr = "[::]:0".parse().unwrap();
    let listener = lab.server().run(|| blocking::Listener::bind(any, params)).unwrap();
    let server = SocketAddr::new(server_ip, listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        while let Ok((mut conn, _)) = listener.accept() {
            std::thread::spawn(move || {
                let mut hello = [0u8; 2];
                if conn.read_exact(&mut hello).is_err() || conn.write_all(&hello).is_err() {
                    return;
                }
                let mut chunk = vec![0u8; 64 * 1024];
                let mut sent = 0usize;
                loop {
                    for (i, b) in chunk.iter_mut().enumerate() {
                        *b = byte_at(sent + i);
                    }
                    match conn.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => return, // the client is done
                    }
                }
            });
        }
    });
    server
}

/// Plain TCP over `path` alone (bound to its address) from the lab's
/// pattern server for `end_ms`: its goodput between `from_ms` and `end_ms`,
/// bit/s.
pub fn plain_rate(lab: &Lab, path: &str, from_ms: u64, end_ms: u64) -> f64 {
    let server_ip: IpAddr = lab.server_addr().into();
    let local = SocketAddr::new(lab.path(path).unwrap().client_addr_for(server_ip), 0);
    let params = Parameters::tcp().multipath_service_type(ServiceType::None).local_address(local);
    let server = pattern_server(lab, server_ip, &params);
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
    conn.write_all(b"hi").unwrap();
    conn.read_exact(&mut [0u8; 2]).unwrap();
    let (started, mut received) = (Instant::now(), 0);
    read_for(&mut conn, &mut received, Duration::from_millis(from_ms));
    read_for(&mut conn, &mut received, Duration::from_millis(end_ms).saturating_sub(started.elapsed()))
}

/// Reads the pattern from `conn` for `duration`, checking every byte
/// (`received`: the offset reached so far); its goodput, bit/s.
pub fn read_for(conn: &mut blocking::Connection, received: &mut usize, duration: Duration) -> f64 {
    let mut buf = vec![0u8; 64 * 1024];
    let (started, before) = (Instant::now(), *received);
    while started.elapsed() < duration {
        let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("after {received} B: {e}"));
        assert!(n > 0, "closed after {received} B");
        if let Some(i) = (0..n).find(|&i| buf[i] != byte_at(*received + i)) {
            panic!("byte {} corrupted", *received + i);
        }
        *received += n;
    }
    (*received - before) as f64 * 8.0 / started.elapsed().as_secs_f64()
}

/// Downloads from the server at `server_ip` for `end_ms` under `service`
/// (the in-process manager), applying `script` (ms, event) as it goes.
pub fn download(lab: &Lab, server_ip: IpAddr, service: ServiceType, script: &[(u64, Event)], end_ms: u64) -> Download {
    download_with(PolicyConfig::default(), lab, server_ip, service, script, end_ms)
}

/// [`download`] under the manager's `policy`.
pub fn download_with(
    policy: PolicyConfig,
    lab: &Lab,
    server_ip: IpAddr,
    service: ServiceType,
    script: &[(u64, Event)],
    end_ms: u64,
) -> Download {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // The userspace path manager, in the lab's own client namespace.
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let params = Parameters::tcp().multipath_service_type(service).nodelay(true);
    let server = pattern_server(lab, server_ip, &params);
    let (manager, mut conn) = lab.client().run(|| {
        let manager = Manager::start(policy).unwrap();
        let conn = blocking::Connection::connect(server, &params).unwrap();
        (manager, conn)
    });
    // Data must flow before the kernel lets a client add subflows.
    conn.write_all(b"hi").unwrap();
    conn.read_exact(&mut [0u8; 2]).unwrap();
    let token = manager.manage(conn.as_fd(), service).unwrap();
    // A download that stops fails the test instead of hanging it.
    conn.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let recorder = RxRecorder::start(lab, Duration::from_millis(10)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut got, mut next, mut applied) = (0usize, 0usize, Vec::new());
    let end = Duration::from_millis(end_ms);
    while recorder.elapsed() < end {
        let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("after {got} B at {:?}: {e}", recorder.elapsed()));
        assert!(n > 0, "closed after {got} B");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, byte_at(got + i), "byte {} corrupted", got + i);
        }
        got += n;
        if let Some(&(at, event)) = script.get(next) {
            if recorder.elapsed() >= Duration::from_millis(at) {
                let t = recorder.elapsed();
                event.apply(lab);
                eprintln!("{:>6.0} ms: {event:?}", t.as_secs_f64() * 1e3);
                applied.push((t, event));
                next += 1;
            }
        }
    }
    assert_eq!(next, script.len(), "the download stalled before every event ran ({got} B)");
    let samples = recorder.stop();
    let paths = lab.paths().iter().map(|p| p.name().to_owned()).collect();
    let d = Download { samples, applied, paths, manager, token, conn, received: got };
    for (i, (at, event)) in d.applied.iter().enumerate() {
        eprintln!("after {event:?} at {at:?}: longest stall {:?}", d.stall_after(i));
    }
    eprintln!("{got} B verified; view: {:?}", d.view());
    d
}
