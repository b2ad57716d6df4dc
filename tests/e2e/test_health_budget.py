"""Session budget with real Dovecot: a backend with ``max_sessions: 5`` holds five spliced
sessions; the sixth login is refused at once with ``NO [UNAVAILABLE]`` (POP3
``-ERR [SYS/TEMP]``) without reaching the backend, and is admitted again once one of the
five logs out. Other backends are not affected."""

from __future__ import annotations

import imaplib
import poplib
import time

import pytest

from clients import imap_backend, imap_open, pop3_open
from layout import PASSWORD

FAST = 1.0  # refused "at once" (vs. a 30 s login timeout); not a benchmark


def test_sixth_login_is_refused_fast_and_admitted_after_a_logout(mailgate_factory, backends, pki):
    mg = mailgate_factory(routing={"backends": {"mail1": {"max_sessions": 5}}})
    port = mg.ports["imap"]
    held = []
    try:
        for _ in range(5):
            imap = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
            imap.login("alice@example.com", PASSWORD)
            imap.select("INBOX")
            held.append(imap)

        mail1 = backends["mail1"]
        log_before = mail1.log_size()
        sixth = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
        start = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
            sixth.login("alice@example.com", PASSWORD)
        took = time.monotonic() - start
        assert took < FAST, f"refusal took {took:.3f}s"

        # POP3 shares the budget.
        pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert)
        pop.user("alice@example.com")
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
            pop.pass_(PASSWORD)
        pop.quit()

        # Refused from memory: the backend never saw these logins.
        time.sleep(0.2)
        assert "alice@example.com" not in mail1.log_text()[log_before:], \
            mail1.log_text()[log_before:]

        # Other backends are not limited by mail1's budget.
        other = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
        other.login("bob@example.org", PASSWORD)
        other.logout()

        # The held sessions still work.
        assert all(imap.noop()[0] == "OK" for imap in held)

        held.pop().logout()
        # The slot is released when the spliced session ends; retry on the same connection.
        deadline = time.monotonic() + 5
        while True:
            try:
                sixth.login("alice@example.com", PASSWORD)
                break
            except imaplib.IMAP4.error as e:
                assert "[UNAVAILABLE]" in str(e), e
                assert time.monotonic() < deadline, "the sixth login was never admitted"
                time.sleep(0.05)
        assert imap_backend(sixth) == "mail1"
        held.append(sixth)
    finally:
        for imap in held:
            try:
                imap.logout()
            except Exception:
                pass


def test_session_the_backend_ended_frees_its_slot_while_the_client_stays(mailgate_factory, pki):
    """A client that sends LOGOUT but never closes its socket (a sleeping laptop, a dead NAT
    entry) must not keep a budget slot: Dovecot ends the session, mailgate delivers its
    answer, closes the client and releases the slot, so a sixth login is admitted."""
    mg = mailgate_factory(routing={"backends": {"mail1": {"max_sessions": 5}}})
    port = mg.ports["imap"]
    held = []
    try:
        for _ in range(5):
            imap = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
            imap.login("alice@example.com", PASSWORD)
            held.append(imap)
        sixth = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
            sixth.login("alice@example.com", PASSWORD)

        # LOGOUT by hand, and the socket stays open on the client's side.
        stays = held.pop()
        stays.send(b"z1 LOGOUT\r\n")
        sock = stays.socket()
        sock.settimeout(10)
        got = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break  # mailgate closed the client after the backend ended the session
            got += chunk
        assert b"* BYE" in got and b"z1 OK" in got, got

        deadline = time.monotonic() + 5
        while True:
            try:
                sixth.login("alice@example.com", PASSWORD)
                break
            except imaplib.IMAP4.error as e:
                assert "[UNAVAILABLE]" in str(e), e
                assert time.monotonic() < deadline, "the slot of the ended session was never freed"
                time.sleep(0.05)
        held.append(sixth)
        mail1 = mg.backend_status("mail1")
        assert mail1["sessions"] == 5, mail1
        stays.sock.close()
    finally:
        for imap in held:
            try:
                imap.logout()
            except Exception:
                pass
