"""Real mail clients for the end-to-end tests: Python's imaplib/poplib and the curl CLI.

Connections can start from a chosen loopback source address (e.g. 127.0.0.9) and use plain
TCP, STARTTLS/STLS or implicit TLS with a context that trusts the test CA. Every socket has a
short timeout so that a missing or hung proxy fails a test in seconds, not minutes.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

TIMEOUT = 5.0
MODES = ("plain", "starttls", "tls")

# imaplib knows no ID command; allow it in every state.
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))


def tls_context(cafile: Path) -> ssl.SSLContext:
    """Client TLS context trusting only ``cafile``, checking the host name, TLS 1.2+."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _connect(host: str, port: int, timeout: float | None, source: str | None) -> socket.socket:
    return socket.create_connection((host, port), timeout,
                                    source_address=(source, 0) if source else None)


# --- IMAP -----------------------------------------------------------------------------------

class IMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 that can connect from a given source address."""

    def __init__(self, host: str, port: int, *, source: str | None = None, timeout: float = TIMEOUT):
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return _connect(self.host, self.port, timeout, self.source)


class IMAP4_SSL(imaplib.IMAP4_SSL):
    """imaplib.IMAP4_SSL that can connect from a given source address."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext,
                 source: str | None = None, timeout: float = TIMEOUT):
        self.source = source
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = _connect(self.host, self.port, timeout, self.source)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def imap_open(host: str, port: int, mode: str, cafile: Path, source: str | None = None,
              timeout: float = TIMEOUT) -> imaplib.IMAP4:
    """Connect in ``mode`` (plain | starttls | tls); not logged in yet.

    ``port`` is the plaintext port for plain/starttls and the implicit-TLS port for tls.
    """
    if mode == "tls":
        return IMAP4_SSL(host, port, ssl_context=tls_context(cafile), source=source, timeout=timeout)
    imap = IMAP4(host, port, source=source, timeout=timeout)
    if mode == "starttls":
        imap.starttls(ssl_context=tls_context(cafile))
    elif mode != "plain":
        raise ValueError(mode)
    return imap


def imap_id(imap: imaplib.IMAP4, fields: str = "NIL") -> dict[str, str]:
    """Send ``ID fields`` and return the server's ID answer as a dict."""
    typ, _ = imap._simple_command("ID", fields)
    assert typ == "OK", f"ID failed: {typ}"
    _, data = imap._untagged_response(typ, [None], "ID")
    raw = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
    pairs = re.findall(r'"((?:[^"\\]|\\.)*)"\s+(?:"((?:[^"\\]|\\.)*)"|NIL)', raw)
    return {k.lower(): v for k, v in pairs}


def imap_backend(imap: imaplib.IMAP4) -> str:
    """Which backend this logged-in session reached (Dovecot's ID x-backend field)."""
    return imap_id(imap).get("x-backend", "")


def imap_append(imap: imaplib.IMAP4, subject: str, body: str = "Appended by a test.\r\n",
                mailbox: str = "INBOX") -> None:
    """APPEND one small message."""
    msg = (f"From: tests@example.invalid\r\nSubject: {subject}\r\n\r\n{body}").encode()
    typ, data = imap.append(mailbox, None, None, msg)
    assert typ == "OK", f"APPEND failed: {data}"


def imap_search_subject(imap: imaplib.IMAP4, subject: str) -> list[bytes]:
    """UIDs of messages whose subject contains ``subject`` (mailbox must be selected)."""
    typ, data = imap.uid("SEARCH", "SUBJECT", f'"{subject}"')
    assert typ == "OK", data
    return data[0].split()


def imap_idle_until_exists(imap: imaplib.IMAP4, trigger, timeout: float = TIMEOUT) -> int:
    """IDLE, run ``trigger()`` once idling, wait for ``* N EXISTS``, send DONE; return N."""
    tag = imap._new_tag().decode()
    imap.send(f"{tag} IDLE\r\n".encode())
    line = imap.readline()
    assert line.startswith(b"+"), f"IDLE not accepted: {line!r}"
    trigger()
    deadline = time.monotonic() + timeout
    exists = None
    while exists is None:
        assert time.monotonic() < deadline, "no EXISTS while idling"
        line = imap.readline()
        assert line, "connection closed while idling"
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            exists = int(m.group(1))
    imap.send(b"DONE\r\n")
    while True:
        line = imap.readline()
        assert line, "connection closed after DONE"
        if line.startswith(tag.encode() + b" "):
            assert line.split()[1] == b"OK", f"IDLE ended with {line!r}"
            return exists


# --- POP3 -----------------------------------------------------------------------------------

class POP3(poplib.POP3):
    """poplib.POP3 that can connect from a given source address."""

    def __init__(self, host: str, port: int, *, source: str | None = None, timeout: float = TIMEOUT):
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return _connect(self.host, self.port, timeout, self.source)


class POP3_SSL(poplib.POP3_SSL):
    """poplib.POP3_SSL that can connect from a given source address."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext,
                 source: str | None = None, timeout: float = TIMEOUT):
        self.source = source
        super().__init__(host, port, context=context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = _connect(self.host, self.port, timeout, self.source)
        return self.context.wrap_socket(sock, server_hostname=self.host)


def pop3_open(host: str, port: int, mode: str, cafile: Path, source: str | None = None,
              timeout: float = TIMEOUT) -> poplib.POP3:
    """Connect in ``mode`` (plain | starttls | tls); not logged in yet."""
    if mode == "tls":
        return POP3_SSL(host, port, context=tls_context(cafile), source=source, timeout=timeout)
    pop = POP3(host, port, source=source, timeout=timeout)
    if mode == "starttls":
        pop.stls(context=tls_context(cafile))
    elif mode != "plain":
        raise ValueError(mode)
    return pop


# --- curl -----------------------------------------------------------------------------------

def curl(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run curl (silent, errors shown, short timeouts) and capture stdout/stderr as text."""
    cmd = ["curl", "-sS", "--connect-timeout", "3", "--max-time", str(int(timeout)), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5,
                          stdin=subprocess.DEVNULL)


# --- raw lines (for greetings and shutdown messages) ----------------------------------------

def closed_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` (reads and drops what it sends
    first, a BYE say)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return False
    except OSError:
        pass
    return True


def read_line(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    """Read one CRLF-terminated line byte by byte (b'' on EOF)."""
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf
