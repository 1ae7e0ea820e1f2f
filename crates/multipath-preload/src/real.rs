//! The C library's own `socket`, `connect`, `setsockopt`, `accept`,
//! `accept4`, `shutdown` and `close`, found behind ours with
//! `dlsym(RTLD_NEXT)`, and `errno`.
//!
//! The library's other system calls (the daemon client's Unix socket) go
//! through our wrappers too, which pass them on unchanged: they are
//! neither TCP nor IPv4/IPv6.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{c_int, c_void, sockaddr, socklen_t};

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type SetsockoptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type ShutdownFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;

static SOCKET: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static CONNECT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static SETSOCKOPT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static ACCEPT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static ACCEPT4: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static SHUTDOWN: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static CLOSE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The next definition of `name` after this library, cached in `slot`.
fn next(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let found = slot.load(Ordering::Acquire);
    if !found.is_null() {
        return found;
    }
    // SAFETY: RTLD_NEXT with a NUL-terminated name; dlsym only looks up.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    slot.store(found, Ordering::Release);
    found
}

/// Fails as a missing system call would: no C library behind us.
fn missing() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

/// `socket(2)`.
pub(crate) fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let f = next(&SOCKET, c"socket");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `socket`, of this signature; its
    // arguments are plain integers.
    unsafe { std::mem::transmute::<*mut c_void, SocketFn>(f)(domain, ty, protocol) }
}

/// `connect(2)`.
///
/// # Safety
/// `addr` is valid for `len` bytes (the program's own arguments).
pub(crate) unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let f = next(&CONNECT, c"connect");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `connect`; the caller vouches for
    // `addr`.
    unsafe { std::mem::transmute::<*mut c_void, ConnectFn>(f)(fd, addr, len) }
}

/// `setsockopt(2)`.
///
/// # Safety
/// `value` is valid for `len` bytes.
pub(crate) unsafe fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int {
    let f = next(&SETSOCKOPT, c"setsockopt");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `setsockopt`; the caller vouches for
    // `value`.
    unsafe { std::mem::transmute::<*mut c_void, SetsockoptFn>(f)(fd, level, name, value, len) }
}

/// `accept(2)`.
///
/// # Safety
/// `addr` and `len` are null or valid (the program's own arguments).
pub(crate) unsafe fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let f = next(&ACCEPT, c"accept");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `accept`; the caller vouches for the
    // pointers.
    unsafe { std::mem::transmute::<*mut c_void, AcceptFn>(f)(fd, addr, len) }
}

/// `accept4(2)`.
///
/// # Safety
/// `addr` and `len` are null or valid (the program's own arguments).
pub(crate) unsafe fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    let f = next(&ACCEPT4, c"accept4");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `accept4`; the caller vouches for the
    // pointers.
    unsafe { std::mem::transmute::<*mut c_void, Accept4Fn>(f)(fd, addr, len, flags) }
}

/// `shutdown(2)`.
pub(crate) fn shutdown(fd: c_int, how: c_int) -> c_int {
    let f = next(&SHUTDOWN, c"shutdown");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `shutdown`; plain integers.
    unsafe { std::mem::transmute::<*mut c_void, ShutdownFn>(f)(fd, how) }
}

/// `close(2)`.
pub(crate) fn close(fd: c_int) -> c_int {
    let f = next(&CLOSE, c"close");
    if f.is_null() {
        return missing();
    }
    // SAFETY: `f` is the C library's `close`; a plain integer.
    unsafe { std::mem::transmute::<*mut c_void, CloseFn>(f)(fd) }
}

/// The calling thread's `errno`.
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location always returns the thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub(crate) fn set_errno(value: c_int) {
    // SAFETY: as above; the slot is the thread's own.
    unsafe { *libc::__errno_location() = value };
}
