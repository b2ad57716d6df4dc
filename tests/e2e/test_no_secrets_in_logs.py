"""Passwords, SASL payloads and raw pre-auth lines never reach mailgate's output, even at
trace level: logins of every form (IMAP LOGIN and AUTHENTICATE PLAIN, POP3 USER/PASS and
AUTH PLAIN), right and wrong passwords, unknown domains and the login probes run, then the
whole log is searched for each secret, its base64 form and its bytes as a decimal list (what a
derived `Debug` of a buffer prints); and a log that is not a terminal has no ANSI codes."""

from __future__ import annotations

import base64
import imaplib
import os
import poplib
import re
import time

from layout import PASSWORD, PROBE_PASSWORD

WRONG = "Wr0ng-Guess-7f3a9c"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_no_password_or_sasl_payload_in_trace_logs(mailgate_factory, monkeypatch):
    # Everything at trace level, except the file watcher, which would log every write of
    # this very log file (it sits in the watched config directory).
    monkeypatch.setitem(os.environ, "RUST_LOG", "trace,notify=info,notify_debouncer_full=info")
    mg = mailgate_factory(config={"log": {"level": "trace", "format": "json"},
                                  "limits": {"auth_failure_delay": "0s"}})
    port = mg.ports["imap"]
    plain_ok = _b64(f"\0alice@example.com\0{PASSWORD}")
    plain_bad = _b64(f"\0alice@example.com\0{WRONG}")

    imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        for user in ("alice@example.com", "nobody@unknown.invalid"):
            try:
                imap.login(user, WRONG)
            except imaplib.IMAP4.error:
                pass
        imap.authenticate("PLAIN", lambda _: base64.b64decode(plain_ok))
    finally:
        imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        typ, _ = imap._simple_command("AUTHENTICATE", "PLAIN", plain_bad)
    except imaplib.IMAP4.error:
        pass
    finally:
        imap.shutdown()

    pop = poplib.POP3("127.0.0.1", mg.ports["pop3"], timeout=10)
    try:
        pop.user("bob@example.org")
        try:
            pop.pass_(WRONG)
        except poplib.error_proto:
            pass
        pop.user("bob@example.org")
        pop.pass_(PASSWORD)
    finally:
        pop.quit()
    pop = poplib.POP3("127.0.0.1", mg.ports["pop3"], timeout=10)
    try:
        pop._shortcmd("AUTH PLAIN " + _b64(f"\0bob@example.org\0{PASSWORD}"))
    finally:
        pop.quit()

    time.sleep(1.5)  # let a probe round (login with the probe account) run and log
    out = mg.out_path.read_text(errors="replace")
    assert "session closed" in out, "the log was captured"
    assert '"level":"TRACE"' in out, "trace events were logged"
    for secret in (WRONG, PROBE_PASSWORD, plain_ok, plain_bad,
                   _b64(f"\0bob@example.org\0{PASSWORD}"), f'"{PASSWORD}"', f" {PASSWORD}\r"):
        assert secret not in out, f"secret {secret!r} found in mailgate's log"
    # A derived `Debug` of a byte buffer prints it as decimal numbers, which the greps above
    # never find: no secret's bytes as consecutive numbers, in any layout.
    numbers = [int(n) for n in re.findall(r"\d+", out)]
    for secret in (WRONG, PASSWORD, PROBE_PASSWORD):
        want = list(secret.encode())
        hits = [i for i in range(len(numbers) - len(want) + 1)
                if numbers[i] == want[0] and numbers[i:i + len(want)] == want]
        assert not hits, f"secret {secret!r} found as a byte list in mailgate's log"
    assert "\x1b" not in out, "ANSI escape codes in a log that is not a terminal"
