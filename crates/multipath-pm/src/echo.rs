//! The path manager's ICMP echoes: one socket per source address, kept and
//! reused, each echo told apart by its sequence number. A socket per echo
//! would cost a handful of system calls each, and on a raw socket every
//! reply would be copied to every socket open at the time.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use multipath::icmp::EchoSocket;

use crate::policy::Probe;

/// How long an echo is waited for at most; the core gives up far sooner.
const FORGET_AFTER: Duration = Duration::from_secs(2);

/// An echo on its way.
struct Pending {
    token: u32,
    path: String,
    sent: Instant,
}

/// The echoes sent and their sockets.
#[derive(Default)]
pub(crate) struct Echoes {
    sockets: HashMap<IpAddr, EchoSocket>,
    pending: HashMap<u16, Pending>,
    seq: u16,
}

impl Echoes {
    /// Echoes awaiting an answer.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Sends the echo `probe` asks for.
    pub fn send(&mut self, probe: &Probe, now: Instant) -> io::Result<()> {
        let socket = match self.sockets.entry(probe.from) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(EchoSocket::open(probe.from)?),
        };
        self.seq = self.seq.wrapping_add(1);
        socket.send(probe.to, self.seq, b"multipath path probe")?;
        self.pending.insert(self.seq, Pending { token: probe.token, path: probe.path.clone(), sent: now });
        Ok(())
    }

    /// The probes answered since the last call (token and path of each);
    /// forgets the ones long unanswered, and the sockets nothing waits on.
    pub fn answers(&mut self, now: Instant) -> Vec<(u32, String)> {
        let mut answered = Vec::new();
        if self.pending.is_empty() {
            // Nothing waits: a socket per address that was a path at some
            // point is all this keeps.
            if self.sockets.len() > 16 {
                self.sockets.clear();
            }
            return answered;
        }
        for socket in self.sockets.values() {
            while let Ok(Some(seq)) = socket.recv_reply(None) {
                if let Some(p) = self.pending.remove(&seq) {
                    answered.push((p.token, p.path));
                }
            }
        }
        self.pending.retain(|_, p| now.duration_since(p.sent) < FORGET_AFTER);
        answered
    }
}
