"""The harness itself, without mailgate: real clients talk to each Dovecot directly.

These prove the facts the proxy tests rely on: users per backend, the ID x-backend answer,
TLS with the test CA, seeding, client-address forwarding (IMAP ID, POP3 XCLIENT), reading
the log, and the fault switches (freeze, stopped auth).
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from clients import MODES, imap_backend, imap_id, imap_open, imap_search_subject, pop3_open, read_line
from layout import BACKEND_USERS, PASSWORD, PROBE_PASSWORD, PROBE_USER
from dovecot import Dovecot
from ports import free_port


def _ports(b: Dovecot, mode: str, proto: str) -> int:
    if proto == "imap":
        return b.imaps_port if mode == "tls" else b.imap_port
    return b.pop3s_port if mode == "tls" else b.pop3_port


@pytest.mark.parametrize("mode", MODES)
def test_every_backend_serves_its_users_directly(backends, pki, mode):
    """IMAP login + ID + seeded message, and POP3 STAT, on every backend in every mode."""
    for name, b in backends.items():
        for user in BACKEND_USERS[name] + [PROBE_USER]:
            password = PROBE_PASSWORD if user == PROBE_USER else PASSWORD
            subject = f"harness-{uuid.uuid4().hex[:10]}"
            b.seed(user, subject)
            imap = imap_open(b.host, _ports(b, mode, "imap"), mode, pki.ca_cert)
            try:
                imap.login(user, password)
                assert imap_backend(imap) == name
                typ, _ = imap.select("INBOX")
                assert typ == "OK"
                assert len(imap_search_subject(imap, subject)) == 1
            finally:
                imap.logout()
            pop = pop3_open(b.host, _ports(b, mode, "pop3"), mode, pki.ca_cert)
            try:
                pop.user(user)
                pop.pass_(password)
                count, _ = pop.stat()
                assert count >= 1
            finally:
                pop.quit()


def test_wrong_password_text_is_authenticationfailed(backends):
    """The answer mailgate must pass through for a wrong password (and mimic for unknown domains)."""
    b = backends["mail1"]
    imap = imap_open(b.host, b.imap_port, "plain", None)
    try:
        with pytest.raises(imap.error, match=r"AUTHENTICATIONFAILED"):
            imap.login("alice@example.com", "wrong")
        imap.login("alice@example.com", PASSWORD)  # retry on the same connection
    finally:
        imap.logout()


def test_backend_logs_forwarded_and_real_client_addresses(backends):
    """ID x-originating-ip and POP3 XCLIENT are honoured from 127.0.0.1; a 127.0.0.9 source shows."""
    b = backends["mail2"]
    since = b.log_size()
    imap = imap_open(b.host, b.imap_port, "plain", None)
    try:
        imap_id(imap, '("x-originating-ip" "127.0.0.77" "x-originating-port" "40077")')
        imap.login("bob@example.org", PASSWORD)
    finally:
        imap.logout()
    assert "rip=127.0.0.77" in b.wait_log("Login: user=<bob@example.org>", since=since)

    since = b.log_size()
    with socket.create_connection((b.host, b.pop3_port), timeout=5) as s:
        greeting = read_line(s)
        assert greeting.startswith(b"+OK [XCLIENT]"), greeting  # advertised in the greeting, not CAPA
        for cmd, expect in ((b"XCLIENT ADDR=127.0.0.88 PORT=40088", b"+OK"),
                            (b"USER bob@example.org", b"+OK"),
                            (f"PASS {PASSWORD}".encode(), b"+OK"), (b"QUIT", b"+OK")):
            s.sendall(cmd + b"\r\n")
            assert read_line(s).startswith(expect), cmd
    assert "rip=127.0.0.88" in b.wait_log("pop3-login: Info: Login: user=<bob@example.org>", since=since)

    since = b.log_size()
    imap = imap_open(b.host, b.imap_port, "plain", None, source="127.0.0.9")
    try:
        imap.login("bob@example.org", PASSWORD)
    finally:
        imap.logout()
    assert "rip=127.0.0.9," in b.wait_log("Login: user=<bob@example.org>", since=since)


def test_fault_switches_freeze_and_stop_auth(work_dir):
    """A frozen instance accepts TCP but sends no greeting; with auth stopped, logins hang."""
    b = Dovecot(name="faulty", root=work_dir / "backends" / "faulty",
                users={"dave@example.com": PASSWORD},
                imap_port=free_port(), pop3_port=free_port()).start()
    try:
        b.freeze()
        with socket.create_connection((b.host, b.imap_port), timeout=2) as s:
            with pytest.raises(socket.timeout):
                read_line(s, timeout=0.5)
            b.thaw()
            assert read_line(s, timeout=5).startswith(b"* OK")

        assert b.stop_auth(), "no auth process found"
        imap = imap_open(b.host, b.imap_port, "plain", None, timeout=1.0)
        with pytest.raises((socket.timeout, TimeoutError)):
            imap.login("dave@example.com", PASSWORD)
        b.thaw()
    finally:
        b.stop()
    assert b.pids() == []


def test_process_limit_makes_extra_logins_wait(work_dir):
    """``imap_process_limit`` admits N logged-in sessions; the next LOGIN waits for a slot."""
    b = Dovecot(name="limited", root=work_dir / "backends" / "limited",
                users={"erin@example.com": PASSWORD},
                imap_port=free_port(), imap_process_limit=1).start()
    try:
        first = imap_open(b.host, b.imap_port, "plain", None)
        first.login("erin@example.com", PASSWORD)
        second = imap_open(b.host, b.imap_port, "plain", None, timeout=1.0)
        started = time.monotonic()
        with pytest.raises((socket.timeout, TimeoutError)):
            second.login("erin@example.com", PASSWORD)
        assert time.monotonic() - started >= 0.9
        first.logout()
    finally:
        b.stop()
