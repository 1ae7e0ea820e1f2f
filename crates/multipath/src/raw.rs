//! Telemetry of any MPTCP socket given as a file descriptor, for path
//! managers that hold sockets they did not open (a descriptor passed by
//! another process, a `dup` of an application's connection).

use std::io;
use std::os::fd::BorrowedFd;

use crate::info::{MptcpInfo, SubflowInfo, MPTCP_INFO_SIZE};
use crate::{sys, Error, Result, Transport};

/// `MPTCP_INFO` of the socket behind `fd`; [`Error::NotMultipath`] if it
/// is not an MPTCP socket speaking MPTCP with its peer.
pub fn mptcp_info(fd: BorrowedFd<'_>) -> Result<MptcpInfo> {
    let mut buf = [0u8; MPTCP_INFO_SIZE];
    match sys::getsockopt_bytes(fd, sys::SOL_MPTCP, sys::MPTCP_INFO, &mut buf) {
        Ok(n) => Ok(MptcpInfo::decode(&buf[..n])?),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => {
            Err(Error::NotMultipath(Transport::FellBackToTcp))
        }
        Err(e) => Err(e.into()),
    }
}

/// The subflows of the MPTCP socket behind `fd` (`MPTCP_FULL_INFO`),
/// without interface names (a path manager knows its interfaces).
pub fn subflows(fd: BorrowedFd<'_>) -> Result<Vec<SubflowInfo>> {
    full_info(fd).map(|(_, subflows)| subflows)
}

/// Names each subflow's interface from its local address (the calling
/// thread's network namespace's interfaces, read at most once a second).
pub fn name_interfaces(subflows: &mut [SubflowInfo]) {
    crate::socket::name_interfaces(subflows)
}

/// `MPTCP_INFO` and the subflows together, from one `MPTCP_FULL_INFO` call.
pub fn full_info(fd: BorrowedFd<'_>) -> Result<(MptcpInfo, Vec<SubflowInfo>)> {
    match sys::full_info(fd) {
        Ok(full) => Ok((full.mptcp, full.subflows)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => {
            Err(Error::NotMultipath(Transport::FellBackToTcp))
        }
        Err(e) => Err(Error::Io(io::Error::new(e.kind(), format!("MPTCP_FULL_INFO: {e}")))),
    }
}

/// Whether the socket behind `fd` is an MPTCP socket (`SO_PROTOCOL`),
/// whatever its state.
pub fn is_mptcp_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(crate::socket::socket_protocol(fd)? == sys::IPPROTO_MPTCP)
}
