"""mailgate's own TLS record layer (after rustls' handshake) with real clients and Dovecot.

OpenSSL's ``s_client`` sends TLS 1.3 KeyUpdates in the middle of an IMAP session (its
interactive ``K``: update_requested, mailgate must answer with its own; ``k``: not requested)
while the session is in pre-auth and while it is spliced to Dovecot; every command after them
must still be answered. A large message goes up and comes back down through STARTTLS.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import subprocess
import threading
import time
import uuid

from clients import imap_open, imap_search_subject
from layout import PASSWORD

USER = "bob@example.org"


class SClient:
    """``openssl s_client`` on a pipe, its stdout read line by line in a thread."""

    def __init__(self, port: int, cafile, tls: str):
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cafile),
             "-crlf", tls, "-alpn", "imap"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.seen: list[bytes] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, line: str):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def until(self, prefix: bytes, timeout: float = 10.0) -> bytes:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            assert left > 0, f"no line starting {prefix!r}; saw {self.seen[-15:]}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_openssl_key_updates_mid_session_before_and_after_login(mailgate, pki):
    s = SClient(mailgate.ports["imaps"], pki.ca_cert, "-tls1_3")
    try:
        s.until(b"* OK")
        # Pre-auth: mailgate itself answers.
        s.send("K")
        s.until(b"KEYUPDATE")
        s.send("a1 CAPABILITY")
        s.until(b"a1 OK")
        s.send("k")
        s.until(b"KEYUPDATE")
        s.send(f"a2 LOGIN {USER} {PASSWORD}")
        s.until(b"a2 OK")
        # Spliced to Dovecot: the record layer goes on under new keys.
        for i in range(3, 9):
            s.send("K" if i % 2 else "k")
            s.until(b"KEYUPDATE")
            s.send(f"a{i} SELECT INBOX")
            s.until(f"a{i} OK".encode())
        s.send("a9 LOGOUT")
        s.until(b"* BYE")
        s.until(b"a9 OK")
    finally:
        s.close()
    assert not any(b"alert" in line.lower() for line in s.seen), s.seen[-10:]


def test_openssl_tls12_session_through_mailgate(mailgate, pki):
    """TLS 1.2 (no key updates there): a whole session with s_client, closed cleanly."""
    s = SClient(mailgate.ports["imaps"], pki.ca_cert, "-tls1_2")
    try:
        s.until(b"* OK")
        s.send(f"a1 LOGIN {USER} {PASSWORD}")
        s.until(b"a1 OK")
        s.send("a2 SELECT INBOX")
        s.until(b"a2 OK")
        s.send("a3 LOGOUT")
        s.until(b"a3 OK")
    finally:
        s.close()


def test_large_message_up_and_down_through_starttls(mailgate, pki):
    subject = f"large-{uuid.uuid4().hex[:12]}"
    # ~6 MiB of base64-like lines (a big attachment), CRLF line ends.
    rnd = os.urandom(4_500_000)

    b64 = base64.b64encode(rnd)
    body = b"\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + b"\r\n"
    msg = (f"From: a@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n"
           "Content-Type: text/plain\r\n\r\n").encode() + body
    imap = imap_open("127.0.0.1", mailgate.ports["imap"], "starttls", pki.ca_cert, timeout=60)
    try:
        assert imap.login(USER, PASSWORD)[0] == "OK"
        typ, _ = imap.append("INBOX", None, None, msg)
        assert typ == "OK"
        imap.select("INBOX")
        uids = imap_search_subject(imap, subject)
        assert len(uids) == 1
        typ, data = imap.uid("FETCH", uids[0].decode(), "(BODY.PEEK[])")
        assert typ == "OK"
        got = data[0][1]
        assert len(got) == len(msg)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(msg).hexdigest()
    finally:
        imap.logout()
