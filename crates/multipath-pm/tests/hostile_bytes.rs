//! Every decoder of bytes the daemon receives (from the kernel, from
//! clients) fed garbage and mutated well-formed input: it must answer with
//! an error, never panic, loop or allocate without bound. A seeded
//! generator makes the run repeatable; structure-aware inputs (valid
//! attribute framing with random contents, nested a level or two) reach
//! deeper than random bytes would. This is no coverage-guided fuzzer (that
//! needs a nightly toolchain this machine lacks), but it runs in every CI.

use std::time::{Duration, Instant};

use multipath::daemon_client::{Origin, Reply, Request};
use multipath::ServiceType;
use multipath_lab::testing::SeededRng;
use multipath_pm::fuzzing;

/// Inputs per decoder.
const ROUNDS: usize = 100_000;

/// The shared seeded generator, with the lengths netlink payloads have.
struct Rng(SeededRng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        self.0.bytes(n)
    }
    /// Lengths netlink payloads have (0, 1, 2, 4, 8, 16) or any.
    fn payload_len(&mut self) -> usize {
        match self.below(4) {
            0 => [0, 1, 2, 4, 8, 16][self.below(6)],
            _ => self.below(40),
        }
    }
}

/// Well-framed attributes with random types and contents.
fn attrs(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(8) {
        let ty = rng.below(24) as u16;
        let payload = if depth < 2 && rng.below(5) == 0 {
            attrs(rng, depth + 1)
        } else {
            let n = rng.payload_len();
            rng.bytes(n)
        };
        let len = (4 + payload.len()) as u16;
        let flags = if rng.below(4) == 0 { 0x8000 } else { 0 }; // NLA_F_NESTED
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&(ty | flags).to_ne_bytes());
        out.extend_from_slice(&payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    out
}

/// Some bytes changed, cut or appended.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        match rng.below(3) {
            0 if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] = rng.next() as u8;
            }
            1 if !b.is_empty() => b.truncate(rng.below(b.len())),
            _ => {
                let n = rng.below(8);
                b.extend(rng.bytes(n));
            }
        }
    }
    b
}

/// An input for a decoder of attributes: framed, mutated, or plain noise.
fn attr_input(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => attrs(rng, 0),
        1 => {
            let a = attrs(rng, 0);
            mutate(rng, a)
        }
        _ => {
            let n = rng.below(64);
            rng.bytes(n)
        }
    }
}

/// Runs `decode` on `ROUNDS` inputs; how long it took.
fn feed(name: &str, seed: u64, mut make: impl FnMut(&mut Rng) -> Vec<u8>, mut decode: impl FnMut(&[u8])) {
    let mut rng = Rng(SeededRng::new(seed));
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let input = make(&mut rng);
        decode(&input);
    }
    let took = started.elapsed();
    eprintln!("{name}: {ROUNDS} inputs in {took:?}");
    assert!(took < Duration::from_secs(20), "{name}: {took:?}: something loops or allocates without bound");
}

#[test]
fn generic_netlink_messages_and_events() {
    feed(
        "netlink messages",
        1,
        |rng| {
            // nlmsghdr (len, type, flags, seq, pid) + genlmsghdr + attributes.
            let body = attr_input(rng);
            let ty: u16 = [1, 2, 3, 0x10, 0x1d, rng.next() as u16][rng.below(6)];
            let mut msg = Vec::new();
            msg.extend_from_slice(&((20 + body.len()) as u32).to_ne_bytes());
            msg.extend_from_slice(&ty.to_ne_bytes());
            msg.extend_from_slice(&(rng.next() as u16).to_ne_bytes());
            msg.extend_from_slice(&rng.bytes(8));
            msg.extend_from_slice(&[rng.below(20) as u8, 1, 0, 0]);
            msg.extend_from_slice(&body);
            let msg = if rng.below(2) == 0 { mutate(rng, msg) } else { msg };
            // Sometimes two in one datagram.
            if rng.below(4) == 0 {
                [msg.clone(), msg].concat()
            } else {
                msg
            }
        },
        |buf| {
            fuzzing::genl(buf);
            fuzzing::rtnetlink(buf);
        },
    );
}

#[test]
fn path_manager_events_and_replies() {
    let mut cmd = 0u8;
    feed("mptcp_pm events", 2, attr_input, |attrs| {
        cmd = cmd.wrapping_add(1) % 24;
        fuzzing::attributes(cmd, attrs);
    });
}

#[test]
fn route_and_diag_bodies() {
    let mut ty = 16u16;
    feed(
        "rtnetlink bodies",
        3,
        |rng| {
            // A family's fixed header (ifinfomsg 16, ifaddrmsg 8, rtmsg 12,
            // fib_rule_hdr 12), then attributes.
            let fixed = [8, 12, 16, rng.below(20)][rng.below(4)];
            [rng.bytes(fixed), attr_input(rng)].concat()
        },
        |body| {
            ty = if ty >= 34 { 16 } else { ty + 1 };
            fuzzing::route_body(ty, body);
        },
    );
    feed(
        "sock_diag replies",
        4,
        |rng| {
            // inet_diag_msg (72 bytes) with a plausible family, then attributes.
            let mut fixed = rng.bytes(72);
            fixed[0] = [2, 10, rng.next() as u8][rng.below(3)];
            let msg = [fixed, attr_input(rng)].concat();
            if rng.below(3) == 0 {
                mutate(rng, msg)
            } else {
                msg
            }
        },
        fuzzing::inet_diag,
    );
}

#[test]
fn kernel_structs() {
    feed(
        "mptcp_info / tcp_info",
        5,
        |rng| {
            let n = [0, 47, 48, 79, 80, 88, 96, 104, 231, 232, 248, 256, rng.below(400)][rng.below(13)];
            rng.bytes(n)
        },
        fuzzing::kernel_structs,
    );
}

#[test]
fn daemon_protocol() {
    let valid: Vec<Vec<u8>> = vec![
        Request::Manage { service: ServiceType::Handover, origin: Origin::Registered }.encode(),
        Request::Manage { service: ServiceType::Aggregate, origin: Origin::Run }.encode(),
        Reply::Managed { token: 0xdead_beef }.encode(),
        Reply::Refused { reason: "not entitled".into() }.encode(),
        Request::Check { service: ServiceType::Aggregate, program: "/usr/bin/curl".into() }.encode(),
        Request::List.encode(),
        b"conn token=1 service=handover source=run uid=0 pid=9 remote=[fd00::2]:80 active=wifi \
          subflow=wifi/[fd00:1::2]:4000/active/established program=/usr/bin/curl"
            .to_vec(),
    ];
    feed(
        "daemon requests and replies",
        6,
        |rng| match rng.below(3) {
            0 => {
                let n = rng.below(600);
                rng.bytes(n)
            }
            _ => {
                let seed = valid[rng.below(valid.len())].clone();
                mutate(rng, seed)
            }
        },
        fuzzing::daemon_protocol,
    );
    // What was valid still decodes to what it was.
    assert_eq!(
        Request::decode(&valid[0]),
        Ok(Request::Manage { service: ServiceType::Handover, origin: Origin::Registered })
    );
    assert_eq!(Reply::decode(&valid[3]), Ok(Reply::Refused { reason: "not entitled".into() }));
}

/// Every input the coverage-guided fuzzer (`fuzz/run`) found to crash a
/// decoder, replayed through the same entry point: each was a bug once.
#[test]
fn fuzz_regressions_stay_fixed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    type Decode = fn(&[u8]);
    let targets: [(&str, Decode); 3] = [
        ("netlink", fuzzing::netlink),
        ("kernel_structs", fuzzing::kernel_structs),
        ("daemon_protocol", fuzzing::daemon_protocol),
    ];
    let mut replayed = 0;
    for (target, decode) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else { continue };
        for entry in dir {
            let path = entry.expect("read fuzz/regressions").path();
            let input = std::fs::read(&path).expect("read a regression input");
            eprintln!("replaying {}", path.display());
            decode(&input);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs under {}", root.display());
}
