"""SIGTERM: pre-auth sessions are told at once (IMAP `* BYE [UNAVAILABLE]`, POP3
`-ERR [SYS/TEMP]`), a spliced session keeps working during shutdown_grace and is then
closed, and the process exits; a second signal exits at once."""

from __future__ import annotations

import imaplib
import signal
import socket
import time

from clients import imap_open, read_line
from layout import PASSWORD

GRACE = 2.0


def _preauth(port: int, greeting: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert read_line(s).startswith(greeting)
    return s


def test_sigterm_tells_preauth_sessions_and_drains_spliced_ones(mailgate_factory, pki):
    mg = mailgate_factory(config={"shutdown_grace": f"{GRACE:g}s", "shutdown_close_window": "1s"})
    spliced = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    spliced.login("alice@example.com", PASSWORD)
    spliced.select("INBOX")
    imap_pre = _preauth(mg.ports["imap"], b"* OK")
    pop3_pre = _preauth(mg.ports["pop3"], b"+OK")

    mg.signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        assert read_line(imap_pre, timeout=3).startswith(b"* BYE [UNAVAILABLE]")
        assert read_line(pop3_pre, timeout=3).startswith(b"-ERR [SYS/TEMP]")

        # Still spliced during the grace period.
        assert spliced.noop()[0] == "OK"
        assert time.monotonic() - sent < GRACE

        # Then closed by mailgate within the close window after the grace (plus at most
        # 2 s waiting for a quiet moment), with a BYE saying why: never a silent close.
        closed_at = None
        why = ""
        while time.monotonic() - sent < GRACE + 1 + 2 + 3:
            try:
                spliced.noop()
            except (imaplib.IMAP4.abort, OSError, EOFError) as e:
                closed_at = time.monotonic()
                why = str(e)
                break
            time.sleep(0.2)
        assert closed_at is not None, "spliced session still open after the grace period"
        assert "shutting down" in why, f"closed without the BYE: {why!r}"
        assert closed_at - sent >= GRACE * 0.5, "spliced session closed long before the grace ended"
        assert mg.wait_exit(timeout=5) == 0
    finally:
        imap_pre.close()
        pop3_pre.close()
        spliced.shutdown()


def test_second_signal_exits_at_once(mailgate_factory, pki):
    mg = mailgate_factory(config={"shutdown_grace": "30s"})
    spliced = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        spliced.login("bob@example.org", PASSWORD)
        mg.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert mg.running(), "exited before the grace period with a spliced session open"
        mg.signal(signal.SIGTERM)
        mg.wait_exit(timeout=3)
    finally:
        spliced.shutdown()
