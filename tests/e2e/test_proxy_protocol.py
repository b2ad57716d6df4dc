"""mailgate behind an L4 load balancer: with `listen.proxy_from` naming the balancer, the
real client address arrives in a PROXY protocol v2 header, and that address (not the
balancer's) is what the backend logs. Anything else from a trusted balancer is refused."""

from __future__ import annotations

import imaplib
import ipaddress
import socket
import struct

from layout import PASSWORD

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src: str, sport: int, dst: str, dport: int) -> bytes:
    """A PROXY v2 header (PROXY command, TCP over IPv4)."""
    body = (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


class ProxiedIMAP(imaplib.IMAP4):
    """imaplib over a socket that first sends a PROXY v2 header."""

    def __init__(self, host: str, port: int, header: bytes):
        self._header = header
        super().__init__(host, port, timeout=10)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return sock


def test_backend_logs_the_address_from_the_proxy_header(mailgate_factory, backends):
    mg = mailgate_factory(config={"listen": {"proxy_from": ["127.0.0.1"]}})
    port = mg.ports["imap"]
    mail1 = backends["mail1"]
    since = mail1.log_size()
    imap = ProxiedIMAP("127.0.0.1", port, proxy_v2("192.0.2.44", 40123, "127.0.0.1", port))
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
    line = mail1.wait_log("imap-login: Info: Login: user=<alice@example.com>", since=since)
    assert "rip=192.0.2.44," in line, line


def test_trusted_balancer_without_header_is_refused(mailgate_factory):
    mg = mailgate_factory(config={"listen": {"proxy_from": ["127.0.0.1"]}})
    with socket.create_connection(("127.0.0.1", mg.ports["imap"]), timeout=10) as sock:
        sock.sendall(b"a1 CAPABILITY\r\n" + b"x" * 16)
        sock.settimeout(10)
        # No greeting, no parsing of the bytes: the connection is closed (a reset, since
        # the unread bytes are discarded).
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b""


def test_untrusted_peer_is_not_asked_for_a_header(mailgate_factory):
    mg = mailgate_factory(config={"listen": {"proxy_from": ["127.0.0.77"]}})
    imap = imaplib.IMAP4("127.0.0.1", mg.ports["imap"], timeout=10)
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
