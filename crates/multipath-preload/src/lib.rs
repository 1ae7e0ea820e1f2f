//! `libmultipath_preload.so`: what `mptcp run --service T -- PROGRAM`
//! preloads into an unmodified, dynamically linked program.
//!
//! - `socket()`: an IPv4 or IPv6 TCP stream socket is made MPTCP (TCP
//!   where the kernel has MPTCP off, said once).
//! - `connect()`: once the kernel has the connection (`connect` returned 0
//!   or `EINPROGRESS`, when the token already exists), its socket is handed
//!   to the path-manager daemon with service type T, labelled `run`. The
//!   daemon checks who asks from what the kernel recorded about this very
//!   process, so `aggregate` follows the program's entitlement, not that of
//!   `mptcp`. Loopback destinations are not registered (no path to manage).
//! - `setsockopt()`: an option MPTCP refuses (`TCP_MD5SIG`, `IP_TTL`, ...)
//!   on a socket that has neither connected nor listened makes that socket
//!   plain TCP in place (same descriptor, flags, bound address and common
//!   options), and the option is set again; said once per program. After
//!   `connect` no transparent fallback exists: the program gets the error,
//!   as it would under `mptcpize`.
//! - `accept()`, `accept4()`, `shutdown()`, `close()`: a socket made MPTCP
//!   here, or accepted from one, sends a last segment shorter than the MSS
//!   as the program closes it or shuts down its write side. The kernel's
//!   MPTCP keeps Nagle's rule on at close (TCP lifts it), which held such a
//!   tail a round trip. TCP_NODELAY is set and, if the program had it off,
//!   cleared again at once; nothing else changes.
//!
//! Settings come from the environment at load, so children inherit them:
//! `MULTIPATH_RUN_SERVICE` (the service type; unset: the library does
//! nothing), `MULTIPATH_RUN_REGISTER=0` (convert only, no daemon), and
//! `MULTIPATH_PMD_SOCKET` (where the daemon listens, as for the library).
//! Messages go to the program's standard error, prefixed `multipath:`.
//!
//! Not covered: statically linked programs and Go (which makes its own
//! system calls; `mptcp run` sets `GODEBUG=multipathtcp=1` for Go 1.21+),
//! `sendto(MSG_FASTOPEN)` connections, and programs that clear their
//! environment before starting children.

// The hooks, the only users of much of the rest, are left out of unit tests.
#![cfg_attr(test, allow(dead_code))]

mod notice;
mod real;
mod settings;
mod sockets;

#[cfg(not(test))]
mod hooks;
