"""mailgate's own TLS record layer (after rustls' handshake) with real clients and Dovecot.

OpenSSL's ``s_client`` sends TLS 1.3 KeyUpdates in the middle of an IMAP session (its
interactive ``K``: update_requested, mailgate must answer with its own; ``k``: not requested)
while the session is in pre-auth and while it is spliced to Dovecot; every command after them
must still be answered. A large message goes up and comes back down through STARTTLS. A client
listing AES-128-GCM first (as Thunderbird does) gets mailgate's choice, AES-256-GCM.
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

    def __init__(self, port: int, cafile, *opts: str):
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cafile),
             "-crlf", *opts, "-alpn", "imap"],
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
        assert b"TLSv1.2" in _cipher_and_login(s)
    finally:
        s.close()


# NSS (Thunderbird) on AES hardware lists its TLS 1.3 suites in this order; Apple's stack
# also puts AES-128-GCM first.
NSS_ORDER = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
TLS12_AES128_FIRST = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384")


def _cipher_and_login(s: SClient) -> bytes:
    """The suite s_client reports, after a login and a SELECT through it."""
    cipher = s.until(b"New, ")
    s.until(b"* OK")
    s.send(f"a1 LOGIN {USER} {PASSWORD}")
    s.until(b"a1 OK")
    s.send("a2 SELECT INBOX")
    s.until(b"a2 OK")
    s.send("a3 LOGOUT")
    s.until(b"a3 OK")
    return cipher


def test_mailgate_picks_a_32_byte_key_suite_over_the_clients_aes_128_first(mailgate, pki):
    # mailgate follows its own order (AES-256-GCM, ChaCha20, AES-128-GCM): a 32-byte key's
    # contexts are let go while the session idles.
    for opts, want in ((("-tls1_3", "-ciphersuites", NSS_ORDER), b"TLS_AES_256_GCM_SHA384"),
                       (("-tls1_2", "-cipher", TLS12_AES128_FIRST), b"-AES256-GCM-SHA384")):
        s = SClient(mailgate.ports["imaps"], pki.ca_cert, *opts)
        try:
            cipher = _cipher_and_login(s)
        finally:
            s.close()
        assert want in cipher, cipher


def test_a_client_with_aes_128_only_still_gets_it(mailgate, pki):
    s = SClient(mailgate.ports["imaps"], pki.ca_cert, "-tls1_3", "-ciphersuites",
                "TLS_AES_128_GCM_SHA256")
    try:
        cipher = _cipher_and_login(s)
    finally:
        s.close()
    assert b"TLS_AES_128_GCM_SHA256" in cipher, cipher


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
