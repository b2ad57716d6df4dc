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


def test_probes_send_the_proxy_header_to_a_backend_that_requires_it(
    mailgate_factory, work_dir, pki, probe_secret_file
):
    """A Dovecot whose listeners require the PROXY protocol (`haproxy = yes`) answers
    nothing to a connection without the header. With `forward_client: proxy_v2`, mailgate's
    probes (login + SELECT INBOX / STAT) send it too, so the backend stays up, and client
    logins arrive with the client's address."""
    from layout import PROBE_PASSWORD, PROBE_USER
    from dovecot import Dovecot, stop_many
    from ports import free_port
    import time

    pv = Dovecot(
        name="pv2", root=work_dir / "backends" / "pv2",
        users={"carol@proxied.test": PASSWORD, PROBE_USER: PROBE_PASSWORD},
        imap_port=free_port(), pop3_port=free_port(), haproxy=True,
    ).start()
    try:
        mg = mailgate_factory(routing={
            "backends": {"pv2": {
                "host": "127.0.0.1", "imap_port": pv.imap_port, "pop3_port": pv.pop3_port,
                "forward_client": "proxy_v2",
                "probe": {"user": PROBE_USER, "password_file": str(probe_secret_file)},
            }},
            "domains": {"proxied.test": "pv2"},
        })
        # The backend really requires the header: without it, no greeting.
        with socket.create_connection(("127.0.0.1", pv.imap_port), timeout=5) as raw:
            raw.settimeout(1.5)
            try:
                first = raw.recv(64)
            except socket.timeout:
                first = b""
            assert not first.startswith(b"* OK"), first
        # Several probe intervals (1 s, fall 3): a probe without the header would fail
        # every time and the backend would be down by now.
        since = pv.log_size()
        time.sleep(4.5)
        status = mg.backend_status("pv2")
        assert status["state"] == "up", status
        probe_logins = pv.log_text()[since:].count(f"Login: user=<{PROBE_USER}>")
        assert probe_logins >= 4, pv.log_tail()
        imap = imaplib.IMAP4("127.0.0.1", mg.ports["imap"], timeout=10)
        try:
            assert imap.login("carol@proxied.test", PASSWORD)[0] == "OK"
            assert imap.select("INBOX")[0] == "OK"
        finally:
            imap.logout()
        line = pv.wait_log("imap-login: Info: Login: user=<carol@proxied.test>", since=since)
        assert "rip=127.0.0.1," in line, line
    finally:
        stop_many([pv])
