"""IMAP through mailgate with imaplib: routing by domain, then a normal mailbox session.

Every user of each domain must reach its own backend (Dovecot's ID answer names it) over
plain TCP, STARTTLS and implicit TLS, and then SELECT, FETCH, APPEND and IDLE work as if the
client were connected to the backend directly.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from clients import (MODES, imap_append, imap_backend, imap_idle_until_exists, imap_open,
                     imap_search_subject, read_line)
from layout import HOME_BACKEND, PASSWORD


def _port(mailgate, mode: str) -> int:
    return mailgate.ports["imaps" if mode == "tls" else "imap"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("user", sorted(HOME_BACKEND))
def test_imap_login_lands_on_the_domains_backend_and_works(mailgate, backends, pki, user, mode):
    backend = HOME_BACKEND[user]
    seeded = f"seeded-{uuid.uuid4().hex[:12]}"
    backends[backend].seed(user, seeded, body=f"marker {seeded}\r\n")

    imap = imap_open("127.0.0.1", _port(mailgate, mode), mode, pki.ca_cert)
    try:
        typ, _ = imap.login(user, PASSWORD)
        assert typ == "OK"
        assert imap_backend(imap) == backend

        typ, _ = imap.select("INBOX")
        assert typ == "OK"
        uids = imap_search_subject(imap, seeded)
        assert len(uids) == 1
        typ, data = imap.uid("FETCH", uids[0].decode(), "(BODY.PEEK[])")
        assert typ == "OK"
        assert f"marker {seeded}".encode() in data[0][1]

        appended = f"appended-{uuid.uuid4().hex[:12]}"
        imap_append(imap, appended)
        imap.noop()
        assert len(imap_search_subject(imap, appended)) == 1
    finally:
        imap.logout()


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_imap_idle_sees_a_message_appended_by_another_session(mailgate, pki, mode):
    user = "bob@example.org"
    watcher = imap_open("127.0.0.1", _port(mailgate, mode), mode, pki.ca_cert)
    writer = imap_open("127.0.0.1", _port(mailgate, mode), mode, pki.ca_cert)
    try:
        watcher.login(user, PASSWORD)
        typ, data = watcher.select("INBOX")
        assert typ == "OK"
        before = int(data[0])
        writer.login(user, PASSWORD)
        exists = imap_idle_until_exists(
            watcher, lambda: imap_append(writer, f"idle-{uuid.uuid4().hex[:8]}"))
        assert exists == before + 1
        assert watcher.noop()[0] == "OK"  # the session goes on after DONE
    finally:
        writer.logout()
        watcher.logout()


def test_imap_commands_pipelined_behind_login_reach_the_backend(mailgate):
    """Bytes the client sent right after LOGIN are spliced to the backend, not lost."""
    with socket.create_connection(("127.0.0.1", mailgate.ports["imap"]), timeout=5) as s:
        assert read_line(s).startswith(b"* OK")
        s.sendall(f"a1 LOGIN carol@sub.example.net {PASSWORD}\r\na2 ID NIL\r\na3 LOGOUT\r\n".encode())
        lines = []
        while not any(line.startswith(b"a3 ") for line in lines):
            line = read_line(s)
            assert line, f"connection closed early after {lines!r}"
            lines.append(line)
    text = b"".join(lines).decode(errors="replace")
    assert "a1 OK" in text
    assert '"x-backend" "mail3"' in text
    assert "a2 OK" in text and "a3 OK" in text
