"""Observability that operators expect (issue 13, item 7), against real Dovecot.

* The session id in mailgate's log is the one the backend logs: a login through mailgate,
  Dovecot's ``Login: ... session=<mg-...>`` line and mailgate's ``session closed`` line of
  that very connection (found by the client's port) carry the same ``mg-...`` string
  (IMAP ID ``x-session-id`` and POP3 XCLIENT ``SESSION=``; text and JSON logs).
* ``mailgate_bytes_total`` grows while a session is still open (a FETCH of a large message
  shows up before the logout).
* ``mailgate_tls_handshake_failures_total{listener,reason}``: one real failure of each kind
  (eof, protocol, certificate, alpn, timeout, and STARTTLS on the plaintext listener).
* ``mailgate_connections_refused_total{reason}``: per-IP cap, connection cap, pre-auth cap
  and TLS-handshake cap, each refused for real.
* ``mailgate_build_info`` and the ``process_*`` families on a live ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import time
import urllib.error
import uuid

import pytest

from clients import IMAP4, imap_id, imap_open, pop3_open, read_line, tls_context
from layout import PASSWORD

MARGIN = 10.0  # generous bound for "within a second" on a loaded 2-core machine


def scrape(mg) -> str:
    # The harness waits for the mail listeners only; the admin listener may follow a moment later.
    deadline = time.monotonic() + MARGIN
    while True:
        try:
            code, _, body = mg.http("GET", "/metrics", token=None)
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert code == 200, body
    return body


def sample(body: str, name: str, **labels: str) -> float:
    """The value of one series (0 when it is absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return 0.0


def wait_for(what: str, check, timeout: float = MARGIN):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def session_line(mg, client_port: int, source: str) -> str:
    """mailgate's ``session closed`` line of the connection from ``source:client_port``."""
    def find():
        for line in mg.out_path.read_text(errors="replace").splitlines():
            if "session closed" in line and (f"client={source}:{client_port} " in line
                                             or f'"client":"{source}:{client_port}"' in line):
                return line
        return None
    return wait_for(f"mailgate's log line of {source}:{client_port}", find)


def logged_id(line: str) -> str:
    if line.startswith("{"):
        record = json.loads(line)
        spans = record.get("spans", []) + [record.get("span", {})]
        ids = {s["id"] for s in spans if "id" in s}
        assert len(ids) == 1, line
        return ids.pop()
    m = re.search(r"\bid=(mg-[0-9a-f]+)\b", line)
    assert m, line
    return m.group(1)


# --- the session id ------------------------------------------------------------------------

@pytest.mark.parametrize("log_format", ["text", "json"])
def test_imap_session_id_in_mailgates_log_is_the_one_dovecot_logs(
        mailgate_factory, backends, pki, log_format):
    mg = mailgate_factory(config={"log": {"format": log_format}})
    mail1 = backends["mail1"]
    since = mail1.log_size()
    source = "127.0.0.31"
    tag = f"sid-{uuid.uuid4().hex[:8]}"
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=source)
    client_port = imap.sock.getsockname()[1]
    try:
        imap_id(imap, f'("name" "{tag}")')
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
    login = mail1.wait_log("imap-login: Info: Login: user=<alice@example.com>", since=since)
    # This login is ours: Dovecot saw our client's port (x-originating-port).
    assert f"rip={source}," in login, login
    dovecot_session = re.search(r"session=<([^>]+)>", login)
    assert dovecot_session, login
    ours = logged_id(session_line(mg, client_port, source))
    assert re.fullmatch(r"mg-[0-9a-f]+", ours), ours
    assert dovecot_session.group(1) == ours, (login, ours)


def test_pop3_session_id_in_mailgates_log_is_the_one_dovecot_logs(mailgate, backends, pki):
    mail2 = backends["mail2"]
    since = mail2.log_size()
    source = "127.0.0.32"
    pop = pop3_open("127.0.0.1", mailgate.ports["pop3"], "plain", pki.ca_cert, source=source)
    client_port = pop.sock.getsockname()[1]
    try:
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
    finally:
        pop.quit()
    login = mail2.wait_log("pop3-login: Info: Login: user=<bob@example.org>", since=since)
    assert f"rip={source}," in login, login
    dovecot_session = re.search(r"session=<([^>]+)>", login)
    assert dovecot_session, login
    assert dovecot_session.group(1) == logged_id(session_line(mailgate, client_port, source))


# --- bytes while the session runs ----------------------------------------------------------

def test_bytes_total_grows_while_the_session_is_still_open(mailgate, backends, pki):
    size = 400_000
    subject = f"big-{uuid.uuid4().hex[:8]}"
    backends["mail1"].seed("alice@example.com", subject, body="x" * (size - 2) + "\r\n")
    series = {"backend": "mail1", "direction": "backend_to_client"}
    imap = imap_open("127.0.0.1", mailgate.ports["imap"], "plain", pki.ca_cert)
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        typ, found = imap.search(None, "SUBJECT", subject)
        assert typ == "OK" and found[0], found
        # Settle: what the login and SELECT moved gets reported (at most a second late).
        time.sleep(1.5)
        before = sample(scrape(mailgate), "mailgate_bytes_total", **series)
        typ, msg = imap.fetch(found[0].split()[-1], "(BODY.PEEK[])")
        assert typ == "OK" and len(msg[0][1]) >= size
        # The session stays open: the counter must move anyway, within about a second.
        grown = wait_for(
            "bytes_total to include the FETCH",
            lambda: (v := sample(scrape(mailgate), "mailgate_bytes_total", **series)) >= before + size and v)
        assert grown >= before + size
        up = sample(scrape(mailgate), "mailgate_bytes_total",
                    backend="mail1", direction="client_to_backend")
        assert up > 0
    finally:
        imap.logout()


# --- TLS handshake failures ----------------------------------------------------------------

def _raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed(sock: socket.socket, timeout: float = MARGIN) -> bool:
    """True once the peer closed (EOF or reset) within ``timeout``, False if it did not."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while sock.recv(4096):
            if time.monotonic() > deadline:
                return False
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return True


def test_tls_handshake_failures_are_counted_by_listener_and_reason(mailgate_factory, pki):
    mg = mailgate_factory(config={"limits": {"tls_handshake_timeout": "1s"}})
    imaps = mg.ports["imaps"]
    # The harness's own readiness check connected to every listener and left: those eofs
    # are real and counted already; this test counts from here.
    time.sleep(0.3)
    base = scrape(mg)

    # eof: the client goes away mid-handshake.
    s = _raw(imaps)
    s.close()
    # protocol: plaintext IMAP on the TLS port.
    s = _raw(imaps)
    s.sendall(b"a1 CAPABILITY\r\n")
    assert _closed(s)
    s.close()
    # certificate: a client that does not trust mailgate's CA refuses its certificate.
    untrusting = ssl.create_default_context()
    untrusting.check_hostname = False
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.wrap_socket(_raw(imaps), server_hostname="localhost")
    # alpn: ALPN offered, but neither imap nor pop3.
    ctx = tls_context(pki.ca_cert)
    ctx.set_alpn_protocols(["http/1.1"])
    with pytest.raises(ssl.SSLError):
        ctx.wrap_socket(_raw(imaps), server_hostname="localhost")
    # timeout: TCP only, no ClientHello; mailgate closes after the 1 s limit.
    s = _raw(imaps)
    started = time.monotonic()
    assert _closed(s)
    assert time.monotonic() - started < 1 + MARGIN
    s.close()
    # STARTTLS on the plaintext listener, then garbage instead of a ClientHello.
    s = _raw(mg.ports["imap"])
    assert read_line(s).startswith(b"* OK")
    s.sendall(b"a1 STARTTLS\r\n")
    assert read_line(s).startswith(b"a1 OK")
    s.sendall(b"\x16\x03\x01\x00\x05hello")
    assert _closed(s)
    s.close()

    want = {("imaps", "eof"): 1, ("imaps", "protocol"): 1, ("imaps", "certificate"): 1,
            ("imaps", "alpn"): 1, ("imaps", "timeout"): 1, ("imap", "protocol"): 1}

    def counted():
        body = scrape(mg)
        got = {k: sample(body, "mailgate_tls_handshake_failures_total",
                         listener=k[0], reason=k[1])
               - sample(base, "mailgate_tls_handshake_failures_total",
                        listener=k[0], reason=k[1]) for k in want}
        return got if got == want else None
    try:
        wait_for("every handshake failure counted", counted)
    except AssertionError:
        raise AssertionError(f"{scrape(mg)}\n{mg.output()}")
    # A good handshake counts nothing.
    imap = imap_open("127.0.0.1", imaps, "tls", pki.ca_cert)
    imap.logout()
    assert counted() == want
    # The session log says why.
    out = mg.out_path.read_text(errors="replace")
    for reason in ("eof", "protocol", "certificate", "alpn", "timeout"):
        assert re.search(rf'outcome="?tls_failed"? detail="?{reason}\b', out), reason


# --- connections refused -------------------------------------------------------------------

def _greeted(source: str, port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    line = read_line(s)
    assert line.startswith(b"* OK"), line
    return s


def _refused(source: str, port: int) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    try:
        return read_line(s)
    finally:
        s.close()


def test_connections_refused_are_counted_by_reason(mailgate_factory, pki):
    mg = mailgate_factory(config={"limits": {
        "max_sessions_per_ip": 2, "max_connections": 3, "max_preauth_sessions": 2}})
    port = mg.ports["imap"]
    time.sleep(0.3)
    # The harness's readiness check (all listeners at once) may itself have met a cap.
    first = scrape(mg)
    before = {r: sample(first, "mailgate_connections_refused_total", reason=r)
              for r in ("per_ip", "max_connections", "max_preauth")}
    held = []
    # A spliced session holds a connection, not a pre-auth place.
    spliced = IMAP4("127.0.0.1", port, source="127.0.0.41")
    assert spliced.login("alice@example.com", PASSWORD)[0] == "OK"
    held.append(_greeted("127.0.0.41", port))                 # connections 2, pre-auth 1
    try:
        assert b"Too many connections from your address" in _refused("127.0.0.41", port)
        held.append(_greeted("127.0.0.42", port))             # connections 3, pre-auth 2
        assert b"Server busy" in _refused("127.0.0.43", port)  # the connection cap
        spliced.logout()                                      # connections 2, pre-auth 2
        wait_for("the spliced session to end", lambda: sample(
            scrape(mg), "mailgate_sessions_active", listener="imap") == 2)
        assert b"Server busy" in _refused("127.0.0.43", port)  # the pre-auth cap
        body = scrape(mg)
        for reason in ("per_ip", "max_connections", "max_preauth"):
            assert sample(body, "mailgate_connections_refused_total",
                          reason=reason) == before[reason] + 1, (reason, body)
    finally:
        for s in held:
            s.close()
    out = mg.out_path.read_text(errors="replace")
    for outcome, detail in (("per_ip_limit", "per_ip"), ("server_busy", "max_connections"),
                            ("server_busy", "max_preauth")):
        assert re.search(rf'outcome="?{outcome}"? detail="?{detail}\b', out), (outcome, detail)


def test_a_tls_handshake_over_the_cap_waits_for_a_slot(mailgate_factory, pki):
    """Over ``max_tls_handshakes`` a connection waits (within its handshake deadline) for a
    slot instead of being closed: a TLS reconnect storm queues for the CPU, nobody is
    reset for mailgate's own reasons."""
    mg = mailgate_factory(config={"limits": {
        "max_tls_handshakes": 1, "tls_handshake_timeout": "8s"}})
    imaps = mg.ports["imaps"]
    time.sleep(0.3)
    # The harness's readiness check may itself have met the cap (imaps and pop3s at once).
    before = sample(scrape(mg), "mailgate_connections_refused_total", reason="max_tls_handshakes")
    # A client that never sends a ClientHello holds the only handshake place...
    holder = _raw(imaps)
    time.sleep(0.3)
    # ...so a real client's ClientHello waits in its socket: no ServerHello, no close.
    waiter = _raw(imaps)
    tls = tls_context(pki.ca_cert).wrap_socket(waiter, server_hostname="localhost",
                                              do_handshake_on_connect=False)
    try:
        tls.settimeout(1.0)
        with pytest.raises((socket.timeout, ssl.SSLWantReadError, TimeoutError)):
            tls.do_handshake()
        # The holder goes; the waiter's handshake completes and the session is served.
        holder.close()
        tls.settimeout(5.0)
        tls.do_handshake()
        assert read_line(tls).startswith(b"* OK"), "no greeting after the queued handshake"
        assert sample(scrape(mg), "mailgate_connections_refused_total",
                      reason="max_tls_handshakes") == before
    finally:
        holder.close()
        tls.close()


def test_the_open_file_limit_cap_is_counted_as_open_files(mailgate_factory, monkeypatch, tmp_path):
    """Under a hard open-file limit of 300 the connection cap is (300 - 256) / 2 = 22: the
    23rd connection is refused as ``open_files``, not as the configured cap."""
    from mailgate_proc import mailgate_binary
    wrapper = tmp_path / "mailgate-300-fds"
    wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile=300:300 -- "{mailgate_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("MAILGATE_BIN", str(wrapper))
    mg = mailgate_factory(config={"limits": {"max_connections": 1000}})
    assert sample(scrape(mg), "process_max_fds") == 300
    port = mg.ports["imap"]
    held = []
    try:
        while True:
            s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                         source_address=("127.0.0.51", 0))
            line = read_line(s)
            if not line.startswith(b"* OK"):
                s.close()
                assert b"Server busy" in line, line
                break
            held.append(s)
            assert len(held) <= 22, "no cap below the open-file limit"
        assert len(held) == 22
        body = scrape(mg)
        assert sample(body, "mailgate_connections_refused_total", reason="open_files") == 1, body
        assert sample(body, "mailgate_connections_refused_total", reason="max_connections") == 0
    finally:
        for s in held:
            s.close()


# --- build and process ---------------------------------------------------------------------

def test_build_info_and_process_metrics_are_live(mailgate):
    body = scrape(mailgate)
    build = re.search(r'^mailgate_build_info\{(.*)\} 1$', body, re.M)
    assert build, body
    labels = dict(re.findall(r'(\w+)="([^"]*)"', build.group(1)))
    assert set(labels) == {"version", "git_commit", "rustc"}, labels
    version = mailgate.cli("--version").stdout.split()[-1]
    assert labels["version"] == version, (labels, version)
    pid = mailgate.proc.pid
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    open_fds = sample(body, "process_open_fds")
    # Descriptors come and go (probes, the scrape's own socket): roughly the same count.
    assert abs(open_fds - fds) <= 10, (open_fds, fds)
    limit = int(next(l for l in open(f"/proc/{pid}/limits") if l.startswith("Max open files"))
                .split()[3])
    assert sample(body, "process_max_fds") == limit
    rss_kib = int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")).split()[1])
    rss = sample(body, "process_resident_memory_bytes")
    assert 0.5 * rss_kib * 1024 < rss < 2 * rss_kib * 1024, (rss, rss_kib)
    start = sample(body, "process_start_time_seconds")
    assert time.time() - 120 < start <= time.time() + 1, start
    assert re.search(r"^process_cpu_seconds_total \d", body, re.M), body
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    assert abs(sample(body, "process_cpu_seconds_total") - cpu) < 0.5, (body, cpu)
