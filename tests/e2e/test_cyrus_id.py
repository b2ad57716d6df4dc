"""Cyrus and the client address mailgate forwards (``forward_client: id``).

Before replaying the login mailgate sends the backend ``ID ("x-originating-ip" ...
"x-originating-port" ... "x-connected-ip" ... "x-connected-port" ... "x-session-id" ...
<the client's own ID fields>)``. Cyrus 3.6.1 answers it like any ID (``* ID ("name" "Cyrus
IMAPD" ...)`` + ``OK Completed``) and only writes the fields to syslog (``client id
sessionid=<...>: "x-originating-ip" ...``); its login record keeps the proxy's address.
Cyrus answers only one ID before authentication: a second one gets ``OK NIL`` and no
untagged ID, so the client's own ID must reach it inside mailgate's, not after it. After
the login ID is answered again. Cyrus's POP3 has no XCLIENT (not in CAPA), so mailgate sends
none. Logins from a non-default loopback address work in both protocols.
"""

from __future__ import annotations

from clients import imap_id, imap_open, pop3_open
from cyrus import CYRUS_USERS
from layout import PASSWORD

USER = CYRUS_USERS[0]
SOURCE = "127.0.0.9"


def test_cyrus_answers_id_once_before_login_and_again_after(cyrus):
    imap = imap_open(cyrus.host, cyrus.imap_port, "plain", None)
    try:
        first = imap_id(imap, '("name" "proxy" "x-originating-ip" "192.0.2.44")')
        assert first["name"] == "Cyrus IMAPD", first
        assert first["vendor"] == "Project Cyrus" and first["version"].startswith("3.6.1"), first
        typ, data = imap._simple_command("ID", '("name" "second")')
        assert (typ, data) == ("OK", [b"NIL"]), (typ, data)
        assert imap._untagged_response(typ, [None], "ID")[1] == [None]  # no "* ID" this time
        assert imap.login(USER, PASSWORD)[0] == "OK"
        assert imap_id(imap)["name"] == "Cyrus IMAPD"  # answered again once logged in
    finally:
        imap.logout()
    pop = pop3_open(cyrus.host, cyrus.pop3_port, "plain", None)
    try:
        capa = pop.capa()
        assert "XCLIENT" not in capa and capa["IMPLEMENTATION"][:2] == ["Cyrus", "POP3"], capa
    finally:
        pop.quit()


def test_logins_with_forwarded_id_work_on_cyrus(cyrus_mailgate_factory, cyrus, pki):
    mg = cyrus_mailgate_factory(cyrus)
    assert mg.routing["backends"][cyrus.name]["forward_client"] == "id"
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE)
    try:
        # Pre-auth ID is mailgate's own answer; its fields travel inside the forwarded ID.
        assert imap_id(imap, '("name" "e2e-client" "version" "1.0")')["name"] == "mailgate"
        typ, data = imap.login(USER, PASSWORD)
        assert typ == "OK" and f"SESSIONID=<{cyrus.name}-".encode() in data[0], data
        after = imap_id(imap)
        assert after["name"] == "Cyrus IMAPD", after
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert, source=SOURCE)
    try:
        pop.user(USER)
        assert pop.pass_(PASSWORD).startswith(b"+OK Mailbox locked and ready")
        assert pop.stat()[0] >= 0
    finally:
        pop.quit()
