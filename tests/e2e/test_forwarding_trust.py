"""What a backend trusts from mailgate is mailgate's own knowledge (issue 11, item 1).

A backend trusts `x-*` ID fields, XCLIENT parameters and the PROXY v2 header from its
proxy. A client's own `ID` may carry forged ones; they must never arrive. Checked against
real Dovecot's log:

* ``ID sent: ...`` (``imap_id_log = *``) lists exactly the fields mailgate sent: the
  client's RFC 2971 fields, and mailgate's own address, session, TTL and transport fields,
  never the client's ``x-forward-foo`` / ``x-client-transport`` / ``x-proxy-ttl``.
* ``Login: ... session=<mg-...>`` shows the backend took mailgate's session id (IMAP ID
  and POP3 XCLIENT alike).
* Behind a PROXY v2 header, Dovecot calls a login ``secured`` for a non-local client only
  when the header's PP2_TYPE_SSL TLV says the client used TLS.

And the loop guard: a backend that is mailgate's own listener is never dialled.
"""

from __future__ import annotations

import imaplib
import ipaddress
import poplib
import re
import socket
import struct
import time
import uuid

import pytest

from clients import IMAP4, imap_id, imap_open, pop3_open, tls_context
from layout import PASSWORD, PROBE_PASSWORD, PROBE_USER

SOURCE = "127.0.0.9"
FORGED = ('"x-forward-foo" "1" "x-client-transport" "TLS" "x-proxy-ttl" "0" '
          '"x-originating-ip" "10.6.6.6" "x-session-id" "forged-session"')


def id_sent_fields(line: str) -> dict[str, str]:
    """The fields of a Dovecot ``ID sent: k=v, k=v: user=<>, ...`` log line."""
    listed = line.split("ID sent: ", 1)[1].rsplit(": user=<", 1)[0]
    fields = {}
    for pair in listed.split(", "):
        key, _, value = pair.partition("=")
        assert key not in fields, f"{key} sent twice: {line}"
        fields[key] = value
    return fields


def port_of(imap: imaplib.IMAP4) -> int:
    return imap.sock.getsockname()[1]


@pytest.mark.parametrize("mode", ["plain", "starttls", "tls"])
def test_imap_forged_id_fields_never_reach_dovecot(mailgate, backends, pki, mode):
    mail1 = backends["mail1"]
    since = mail1.log_size()
    listener = "imaps" if mode == "tls" else "imap"
    tag = f"forge-{uuid.uuid4().hex[:8]}"
    imap = imap_open("127.0.0.1", mailgate.ports[listener], mode, pki.ca_cert, source=SOURCE)
    try:
        client_port = port_of(imap)
        imap_id(imap, f'({FORGED} "name" "{tag}" "version" "1.0" "guid" "not-rfc2971")')
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
    sent = id_sent_fields(mail1.wait_log(f"name={tag}", since=since))
    session = sent.get("x-session-id", "")
    transport = "insecure" if mode == "plain" else "TLS"
    assert sent == {
        "x-originating-ip": SOURCE,
        "x-originating-port": str(client_port),
        "x-connected-ip": "127.0.0.1",
        "x-connected-port": str(mailgate.ports[listener]),
        "x-session-id": session,
        # Dovecot's default TTL (5) less mailgate's hop; the client's 0 is not believed.
        "x-proxy-ttl": "4",
        "x-client-transport": transport,
        "name": tag,
        "version": "1.0",
    }, sent
    assert re.fullmatch(r"mg-[0-9a-f]+", session), session
    # The backend took mailgate's session id and address, not the forged ones.
    login = mail1.wait_log("imap-login: Info: Login: user=<alice@example.com>", since=since)
    assert f"rip={SOURCE}," in login and f"session=<{session}>" in login, login


@pytest.mark.parametrize("mode", ["plain", "starttls"])
def test_pop3_xclient_carries_mailgates_session(mailgate, backends, pki, mode):
    mail2 = backends["mail2"]
    since = mail2.log_size()
    pop = pop3_open("127.0.0.1", mailgate.ports["pop3"], mode, pki.ca_cert, source=SOURCE)
    try:
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
    finally:
        pop.quit()
    # XCLIENT ADDR= PORT= DESTADDR= DESTPORT= SESSION= TTL= CLIENT-TRANSPORT= was accepted
    # as a whole (a refused one would leave rip=127.0.0.1 and Dovecot's own session id).
    login = mail2.wait_log("pop3-login: Info: Login: user=<bob@example.org>", since=since)
    assert f"rip={SOURCE}," in login, login
    assert re.search(r"session=<mg-[0-9a-f]+>", login), login


SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src: str, sport: int, dst: str, dport: int) -> bytes:
    """A PROXY v2 header (PROXY command, TCP over IPv4), as a load balancer sends it."""
    body = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            + struct.pack("!HH", sport, dport))
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


class BalancedIMAP(IMAP4):
    """A client behind a load balancer: the connection starts with a PROXY v2 header."""

    def __init__(self, port: int, header: bytes):
        self._header = header
        super().__init__("127.0.0.1", port)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return sock


@pytest.fixture
def haproxy_backend(work_dir):
    """A Dovecot whose listeners require the PROXY protocol (from loopback)."""
    from dovecot import Dovecot, stop_many
    from ports import free_port

    pv = Dovecot(
        name="pvtrust", root=work_dir / "backends" / f"pvtrust-{uuid.uuid4().hex[:6]}",
        users={"dave@proxied.test": PASSWORD, PROBE_USER: PROBE_PASSWORD},
        imap_port=free_port(), pop3_port=free_port(), haproxy=True,
    ).start()
    yield pv
    stop_many([pv])


@pytest.mark.parametrize("starttls", [False, True])
def test_proxy_v2_tells_the_backend_about_tls_only_when_true(
        mailgate_factory, haproxy_backend, pki, probe_secret_file, starttls):
    """The client (192.0.2.44 behind a trusted balancer) is not local, so Dovecot calls its
    login ``secured`` only because of mailgate's PP2_TYPE_SSL TLV, sent only after
    STARTTLS."""
    pv = haproxy_backend
    mg = mailgate_factory(
        config={"listen": {"proxy_from": ["127.0.0.1"]}},
        routing={"backends": {"pv": {
            "host": "127.0.0.1", "imap_port": pv.imap_port, "pop3_port": pv.pop3_port,
            "forward_client": "proxy_v2",
            "probe": {"user": PROBE_USER, "password_file": str(probe_secret_file)},
        }}, "domains": {"proxied.test": "pv"}},
    )
    port = mg.ports["imap"]
    since = pv.log_size()
    imap = BalancedIMAP(port, proxy_v2("192.0.2.44", 40123, "127.0.0.1", port))
    try:
        if starttls:
            imap.starttls(ssl_context=tls_context(pki.ca_cert))
        assert imap.login("dave@proxied.test", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
    login = pv.wait_log("imap-login: Info: Login: user=<dave@proxied.test>", since=since)
    assert "rip=192.0.2.44," in login, login
    assert (", secured," in login) == starttls, login


# --- the loop guard ---------------------------------------------------------------------------

def _mailgate_routing_to_itself(mailgate_factory, extra_backends):
    """A started mailgate whose routing names backends at its own listeners; the routing
    needs the ports, so they are chosen first (a lost port race is retried)."""
    for attempt in range(3):
        mg = mailgate_factory(start=False)
        backends = extra_backends(mg.ports)
        routing = dict(mg.routing)
        routing["backends"] = {**routing["backends"], **backends}
        routing["domains"] = {**routing["domains"],
                              **{f"{name}.test": name for name in backends}}
        mg.write_routing(routing)
        try:
            return mg.start()
        except RuntimeError as e:
            if "cannot bind" not in str(e) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _output_since(mg, offset: int) -> str:
    return mg.out_path.read_text(errors="replace")[offset:]


def _wait_output(mg, needle: str, offset: int = 0, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = _output_since(mg, offset)
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} in mailgate's output\n{mg.output()}")
        time.sleep(0.05)


def test_a_backend_at_mailgates_own_listener_is_never_dialled(mailgate_factory):
    mg = _mailgate_routing_to_itself(mailgate_factory, lambda ports: {
        "self": {"host": "127.0.0.1", "imap_port": ports["imap"], "pop3_port": ports["pop3"]},
    })
    # `mailgate check` names the file, line and key of each loop.
    check = mg.cli("check", "-c", str(mg.config_path))
    assert check.returncode == 1, check
    for key in ("backends.self.imap_port", "backends.self.pop3_port"):
        assert re.search(rf"routing\.yaml:\d+: {re.escape(key)}: 127\.0\.0\.1:\d+ is "
                         r"mailgate's own listener listen\.(imap|pop3)", check.stderr), check.stderr
    # Startup says so too.
    _wait_output(mg, "backends.self.imap_port")

    offset = len(mg.out_path.read_text(errors="replace"))
    imap = IMAP4("127.0.0.1", mg.ports["imap"], source=SOURCE)
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
            imap.login("eve@self.test", PASSWORD)
    finally:
        imap.logout()
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", None, source=SOURCE)
    try:
        pop.user("eve@self.test")
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
            pop.pass_(PASSWORD)
    finally:
        pop.quit()
    _wait_output(mg, "not dialled", offset)
    # Every session mailgate served meanwhile came from the test client: mailgate never
    # connected to itself (that session would come from 127.0.0.1).
    time.sleep(0.5)
    text = _output_since(mg, offset)
    sessions = [l for l in text.splitlines() if "session closed" in l]
    assert sessions and all(f"client={SOURCE}:" in l for l in sessions), text


def test_a_reload_that_routes_to_mailgate_itself_is_reported_and_refused(mailgate_factory):
    mg = mailgate_factory()
    offset = len(mg.out_path.read_text(errors="replace"))
    routing = dict(mg.routing)
    routing["backends"] = {**routing["backends"],
                           "me": {"host": "127.0.0.1", "imap_port": mg.ports["imap"]}}
    routing["domains"] = {**routing["domains"], "me.test": "me"}
    mg.reload(routing)
    _wait_output(mg, "backends.me.imap_port", offset)
    login_offset = len(mg.out_path.read_text(errors="replace"))
    imap = IMAP4("127.0.0.1", mg.ports["imap"], source=SOURCE)
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
            imap.login("eve@me.test", PASSWORD)
    finally:
        imap.logout()
    _wait_output(mg, "not dialled", login_offset)
