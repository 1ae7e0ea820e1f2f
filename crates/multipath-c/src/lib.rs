//! The C API of `multipath`: `libmultipath_c.so` and `include/multipath.h`
//! (generated from this file by cbindgen; a test keeps them equal).
//!
//! The counterpart of Network.framework's
//! `nw_parameters_set_multipath_service`, for any language with a C
//! foreign-function interface:
//!
//! ```c
//! int fd = multipath_socket(AF_INET6, MULTIPATH_SERVICE_HANDOVER);
//! connect(fd, ...);                       /* 0, or -1 with EINPROGRESS */
//! multipath_set_service(fd, MULTIPATH_SERVICE_HANDOVER);
//! struct multipath_status st = { .size = sizeof st };
//! multipath_get_status(fd, &st);
//! ```
//!
//! Every function returns -1 (or a null pointer) on failure, sets `errno`,
//! and leaves a message for [`multipath_last_error`]. Nothing here keeps a
//! descriptor or blocks for long: registering asks the path-manager daemon
//! (`mptcp pmd`) of the caller's network namespace and waits at most a
//! couple of seconds for its answer.
//!
//! ABI: version [`MULTIPATH_ABI_VERSION`] (the soname's number). Structs
//! begin with their `size`, set by the caller; later versions only append
//! fields, and fill only as many bytes as the caller said it has.

#![allow(clippy::missing_safety_doc)] // each function's doc says what it needs

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};

use multipath::daemon_client::Daemon;
use multipath::ServiceType;

/// The version of this ABI; the soname is `libmultipath_c.so.<version>`.
pub const MULTIPATH_ABI_VERSION: u32 = 1;

/// No multipath: plain TCP.
pub const MULTIPATH_SERVICE_NONE: c_int = 0;
/// One path at a time, another when it fails, back when it returns.
pub const MULTIPATH_SERVICE_HANDOVER: c_int = 1;
/// The path with the lowest delay.
pub const MULTIPATH_SERVICE_INTERACTIVE: c_int = 2;
/// Every path at once (needs an entitlement from the daemon).
pub const MULTIPATH_SERVICE_AGGREGATE: c_int = 3;

/// A connection's multipath status ([`multipath_get_status`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct multipath_status {
    /// Set by the caller to `sizeof(struct multipath_status)`.
    pub size: u32,
    /// 1 while the connection speaks MPTCP; 0 for TCP (never MPTCP, or
    /// fallen back, such as through a middlebox that strips its options).
    pub multipath: i32,
    /// The connection's token (0 for TCP): how `mptcp ls` and the kernel
    /// name it.
    pub token: u32,
    /// Subflows open or opening.
    pub subflows: u32,
}

/// One subflow ([`multipath_get_subflows`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct multipath_subflow {
    /// Local address and port (`sockaddr_in` or `sockaddr_in6`).
    pub local: libc::sockaddr_storage,
    /// Remote address and port.
    pub remote: libc::sockaddr_storage,
    /// The local interface's name, NUL-terminated (empty if unknown).
    pub interface: [c_char; 16],
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// TCP state (`TCP_ESTABLISHED` = 1, ... as in `netinet/tcp.h`).
    pub state: u8,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` for [`multipath_last_error`], sets `errno`, returns -1.
fn fail(errno: c_int, message: impl Into<String>) -> c_int {
    let text = message.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(text).unwrap_or_default());
    // SAFETY: the calling thread's errno slot.
    unsafe { *libc::__errno_location() = errno };
    -1
}

fn fail_io(e: &std::io::Error) -> c_int {
    fail(e.raw_os_error().unwrap_or(libc::EIO), e.to_string())
}

fn service(value: c_int) -> Result<ServiceType, c_int> {
    usize::try_from(value)
        .ok()
        .and_then(|i| ServiceType::ALL.get(i).copied())
        .ok_or_else(|| fail(libc::EINVAL, format!("{value} is not a service type (0 to 3)")))
}

/// The descriptor as a borrowed one, refusing negative numbers.
fn borrowed(fd: c_int) -> Result<BorrowedFd<'static>, c_int> {
    if fd < 0 {
        return Err(fail(libc::EBADF, format!("{fd} is not a descriptor")));
    }
    // SAFETY: the caller owns `fd` for the length of the call (the
    // documented contract of every function taking one).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The ABI version this library implements ([`MULTIPATH_ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn multipath_abi_version() -> u32 {
    MULTIPATH_ABI_VERSION
}

/// The message of this thread's last failure, NUL-terminated; valid until
/// this thread's next call into the library. Never null.
#[no_mangle]
pub extern "C" fn multipath_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A new stream socket of `family` (`AF_INET` or `AF_INET6`) for
/// `service`: MPTCP, or TCP for `MULTIPATH_SERVICE_NONE` and where the
/// kernel refuses MPTCP (its status then says so). Close-on-exec. Returns
/// the descriptor, or -1.
#[no_mangle]
pub extern "C" fn multipath_socket(family: c_int, service_type: c_int) -> c_int {
    let Ok(service) = service(service_type) else { return -1 };
    if !matches!(family, libc::AF_INET | libc::AF_INET6) {
        return fail(libc::EAFNOSUPPORT, format!("family {family} is neither AF_INET nor AF_INET6"));
    }
    let domain = socket2::Domain::from(family);
    let mptcp = (service != ServiceType::None)
        .then(|| socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::MPTCP)));
    let socket = match mptcp {
        Some(Ok(s)) => Ok(s),
        // MPTCP off or absent: TCP, as the library does.
        Some(Err(e)) if matches!(e.raw_os_error(), Some(libc::ENOPROTOOPT | libc::EPROTONOSUPPORT | libc::EINVAL)) => {
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        }
        Some(Err(e)) => Err(e),
        None => socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP)),
    };
    match socket {
        Ok(s) => OwnedFd::from(s).into_raw_fd(),
        Err(e) => fail_io(&e),
    }
}

/// Hands the connection behind `fd` to the path-manager daemon with
/// `service`. Call it once `connect` has returned 0 or failed with
/// `EINPROGRESS`. The daemon checks who asks from the calling process's
/// credentials (aggregate needs an entitlement). 0, or -1: `EPERM` when
/// the daemon refused, `ENOENT` when no daemon runs in this network
/// namespace, `ENOTSOCK`/`EPROTONOSUPPORT` for a descriptor that is not an
/// MPTCP socket.
#[no_mangle]
pub extern "C" fn multipath_set_service(fd: c_int, service_type: c_int) -> c_int {
    let (Ok(fd), Ok(service)) = (borrowed(fd), service(service_type)) else { return -1 };
    match multipath::raw::is_mptcp_socket(fd) {
        Ok(true) => {}
        Ok(false) => return fail(libc::EPROTONOSUPPORT, "not an MPTCP socket (see multipath_socket)"),
        Err(e) => return fail_io(&e),
    }
    match Daemon::discover().register(fd, service) {
        Ok(_) => 0,
        Err(e) => {
            let errno = match e.kind() {
                std::io::ErrorKind::PermissionDenied => libc::EPERM,
                std::io::ErrorKind::NotFound => libc::ENOENT,
                std::io::ErrorKind::TimedOut => libc::ETIMEDOUT,
                _ => e.raw_os_error().unwrap_or(libc::EIO),
            };
            fail(errno, e.to_string())
        }
    }
}

/// Fills `*status` (whose `size` the caller set) for the connection
/// behind `fd`. 0, or -1.
///
/// # Safety
/// `status` points to a writable `struct multipath_status` of at least
/// `status->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn multipath_get_status(fd: c_int, status: *mut multipath_status) -> c_int {
    let Ok(fd) = borrowed(fd) else { return -1 };
    if status.is_null() {
        return fail(libc::EINVAL, "status is null");
    }
    // SAFETY: the caller's struct; its first field is its size.
    let size = unsafe { (*status).size } as usize;
    if size < std::mem::size_of::<multipath_status>() {
        return fail(libc::EINVAL, format!("status.size {size} is smaller than this ABI's struct"));
    }
    let mut out = multipath_status { size: std::mem::size_of::<multipath_status>() as u32, ..Default::default() };
    if let Ok((info, subflows)) = multipath::raw::full_info(fd) {
        out.multipath = 1;
        out.token = info.token;
        out.subflows = subflows.iter().filter(|s| s.is_open()).count() as u32;
    } else if !is_socket(fd) {
        return fail(libc::ENOTSOCK, "not a socket");
    }
    // SAFETY: the caller vouched for at least `size` >= our struct's bytes.
    unsafe { status.write(out) };
    0
}

fn is_socket(fd: BorrowedFd<'_>) -> bool {
    multipath::socket_protocol(fd).is_ok()
}

/// Writes up to `capacity` subflows of the connection behind `fd` to
/// `subflows`; returns how many it has (which may be more than
/// `capacity`: call again with room for all), 0 for a TCP connection, or
/// -1.
///
/// # Safety
/// `subflows` points to `capacity` writable `struct multipath_subflow`
/// (or is null with `capacity` 0).
#[no_mangle]
pub unsafe extern "C" fn multipath_get_subflows(fd: c_int, subflows: *mut multipath_subflow, capacity: usize) -> c_int {
    let Ok(fd) = borrowed(fd) else { return -1 };
    if subflows.is_null() && capacity > 0 {
        return fail(libc::EINVAL, "subflows is null");
    }
    let mut list = match multipath::raw::subflows(fd) {
        Ok(list) => list,
        Err(_) if is_socket(fd) => return 0, // TCP: no subflows
        Err(_) => return fail(libc::ENOTSOCK, "not a socket"),
    };
    multipath::raw::name_interfaces(&mut list);
    for (i, s) in list.iter().take(capacity).enumerate() {
        let mut interface = [0 as c_char; 16];
        for (d, b) in interface.iter_mut().zip(s.interface.as_deref().unwrap_or("").bytes().take(15)) {
            *d = b as c_char;
        }
        let entry = multipath_subflow {
            local: sockaddr(s.local),
            remote: sockaddr(s.remote),
            interface,
            rtt_us: s.tcp.rtt_us,
            state: s.tcp.state.kernel_number(),
        };
        // SAFETY: i < capacity, within the caller's array.
        unsafe { subflows.add(i).write(entry) };
    }
    c_int::try_from(list.len()).unwrap_or(c_int::MAX)
}

fn sockaddr(addr: std::net::SocketAddr) -> libc::sockaddr_storage {
    let s = socket2::SockAddr::from(addr);
    // SAFETY: plain data; all zeroes is valid.
    let mut out: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = (s.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copying `len` bytes of one sockaddr into a larger one.
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr().cast::<u8>(), (&raw mut out).cast::<u8>(), len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::os::fd::{AsFd, FromRawFd};

    fn last_error() -> String {
        // SAFETY: never null, NUL-terminated.
        unsafe { CStr::from_ptr(multipath_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn bad_arguments_fail_with_errno_and_a_message() {
        assert_eq!(multipath_socket(libc::AF_INET, 9), -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINVAL));
        assert!(last_error().contains("not a service type"), "{}", last_error());
        assert_eq!(multipath_socket(libc::AF_UNIX, MULTIPATH_SERVICE_HANDOVER), -1);
        assert!(last_error().contains("AF_INET"));
        assert_eq!(multipath_set_service(-1, MULTIPATH_SERVICE_HANDOVER), -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EBADF));
        let mut small = multipath_status { size: 4, ..Default::default() };
        // SAFETY: a live struct.
        assert_eq!(unsafe { multipath_get_status(0, &mut small) }, -1);
        assert!(last_error().contains("size"));
        assert_eq!(multipath_abi_version(), MULTIPATH_ABI_VERSION);
    }

    #[test]
    fn a_tcp_socket_is_not_multipath_and_cannot_be_registered() {
        let fd = multipath_socket(libc::AF_INET, MULTIPATH_SERVICE_NONE);
        assert!(fd >= 0);
        // SAFETY: ours, closed at the end of the test.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        assert_eq!(multipath_set_service(fd, MULTIPATH_SERVICE_HANDOVER), -1);
        assert!(last_error().contains("not an MPTCP socket"));
        let mut st = multipath_status { size: std::mem::size_of::<multipath_status>() as u32, ..Default::default() };
        // SAFETY: a live struct of its size.
        assert_eq!(unsafe { multipath_get_status(fd, &mut st) }, 0);
        assert_eq!((st.multipath, st.token), (0, 0));
        // SAFETY: capacity 0, null allowed.
        assert_eq!(unsafe { multipath_get_subflows(owned.as_fd().as_raw_fd_(), std::ptr::null_mut(), 0) }, 0);
    }

    trait Raw {
        fn as_raw_fd_(&self) -> c_int;
    }
    impl Raw for BorrowedFd<'_> {
        fn as_raw_fd_(&self) -> c_int {
            std::os::fd::AsRawFd::as_raw_fd(self)
        }
    }

    /// The header cbindgen makes of this crate is the one shipped.
    #[test]
    fn the_header_is_generated_from_this_source() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
        let mut generated = Vec::new();
        cbindgen::Builder::new()
            .with_crate(dir)
            .with_config(config)
            .generate()
            .expect("cbindgen reads the crate")
            .write(&mut generated);
        let path = format!("{dir}/include/multipath.h");
        if std::env::var_os("MULTIPATH_WRITE_HEADER").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let shipped = std::fs::read(&path).unwrap_or_default();
        assert!(
            shipped == generated,
            "{path} is out of date: regenerate it with MULTIPATH_WRITE_HEADER=1 cargo test -p multipath-c"
        );
    }
}
