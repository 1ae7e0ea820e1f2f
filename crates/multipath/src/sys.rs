//! Every raw system call of the crate, each in one small function.
//!
//! Nothing else in the crate uses `unsafe`. The option numbers are those of
//! `include/uapi/linux/mptcp.h` and `tcp.h`, which the libc crate lacks.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::info::{self, FullInfo, FULL_INFO_HEADER_SIZE, MPTCP_INFO_SIZE, SUBFLOW_INFO_SIZE, TCP_INFO_SIZE};

/// `IPPROTO_MPTCP`.
pub(crate) const IPPROTO_MPTCP: i32 = 262;
/// `SOL_MPTCP`: the socket-option level of MPTCP.
pub(crate) const SOL_MPTCP: i32 = 284;
/// `MPTCP_INFO`: `struct mptcp_info`.
pub(crate) const MPTCP_INFO: i32 = 1;
/// `MPTCP_FULL_INFO`: `struct mptcp_full_info` with per-subflow arrays.
pub(crate) const MPTCP_FULL_INFO: i32 = 4;
/// `TCP_IS_MPTCP` at `SOL_TCP`: 1 while the socket really speaks MPTCP.
pub(crate) const TCP_IS_MPTCP: i32 = 43;

/// `getsockopt(2)` into `buf`; returns how many bytes the kernel wrote.
/// Refuses `MPTCP_FULL_INFO`, whose buffer holds pointers the kernel
/// writes through: that one goes through [`full_info`].
/// <https://man7.org/linux/man-pages/man2/getsockopt.2.html>
pub(crate) fn getsockopt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    if (level, name) == (SOL_MPTCP, MPTCP_FULL_INFO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "MPTCP_FULL_INFO only through sys::full_info"));
    }
    // SAFETY: for every option but MPTCP_FULL_INFO (refused above) the
    // kernel writes only into `buf`.
    unsafe { getsockopt_raw(fd, level, name, buf) }
}

/// The raw call.
///
/// # Safety
/// Besides `buf`, the kernel may write wherever the option's contents point
/// (`MPTCP_FULL_INFO`): the caller guarantees those pointers are valid.
unsafe fn getsockopt_raw(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `buf` is valid for writes of `len` bytes and `len` is a valid
    // in/out length; the kernel writes at most `len` bytes and updates it.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// `setsockopt(2)` of a plain-data value (an int, a filter bitmap).
/// <https://man7.org/linux/man-pages/man2/setsockopt.2.html>
pub(crate) fn setsockopt<T: Copy>(fd: &impl AsRawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live T of the size passed; the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An `int`-valued socket option.
pub(crate) fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut buf = [0u8; size_of::<i32>()];
    let n = getsockopt_bytes(fd, level, name, &mut buf)?;
    if n != buf.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("option {name} returned {n} bytes")));
    }
    Ok(i32::from_ne_bytes(buf))
}

/// `MPTCP_FULL_INFO`: the connection's `mptcp_info` plus every subflow's
/// addresses and `tcp_info`, in one consistent snapshot. Grows the arrays
/// and asks again when the connection has more subflows than room.
pub(crate) fn full_info(fd: BorrowedFd<'_>) -> io::Result<FullInfo> {
    let mut entries = 8usize;
    loop {
        let mut header = [0u8; FULL_INFO_HEADER_SIZE + MPTCP_INFO_SIZE];
        let mut subflow_infos = vec![0u8; entries * SUBFLOW_INFO_SIZE];
        let mut tcp_infos = vec![0u8; entries * TCP_INFO_SIZE];
        info::encode_full_info_request(
            &mut header,
            entries as u32,
            subflow_infos.as_mut_ptr() as u64,
            tcp_infos.as_mut_ptr() as u64,
        );
        // SAFETY: the kernel writes through the two array addresses in the
        // header, at most `entries` elements of the sizes we declared
        // (clamped to its own): exactly the two vectors above, which live
        // until after the call and are not otherwise borrowed during it.
        let n = unsafe { getsockopt_raw(fd, SOL_MPTCP, MPTCP_FULL_INFO, &mut header)? };
        let full = info::decode_full_info(&header[..n], &subflow_infos, &tcp_infos, entries)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if full.num_subflows <= entries || entries >= 1024 {
            return Ok(full);
        }
        entries = full.num_subflows.next_power_of_two();
    }
}

/// The interfaces of the calling thread's network namespace and their IP
/// addresses (`getifaddrs(3)`).
pub(crate) fn interface_addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success it owns a list that
    // is freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive
        // until freeifaddrs; its name is a NUL-terminated string and its
        // address, when not null, points at a sockaddr of the family it names.
        unsafe {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() {
                let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                        out.push((name, IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                        out.push((name, IpAddr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Sends `message` with one file descriptor attached (`SCM_RIGHTS`) on a
/// Unix socket. <https://man7.org/linux/man-pages/man7/unix.7.html>
pub(crate) fn send_with_fd(sock: BorrowedFd<'_>, message: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let space = cmsg_space(size_of::<i32>());
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: message.as_ptr() as *mut libc::c_void, iov_len: message.len() };
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds one cmsghdr with room for one int
    // (CMSG_SPACE above); CMSG_FIRSTHDR/CMSG_DATA point inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd.as_raw_fd());
    }
    // SAFETY: `msg` describes valid buffers (see above).
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}
