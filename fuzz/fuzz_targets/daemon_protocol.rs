//! The daemon's socket protocol, both directions: any bytes decode to a
//! message or an error, and what decodes round-trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multipath_pm::fuzzing::daemon_protocol(data));
