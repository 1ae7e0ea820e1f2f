//! Turning segmentation offloads off, so shapers see real packets.
//!
//! With GSO/TSO a veth hands the qdisc 64 KB super-packets and `tbf`
//! shapes in bursts; the facts page asks for offloads off on lab links.
//! This is `ethtool -K DEV gso off tso off gro off` without needing the
//! ethtool program.

use std::io;
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// Turns TSO, GSO and GRO off on `dev` in the calling thread's namespace.
pub(crate) fn disable_offloads(dev: &str) -> io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    for cmd in [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO] {
        set(&sock, dev, cmd, 0)?;
    }
    Ok(())
}

fn set(sock: &Socket, dev: &str, cmd: u32, data: u32) -> io::Result<()> {
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {dev:?} too long")));
    }
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: &mut value, _pad: [0; 16] };
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: SIOCETHTOOL reads an ifreq whose data pointer points at an
    // ethtool_value that lives across the call; the name is NUL-terminated.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("ethtool {dev} cmd {cmd:#x}: {e}")));
    }
    Ok(())
}
