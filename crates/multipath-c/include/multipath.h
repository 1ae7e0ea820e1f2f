/* libmultipath_c: Apple-style multipath service types for MPTCP sockets on Linux.
 * Generated from crates/multipath-c/src/lib.rs by cbindgen; do not edit.
 * Link with -lmultipath_c. Every function returns -1 (or NULL) on failure,
 * sets errno, and leaves a message for multipath_last_error(). */

#ifndef MULTIPATH_H
#define MULTIPATH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

// The version of this ABI; the soname is `libmultipath_c.so.<version>`.
#define MULTIPATH_ABI_VERSION 1

// No multipath: plain TCP.
#define MULTIPATH_SERVICE_NONE 0

// One path at a time, another when it fails, back when it returns.
#define MULTIPATH_SERVICE_HANDOVER 1

// The path with the lowest delay.
#define MULTIPATH_SERVICE_INTERACTIVE 2

// Every path at once (needs an entitlement from the daemon).
#define MULTIPATH_SERVICE_AGGREGATE 3

// A connection's multipath status ([`multipath_get_status`]).
struct multipath_status {
  // Set by the caller to `sizeof(struct multipath_status)`.
  uint32_t size;
  // 1 while the connection speaks MPTCP; 0 for TCP (never MPTCP, or
  // fallen back, such as through a middlebox that strips its options).
  int32_t multipath;
  // The connection's token (0 for TCP): how `mptcp ls` and the kernel
  // name it.
  uint32_t token;
  // Subflows open or opening.
  uint32_t subflows;
};

// One subflow ([`multipath_get_subflows`]).
struct multipath_subflow {
  // Local address and port (`sockaddr_in` or `sockaddr_in6`).
  struct sockaddr_storage local;
  // Remote address and port.
  struct sockaddr_storage remote;
  // The local interface's name, NUL-terminated (empty if unknown).
  char interface[16];
  // Smoothed round-trip time, microseconds.
  uint32_t rtt_us;
  // TCP state (`TCP_ESTABLISHED` = 1, ... as in `netinet/tcp.h`).
  uint8_t state;
};

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The ABI version this library implements ([`MULTIPATH_ABI_VERSION`]).
uint32_t multipath_abi_version(void);

// The message of this thread's last failure, NUL-terminated; valid until
// this thread's next call into the library. Never null.
const char *multipath_last_error(void);

// A new stream socket of `family` (`AF_INET` or `AF_INET6`) for
// `service`: MPTCP, or TCP for `MULTIPATH_SERVICE_NONE` and where the
// kernel refuses MPTCP (its status then says so). Close-on-exec. Returns
// the descriptor, or -1.
int multipath_socket(int family, int service_type);

// Hands the connection behind `fd` to the path-manager daemon with
// `service`. Call it once `connect` has returned 0 or failed with
// `EINPROGRESS`. The daemon checks who asks from the calling process's
// credentials (aggregate needs an entitlement). 0, or -1: `EPERM` when
// the daemon refused, `ENOENT` when no daemon runs in this network
// namespace, `ENOTSOCK`/`EPROTONOSUPPORT` for a descriptor that is not an
// MPTCP socket.
int multipath_set_service(int fd, int service_type);

// Fills `*status` (whose `size` the caller set) for the connection
// behind `fd`. 0, or -1.
//
// # Safety
// `status` points to a writable `struct multipath_status` of at least
// `status->size` bytes.
int multipath_get_status(int fd, struct multipath_status *status);

// Writes up to `capacity` subflows of the connection behind `fd` to
// `subflows`; returns how many it has (which may be more than
// `capacity`: call again with room for all), 0 for a TCP connection, or
// -1.
//
// # Safety
// `subflows` points to `capacity` writable `struct multipath_subflow`
// (or is null with `capacity` 0).
int multipath_get_subflows(int fd, struct multipath_subflow *subflows, size_t capacity);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* MULTIPATH_H */
