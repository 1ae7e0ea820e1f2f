//! Connection parameters: the service type and the socket options an
//! application sets, in the spirit of `NWParameters`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{Enforcer, ServiceType};

/// TCP keepalive probing, as in `NWProtocolTCP.Options`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub retries: u32,
}

impl Default for Keepalive {
    /// Apple's defaults are the kernel's (2 h); these suit mobile paths better.
    fn default() -> Self {
        Keepalive { idle: Duration::from_secs(30), interval: Duration::from_secs(10), retries: 3 }
    }
}

/// Whether two optional shared values are the same one (trait objects and
/// key material have no useful `==`).
pub(crate) fn same_arc<T: ?Sized>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// The largest [`Parameters::recv_buffer_size`]: the kernel takes an `int`
/// and doubles it.
pub const MAX_RECV_BUFFER: usize = (i32::MAX / 2) as usize;

/// How to open a connection or a listener.
///
/// ```
/// use multipath::{Parameters, ServiceType};
/// use std::time::Duration;
///
/// let params = Parameters::tcp()
///     .multipath_service_type(ServiceType::Handover)
///     .nodelay(true)
///     .connect_timeout(Duration::from_secs(10));
/// assert_eq!(params.get_multipath_service_type(), ServiceType::Handover);
/// ```
#[derive(Clone, Debug)]
pub struct Parameters {
    service_type: ServiceType,
    require_multipath: bool,
    nodelay: bool,
    keepalive: Option<Keepalive>,
    local_address: Option<SocketAddr>,
    bind_device: Option<String>,
    connect_timeout: Option<Duration>,
    congestion_control: Option<String>,
    mark: Option<u32>,
    recv_buffer: Option<usize>,
    path_manager: Option<Arc<dyn Enforcer>>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsOptions>,
}

impl PartialEq for Parameters {
    fn eq(&self, other: &Self) -> bool {
        same_arc(&self.path_manager, &other.path_manager)
            && (self.service_type, self.require_multipath, self.nodelay, self.keepalive, self.local_address)
                == (other.service_type, other.require_multipath, other.nodelay, other.keepalive, other.local_address)
            && (&self.bind_device, self.connect_timeout, &self.congestion_control, self.mark, self.recv_buffer)
                == (&other.bind_device, other.connect_timeout, &other.congestion_control, other.mark, other.recv_buffer)
            && self.same_tls(other)
    }
}

impl Eq for Parameters {}

impl Parameters {
    /// TCP parameters with Apple's default service type for them, `none`;
    /// pick another with [`multipath_service_type`](Self::multipath_service_type).
    pub fn tcp() -> Self {
        Parameters {
            service_type: ServiceType::None,
            require_multipath: false,
            nodelay: false,
            keepalive: None,
            local_address: None,
            bind_device: None,
            connect_timeout: None,
            congestion_control: None,
            mark: None,
            recv_buffer: None,
            path_manager: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    #[cfg(feature = "tls")]
    fn same_tls(&self, other: &Self) -> bool {
        self.tls == other.tls
    }
    #[cfg(not(feature = "tls"))]
    fn same_tls(&self, _other: &Self) -> bool {
        true
    }

    /// TLS for [`TlsConnection`](crate::TlsConnection)s opened with these
    /// parameters, like `NWParameters.tls` (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: crate::tls::TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// The TLS options, if any were given.
    #[cfg(feature = "tls")]
    pub fn get_tls(&self) -> Option<&crate::tls::TlsOptions> {
        self.tls.as_ref()
    }

    /// The multipath service type connections from these parameters use.
    pub fn multipath_service_type(mut self, service_type: ServiceType) -> Self {
        self.service_type = service_type;
        self
    }

    /// Strict mode: fail with [`Error::MultipathUnavailable`](crate::Error::MultipathUnavailable)
    /// instead of falling back to TCP when this host has no MPTCP or the
    /// peer does not speak it. Ignored for [`ServiceType::None`].
    pub fn require_multipath(mut self, required: bool) -> Self {
        self.require_multipath = required;
        self
    }

    /// `TCP_NODELAY`: send small writes at once instead of coalescing them.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// TCP keepalive probes (`SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`,
    /// `TCP_KEEPCNT`); `None` leaves keepalive off.
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Bind to this local address (port 0 for any) before connecting. Pins
    /// the *initial* subflow; a path manager may still add subflows from
    /// other addresses. Listeners take their address from `bind` instead.
    pub fn local_address(mut self, addr: SocketAddr) -> Self {
        self.local_address = Some(addr);
        self
    }

    /// `SO_BINDTODEVICE`: keep the initial subflow on this interface.
    pub fn bind_device(mut self, device: impl Into<String>) -> Self {
        self.bind_device = Some(device.into());
        self
    }

    /// Give up connecting after this long: all addresses together for
    /// [`Connection`](crate::Connection), each address for
    /// [`blocking::Connection`](crate::blocking::Connection).
    /// `None` (the default) waits as long as the kernel does.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// `TCP_CONGESTION`, e.g. `"cubic"` or `"bbr"`. Without it a socket gets
    /// the namespace's default, except that an `interactive` or `aggregate`
    /// MPTCP socket gets cubic where the default is BBR (BBR paces MPTCP
    /// subflows at the rate the MPTCP layer happened to give them, not at
    /// what the path carries).
    pub fn congestion_control(mut self, name: impl Into<String>) -> Self {
        self.congestion_control = Some(name.into());
        self
    }

    /// `SO_MARK` (needs CAP_NET_ADMIN), for policy routing.
    pub fn mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }

    /// `SO_RCVBUF`: a fixed receive buffer of this many bytes instead of the
    /// kernel's autotuning. The kernel caps it at `net.core.rmem_max` and
    /// doubles it for its own overhead.
    ///
    /// Worth it for bulk MPTCP downloads that the application consumes more
    /// slowly than the network delivers (hashing, a slow disk): with
    /// autotuning the MPTCP receiver advertises more window than its buffer
    /// holds, drops what overflows and waits for retransmission timeouts.
    /// Measured on loopback (Linux 6.18), reading 1 GB while hashing it: 0.1
    /// to 2 Gbit/s with autotuning, 7 to 8 Gbit/s with a fixed 2 MB or more
    /// (plain TCP with autotuning: 7.4 to 8.2). On a shaped 200 Mbit/s lab
    /// path no collapse showed. A fixed buffer also caps the window, so keep
    /// it above the path's bandwidth-delay product.
    ///
    /// Applies to listeners' sockets too. From 1 to [`MAX_RECV_BUFFER`]
    /// bytes; anything else fails the connection with a socket error.
    /// `None` (the default) leaves the kernel's autotuning.
    pub fn recv_buffer_size(mut self, bytes: impl Into<Option<usize>>) -> Self {
        self.recv_buffer = bytes.into();
        self
    }

    /// Hand every MPTCP connection opened with these parameters to this
    /// path manager, which enforces the service type. If it refuses a
    /// connection, the connection still works, with the kernel's path
    /// manager, and its status says so (or, in strict mode, fails).
    pub fn path_manager(mut self, manager: Arc<dyn Enforcer>) -> Self {
        self.path_manager = Some(manager);
        self
    }

    // Getters: `get_` and the setter's name, as `std::process::Command`
    // does where a builder method holds the plain name.

    /// The service type ([`multipath_service_type`](Self::multipath_service_type)).
    pub fn get_multipath_service_type(&self) -> ServiceType {
        self.service_type
    }
    /// Whether strict mode is on ([`require_multipath`](Self::require_multipath)),
    /// and meaningful: never for `none`.
    pub fn get_require_multipath(&self) -> bool {
        self.require_multipath && self.service_type.is_multipath()
    }
    /// Whether `TCP_NODELAY` is set ([`nodelay`](Self::nodelay)).
    pub fn get_nodelay(&self) -> bool {
        self.nodelay
    }
    /// The keepalive settings ([`keepalive`](Self::keepalive)).
    pub fn get_keepalive(&self) -> Option<Keepalive> {
        self.keepalive
    }
    /// The local address to bind ([`local_address`](Self::local_address)).
    pub fn get_local_address(&self) -> Option<SocketAddr> {
        self.local_address
    }
    /// The device to bind ([`bind_device`](Self::bind_device)).
    pub fn get_bind_device(&self) -> Option<&str> {
        self.bind_device.as_deref()
    }
    /// The connect timeout ([`connect_timeout`](Self::connect_timeout)).
    pub fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
    /// The congestion-control algorithm ([`congestion_control`](Self::congestion_control)).
    pub fn get_congestion_control(&self) -> Option<&str> {
        self.congestion_control.as_deref()
    }
    /// The socket mark ([`mark`](Self::mark)).
    pub fn get_mark(&self) -> Option<u32> {
        self.mark
    }
    /// The fixed receive buffer, if one was asked for
    /// ([`recv_buffer_size`](Self::recv_buffer_size)).
    pub fn get_recv_buffer_size(&self) -> Option<usize> {
        self.recv_buffer
    }
    /// The path manager connections are handed to
    /// ([`path_manager`](Self::path_manager)).
    pub fn get_path_manager(&self) -> Option<&Arc<dyn Enforcer>> {
        self.path_manager.as_ref()
    }
}

impl Default for Parameters {
    fn default() -> Self {
        Parameters::tcp()
    }
}
