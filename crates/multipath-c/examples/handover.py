"""A Python program asking for handover on its own connection through the
C API (ctypes), as an iOS app would with nw_parameters_set_multipath_service:

    python3 handover.py LIBMULTIPATH_C SERVER_ADDRESS PORT

It downloads 1 MB, prints its status and subflows, says "ready", and keeps
the connection open until its standard input closes."""
import ctypes
import ctypes.util
import socket
import sys
import time

MULTIPATH_SERVICE_HANDOVER = 1


class Status(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("multipath", ctypes.c_int32),
                ("token", ctypes.c_uint32), ("subflows", ctypes.c_uint32)]


class Subflow(ctypes.Structure):
    _fields_ = [("local", ctypes.c_byte * 128), ("remote", ctypes.c_byte * 128),
                ("interface", ctypes.c_char * 16), ("rtt_us", ctypes.c_uint32),
                ("state", ctypes.c_uint8)]


lib = ctypes.CDLL(sys.argv[1], use_errno=True)
lib.multipath_last_error.restype = ctypes.c_char_p
lib.multipath_get_subflows.argtypes = [ctypes.c_int, ctypes.POINTER(Subflow), ctypes.c_size_t]


def check(rc, what):
    if rc < 0:
        sys.exit(f"{what}: {lib.multipath_last_error().decode()} (errno {ctypes.get_errno()})")
    return rc


host, port = sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
fd = check(lib.multipath_socket(family, MULTIPATH_SERVICE_HANDOVER), "multipath_socket")
sock = socket.socket(fileno=fd)
sock.connect((host, port))
check(lib.multipath_set_service(sock.fileno(), MULTIPATH_SERVICE_HANDOVER), "multipath_set_service")
sock.sendall(b"GET /files/1M HTTP/1.1\r\nHost: example\r\n\r\n")
got = 0
while got < 1_000_000:
    chunk = sock.recv(65536)
    if not chunk:
        sys.exit("the server closed early")
    got += len(chunk)
status = Status(size=ctypes.sizeof(Status))
for _ in range(100):  # handover keeps a backup subflow ready: wait for it
    check(lib.multipath_get_status(sock.fileno(), ctypes.byref(status)), "multipath_get_status")
    if status.subflows >= 2:
        break
    time.sleep(0.05)
print(f"status multipath={status.multipath} token={status.token} subflows={status.subflows}")
subflows = (Subflow * 8)()
count = check(lib.multipath_get_subflows(sock.fileno(), subflows, 8), "multipath_get_subflows")
for s in subflows[:min(count, 8)]:
    print(f"subflow {s.interface.decode()} rtt_us={s.rtt_us} state={s.state}")
print("ready", flush=True)
sys.stdin.read()
sock.close()
