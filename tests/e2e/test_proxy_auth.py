"""Login failures through mailgate: a wrong password is the backend's refusal and may be
retried on the same connection; an unknown domain is refused with exactly the same text;
require_tls_for_login keeps logins off plaintext until STARTTLS/STLS."""

from __future__ import annotations

import imaplib
import poplib

import pytest

from clients import imap_backend, imap_open, pop3_open, tls_context
from layout import PASSWORD

UNKNOWN = "nobody@unknown-domain.test"
# Each test fails logins from its own loopback address, so that mailgate's per-IP failed-login
# limits never carry over from one test to the next.
SOURCE = {"imap-plain": "127.0.0.21", "imap-tls": "127.0.0.22",
          "pop3-plain": "127.0.0.23", "pop3-tls": "127.0.0.24"}


def _imap_refusal(imap, user: str, password: str) -> bytes:
    with pytest.raises(imaplib.IMAP4.error) as err:
        imap.login(user, password)
    return err.value.args[0] if isinstance(err.value.args[0], bytes) else str(err.value).encode()


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_imap_wrong_password_then_retry_and_unknown_domain(mailgate, pki, mode):
    port = mailgate.ports["imaps" if mode == "tls" else "imap"]
    imap = imap_open("127.0.0.1", port, mode, pki.ca_cert, source=SOURCE[f"imap-{mode}"])
    try:
        wrong = _imap_refusal(imap, "alice@example.com", "not-the-password")
        assert b"[AUTHENTICATIONFAILED]" in wrong
        unknown = _imap_refusal(imap, UNKNOWN, PASSWORD)
        assert unknown == wrong, "an unknown domain must look exactly like a wrong password"
        typ, _ = imap.login("alice@example.com", PASSWORD)
        assert typ == "OK"
        assert imap_backend(imap) == "mail1"
    finally:
        imap.logout()


def _pop3_refusal(pop, user: str, password: str) -> bytes:
    pop.user(user)
    with pytest.raises(poplib.error_proto) as err:
        pop.pass_(password)
    return err.value.args[0]


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_pop3_wrong_password_then_retry_and_unknown_domain(mailgate, pki, mode):
    port = mailgate.ports["pop3s" if mode == "tls" else "pop3"]
    pop = pop3_open("127.0.0.1", port, mode, pki.ca_cert, source=SOURCE[f"pop3-{mode}"])
    try:
        wrong = _pop3_refusal(pop, "bob@example.org", "not-the-password")
        assert wrong.startswith(b"-ERR")
        unknown = _pop3_refusal(pop, UNKNOWN, PASSWORD)
        assert unknown == wrong, "an unknown domain must look exactly like a wrong password"
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
        assert pop.stat()[0] >= 0
    finally:
        pop.quit()


def test_require_tls_for_login(mailgate_factory, pki):
    mg = mailgate_factory(config={"tls": {"require_tls_for_login": True}})

    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@example.com", PASSWORD)
    finally:
        imap.shutdown()
    imap = imap_open("127.0.0.1", mg.ports["imap"], "starttls", pki.ca_cert)
    try:
        assert "LOGINDISABLED" not in imap.capabilities
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()

    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert)
    try:
        caps = pop.capa()
        assert "STLS" in caps
        assert "USER" not in caps and "SASL" not in caps
        pop.stls(context=tls_context(pki.ca_cert))
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
    finally:
        pop.quit()
