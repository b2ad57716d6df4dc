"""Ports for the servers the tests start (mailgate, Dovecot, Cyrus, dnsmasq, HAProxy, ...).

A port is picked, checked free, released, and only then bound by the server it is for. Ports
the kernel picks itself (``bind(port 0)``) come from its ephemeral range (32768-60999 by
default), which every outgoing connection of the run draws from too: in between, a client's
connection could take the port, and the server's bind fails. Ports here come from below that
range (and below the benchmarks' 21000 and up), handed out in turn from a per-process starting
point, so only another server explicitly binding the same port can take one.
"""

from __future__ import annotations

import os
import socket
import threading

FIRST, LAST = 10000, 20999
_lock = threading.Lock()
_next = FIRST + (os.getpid() * 7919) % (LAST - FIRST + 1)


def _bindable(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*hosts: str, udp: bool = False) -> int:
    """A port free for TCP (and UDP too if ``udp``) on every one of ``hosts`` (default
    127.0.0.1) a moment ago, not handed out before by this process."""
    global _next
    hosts = hosts or ("127.0.0.1",)
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    with _lock:
        for _ in range(LAST - FIRST + 1):
            port = _next
            _next = FIRST if _next == LAST else _next + 1
            if all(_bindable(h, port, k) for h in hosts for k in kinds):
                return port
    raise RuntimeError(f"no free port in {FIRST}-{LAST}")
