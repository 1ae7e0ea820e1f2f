//! Userspace one-way delay and random loss for one lab path, via a TUN relay.
//!
//! The lab kernel has no `netem` qdisc, so the router namespace routes every
//! packet of a path (both directions) into a TUN device. A [`DelayLine`] reads
//! each packet from the TUN fd, holds it for the configured one-way delay of
//! its direction (or drops it with the configured loss probability) and writes
//! it back into the same fd; the kernel then routes the re-injected packet
//! normally (policy rules keyed on the input interface send it to the main
//! table the second time).
//!
//! Two threads per line: a reader (`poll` on the TUN fd plus an eventfd used
//! only to stop it) and a writer (sleeps on a condvar until the earliest
//! deadline). Rate shaping is not done here (tbf does it elsewhere).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maximum number of packets held per direction; more are dropped (and counted).
const QUEUE_CAP: usize = 10_000;

/// Largest delay honoured; longer ones are clamped so deadline arithmetic can never overflow.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Packets handled per lock acquisition: bounds lock hold time and keeps the
/// reader responsive to the stop eventfd under a flood.
const BATCH: usize = 64;

/// The writer wakes this much before a deadline that follows a long sleep
/// and spins the rest: waking an idle CPU costs ~0.1 ms here, a sizeable
/// part of the ±0.3 ms budget. Bounded, see `SPIN_AFTER`.
const SPIN: Duration = Duration::from_micros(150);

/// Only sleeps longer than this end in a spin, so a busy line (packets due
/// every few 100 µs, CPU awake anyway) never spins and an idle one spins at
/// most SPIN per SPIN_AFTER (a few % of a core in the worst case).
const SPIN_AFTER: Duration = Duration::from_millis(2);

/// Read buffer size: the largest IP packet a TUN without offloads can hand us.
const READ_BUF: usize = 65_536;

/// Linux `IFNAMSIZ` (name plus the terminating NUL).
const IFNAMSIZ: usize = 16;

/// Maximum thread name length the kernel keeps (`TASK_COMM_LEN - 1`).
const MAX_THREAD_NAME: usize = 15;

/// Delay and loss for one direction of a path.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct LineShape {
    /// One-way delay added to every packet of this direction.
    pub delay: Duration,
    /// Independent drop probability, `0.0..=1.0` (out-of-range values are clamped, NaN means 0).
    pub loss: f64,
}

impl LineShape {
    /// Clamps the shape into the range the relay honours, so what
    /// [`DelayLine::shapes`] reports is what is actually applied.
    fn sanitized(self) -> LineShape {
        let loss = if self.loss.is_nan() { 0.0 } else { self.loss.clamp(0.0, 1.0) };
        LineShape { delay: self.delay.min(MAX_DELAY), loss }
    }
}

/// Packet counters of a [`DelayLine`], per direction ("up" = away from the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DelayLineStats {
    /// Upstream packets written back into the TUN after their delay.
    pub up_relayed: u64,
    /// Upstream packets dropped by the random loss.
    pub up_lost: u64,
    /// Upstream packets dropped because the queue held `10_000` packets already.
    pub up_queue_full: u64,
    /// Downstream packets written back into the TUN after their delay.
    pub down_relayed: u64,
    /// Downstream packets dropped by the random loss.
    pub down_lost: u64,
    /// Downstream packets dropped because the queue held `10_000` packets already.
    pub down_queue_full: u64,
}

/// Direction of a packet relative to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Up = 0,
    Down = 1,
}

/// The client-side subnets of a path; destinations inside them go "down".
#[derive(Clone, Copy, Debug)]
struct Downlink {
    v4: (Ipv4Addr, u8),
    v6: Option<(Ipv6Addr, u8)>,
}

/// Whether `addr` lies in `net/len` (`len` <= 32, checked in `start`).
fn v4_in_prefix(addr: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    // checked_shl: a /0 prefix would shift by 32, which plain `<<` rejects.
    let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
    u32::from(addr) & mask == u32::from(net) & mask
}

/// Whether `addr` lies in `net/len` (`len` <= 128, checked in `start`).
fn v6_in_prefix(addr: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
    u128::from(addr) & mask == u128::from(net) & mask
}

/// Classifies a raw IP packet (no packet-info header) by destination address.
/// Anything that is not a well-formed enough IPv4/IPv6 header goes up: it must
/// never panic, since the bytes come straight from the kernel.
fn classify(pkt: &[u8], downlink: &Downlink) -> Direction {
    let down = match pkt.first().map(|b| b >> 4) {
        Some(4) => match pkt.get(16..20) {
            Some(d) if pkt.len() >= 20 => {
                let dst = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
                v4_in_prefix(dst, downlink.v4.0, downlink.v4.1)
            }
            _ => false,
        },
        Some(6) => match (downlink.v6, pkt.get(24..40)) {
            (Some((net, len)), Some(d)) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(d);
                v6_in_prefix(Ipv6Addr::from(b), net, len)
            }
            _ => false,
        },
        _ => false,
    };
    if down {
        Direction::Down
    } else {
        Direction::Up
    }
}

/// SplitMix64: tiny, fast and statistically fine for loss decisions.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeds from wall time, pid and a per-process counter so lines started
    /// in the same nanosecond (or by forked processes) still differ.
    fn from_entropy() -> SplitMix64 {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let pid = u64::from(std::process::id());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        SplitMix64(t ^ pid.rotate_left(32) ^ n.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`; exact at the ends so 0 never drops and 1 always does.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 || p.is_nan() {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.next_f64() < p
        }
    }
}

/// Why a packet was not queued.
#[derive(Debug, PartialEq, Eq)]
struct QueueFull;

/// FIFO of packets waiting for their release time.
#[derive(Debug, Default)]
struct DirQueue {
    q: VecDeque<(Instant, Vec<u8>)>,
}

impl DirQueue {
    /// Queues `pkt`, read at `now`, for release after `delay`. The deadline is
    /// never earlier than the previous packet's, so lowering the delay live
    /// cannot reorder packets (and the writer only ever needs the head).
    fn push(&mut self, now: Instant, delay: Duration, pkt: Vec<u8>) -> Result<(), QueueFull> {
        if self.q.len() >= QUEUE_CAP {
            return Err(QueueFull);
        }
        let mut deadline = now + delay.min(MAX_DELAY);
        if let Some(&(last, _)) = self.q.back() {
            deadline = deadline.max(last);
        }
        self.q.push_back((deadline, pkt));
        Ok(())
    }

    /// Release time of the oldest packet.
    fn head_deadline(&self) -> Option<Instant> {
        self.q.front().map(|&(d, _)| d)
    }

    /// Removes the oldest packet if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.q.front() {
            Some(&(d, _)) if d <= now => self.q.pop_front().map(|(_, p)| p),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// State guarded by the mutex: queues, shapes and the writer's stop flag.
#[derive(Debug)]
struct State {
    /// Indexed by `Direction as usize`.
    queues: [DirQueue; 2],
    /// Indexed by `Direction as usize`.
    shapes: [LineShape; 2],
    stop: bool,
}

/// Per-direction counters; atomics so `stats()` never waits for the relay.
#[derive(Debug, Default)]
struct DirCounters {
    relayed: AtomicU64,
    lost: AtomicU64,
    queue_full: AtomicU64,
}

/// Everything the relay threads share with the handle.
#[derive(Debug)]
struct Shared {
    tun: OwnedFd,
    /// Made readable once, on drop, to wake the reader out of `poll`.
    wake: OwnedFd,
    name: String,
    downlink: Downlink,
    state: Mutex<State>,
    /// Signals the writer: a packet landed in an empty queue, or stop.
    cond: Condvar,
    counters: [DirCounters; 2],
}

impl Shared {
    /// Locks ignoring poisoning: the state stays consistent even if a holder
    /// panicked, and Drop must never panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running TUN relay adding per-direction delay and loss to one path.
///
/// Dropping it stops and joins its threads and closes the TUN fd (which
/// removes the non-persistent TUN device).
pub struct DelayLine {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Creates the TUN device `tun_name` (`IFF_TUN | IFF_NO_PI`) in the network
    /// namespace of the calling thread and starts the relay threads.
    ///
    /// The caller must already have `setns`'d this thread into the wanted
    /// namespace; the threads themselves need not be in it, as the fd is
    /// bound to the device. The link is NOT brought up and no routes are set
    /// (the caller runs `ip`).
    ///
    /// An IPv4 packet whose destination lies inside `downlink` (network
    /// address, prefix length: the client-side subnet of the path) goes
    /// "down" with shape `down`; everything else goes "up" with shape `up`.
    /// IPv6 likewise with `downlink_v6` (all IPv6 goes up when `None`).
    /// Non-IP packets use the up shape.
    ///
    /// Threads are named `dl-<tun>-rd` / `dl-<tun>-wr` (no doubled `dl-` if
    /// the tun name already starts with it), truncated to 15 bytes.
    ///
    /// # Errors
    /// `InvalidInput` for a bad interface name or prefix length; otherwise the
    /// OS error of opening `/dev/net/tun`, `TUNSETIFF`, `eventfd` or thread spawn.
    pub fn start(
        tun_name: &str,
        downlink: (Ipv4Addr, u8),
        downlink_v6: Option<(Ipv6Addr, u8)>,
        up: LineShape,
        down: LineShape,
    ) -> io::Result<DelayLine> {
        validate_ifname(tun_name)?;
        if downlink.1 > 32 {
            return Err(invalid(format!("IPv4 prefix length {} > 32 for delay line {tun_name}", downlink.1)));
        }
        if let Some((_, len)) = downlink_v6 {
            if len > 128 {
                return Err(invalid(format!("IPv6 prefix length {len} > 128 for delay line {tun_name}")));
            }
        }
        let (tun, name) = open_tun(tun_name)?;
        let wake = new_eventfd()?;
        let shared = Arc::new(Shared {
            tun,
            wake,
            name,
            downlink: Downlink { v4: downlink, v6: downlink_v6 },
            state: Mutex::new(State {
                queues: [DirQueue::default(), DirQueue::default()],
                shapes: [up.sanitized(), down.sanitized()],
                stop: false,
            }),
            cond: Condvar::new(),
            counters: [DirCounters::default(), DirCounters::default()],
        });
        // Built before spawning so that, if the second spawn fails, dropping
        // `line` stops and joins the first thread.
        let mut line = DelayLine { shared: Arc::clone(&shared), reader: None, writer: None };
        let s = Arc::clone(&shared);
        line.writer =
            Some(std::thread::Builder::new().name(thread_name(&shared.name, "wr")).spawn(move || writer_loop(&s))?);
        let s = Arc::clone(&shared);
        let rng = SplitMix64::from_entropy();
        line.reader = Some(
            std::thread::Builder::new().name(thread_name(&shared.name, "rd")).spawn(move || reader_loop(&s, rng))?,
        );
        tracing::debug!(tun = %shared.name, ?up, ?down, "delay line started");
        Ok(line)
    }

    /// Changes the shapes live; takes effect for packets read from now on
    /// (already queued packets keep their release time).
    pub fn set_shapes(&self, up: LineShape, down: LineShape) {
        let mut st = self.shared.lock();
        st.shapes = [up.sanitized(), down.sanitized()];
    }

    /// Current `(up, down)` shapes, as applied (after clamping).
    pub fn shapes(&self) -> (LineShape, LineShape) {
        let st = self.shared.lock();
        (st.shapes[0], st.shapes[1])
    }

    /// Snapshot of the packet counters.
    pub fn stats(&self) -> DelayLineStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DelayLineStats {
            up_relayed: get(&c[0].relayed),
            up_lost: get(&c[0].lost),
            up_queue_full: get(&c[0].queue_full),
            down_relayed: get(&c[1].relayed),
            down_lost: get(&c[1].lost),
            down_queue_full: get(&c[1].queue_full),
        }
    }

    /// Name of the TUN device (as the kernel reports it).
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl fmt::Debug for DelayLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (up, down) = self.shapes();
        f.debug_struct("DelayLine")
            .field("name", &self.shared.name)
            .field("up", &up)
            .field("down", &down)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cond.notify_all();
        if let Err(e) = eventfd_signal(self.shared.wake.as_fd()) {
            // Cannot happen with a valid eventfd; joining would then hang, so skip it.
            tracing::warn!(tun = %self.shared.name, "cannot wake delay line reader: {e}");
            self.reader = None;
        }
        for handle in [self.writer.take(), self.reader.take()].into_iter().flatten() {
            // A panicked thread already logged its panic; nothing more to do.
            let _ = handle.join();
        }
        tracing::debug!(tun = %self.shared.name, stats = ?self.stats(), "delay line stopped");
        // The fds close when the last `Arc<Shared>` (ours, now) is dropped.
    }
}

/// Reads packets, decides loss, and queues them with their release time.
fn reader_loop(shared: &Shared, mut rng: SplitMix64) {
    let mut buf = vec![0u8; READ_BUF];
    let mut batch: Vec<(Instant, Direction, Vec<u8>)> = Vec::with_capacity(BATCH);
    loop {
        let (tun_ev, wake_ev) = match poll_two(shared.tun.as_fd(), shared.wake.as_fd()) {
            Ok(ev) => ev,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(tun = %shared.name, "delay line poll failed, reader stops: {e}");
                return;
            }
        };
        if wake_ev != 0 {
            return;
        }
        let mut fatal = false;
        if tun_ev & libc::POLLIN != 0 {
            while batch.len() < BATCH {
                match read_fd(shared.tun.as_fd(), &mut buf) {
                    Ok(n) => {
                        let pkt = buf[..n].to_vec();
                        batch.push((Instant::now(), classify(&pkt, &shared.downlink), pkt));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(tun = %shared.name, "delay line read failed, reader stops: {e}");
                        fatal = true;
                        break;
                    }
                }
            }
        } else if tun_ev & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            // The device went away (e.g. deleted by hand); polling again would spin.
            tracing::warn!(tun = %shared.name, revents = tun_ev, "delay line tun fd in error state, reader stops");
            fatal = true;
        }
        if !batch.is_empty() {
            enqueue(shared, &mut rng, &mut batch);
        }
        if fatal {
            return;
        }
    }
}

/// Applies loss and queues a batch of packets under one lock acquisition.
fn enqueue(shared: &Shared, rng: &mut SplitMix64, batch: &mut Vec<(Instant, Direction, Vec<u8>)>) {
    let mut wake_writer = false;
    {
        let mut st = shared.lock();
        for (read_at, dir, pkt) in batch.drain(..) {
            let d = dir as usize;
            let shape = st.shapes[d];
            if rng.chance(shape.loss) {
                shared.counters[d].lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let q = &mut st.queues[d];
            // Only a packet landing in an empty queue can move the writer's
            // next deadline earlier (FIFO deadlines never decrease), so only
            // then is the futex wake worth paying.
            let was_empty = q.is_empty();
            match q.push(read_at, shape.delay, pkt) {
                Ok(()) => wake_writer |= was_empty,
                Err(QueueFull) => {
                    shared.counters[d].queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if wake_writer {
        shared.cond.notify_one();
    }
}

/// Sleeps until the earliest head deadline, then writes due packets back.
fn writer_loop(shared: &Shared) {
    // Default 50 µs timer slack would eat a sixth of the ±0.3 ms budget.
    set_timer_slack_ns(1);
    let mut batch: Vec<(Direction, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut write_errors: u64 = 0;
    // Set when the last sleep was cut short by SPIN on purpose.
    let mut spin_armed = false;
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        for dir in [Direction::Up, Direction::Down] {
            while batch.len() < BATCH {
                match st.queues[dir as usize].pop_due(now) {
                    Some(pkt) => batch.push((dir, pkt)),
                    None => break,
                }
            }
        }
        if !batch.is_empty() {
            // Write without the lock so the reader is never blocked on a syscall.
            drop(st);
            for (dir, pkt) in batch.drain(..) {
                match write_fd(shared.tun.as_fd(), &pkt) {
                    Ok(_) => {
                        shared.counters[dir as usize].relayed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Typically the link is down; log the first, then stay quiet-ish.
                        write_errors += 1;
                        if write_errors == 1 {
                            tracing::warn!(tun = %shared.name, "delay line write failed: {e}");
                        } else {
                            tracing::debug!(tun = %shared.name, write_errors, "delay line write failed: {e}");
                        }
                    }
                }
            }
            st = shared.lock();
            continue;
        }
        let next = [&st.queues[0], &st.queues[1]].iter().filter_map(|q| q.head_deadline()).min();
        st = match next {
            None => shared.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let timeout = deadline.saturating_duration_since(now);
                if spin_armed && timeout <= SPIN {
                    spin_armed = false;
                    drop(st);
                    while Instant::now() < deadline {
                        std::hint::spin_loop();
                    }
                    st = shared.lock();
                    continue;
                }
                spin_armed = timeout > SPIN_AFTER;
                let timeout = if spin_armed { timeout - SPIN } else { timeout };
                shared.cond.wait_timeout(st, timeout).unwrap_or_else(|e| e.into_inner()).0
            }
        };
    }
}

/// `dl-<tun>-<suffix>`, without doubling a `dl-` the tun name already has,
/// truncated to what the kernel keeps for a thread name.
fn thread_name(tun: &str, suffix: &str) -> String {
    let mut name = if tun.starts_with("dl-") { format!("{tun}-{suffix}") } else { format!("dl-{tun}-{suffix}") };
    let mut cut = name.len().min(MAX_THREAD_NAME);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Same rules as the kernel's `dev_valid_name`, checked up front for a clear message.
fn validate_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Err(invalid(format!("invalid TUN name {name:?}: must be 1..={} bytes", IFNAMSIZ - 1)));
    }
    if name == "." || name == ".." || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(invalid(format!("invalid TUN name {name:?}: no '/', ':', NUL or whitespace allowed")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Raw syscalls. Each unsafe block is one libc call on buffers we own.
// ---------------------------------------------------------------------------

/// `struct ifreq` as far as `TUNSETIFF` uses it: name, flags, and padding up
/// to the kernel's 40-byte size (it copies the whole struct in and out).
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) and attaches it to a new
/// TUN device in the calling thread's netns. Returns the fd and the name the
/// kernel actually used.
fn open_tun(name: &str) -> io::Result<(OwnedFd, String)> {
    let path = c"/dev/net/tun";
    // SAFETY: `path` is a valid NUL-terminated string; open has no other preconditions.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")));
    }
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req =
        IfReqFlags { name: [0; IFNAMSIZ], flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    // Length checked by validate_ifname, so the NUL terminator survives.
    for (dst, &src) in req.name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes); `req` is
    // a live, correctly sized and exclusively borrowed repr(C) struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, std::ptr::from_mut(&mut req)) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
    }
    let actual: Vec<u8> = req.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Ok((fd, String::from_utf8_lossy(&actual).into_owned()))
}

/// A non-blocking eventfd used only as a "stop" doorbell for `poll`.
fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes plain integers.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Makes the eventfd readable (it is never read back, so it stays readable).
fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local u64, as eventfd requires.
    let rc = unsafe { libc::write(fd.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    if rc == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Blocks until `a` or `b` has an event; returns both `revents`.
fn poll_two(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<(libc::c_short, libc::c_short)> {
    let mut fds = [
        libc::pollfd { fd: a.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: `fds` is a live array of exactly 2 pollfd structs.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0].revents, fds[1].revents))
}

/// One `read(2)` into `buf`.
fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `write(2)` of `buf` (a TUN write is a whole packet or an error).
fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live buffer of `buf.len()` bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sets the calling thread's timer slack; best effort (failure only costs precision).
fn set_timer_slack_ns(ns: libc::c_ulong) {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only this thread.
    let rc =
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc != 0 {
        tracing::debug!("PR_SET_TIMERSLACK failed: {}", io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl() -> Downlink {
        Downlink { v4: (Ipv4Addr::new(10, 9, 1, 0), 24), v6: Some(("fd00:9:1::".parse().unwrap(), 64)) }
    }

    fn v4_packet(dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 9, 0, 2]);
        p[16..20].copy_from_slice(&dst);
        p
    }

    fn v6_packet(dst: Ipv6Addr) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[24..40].copy_from_slice(&dst.octets());
        p
    }

    #[test]
    fn classify_ipv4() {
        assert_eq!(classify(&v4_packet([10, 9, 1, 2]), &dl()), Direction::Down);
        assert_eq!(classify(&v4_packet([10, 9, 1, 255]), &dl()), Direction::Down);
        assert_eq!(classify(&v4_packet([10, 9, 0, 2]), &dl()), Direction::Up);
        assert_eq!(classify(&v4_packet([10, 9, 2, 1]), &dl()), Direction::Up);
        // Header only, no payload: still a valid destination.
        assert_eq!(classify(&v4_packet([10, 9, 1, 2])[..20], &dl()), Direction::Down);
    }

    #[test]
    fn classify_ipv6() {
        let down = v6_packet("fd00:9:1::2".parse().unwrap());
        let up = v6_packet("fd00:9:0::2".parse().unwrap());
        assert_eq!(classify(&down, &dl()), Direction::Down);
        assert_eq!(classify(&up, &dl()), Direction::Up);
        assert_eq!(classify(&down[..40], &dl()), Direction::Down);
        let no_v6 = Downlink { v6: None, ..dl() };
        assert_eq!(classify(&down, &no_v6), Direction::Up);
    }

    #[test]
    fn classify_garbage_never_panics_and_goes_up() {
        let d = dl();
        let down4 = v4_packet([10, 9, 1, 2]);
        let down6 = v6_packet("fd00:9:1::2".parse().unwrap());
        for len in 0..20 {
            assert_eq!(classify(&down4[..len], &d), Direction::Up, "v4 len {len}");
        }
        for len in 0..40 {
            assert_eq!(classify(&down6[..len], &d), Direction::Up, "v6 len {len}");
        }
        // Versions other than 4/6, including a v4 destination at the v4 offset.
        for first in [0x00u8, 0x15, 0x55, 0xff, 0x05] {
            let mut p = down4.clone();
            p[0] = first;
            assert_eq!(classify(&p, &d), Direction::Up);
        }
        // Pseudo-random bytes of all lengths.
        let mut rng = SplitMix64(42);
        for len in 0..200 {
            let p: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let _ = classify(&p, &d);
        }
    }

    #[test]
    fn prefix_matching() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(v4_in_prefix(a("10.9.1.7"), a("10.9.1.0"), 24));
        assert!(!v4_in_prefix(a("10.9.2.7"), a("10.9.1.0"), 24));
        // Host bits in the network address are ignored.
        assert!(v4_in_prefix(a("10.9.1.7"), a("10.9.1.99"), 24));
        assert!(v4_in_prefix(a("1.2.3.4"), a("10.9.1.0"), 0));
        assert!(v4_in_prefix(a("10.9.1.7"), a("10.9.1.7"), 32));
        assert!(!v4_in_prefix(a("10.9.1.8"), a("10.9.1.7"), 32));
        assert!(v4_in_prefix(a("10.9.1.130"), a("10.9.1.128"), 25));
        assert!(!v4_in_prefix(a("10.9.1.127"), a("10.9.1.128"), 25));

        let b = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert!(v6_in_prefix(b("fd00::1"), b("fd00::"), 64));
        assert!(!v6_in_prefix(b("fd00:0:0:1::1"), b("fd00::"), 64));
        assert!(v6_in_prefix(b("2001:db8::1"), b("fd00::"), 0));
        assert!(v6_in_prefix(b("fd00::1"), b("fd00::1"), 128));
        assert!(!v6_in_prefix(b("fd00::2"), b("fd00::1"), 128));
    }

    #[test]
    fn prng_loss_proportion() {
        let mut rng = SplitMix64::from_entropy();
        let n = 200_000;
        for p in [0.01, 0.1, 0.5, 0.9] {
            let hits = (0..n).filter(|_| rng.chance(p)).count() as f64 / n as f64;
            assert!((hits - p).abs() < 0.01, "p={p} measured {hits}");
        }
        assert!((0..n).all(|_| !rng.chance(0.0)));
        assert!((0..n).all(|_| rng.chance(1.0)));
        assert!((0..1000).all(|_| !rng.chance(f64::NAN)));
        let f = rng.next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn prng_seeds_differ() {
        let mut a = SplitMix64::from_entropy();
        let mut b = SplitMix64::from_entropy();
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn queue_is_fifo_when_delay_decreases() {
        let mut q = DirQueue::default();
        let t0 = Instant::now();
        q.push(t0, Duration::from_millis(100), vec![1]).unwrap();
        q.push(t0 + Duration::from_millis(1), Duration::from_millis(10), vec![2]).unwrap();
        // The second packet may not overtake the first.
        assert_eq!(q.pop_due(t0 + Duration::from_millis(50)), None);
        let t = t0 + Duration::from_millis(100);
        assert_eq!(q.pop_due(t), Some(vec![1]));
        assert_eq!(q.pop_due(t), Some(vec![2]));
        assert!(q.is_empty());
        // Constant delay: each packet is released exactly after its delay.
        q.push(t0, Duration::from_millis(10), vec![3]).unwrap();
        assert_eq!(q.head_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(q.pop_due(t0 + Duration::from_micros(9_999)), None);
        assert_eq!(q.pop_due(t0 + Duration::from_millis(10)), Some(vec![3]));
    }

    #[test]
    fn queue_cap() {
        let mut q = DirQueue::default();
        let t0 = Instant::now();
        for _ in 0..QUEUE_CAP {
            q.push(t0, Duration::ZERO, Vec::new()).unwrap();
        }
        assert_eq!(q.push(t0, Duration::ZERO, Vec::new()), Err(QueueFull));
        assert!(q.pop_due(t0).is_some());
        assert!(q.push(t0, Duration::ZERO, Vec::new()).is_ok());
    }

    #[test]
    fn shapes_are_sanitized() {
        let s = LineShape { delay: Duration::from_secs(1_000_000), loss: 7.0 }.sanitized();
        assert_eq!(s.delay, MAX_DELAY);
        assert_eq!(s.loss, 1.0);
        let nan = LineShape { delay: Duration::ZERO, loss: f64::NAN };
        assert_eq!(nan.sanitized().loss, 0.0);
        let ok = LineShape { delay: Duration::from_millis(10), loss: 0.25 };
        assert_eq!(ok.sanitized(), ok);
    }

    #[test]
    fn names() {
        assert_eq!(thread_name("dl-wifi", "rd"), "dl-wifi-rd");
        assert_eq!(thread_name("wifi", "wr"), "dl-wifi-wr");
        assert_eq!(thread_name("dl-verylongname1", "rd"), "dl-verylongname");
        assert!(thread_name("dl-ééééééé", "rd").len() <= MAX_THREAD_NAME);
        assert!(validate_ifname("dl-wifi").is_ok());
        assert!(validate_ifname("dl-abcdefghijkl").is_ok()); // 15 bytes
        for bad in ["", "dl-abcdefghijklm", "a/b", "a b", "a:b", ".", ".."] {
            let e = validate_ifname(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn start_rejects_bad_input_without_root() {
        let s = LineShape::default();
        let e = DelayLine::start("this-name-is-too-long", (Ipv4Addr::UNSPECIFIED, 0), None, s, s).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = DelayLine::start("dl-x", (Ipv4Addr::UNSPECIFIED, 33), None, s, s).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e =
            DelayLine::start("dl-x", (Ipv4Addr::UNSPECIFIED, 0), Some((Ipv6Addr::UNSPECIFIED, 129)), s, s).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<DelayLine>();
        check::<DelayLineStats>();
    }
}
