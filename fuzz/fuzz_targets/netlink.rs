//! Datagrams as the kernel's netlink sockets deliver them, decoded the way
//! the daemon decodes them (see `multipath_pm::fuzzing::netlink`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multipath_pm::fuzzing::netlink(data));
