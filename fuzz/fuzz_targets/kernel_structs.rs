//! `mptcp_info` and `tcp_info` as getsockopt and sock_diag return them, of
//! any length (older and newer kernels differ).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multipath_pm::fuzzing::kernel_structs(data));
