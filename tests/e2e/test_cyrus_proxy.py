"""Cyrus IMAP 3.6 as a backend beside Dovecot: logins through mailgate are routed by domain.

example.edu lives on cyrus1 (real Cyrus), example.com on mail1 (real Dovecot). Which backend
answered is told by what only that backend says: Cyrus names its servername in the login's
``SESSIONID=<cyrus1-...>`` and answers ``ID`` with ``"name" "Cyrus IMAPD"``; Dovecot answers
``ID`` with ``"x-backend" "mail1"``.
"""

from __future__ import annotations

import re
import uuid

from clients import imap_append, imap_backend, imap_id, imap_open, imap_search_subject, pop3_open
from cyrus import CYRUS_USERS
from layout import PASSWORD

USER = CYRUS_USERS[0]


def test_imap_login_select_append_fetch_on_cyrus_beside_dovecot(cyrus_mailgate_factory, cyrus,
                                                                  pki):
    mg = cyrus_mailgate_factory(cyrus)
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        typ, data = imap.login(USER, PASSWORD)
        assert typ == "OK"
        assert f"SESSIONID=<{cyrus.name}-".encode() in data[0], data
        ident = imap_id(imap)
        assert ident.get("name") == "Cyrus IMAPD", ident
        assert "x-backend" not in ident

        typ, _ = imap.select("INBOX")  # created by Cyrus at the first login
        assert typ == "OK"
        subject = f"cyrus-{uuid.uuid4().hex[:12]}"
        imap_append(imap, subject, body=f"marker {subject}\r\n")
        imap.noop()
        uids = imap_search_subject(imap, subject)
        assert len(uids) == 1
        typ, data = imap.uid("FETCH", uids[0].decode(), "(BODY.PEEK[])")
        assert typ == "OK"
        assert f"marker {subject}".encode() in data[0][1]
    finally:
        imap.logout()

    # The Dovecot domain behind the same mailgate still lands on Dovecot.
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        imap.login("alice@example.com", PASSWORD)
        assert imap_backend(imap) == "mail1"
    finally:
        imap.logout()


def test_pop3_user_pass_stat_on_cyrus_beside_dovecot(cyrus_mailgate_factory, cyrus, pki):
    mg = cyrus_mailgate_factory(cyrus)
    user = CYRUS_USERS[1]
    # One message, appended over IMAP through mailgate, for POP3 to count.
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        imap.login(user, PASSWORD)
        imap_append(imap, f"pop3-{uuid.uuid4().hex[:8]}")
        imap.select("INBOX")
        typ, data = imap.search(None, "ALL")
        expected = len(data[0].split())
    finally:
        imap.logout()

    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert)
    try:
        assert pop.user(user).startswith(b"+OK")
        reply = pop.pass_(PASSWORD)
        # Cyrus's answer to PASS, "+OK Mailbox locked and ready SESSIONID=<cyrus1-...>",
        # passed through; mailgate writes POP3 texts with < > as ( ) (no text may look
        # like an APOP timestamp), so the client sees SESSIONID=(cyrus1-...).
        assert reply.startswith(b"+OK Mailbox locked and ready"), reply
        assert re.search(rb"SESSIONID=[<(]" + cyrus.name.encode() + rb"-", reply), reply
        count, size = pop.stat()
        assert count == expected and count >= 1 and size > 0
        # After the login CAPA is spliced to the backend: Cyrus names itself.
        assert pop.capa().get("IMPLEMENTATION", [])[:2] == ["Cyrus", "POP3"]
    finally:
        pop.quit()

    # And a Dovecot user's POP3 login behind the same mailgate stays on Dovecot.
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert)
    try:
        pop.user("alice@example.com")
        reply = pop.pass_(PASSWORD)
        assert reply.startswith(b"+OK") and b"SESSIONID=" not in reply, reply
        assert "Cyrus" not in pop.capa().get("IMPLEMENTATION", [])
    finally:
        pop.quit()
