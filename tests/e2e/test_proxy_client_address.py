"""The backend sees the real client address, not mailgate's: a client connecting from
127.0.0.9 must appear as rip=127.0.0.9 in Dovecot's login log line (forwarded with IMAP ID
x-originating-ip, POP3 XCLIENT)."""

from __future__ import annotations

from clients import imap_open, pop3_open
from layout import PASSWORD

SOURCE = "127.0.0.9"


def test_imap_backend_logs_the_client_address(mailgate, backends, pki):
    mail1 = backends["mail1"]
    since = mail1.log_size()
    imap = imap_open("127.0.0.1", mailgate.ports["imaps"], "tls", pki.ca_cert, source=SOURCE)
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
    line = mail1.wait_log("imap-login: Info: Login: user=<alice@example.com>", since=since)
    assert f"rip={SOURCE}," in line, line


def test_pop3_backend_logs_the_client_address(mailgate, backends, pki):
    mail2 = backends["mail2"]
    since = mail2.log_size()
    pop = pop3_open("127.0.0.1", mailgate.ports["pop3"], "starttls", pki.ca_cert, source=SOURCE)
    try:
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
    finally:
        pop.quit()
    line = mail2.wait_log("pop3-login: Info: Login: user=<bob@example.org>", since=since)
    assert f"rip={SOURCE}," in line, line
