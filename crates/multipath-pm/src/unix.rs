//! The daemon's Unix-socket system calls, each one small function: what a
//! client sent (its descriptors and, as the kernel recorded them, its
//! credentials), who connected, and which network namespace a socket
//! belongs to.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process that connected.
const SO_PEERPIDFD: i32 = 77;

/// A process's credentials as the kernel recorded them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Process id (in the receiver's pid namespace).
    pub pid: i32,
    /// User id.
    pub uid: u32,
}

/// What [`recv_with_fds`] got.
pub(crate) struct Received {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
    /// The sender at the time it sent (`SCM_CREDENTIALS`; needs
    /// `SO_PASSCRED` on the receiving socket).
    pub sender: Option<Credentials>,
    /// The message was longer than the buffer.
    pub truncated: bool,
    /// More descriptors came than there was room for (closed by the kernel).
    pub fds_truncated: bool,
}

/// `recvmsg(2)` of one message, without waiting, with the descriptors
/// attached to it (room for 4; every one received is owned, so none leaks)
/// and the sender's credentials.
pub(crate) fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    const ROOM: usize = 4;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe {
        libc::CMSG_SPACE((ROOM * std::mem::size_of::<i32>()) as u32)
            + libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32)
    } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: plain data; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` describes valid buffers.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let (mut fds, mut sender) = (Vec::new(), None);
    // SAFETY: the kernel filled `control` with well-formed cmsghdrs up to
    // msg_controllen; CMSG_NXTHDR stops at its end. Each SCM_RIGHTS
    // payload is an array of ints, each a new descriptor we now own; an
    // SCM_CREDENTIALS payload is one ucred.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..len / std::mem::size_of::<i32>() {
                        let raw = std::ptr::read_unaligned(data.cast::<i32>().add(i));
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if len >= std::mem::size_of::<libc::ucred>() => {
                    let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    sender = Some(Credentials { pid: cred.pid, uid: cred.uid });
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        len: n as usize,
        fds,
        sender,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Asks the kernel to attach each sender's credentials to what `sock`
/// receives (`SO_PASSCRED`).
pub(crate) fn pass_credentials(sock: BorrowedFd<'_>) -> io::Result<()> {
    let on: i32 = 1;
    // SAFETY: `on` is a live int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process that connected to `sock`, as the kernel recorded it at
/// `connect` (`SO_PEERCRED`).
pub(crate) fn peer_credentials(sock: BorrowedFd<'_>) -> io::Result<Credentials> {
    // SAFETY: ucred is plain data, filled by the kernel up to `len`.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is valid for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Credentials { pid: cred.pid, uid: cred.uid })
}

/// A pidfd of the process that connected to `sock` (`SO_PEERPIDFD`);
/// `None` on kernels before 6.5.
pub(crate) fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut fd: i32 = -1;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `fd` is valid for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, SO_PEERPIDFD, (&mut fd as *mut i32).cast(), &mut len)
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOPROTOOPT) { Ok(None) } else { Err(e) };
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the process behind `pidfd` is still running (not reaped, so its
/// pid still names it): `pidfd_send_signal(pidfd, 0)`.
pub(crate) fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 only checks; null info and zero flags are valid.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), 0, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    rc == 0
}

/// The cookie of the network namespace `sock` belongs to
/// (`SO_NETNS_COOKIE`, Linux 5.14): never reused while the host runs.
pub(crate) fn netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    const SO_NETNS_COOKIE: i32 = 71;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is valid for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}
