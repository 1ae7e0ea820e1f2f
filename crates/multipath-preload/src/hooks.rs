//! The exported symbols that take the C library's place, and the
//! constructor that reads the settings. Left out of unit tests: a test
//! binary exporting `socket` would take it over for the test harness.

use libc::{c_int, c_void, sockaddr, socklen_t};

use crate::notice::{self, Notice};
use crate::real::{self, errno, set_errno};
use crate::{settings, sockets};

/// Runs when the dynamic loader maps the library, before the program's
/// `main` and before it can start threads.
#[used]
#[link_section = ".init_array"]
static READ_SETTINGS: extern "C" fn() = read_settings;

extern "C" fn read_settings() {
    let var = |name: &std::ffi::CStr| {
        // SAFETY: a NUL-terminated name; the value (if any) is a
        // NUL-terminated string that lives while the environment does, and
        // is copied at once.
        let value = unsafe { libc::getenv(name.as_ptr()) };
        // SAFETY: getenv returns null or a valid C string.
        (!value.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes().to_vec())
    };
    match settings::parse(var(c"MULTIPATH_RUN_SERVICE").as_deref(), var(c"MULTIPATH_RUN_REGISTER").as_deref()) {
        Ok(Some(s)) => settings::install(s),
        Ok(None) => {}
        Err(e) => {
            notice::once(Notice::BadSettings, || format!("{e}; this program runs with plain TCP"));
            // Said by this process only, not by every child it starts.
            // SAFETY: no other thread exists yet (the loader runs us before
            // `main`); the name is NUL-terminated.
            unsafe { libc::unsetenv(c"MULTIPATH_RUN_SERVICE".as_ptr()) };
        }
    }
}

/// `socket(2)`: IPv4/IPv6 TCP streams become MPTCP.
///
/// # Safety
/// As the C library's `socket`.
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    if !settings::converts() || !sockets::is_tcp_stream(domain, ty, protocol) {
        let fd = real::socket(domain, ty, protocol);
        sockets::mark_multipath(fd, false);
        return fd;
    }
    let fd = real::socket(domain, ty, sockets::IPPROTO_MPTCP);
    if fd >= 0 {
        sockets::mark_connected(fd, false);
        sockets::mark_multipath(fd, true);
        return fd;
    }
    match errno() {
        // MPTCP off (net.mptcp.enabled = 0) or not built in: TCP, as the
        // program asked.
        libc::ENOPROTOOPT | libc::EPROTONOSUPPORT | libc::EINVAL => {
            let e = errno();
            notice::once(Notice::NoMptcp, || {
                format!(
                    "the kernel refuses MPTCP sockets ({}); this program's connections use plain TCP",
                    std::io::Error::from_raw_os_error(e)
                )
            });
            let fd = real::socket(domain, ty, protocol);
            sockets::mark_multipath(fd, false);
            fd
        }
        // Out of descriptors or memory: the program's own error.
        _ => fd,
    }
}

/// `connect(2)`: the connection goes to the daemon once the kernel has it.
///
/// # Safety
/// As the C library's `connect`: `addr` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's address, of the caller's length.
    let to = if settings::registers() { unsafe { sockets::destination(addr, len) } } else { None };
    if to.is_some() {
        sockets::mark_connected(fd, true);
    }
    // SAFETY: the caller's arguments, passed on.
    let rc = unsafe { real::connect(fd, addr, len) };
    let saved = errno();
    if let Some(to) = to.filter(|_| rc == 0 || saved == libc::EINPROGRESS) {
        sockets::register(fd, to);
        set_errno(saved);
    }
    rc
}

/// `accept(2)`: a connection accepted from an MPTCP listener of ours is
/// ours too (its last segment is pushed at close).
///
/// # Safety
/// As the C library's `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let accepted = unsafe { real::accept(fd, addr, len) };
    sockets::mark_multipath(accepted, sockets::is_marked_multipath(fd));
    accepted
}

/// `accept4(2)`: as `accept`.
///
/// # Safety
/// As the C library's `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let accepted = unsafe { real::accept4(fd, addr, len, flags) };
    sockets::mark_multipath(accepted, sockets::is_marked_multipath(fd));
    accepted
}

/// `shutdown(2)`: shutting down the write side of an MPTCP socket of ours
/// sends its last segment at once.
///
/// # Safety
/// As the C library's `shutdown`.
#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if how != libc::SHUT_RD {
        sockets::push_last_segment(fd);
    }
    real::shutdown(fd, how)
}

/// `close(2)`: an MPTCP socket of ours sends its last segment at once.
///
/// # Safety
/// As the C library's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if sockets::is_marked_multipath(fd) {
        sockets::push_last_segment(fd);
        // Before the number can be reused by another thread's socket.
        sockets::mark_multipath(fd, false);
    }
    real::close(fd)
}

/// `setsockopt(2)`: an option MPTCP refuses makes an unconnected socket
/// TCP, and is set again.
///
/// # Safety
/// As the C library's `setsockopt`: `value` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let rc = unsafe { real::setsockopt(fd, level, name, value, len) };
    if rc == 0 || !settings::converts() {
        return rc;
    }
    let refused = errno();
    if !matches!(refused, libc::ENOPROTOOPT | libc::EOPNOTSUPP) || !sockets::is_mptcp(fd) {
        set_errno(refused);
        return rc;
    }
    if !sockets::fall_back(fd) {
        notice::once(Notice::RefusedLate, || {
            format!(
                "{} is refused on an MPTCP socket that has connected or listens ({}); the program sees the \
                 error (said once)",
                option_name(level, name),
                std::io::Error::from_raw_os_error(refused)
            )
        });
        set_errno(refused);
        return rc;
    }
    notice::once(Notice::FellBack, || {
        format!(
            "{} is refused on MPTCP sockets; such a socket falls back to plain TCP (said once)",
            option_name(level, name)
        )
    });
    // SAFETY: as above, now on the TCP socket.
    unsafe { real::setsockopt(fd, level, name, value, len) }
}

/// The C name of an option MPTCP may refuse, for the message.
fn option_name(level: c_int, name: c_int) -> String {
    let known = match (level, name) {
        (libc::IPPROTO_TCP, libc::TCP_MD5SIG) => "TCP_MD5SIG",
        (libc::IPPROTO_TCP, libc::TCP_MD5SIG_EXT) => "TCP_MD5SIG_EXT",
        (libc::IPPROTO_TCP, libc::TCP_ULP) => "TCP_ULP (kTLS)",
        (libc::IPPROTO_TCP, libc::TCP_REPAIR) => "TCP_REPAIR",
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => "TCP_USER_TIMEOUT",
        (libc::IPPROTO_TCP, libc::TCP_SYNCNT) => "TCP_SYNCNT",
        (libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP) => "TCP_WINDOW_CLAMP",
        (libc::IPPROTO_TCP, libc::TCP_QUICKACK) => "TCP_QUICKACK",
        (libc::IPPROTO_IP, libc::IP_TTL) => "IP_TTL",
        (libc::IPPROTO_IP, libc::IP_RECVERR) => "IP_RECVERR",
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) => "IP_MTU_DISCOVER",
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => "IPV6_TCLASS",
        (libc::SOL_SOCKET, libc::SO_ZEROCOPY) => "SO_ZEROCOPY",
        _ => return format!("socket option {name} at level {level}"),
    };
    known.to_owned()
}
