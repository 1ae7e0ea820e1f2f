//! A running lab: namespaces, links, routes, shapers and delay lines.
//!
//! ```text
//!  client ns                  router ns                       server ns
//!  wifi 10.1.0.2/24 ===veth=== wifi 10.1.0.1  \
//!                                              >-- srv 10.0.0.1 ===veth=== eth0 10.0.0.2
//!  cell 10.2.0.2/24 ===veth=== cell 10.2.0.1  /
//! ```
//! Links are dual stack unless a path says otherwise ([`Families`]): path
//! `n` (from 1) also carries `fd00:n::2/64` (client) and `fd00:n::1`
//! (router), the server link `fd00::2` and `fd00::1`, with the same default
//! routes, source tables and filtering. The client's host part (`.2`,
//! `::2`) moves on at each [`Lab::renumber`].
//! Rates are `tbf` on each veth's egress (client side: upload, router side:
//! download). Delay and loss are netem on the same veths where the kernel
//! has it, otherwise a TUN delay line per path in the router, which the
//! router's policy rules send every packet of that path through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::cleanup;
use crate::cmd::{ip, tc};
use crate::config::{DelayMode, Families, LabConfig, LinkShape, PathConfig};
use crate::delay_line::{DelayLine, LineShape};
use crate::netns::{self, Netns};
use crate::offload::disable_offloads;
use crate::ping::{ping, ping_once, PingStats};
use crate::{LabError, Result};

/// Prefix of every namespace a lab creates: `mpl<pid>x<n>-cli|rtr|srv`.
pub const NAMESPACE_PREFIX: &str = "mpl";

/// Packets a shaper may queue, as time at its rate.
const QUEUE_TIME: Duration = Duration::from_millis(50);

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// The server's address.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ROUTER_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The server's IPv6 address.
pub const SERVER_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const ROUTER_SERVER_SIDE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// Priority of the router's rules that drop IPv6 packets arriving on a
/// path with another path's source address (IPv4 has `rp_filter`).
const ANTI_SPOOF6_PREF: &str = "60";

/// The client's first host number on every path (`10.<n>.0.2`).
const FIRST_HOST: u8 = 2;

/// One path of a running lab.
#[derive(Debug)]
pub struct Path {
    index: usize,
    name: String,
    families: Families,
    shape: Mutex<(LinkShape, LinkShape)>,
    /// Host part of the client's addresses on the path.
    host: AtomicU8,
    /// Whether the client's interface exists.
    plugged: AtomicBool,
    delay_line: Option<DelayLine>,
}

impl Path {
    /// The path's (and its interfaces') name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The families the client has on the path.
    pub fn families(&self) -> Families {
        self.families
    }
    /// Whether the client's interface exists now.
    pub fn plugged(&self) -> bool {
        self.plugged.load(Ordering::Relaxed)
    }
    /// The client's IPv4 address on this path (even where the path carries
    /// no IPv4: see [`Path::families`]).
    pub fn client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.index as u8 + 1, 0, self.host())
    }
    fn host(&self) -> u8 {
        self.host.load(Ordering::Relaxed)
    }
    /// The router's address on this path, the client's gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.index as u8 + 1, 0, 1)
    }
    /// The path's subnet, `10.<n>.0.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.{}.0.0/24", self.index + 1)
    }
    /// The client's IPv6 address on this path, `fd00:<n>::2` at first.
    pub fn client_addr6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, self.index as u16 + 1, 0, 0, 0, 0, 0, u16::from(self.host()))
    }
    /// The router's IPv6 address on this path.
    pub fn gateway6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, self.index as u16 + 1, 0, 0, 0, 0, 0, 1)
    }
    /// The path's IPv6 subnet, `fd00:<n>::/64`.
    pub fn subnet6(&self) -> String {
        format!("fd00:{:x}::/64", self.index + 1)
    }
    /// The client's addresses on this path, of the families it carries.
    pub fn client_addrs(&self) -> Vec<IpAddr> {
        let v4 = self.families.v4().then(|| self.client_addr().into());
        let v6 = self.families.v6().then(|| self.client_addr6().into());
        v4.into_iter().chain(v6).collect()
    }
    /// The client's address on this path in the family of `peer`.
    pub fn client_addr_for(&self, peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V4(_) => self.client_addr().into(),
            IpAddr::V6(_) => self.client_addr6().into(),
        }
    }
    /// Route metric of the path's default route: lower is preferred.
    pub fn metric(&self) -> u32 {
        100 * (self.index as u32 + 1)
    }
    /// Current (upload, download) shapes.
    pub fn shape(&self) -> (LinkShape, LinkShape) {
        *self.shape.lock().expect("shape lock")
    }
    fn table(&self) -> String {
        (100 + self.index).to_string()
    }
    fn delay_table(&self) -> String {
        (10 + self.index).to_string()
    }
    fn tun(&self) -> String {
        format!("dl-{}", self.name)
    }
    /// (flag, gateway) of each family the path carries.
    fn gateways(&self) -> Vec<(&'static str, String)> {
        let v4 = self.families.v4().then(|| ("-4", self.gateway().to_string()));
        let v6 = self.families.v6().then(|| ("-6", self.gateway6().to_string()));
        v4.into_iter().chain(v6).collect()
    }
}

/// A running lab. Dropping it (also while unwinding from a panic) kills
/// the processes left in its namespaces, stops its delay lines and deletes
/// the namespaces, which takes every link, route, rule and qdisc with them.
#[derive(Debug)]
pub struct Lab {
    name: String,
    client: Netns,
    router: Netns,
    server: Netns,
    paths: Vec<Path>,
    mode: DelayMode,
}

impl Lab {
    /// Builds the lab `config` describes. Needs root.
    pub fn up(config: &LabConfig) -> Result<Lab> {
        config.validate()?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        cleanup::remove_stale_labs();
        let name = format!("{NAMESPACE_PREFIX}{}x{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        let (client, router, server) = create_namespaces(&name)?;
        let mut lab = Lab { name, client, router, server, paths: Vec::new(), mode: DelayMode::TunRelay };
        // From here on, an error drops `lab`, which tears down what exists.
        lab.mode = lab.choose_delay_mode(config.delay_mode)?;
        lab.build_core()?;
        for (index, cfg) in config.paths.iter().enumerate() {
            lab.add_path(index, cfg)?;
        }
        lab.wait_until_every_path_answers()?;
        tracing::info!(lab = %lab.name, mode = ?lab.mode, "lab up");
        Ok(lab)
    }

    fn choose_delay_mode(&self, wanted: Option<DelayMode>) -> Result<DelayMode> {
        let from_env = match std::env::var("MULTIPATH_LAB_DELAY").as_deref() {
            Ok("netem") => Some(DelayMode::Netem),
            Ok("relay") => Some(DelayMode::TunRelay),
            Ok(other) => {
                return Err(LabError::Config(format!("MULTIPATH_LAB_DELAY={other:?}: expected netem or relay")))
            }
            Err(_) => None,
        };
        if let Some(mode) = from_env.or(wanted) {
            return Ok(mode);
        }
        let r = self.router.name();
        let has_netem = tc(r, &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).is_ok();
        if has_netem {
            tc(r, &["qdisc", "del", "dev", "lo", "root"])?;
            return Ok(DelayMode::Netem);
        }
        Ok(DelayMode::TunRelay)
    }

    /// Router, server and their link; sysctls of all three namespaces.
    fn build_core(&self) -> Result<()> {
        let (r, s) = (self.router.name(), self.server.name());
        // Changed from the default, in the lab's own namespaces only: no
        // duplicate address detection on its fresh veths (every address is
        // unique by construction). With it, link-local addresses stay
        // tentative for a second or two after each link comes up, and
        // neighbour discovery, hence every first IPv6 packet, waits.
        for ns in [&self.client, &self.router, &self.server] {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        ip(r, &["link", "add", "srv", "type", "veth", "peer", "name", "eth0", "netns", s])?;
        ip(r, &["addr", "add", &format!("{ROUTER_SERVER_SIDE}/24"), "dev", "srv"])?;
        ip(s, &["addr", "add", &format!("{SERVER_ADDR}/24"), "dev", "eth0"])?;
        // nodad: usable at once, not tentative for a second or two.
        ip(r, &["-6", "addr", "add", &format!("{ROUTER_SERVER_SIDE6}/64"), "dev", "srv", "nodad"])?;
        ip(s, &["-6", "addr", "add", &format!("{SERVER_ADDR6}/64"), "dev", "eth0", "nodad"])?;
        ip(r, &["link", "set", "srv", "up"])?;
        ip(s, &["link", "set", "eth0", "up"])?;
        ip(s, &["route", "add", "default", "via", &ROUTER_SERVER_SIDE.to_string()])?;
        ip(s, &["-6", "route", "add", "default", "via", &ROUTER_SERVER_SIDE6.to_string()])?;
        self.router.run(|| disable_offloads("srv")).map_err(|e| LabError::io("offloads of srv", e))?;
        self.server.run(|| disable_offloads("eth0")).map_err(|e| LabError::io("offloads of eth0", e))?;

        self.router.sysctl("net.ipv4.ip_forward", "1")?;
        self.router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for ns in [&self.client, &self.router] {
            // Strict reverse-path filtering is turned on per path below;
            // everything else (tun relays, multihomed client) needs it off.
            ns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
            ns.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        }
        // ARP requests carry the interface's own address, not that of the
        // packet waiting for resolution: a packet with a dead path's source
        // address, which the router drops, must not stall ARP on another path.
        self.client.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
        // MPTCP limits stay the kernel's (`subflows 2 add_addr_accepted
        // 0` in a new namespace): a lab that raised them hid a server
        // refusing a client's third path. A test that needs more says so.
        Ok(())
    }

    /// A path's parts that outlive its client interface (the router's
    /// delay line and rules, the client's source rules), then the
    /// interface itself if it starts plugged.
    fn add_path(&mut self, index: usize, cfg: &PathConfig) -> Result<()> {
        let (c, r) = (self.client.name().to_owned(), self.router.name().to_owned());
        let name = cfg.name.as_str();
        let mut path = Path {
            index,
            name: name.to_owned(),
            families: cfg.families,
            shape: Mutex::new((cfg.up, cfg.down)),
            host: AtomicU8::new(FIRST_HOST),
            plugged: AtomicBool::new(false),
            delay_line: None,
        };
        // Like a carrier, the router drops packets whose source address
        // does not belong to the path they arrive on: a dead path's
        // packets must not leak out through another path (IPv4 also has
        // the interface's rp_filter, set when it is plugged).
        for other in &self.paths {
            for (iif, from) in [(name, other.subnet6()), (other.name.as_str(), path.subnet6())] {
                ip(&r, &["-6", "rule", "add", "pref", ANTI_SPOOF6_PREF, "iif", iif, "from", &from, "blackhole"])?;
            }
        }
        // Whatever the host part, each local address leaves through its
        // own path.
        let pref = (100 + index).to_string();
        for (family, from) in [("-4", path.subnet()), ("-6", path.subnet6())] {
            ip(&c, &[family, "rule", "add", "pref", &pref, "from", &from, "lookup", &path.table()])?;
        }

        match self.mode {
            DelayMode::TunRelay => {
                let tun = path.tun();
                let subnet = (Ipv4Addr::new(10, index as u8 + 1, 0, 0), 24);
                let subnet6 = (Ipv6Addr::new(0xfd00, index as u16 + 1, 0, 0, 0, 0, 0, 0), 64);
                let (up, down) = (line(cfg.up), line(cfg.down));
                let dl = self.router.run(|| DelayLine::start(&tun, subnet, Some(subnet6), up, down));
                path.delay_line = Some(dl.map_err(|e| LabError::io(format!("delay line {tun}"), e))?);
                ip(&r, &["link", "set", &tun, "up"])?;
                let (table, up_pref, down_pref) =
                    (path.delay_table(), (1000 + 2 * index).to_string(), (1001 + 2 * index).to_string());
                for (family, to) in [("-4", path.subnet()), ("-6", path.subnet6())] {
                    ip(&r, &[family, "route", "add", "default", "dev", &tun, "table", &table])?;
                    ip(&r, &[family, "rule", "add", "pref", &up_pref, "iif", name, "lookup", &table])?;
                    ip(&r, &[family, "rule", "add", "pref", &down_pref, "iif", "srv", "to", &to, "lookup", &table])?;
                }
            }
            DelayMode::Netem => {}
        }
        self.paths.push(path);
        if cfg.plugged {
            self.plug(self.paths.last().expect("just pushed"))?;
        }
        Ok(())
    }

    /// Creates the path's link (client and router interfaces, addresses,
    /// routes, shapers), as when a USB modem appears.
    fn plug(&self, path: &Path) -> Result<()> {
        let (c, r) = (self.client.name(), self.router.name());
        let name = path.name.as_str();
        ip(c, &["link", "add", name, "type", "veth", "peer", "name", name, "netns", r])?;
        if path.families.v4() {
            ip(c, &["addr", "add", &format!("{}/24", path.client_addr()), "dev", name])?;
        }
        ip(r, &["addr", "add", &format!("{}/24", path.gateway()), "dev", name])?;
        ip(r, &["-6", "addr", "add", &format!("{}/64", path.gateway6()), "dev", name, "nodad"])?;
        for ns in [&self.client, &self.router] {
            ns.run(|| disable_offloads(name)).map_err(|e| LabError::io(format!("offloads of {name}"), e))?;
        }
        self.router.sysctl(&format!("net.ipv4.conf.{name}.rp_filter"), "1")?;
        ip(r, &["link", "set", name, "up"])?;
        ip(c, &["link", "set", name, "up"])?;
        self.client_routes(path, "replace")?;
        let (up, down) = path.shape();
        self.apply_qdiscs(path, up, down, true)?;
        path.plugged.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The client's IPv6 address on `path` (taken away when the link goes
    /// down: `keep_addr_on_down` is 0 by default), then its default routes
    /// through `path` (metric by preference) and its source-routing tables,
    /// both families.
    fn client_routes(&self, path: &Path, verb: &str) -> Result<()> {
        let (c, dev) = (self.client.name(), path.name.as_str());
        if path.families.v6() {
            ip(c, &["-6", "addr", "replace", &format!("{}/64", path.client_addr6()), "dev", dev, "nodad"])?;
        }
        for (family, gw) in path.gateways() {
            ip(c, &[family, "route", verb, "default", "via", &gw, "dev", dev, "metric", &path.metric().to_string()])?;
            ip(c, &[family, "route", verb, "default", "via", &gw, "dev", dev, "table", &path.table()])?;
        }
        Ok(())
    }

    /// Shapers on both veths of a path: upload on the client side, download
    /// on the router side.
    fn apply_qdiscs(&self, path: &Path, up: LinkShape, down: LinkShape, fresh: bool) -> Result<()> {
        for (ns, shape) in [(self.client.name(), up), (self.router.name(), down)] {
            let dev = path.name.as_str();
            match self.mode {
                DelayMode::TunRelay => match tbf_args(shape.rate_bps) {
                    Some(args) => {
                        let mut full = vec!["qdisc", "replace", "dev", dev, "root", "handle", "1:"];
                        full.extend(args.iter().map(String::as_str));
                        tc(ns, &full)?;
                    }
                    None if fresh => {}
                    // Back to unshaped: the default qdisc again (error if it already is).
                    None => drop(tc(ns, &["qdisc", "del", "dev", dev, "root"])),
                },
                DelayMode::Netem => {
                    let delay = format!("{}us", shape.delay.as_micros());
                    let loss = format!("{}%", shape.loss * 100.0);
                    let verb = if fresh { "add" } else { "change" };
                    tc(
                        ns,
                        &[
                            "qdisc", verb, "dev", dev, "root", "handle", "1:", "netem", "delay", &delay, "loss", &loss,
                            "limit", "100000",
                        ],
                    )?;
                    match tbf_args(shape.rate_bps) {
                        Some(args) => {
                            let mut full = vec!["qdisc", "replace", "dev", dev, "parent", "1:1", "handle", "10:"];
                            full.extend(args.iter().map(String::as_str));
                            tc(ns, &full)?;
                        }
                        None if fresh => {}
                        None => drop(tc(ns, &["qdisc", "del", "dev", dev, "parent", "1:1"])),
                    }
                }
            }
        }
        Ok(())
    }

    /// The lab's name (prefix of its namespaces).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The client namespace.
    pub fn client(&self) -> &Netns {
        &self.client
    }
    /// The router namespace.
    pub fn router(&self) -> &Netns {
        &self.router
    }
    /// The server namespace.
    pub fn server(&self) -> &Netns {
        &self.server
    }
    /// The server's address.
    pub fn server_addr(&self) -> Ipv4Addr {
        SERVER_ADDR
    }
    /// The server's IPv6 address.
    pub fn server_addr6(&self) -> Ipv6Addr {
        SERVER_ADDR6
    }
    /// How delay and loss are applied.
    pub fn delay_mode(&self) -> DelayMode {
        self.mode
    }
    /// The paths, in preference order.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }
    /// The path named `name`.
    pub fn path(&self, name: &str) -> Result<&Path> {
        self.paths.iter().find(|p| p.name == name).ok_or_else(|| LabError::UnknownPath(name.to_owned()))
    }

    /// Takes the client's interface of `path` down (its routes vanish, as
    /// when Wi-Fi drops) or brings it back up with its routes restored, as
    /// the OS's network manager would.
    pub fn set_link(&self, path: &str, up: bool) -> Result<()> {
        let p = self.path(path)?;
        let c = self.client.name();
        if up {
            ip(c, &["link", "set", path, "up"])?;
            self.client_routes(p, "replace")?;
        } else {
            ip(c, &["link", "set", path, "down"])?;
        }
        Ok(())
    }

    /// Silently drops every packet of `path` in the router, both ways,
    /// while the link stays up (a Wi-Fi whose upstream died).
    pub fn set_blackhole(&self, path: &str, on: bool) -> Result<()> {
        let p = self.path(path)?;
        let r = self.router.name();
        let (up_pref, down_pref) = ((50 + 2 * p.index).to_string(), (51 + 2 * p.index).to_string());
        for (family, to) in [("-4", p.subnet()), ("-6", p.subnet6())] {
            if on {
                ip(r, &[family, "rule", "add", "pref", &up_pref, "iif", path, "blackhole"])?;
                ip(r, &[family, "rule", "add", "pref", &down_pref, "iif", "srv", "to", &to, "blackhole"])?;
            } else {
                ip(r, &[family, "rule", "del", "pref", &up_pref])?;
                ip(r, &[family, "rule", "del", "pref", &down_pref])?;
            }
        }
        Ok(())
    }

    /// Changes a path's rate, delay and loss while traffic flows.
    pub fn set_shape(&self, path: &str, up: LinkShape, down: LinkShape) -> Result<()> {
        let p = self.path(path)?;
        up.validate(path)?;
        down.validate(path)?;
        if let Some(dl) = &p.delay_line {
            dl.set_shapes(line(up), line(down));
        }
        // An unplugged path's shapers come with its interface.
        if p.plugged() {
            self.apply_qdiscs(p, up, down, false)?;
        }
        *p.shape.lock().expect("shape lock") = (up, down);
        Ok(())
    }

    /// Plugs the path's interface in (created with its addresses, routes and
    /// shapers, as a USB modem appearing) or pulls it out (deleted with
    /// everything on it). Doing what is already done is an error.
    pub fn set_plugged(&self, path: &str, plugged: bool) -> Result<()> {
        let p = self.path(path)?;
        if p.plugged() == plugged {
            let state = if plugged { "plugged in" } else { "unplugged" };
            return Err(LabError::Config(format!("path {path} is already {state}")));
        }
        if plugged {
            return self.plug(p);
        }
        ip(self.client.name(), &["link", "del", path])?;
        p.plugged.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the client new addresses on `path` while its link stays up, as
    /// a DHCP renewal or a roam to another access point does: the old ones
    /// are removed (IPv4 takes the path's routes with its last address),
    /// then the new ones added and the routes restored. Returns the new
    /// addresses.
    pub fn renumber(&self, path: &str) -> Result<Vec<IpAddr>> {
        let p = self.path(path)?;
        let c = self.client.name();
        let old = p.client_addrs();
        let next = if p.host() >= 250 { FIRST_HOST } else { p.host() + 1 };
        p.host.store(next, Ordering::Relaxed);
        if p.plugged() {
            for addr in &old {
                let len = if addr.is_ipv4() { 24 } else { 64 };
                ip(c, &["addr", "del", &format!("{addr}/{len}"), "dev", path])?;
            }
            if p.families.v4() {
                ip(c, &["addr", "add", &format!("{}/24", p.client_addr()), "dev", path])?;
            }
            self.client_routes(p, "replace")?;
        }
        Ok(p.client_addrs())
    }

    /// Removes the path's default routes (main table and its source table)
    /// while the link and its addresses stay, as when a DHCP lease or a
    /// router advertisement runs out; or restores them.
    pub fn set_default_route(&self, path: &str, present: bool) -> Result<()> {
        let p = self.path(path)?;
        if present {
            return self.client_routes(p, "replace");
        }
        let (c, metric) = (self.client.name(), p.metric().to_string());
        for (family, gw) in p.gateways() {
            ip(c, &[family, "route", "del", "default", "via", &gw, "dev", path, "metric", &metric])?;
            ip(c, &[family, "route", "del", "default", "via", &gw, "dev", path, "table", &p.table()])?;
        }
        Ok(())
    }

    /// Makes the server announce its addresses (ADD_ADDR) to its clients,
    /// the way a dual-stack server does: both as signal endpoints of the
    /// server's in-kernel path manager. A connection hears the address it
    /// does not already use.
    pub fn server_announces(&self) -> Result<()> {
        for addr in [SERVER_ADDR.to_string(), SERVER_ADDR6.to_string()] {
            ip(self.server.name(), &["mptcp", "endpoint", "add", &addr, "dev", "eth0", "signal"])?;
        }
        Ok(())
    }

    /// Adds the client's addresses on `path` (IPv4 and IPv6) as endpoints
    /// of the kernel path manager (`ip mptcp endpoint add ... subflow
    /// [backup]`), so MPTCP connections of either family get a subflow on it.
    pub fn add_kernel_endpoint(&self, path: &str, backup: bool) -> Result<()> {
        let p = self.path(path)?;
        for addr in p.client_addrs().iter().map(ToString::to_string) {
            let mut args = vec!["mptcp", "endpoint", "add", &addr, "dev", path, "subflow"];
            if backup {
                args.push("backup");
            }
            ip(self.client.name(), &args)?;
        }
        Ok(())
    }

    /// Returns once an echo from each path reaches the server and back, in
    /// both families. The first IPv6 packet through a fresh lab is lost to
    /// neighbour discovery on the forwarding path; a test must not start
    /// its clock, or its connection, before that.
    fn wait_until_every_path_answers(&self) -> Result<()> {
        for p in self.paths.iter().filter(|p| p.plugged()) {
            self.wait_until_answers(&p.name)?;
        }
        Ok(())
    }

    /// Returns once an echo from each of the client's addresses on `path`
    /// reaches the server and back (at most 5 s): after
    /// [`Lab::set_plugged`] or [`Lab::renumber`], when a test must not
    /// count the first packet lost to neighbour discovery against the
    /// path manager.
    pub fn wait_until_answers(&self, path: &str) -> Result<()> {
        let p = self.path(path)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for from in p.client_addrs() {
            let to = if from.is_ipv4() { IpAddr::from(SERVER_ADDR) } else { SERVER_ADDR6.into() };
            // Long enough for the path's own round trip.
            let (up, down) = p.shape();
            let wait = (up.delay + down.delay) * 2 + Duration::from_millis(100);
            while self.client.run(|| ping_once(from, to, wait))?.is_none() {
                if std::time::Instant::now() >= deadline {
                    return Err(LabError::Config(format!("path {}: {from} never reached {to}", p.name)));
                }
            }
        }
        Ok(())
    }

    /// ICMP echo from the client's address on `path` to the server.
    pub fn ping(&self, path: &str, count: usize, interval: Duration) -> Result<PingStats> {
        let from = self.path(path)?.client_addr();
        self.client.run(|| ping(from.into(), SERVER_ADDR.into(), count, interval))
    }

    /// ICMPv6 echo from the client's IPv6 address on `path` to the server's.
    pub fn ping6(&self, path: &str, count: usize, interval: Duration) -> Result<PingStats> {
        let from = self.path(path)?.client_addr6();
        self.client.run(|| ping(from.into(), SERVER_ADDR6.into(), count, interval))
    }

    /// A human description: paths, addresses, how to run commands inside.
    pub fn describe(&self) -> String {
        let mut out = format!("lab {} (delay: {:?})\n", self.name, self.mode);
        for p in &self.paths {
            let (up, down) = p.shape();
            let addrs: Vec<String> = p.client_addrs().iter().map(ToString::to_string).collect();
            let gateways: Vec<String> = p.gateways().into_iter().map(|(_, gw)| gw).collect();
            out += &format!(
                "  path {:<6} {:<4} client {:<22} gateway {:<10} metric {}  RTT {} ms  up {}  down {}{}\n",
                p.name,
                p.families.to_string(),
                addrs.join(" "),
                gateways.join(" "),
                p.metric(),
                (up.delay + down.delay).as_secs_f64() * 1e3,
                describe_shape(up),
                describe_shape(down),
                if p.plugged() { "" } else { "  (unplugged)" }
            );
        }
        out += &format!("  server {SERVER_ADDR} {SERVER_ADDR6}\n");
        out += &format!("run inside the client: ip netns exec {} COMMAND\n", self.client.name());
        out += &format!("run inside the server: ip netns exec {} COMMAND\n", self.server.name());
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.paths {
            p.delay_line.take();
        }
        for ns in [&self.client, &self.router, &self.server] {
            if let Err(e) = netns::destroy(ns.name()) {
                tracing::warn!(netns = ns.name(), error = %e, "lab teardown");
            }
        }
    }
}

fn create_namespaces(lab: &str) -> Result<(Netns, Netns, Netns)> {
    let names = [format!("{lab}-cli"), format!("{lab}-rtr"), format!("{lab}-srv")];
    let mut made = Vec::new();
    for n in &names {
        match Netns::create(n) {
            Ok(ns) => made.push(ns),
            Err(e) => {
                for ns in made {
                    let _ = netns::destroy(ns.name());
                }
                return Err(e);
            }
        }
    }
    let server = made.pop().expect("three namespaces");
    let router = made.pop().expect("three namespaces");
    let client = made.pop().expect("three namespaces");
    Ok((client, router, server))
}

fn line(shape: LinkShape) -> LineShape {
    LineShape { delay: shape.delay, loss: shape.loss }
}

/// `tbf` arguments for a rate: a burst of 2 ms at that rate (at least two
/// full frames) and a queue of [`QUEUE_TIME`].
fn tbf_args(rate_bps: Option<u64>) -> Option<Vec<String>> {
    let rate = rate_bps?;
    let bytes_per_sec = rate / 8;
    let burst = (bytes_per_sec / 500).max(3028);
    let limit = ((bytes_per_sec as f64 * QUEUE_TIME.as_secs_f64()) as u64).max(2 * burst);
    Some(vec![
        "tbf".into(),
        "rate".into(),
        format!("{rate}bit"),
        "burst".into(),
        burst.to_string(),
        "limit".into(),
        limit.to_string(),
    ])
}

fn describe_shape(s: LinkShape) -> String {
    let rate = s.rate_bps.map_or("unlimited".to_owned(), |r| format!("{} Mbit/s", r as f64 / 1e6));
    format!("{rate}, {} ms one way, {}% loss", s.delay.as_secs_f64() * 1e3, s.loss * 100.0)
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
