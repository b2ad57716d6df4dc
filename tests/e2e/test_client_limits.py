"""Per-IP caps and failed-login back-off through the running server (issue #14 part 5):
real Dovecot backends, real imaplib/poplib clients from several loopback source addresses
(127.0.0.81 and up), the limits of docs/configuration.md:

* ``limits.max_sessions_per_ip``: the connection past the cap gets ``* BYE [UNAVAILABLE]`` /
  ``-ERR [SYS/TEMP]`` at once (counted as ``connections_refused_total{reason="per_ip"}``),
  other addresses are not affected, and a closed session frees its place;
* ``limits.max_auth_failures_per_ip``: past N failed logins an address's logins are held
  back, doubling with each further failure — delayed, not refused: the right password still
  logs in — while another address is not held back;
* ``limits.max_auth_failures_per_user``: failures of one mailbox from many addresses hold
  back that mailbox's logins from a fresh address (password spraying), also when they came in
  the master-user form ``user*master``; another user from that address is not held back.

Delays are asserted as lower bounds (the back-off's whole point) and the unaffected side
only against a generous upper bound.
"""

from __future__ import annotations

import imaplib
import socket
import time


from clients import imap_backend, imap_open, pop3_open, read_line
from layout import PASSWORD


def _raw(mg, listener: str, source: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", mg.ports[listener]), timeout=5,
                                    source_address=(source, 0))
    return sock, read_line(sock)


def _closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False


def test_sessions_per_ip_are_capped(mailgate_factory, pki):
    mg = mailgate_factory(config={"limits": {"max_sessions_per_ip": 2}})
    capped, other = "127.0.0.81", "127.0.0.82"
    before = mg.metric("mailgate_connections_refused_total", reason="per_ip")
    spliced = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=capped)
    assert spliced.login("alice@example.com", PASSWORD)[0] == "OK"
    preauth, greeting = _raw(mg, "pop3", capped)  # a session before login counts too
    assert greeting.startswith(b"+OK"), greeting
    opened = []
    try:
        # The third session of this address: refused at once, with the protocol's code.
        sock, line = _raw(mg, "imap", capped)
        opened.append(sock)
        assert line.startswith(b"* BYE [UNAVAILABLE]"), line
        assert _closed(sock)
        sock, line = _raw(mg, "pop3", capped)
        opened.append(sock)
        assert line.startswith(b"-ERR [SYS/TEMP]"), line
        assert _closed(sock)
        # Another address is not affected.
        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=other)
        assert imap.login("bob@example.org", PASSWORD)[0] == "OK"
        assert imap_backend(imap) == "mail2"
        imap.logout()
        # The spliced session still works.
        assert spliced.select("INBOX")[0] == "OK"
        assert mg.metric("mailgate_connections_refused_total", reason="per_ip") - before == 2
    finally:
        for s in opened:
            s.close()
    # Closing one frees a place for the address.
    spliced.logout()
    deadline = time.monotonic() + 5
    while True:
        sock, line = _raw(mg, "imap", capped)
        opened.append(sock)
        if line.startswith(b"* OK"):
            break
        assert time.monotonic() < deadline, f"place not freed: {line!r}"
        sock.close()
        time.sleep(0.1)
    for s in opened:
        s.close()
    preauth.close()


def _timed_imap_login(mg, pki, source: str, user: str, password: str) -> tuple[bool, float]:
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=source,
                     timeout=30)
    try:
        start = time.monotonic()
        try:
            imap.login(user, password)
            ok = True
        except imaplib.IMAP4.error as e:
            assert "[AUTHENTICATIONFAILED]" in str(e), e
            ok = False
        return ok, time.monotonic() - start
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_failed_logins_back_off_the_address(mailgate_factory, pki):
    delay = 1.0
    mg = mailgate_factory(config={"limits": {
        "max_auth_failures_per_ip": 2, "auth_failure_window": "60s",
        "auth_failure_delay": f"{int(delay * 1000)}ms", "max_auth_failures_per_user": 0}})
    bad, fresh = "127.0.0.83", "127.0.0.84"
    took = []
    for _ in range(4):
        ok, t = _timed_imap_login(mg, pki, bad, "alice@example.com", "wrong")
        assert not ok
        took.append(t)
    # 1st and 2nd: only the failure delay; then held back 1 s, 2 s (doubling) before it.
    assert all(t >= delay - 0.05 for t in took), took
    assert took[2] >= 2 * delay - 0.05, took
    assert took[3] >= 3 * delay - 0.05, took
    # Held back, not refused: the right password logs in, after 4 s of back-off.
    ok, t = _timed_imap_login(mg, pki, bad, "alice@example.com", PASSWORD)
    assert ok and t >= 4 * delay - 0.05, (ok, t)
    # POP3 from the same address is held back too (the count is the address's).
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert, source=bad, timeout=30)
    try:
        pop.user("bob@example.org")
        start = time.monotonic()
        assert pop.pass_(PASSWORD).startswith(b"+OK")
        assert time.monotonic() - start >= 4 * delay - 0.05
    finally:
        pop.quit()
    # Another address: not held back (generous bound: a login takes milliseconds).
    ok, t = _timed_imap_login(mg, pki, fresh, "alice@example.com", PASSWORD)
    assert ok and t < 4 * delay - 0.5, (ok, t)


def test_failed_logins_of_one_user_from_many_addresses_back_off_that_user(mailgate_factory, pki):
    delay = 2.0
    mg = mailgate_factory(config={"limits": {
        "max_auth_failures_per_ip": 0, "max_auth_failures_per_user": 3,
        "auth_failure_window": "60s", "auth_failure_delay": "2s"}})
    # Three failures for bob@example.org from three addresses, one in the master-user form
    # (it counts against the mailbox user, whatever the master part says).
    for source, user in (("127.0.0.85", "bob@example.org"), ("127.0.0.86", "BOB@example.org"),
                         ("127.0.0.87", '"bob@example.org*nosuchmaster"')):
        ok, _ = _timed_imap_login(mg, pki, source, user, "wrong")
        assert not ok
    fresh = "127.0.0.88"
    ok, t = _timed_imap_login(mg, pki, fresh, "bob@example.org", PASSWORD)
    assert ok and t >= delay - 0.05, (ok, t)
    # Another user from that same address is not held back.
    ok, t = _timed_imap_login(mg, pki, fresh, "alice@example.com", PASSWORD)
    assert ok and t < delay - 0.5, (ok, t)
