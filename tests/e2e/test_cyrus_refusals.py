"""What Cyrus IMAP 3.6.1 answers when it refuses, directly and as its clients see it
through mailgate. docs/backends.md has the table of these texts; the direct assertions
here are its proof (a different Cyrus build fails them, and the table must be updated).

* Wrong password: IMAP ``NO Login failed: authentication failure`` (LOGIN) and
  ``NO authentication failure`` (AUTHENTICATE), no response code; POP3
  ``-ERR [AUTH] Invalid login`` (PASS) and ``-ERR [AUTH] authenticating: authentication
  failure`` (AUTH). Through mailgate the client gets Cyrus's refusal under its own tag, and
  the backend stays up (a refused password is the client's failure).
* Its password check unreachable (saslauthd gone): IMAP ``NO Login failed: generic
  failure``, POP3 the same ``-ERR [AUTH] Invalid login`` as a wrong password.
* Over its ``maxchild`` limit: no answer at all. TCP connects (the kernel's backlog) and the
  greeting comes only when a session ends. mailgate's greeting timeout turns that into
  ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]``.
* Shut down by ``conf/msg/shutdown``: POP3 greets, then at once ``-ERR [SYS/TEMP] <text>``
  and closes; IMAP still accepts the login and answers the next command with
  ``* BYE [ALERT] <text>``.

Cyrus waits ``failedloginpause`` (default 3 s) before a refusal; the harness sets it to 0
and mailgate's own ``auth_failure_delay`` is 0 here, to keep the suite fast.
"""

from __future__ import annotations

import base64
import socket
import time

import pytest

from clients import read_line
from cyrus import CYRUS_USERS
from health_log import health_transitions
from layout import PASSWORD

USER = CYRUS_USERS[0]
GREETING_TIMEOUT = 2.0
SLACK = 1.5
CONFIG = {
    "limits": {"auth_failure_delay": "0s", "backend_greeting_timeout": f"{GREETING_TIMEOUT:g}s"},
    "log": {"level": "info", "format": "json"},
}
CYRUS_VERSION = b"3.6.1-Debian-3.6.1-4+deb12u5"


def exchange(port: int, commands: list[bytes], timeout: float = 5.0) -> list[bytes]:
    """The greeting, then each command's reply lines up to the first line that is not
    untagged (``* ...``); a closed connection ends the list with b"<closed>"."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        lines = [read_line(s, timeout)]
        for command in commands:
            try:
                s.sendall(command)
            except OSError:
                return lines + [b"<closed>"]
            while True:
                line = read_line(s, timeout)
                if not line:
                    return lines + [b"<closed>"]
                lines.append(line)
                if not line.startswith(b"* ") or line.startswith(b"* BYE"):
                    break
    return lines


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def test_wrong_password_texts(cyrus_mailgate_factory, cyrus):
    # Directly: Cyrus's own texts (and greetings, for the table).
    imap = exchange(cyrus.imap_port, [f"a LOGIN {USER} wrong\r\n".encode(),
                                      b"b AUTHENTICATE PLAIN " + plain(USER, "wrong") + b"\r\n"])
    assert imap[0] == (b"* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE AUTH=PLAIN AUTH=LOGIN "
                       b"SASL-IR] " + cyrus.name.encode() + b" Cyrus IMAP " + CYRUS_VERSION +
                       b" server ready\r\n"), imap[0]
    assert imap[1:] == [b"a NO Login failed: authentication failure\r\n",
                        b"b NO authentication failure\r\n"], imap
    pop = exchange(cyrus.pop3_port, [f"USER {USER}\r\n".encode(), b"PASS wrong\r\n",
                                     b"AUTH PLAIN " + plain(USER, "wrong") + b"\r\n"])
    assert pop[0].startswith(b"+OK " + cyrus.name.encode() + b" Cyrus POP3 " + CYRUS_VERSION +
                             b" server ready <"), pop[0]  # with an APOP timestamp
    assert pop[1:] == [b"+OK Name is a valid mailbox\r\n", b"-ERR [AUTH] Invalid login\r\n",
                       b"-ERR [AUTH] authenticating: authentication failure\r\n"], pop

    # Through mailgate: Cyrus's refusal, under the client's tag.
    mg = cyrus_mailgate_factory(cyrus, config=CONFIG)
    imap = exchange(mg.ports["imap"], [f"t1 LOGIN {USER} wrong\r\n".encode(),
                                       b"t2 AUTHENTICATE PLAIN " + plain(USER, "wrong") + b"\r\n"])
    assert imap[1] == b"t1 NO Login failed: authentication failure\r\n", imap
    # mailgate may replay AUTHENTICATE as LOGIN or as AUTHENTICATE: either Cyrus text.
    assert imap[2] in (b"t2 NO Login failed: authentication failure\r\n",
                       b"t2 NO authentication failure\r\n"), imap
    pop = exchange(mg.ports["pop3"], [f"USER {USER}\r\n".encode(), b"PASS wrong\r\n",
                                      b"AUTH PLAIN " + plain(USER, "wrong") + b"\r\n"])
    assert pop[2] == b"-ERR [AUTH] Invalid login\r\n", pop
    assert pop[3] in (b"-ERR [AUTH] Invalid login\r\n",
                      b"-ERR [AUTH] authenticating: authentication failure\r\n"), pop
    # Refused credentials are the client's failure: Cyrus stays up, the right password works.
    assert mg.backend_status(cyrus.name)["state"] == "up"
    assert health_transitions(mg, cyrus.name) == []
    ok = exchange(mg.ports["imap"], [f"t3 LOGIN {USER} {PASSWORD}\r\n".encode()])
    assert ok[1].startswith(b"t3 OK [CAPABILITY "), ok


def test_password_check_unreachable_texts(cyrus_mailgate_factory, cyrus):
    mg = cyrus_mailgate_factory(cyrus, config=CONFIG, probe=False)
    cyrus.auth_mode("gone")
    login = [f"a LOGIN {USER} {PASSWORD}\r\n".encode()]
    user_pass = [f"USER {USER}\r\n".encode(), f"PASS {PASSWORD}\r\n".encode()]
    assert exchange(cyrus.imap_port, login)[1:] == [b"a NO Login failed: generic failure\r\n"]
    assert exchange(cyrus.pop3_port, user_pass)[2:] == [b"-ERR [AUTH] Invalid login\r\n"]
    # No response code tells a client (or mailgate) that this is Cyrus's trouble, not the
    # password's: mailgate passes the refusal through like a wrong password.
    assert exchange(mg.ports["imap"], login)[1:] == [b"a NO Login failed: generic failure\r\n"]
    assert exchange(mg.ports["pop3"], user_pass)[2:] == [b"-ERR [AUTH] Invalid login\r\n"]


def test_over_maxchild_cyrus_does_not_answer(cyrus_mailgate_factory, cyrus_factory):
    small = cyrus_factory("cyrus2", imap_maxchild=1, pop3_maxchild=1)
    held = [socket.create_connection((small.host, port), timeout=5)
            for port in (small.imap_port, small.pop3_port)]
    try:
        for s in held:  # the one session each service may have
            assert read_line(s)[:3] in (b"* O", b"+OK")
        # Directly: TCP connects, nothing is sent.
        waiting = []
        for port in (small.imap_port, small.pop3_port):
            s = socket.create_connection((small.host, port), timeout=5)
            waiting.append(s)
            with pytest.raises(socket.timeout):
                read_line(s, timeout=1.0)
        # Through mailgate: refused within the greeting timeout (or at once, if the probes
        # already marked it down) with mailgate's codes.
        mg = cyrus_mailgate_factory(small, config=CONFIG)
        start = time.monotonic()
        imap = exchange(mg.ports["imap"], [f"a LOGIN {USER} {PASSWORD}\r\n".encode()],
                        timeout=GREETING_TIMEOUT + 10)
        took = time.monotonic() - start
        assert imap[1].startswith(b"a NO [UNAVAILABLE] "), imap
        assert took < GREETING_TIMEOUT + SLACK, took
        start = time.monotonic()
        pop = exchange(mg.ports["pop3"], [f"USER {USER}\r\n".encode(),
                                          f"PASS {PASSWORD}\r\n".encode()],
                       timeout=GREETING_TIMEOUT + 10)
        took = time.monotonic() - start
        assert pop[2].startswith(b"-ERR [SYS/TEMP] "), pop
        assert took < GREETING_TIMEOUT + SLACK, took
        print(f"over maxchild, through mailgate: {imap[1]!r} {pop[2]!r}")
    finally:
        for s in held:
            s.close()
    # A session ended: the waiting connections get their greetings now.
    for s in waiting:
        assert read_line(s, timeout=5)[:3] in (b"* O", b"+OK")
        s.close()


def test_shutdown_file_texts(cyrus_mailgate_factory, cyrus):
    text = "Cyrus is down for maintenance until 10:00"
    mg = cyrus_mailgate_factory(cyrus, config=CONFIG, probe=False)
    cyrus.shutdown_file.write_text(text + "\n")
    cyrus.shutdown_file.chmod(0o644)

    # POP3 directly: greeting, then unasked "-ERR [SYS/TEMP] <text>", then close.
    with socket.create_connection((cyrus.host, cyrus.pop3_port), timeout=5) as s:
        assert read_line(s).startswith(b"+OK ")
        assert read_line(s) == f"-ERR [SYS/TEMP] {text}\r\n".encode()
        assert read_line(s) == b""
    # IMAP directly: the login is accepted, the next command gets "* BYE [ALERT] <text>".
    login_select = [f"a LOGIN {USER} {PASSWORD}\r\n".encode(), b"b SELECT INBOX\r\n"]
    imap = exchange(cyrus.imap_port, login_select)
    assert imap[1].startswith(b"a OK [CAPABILITY "), imap
    assert imap[2] == f"* BYE [ALERT] {text}\r\n".encode(), imap

    # Through mailgate: POP3 with the backend's code [SYS/TEMP]; IMAP spliced as it is.
    pop = exchange(mg.ports["pop3"], [f"USER {USER}\r\n".encode(),
                                      f"PASS {PASSWORD}\r\n".encode()])
    assert pop[2].startswith(b"-ERR [SYS/TEMP] "), pop
    print(f"POP3 shutdown file through mailgate: {pop[2]!r}")
    imap = exchange(mg.ports["imap"], login_select)
    assert imap[1].startswith(b"a OK [CAPABILITY "), imap
    assert imap[2] == f"* BYE [ALERT] {text}\r\n".encode(), imap
