"""POP3 through mailgate with poplib: STAT, RETR, DELE on each domain's backend, over plain
TCP, STLS and implicit TLS."""

from __future__ import annotations

import uuid

import pytest

from clients import MODES, pop3_open
from layout import HOME_BACKEND, PASSWORD


def _port(mailgate, mode: str) -> int:
    return mailgate.ports["pop3s" if mode == "tls" else "pop3"]


def _login(mailgate, pki, mode, user):
    pop = pop3_open("127.0.0.1", _port(mailgate, mode), mode, pki.ca_cert)
    pop.user(user)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    return pop


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("user", sorted(HOME_BACKEND))
def test_pop3_stat_retr_dele(mailgate, backends, pki, user, mode):
    marker = f"pop3-{uuid.uuid4().hex[:12]}"
    backends[HOME_BACKEND[user]].seed(user, marker, body=f"marker {marker}\r\n")

    pop = _login(mailgate, pki, mode, user)
    try:
        count, size = pop.stat()
        assert count >= 1 and size > 0
        _, lines, _ = pop.retr(count)  # the newest message is the one just seeded
        assert f"marker {marker}".encode() in b"\n".join(lines)
        assert pop.dele(count).startswith(b"+OK")
    finally:
        pop.quit()

    pop = _login(mailgate, pki, mode, user)
    try:
        assert pop.stat()[0] == count - 1
    finally:
        pop.quit()
