"""Capability drift (issue #14 part 1), against three real Dovecot instances configured
differently behind one mailgate:

* ``capsPlain``: Dovecot's defaults (``SASL-IR``, ``ID``, ``AUTH=PLAIN AUTH=LOGIN``);
* ``capsNoIR``: ``imap_capability`` without ``SASL-IR`` (pre- and post-login);
* ``capsCram``: one extra mechanism, ``auth_mechanisms = plain login cram-md5``.

What is checked, all through the running processes:

* after the probes, mailgate's pre-login CAPABILITY / CAPA offers only what every backend
  supports (no SASL-IR, no CRAM-MD5, which mailgate cannot relay anyway), while a client that
  sends an initial response anyway is still logged in to the backend without SASL-IR;
* ``/status`` (each backend's pre- and post-login lists and SASL mechanisms, the drift),
  ``mailgate ctl status`` and the ``backend_capability`` / ``capability_drift`` metrics name
  the drift;
* a token login for a mechanism the routed backend does not list (``oauth: true``, XOAUTH2 to
  a Dovecot without it) gets mailgate's tagged ``NO [CANNOT]`` / ``-ERR``, the backend never
  sees an AUTHENTICATE, and its health is untouched;
* a backend whose capabilities change between probes (the "upgrade": capsNoIR gets SASL-IR
  back by a Dovecot reload) is logged once with what changed, and mailgate offers SASL-IR again.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from dovecot import Dovecot, stop_many
from ports import free_port
from layout import PROBE_PASSWORD, PROBE_USER

PASSWORD = "secret"
HOMES = {"pat@caps-plain.test": "capsPlain", "nia@caps-noir.test": "capsNoIR",
         "cal@caps-cram.test": "capsCram"}
NO_SASL_IR = "IMAP4rev1 LOGIN-REFERRALS ID ENABLE IDLE"
# Failed logins come from a loopback address of their own (mailgate's per-IP back-off).
SOURCE = "127.0.0.71"


@pytest.fixture(scope="module")
def cap_backends(work_dir: Path):
    started: dict[str, Dovecot] = {}
    options = {"capsNoIR": {"imap_capability": NO_SASL_IR},
               "capsCram": {"auth_mechanisms": "plain login cram-md5"}}
    try:
        for user, name in HOMES.items():
            started[name] = Dovecot(
                name=name, root=work_dir / "cap-backends" / name,
                users={user: PASSWORD, PROBE_USER: PROBE_PASSWORD},
                imap_port=free_port(), pop3_port=free_port(), **options.get(name, {})).start()
        yield started
    finally:
        stop_many(started.values())


def _routing(cap_backends: dict[str, Dovecot], probe_secret: Path) -> dict:
    return {
        # The session's default backends (mail1..3) are left out: only these three are reachable.
        "backends": {"mail1": None, "mail2": None, "mail3": None,
                     **{name: {"host": b.host, "imap_port": b.imap_port, "pop3_port": b.pop3_port,
                               "tls": "none", "max_sessions": 50, "forward_client": "id",
                               "probe": {"user": PROBE_USER, "password_file": str(probe_secret)}}
                        for name, b in cap_backends.items()}},
        "domains": {"example.com": None, "example.org": None, "*.example.net": None,
                    **{user.split("@")[1]: name for user, name in HOMES.items()}},
        "default_domain": None,
    }


@pytest.fixture
def mg(mailgate_factory, cap_backends, probe_secret_file):
    return mailgate_factory(config={"oauth": True, "limits": {"auth_failure_delay": "100ms"}},
                            routing=_routing(cap_backends, probe_secret_file))


def _wait(what: str, check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _probed(mg, protocol: str = "imap"):
    def check():
        d = mg.status_json().get("capability_drift", {}).get(protocol)
        if d and sorted(d["probed"]) == sorted(HOMES.values()):
            # With the probe account's post-login lists too.
            st = mg.status_json()
            if all(b["capabilities"].get(protocol, {}).get("post_login") for b in st["backends"]):
                return st
        return None
    return _wait(f"every {protocol} backend probed", check)


class Line:
    """A raw client connection, one CRLF line at a time."""

    def __init__(self, addr, source: str | None = None):
        self.sock = socket.create_connection(addr, timeout=10,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed; got {self.buf!r}"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode(errors="replace")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def until(self, prefix: str) -> list[str]:
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(prefix):
                return lines

    def close(self) -> None:
        self.sock.close()


def _imap_caps(mg) -> set[str]:
    c = Line(mg.addr("imap"))
    c.line()  # greeting
    c.send("c1 CAPABILITY")
    lines = c.until("c1 ")
    c.close()
    caps = next(l for l in lines if l.startswith("* CAPABILITY "))
    return set(caps.split()[2:])


def _pop3_capa(mg) -> list[str]:
    c = Line(mg.addr("pop3"))
    c.line()
    c.send("CAPA")
    lines = c.until(".")
    c.close()
    return lines


def _metric_lines(mg, name: str) -> list[str]:
    code, _, body = mg.http("GET", "/metrics", token=None)
    assert code == 200
    return [l for l in body.splitlines() if l.startswith(f"mailgate_{name}{{")]


def test_pre_login_capabilities_are_what_every_backend_supports(mg, cap_backends):
    # The backends themselves differ as configured.
    for name, b in cap_backends.items():
        s = socket.create_connection((b.host, b.imap_port), timeout=5)
        greeting = s.recv(4096).decode()
        s.close()
        assert ("SASL-IR" in greeting) == (name != "capsNoIR"), greeting
        assert ("AUTH=CRAM-MD5" in greeting) == (name == "capsCram"), greeting
    _probed(mg)
    caps = _imap_caps(mg)
    assert "SASL-IR" not in caps, caps
    assert {"IMAP4rev1", "ID", "AUTH=PLAIN", "AUTH=LOGIN"} <= caps, caps
    # CRAM-MD5 cannot be relayed; XOAUTH2 is allowed (oauth: true) but no backend lists it.
    assert not any(c in caps for c in ("AUTH=CRAM-MD5", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER")), caps
    _probed(mg, "pop3")
    capa = _pop3_capa(mg)
    assert "SASL PLAIN LOGIN" in capa, capa

    # A client that sends an initial response although SASL-IR is not offered is still served:
    # mailgate replays PLAIN (with an authorization identity) after the backend's "+".
    since = cap_backends["capsNoIR"].log_size()
    c = Line(mg.addr("imap"))
    c.line()
    user = "nia@caps-noir.test"
    ir = base64.b64encode(f"{user}\0{user}\0{PASSWORD}".encode()).decode()
    c.send(f"a1 AUTHENTICATE PLAIN {ir}")
    reply = c.until("a1 ")[-1]
    assert reply.startswith("a1 OK"), reply
    c.send("a2 SELECT INBOX")
    assert c.until("a2 ")[-1].startswith("a2 OK")
    c.close()
    cap_backends["capsNoIR"].wait_log(f"Login: user=<{user}>", since=since)


def test_status_ctl_and_metrics_show_the_drift(mg, cap_backends):
    st = _probed(mg)
    by_name = {b["name"]: b["capabilities"] for b in st["backends"]}
    assert "SASL-IR" in by_name["capsPlain"]["imap"]["pre_login"]
    assert "SASL-IR" not in by_name["capsNoIR"]["imap"]["pre_login"]
    assert "SASL-IR" not in by_name["capsNoIR"]["imap"]["post_login"]
    assert by_name["capsCram"]["imap"]["sasl"] == ["CRAM-MD5", "LOGIN", "PLAIN"]
    assert "IDLE" in by_name["capsPlain"]["imap"]["post_login"]
    drift = st["capability_drift"]["imap"]
    assert drift["drift"] is True
    assert drift["advertised"] == {"sasl_ir": False, "id": True, "mechanisms": ["PLAIN", "LOGIN"]}
    diffs = {(d["stage"], d["capability"]): (d["with"], d["without"]) for d in drift["differences"]}
    assert diffs[("pre_login", "SASL-IR")] == (["capsPlain", "capsCram"], ["capsNoIR"]), diffs
    assert diffs[("sasl", "CRAM-MD5")] == (["capsCram"], ["capsPlain", "capsNoIR"]), diffs
    # POP3: Dovecot lists the extra mechanism in CAPA as well.
    st = _probed(mg, "pop3")
    pop3 = {(d["stage"], d["capability"]) for d in st["capability_drift"]["pop3"]["differences"]}
    assert ("sasl", "CRAM-MD5") in pop3, pop3
    post = {b["name"]: b["capabilities"]["pop3"]["post_login"] for b in st["backends"]}
    assert all("UIDL" in p for p in post.values()), post

    out = mg.ctl("status")
    assert out.returncode == 0, out.stderr
    assert "capabilities (imap): offered before login: ID SASL PLAIN, LOGIN" in out.stdout, out.stdout
    assert "drift: pre_login SASL-IR: on capsPlain, capsCram; missing on capsNoIR" in out.stdout
    assert "drift: sasl CRAM-MD5: on capsCram; missing on capsPlain, capsNoIR" in out.stdout

    caps = _metric_lines(mg, "backend_capability")
    def has(backend, stage, cap, protocol="imap"):
        want = (f'backend="{backend}",protocol="{protocol}",stage="{stage}",'
                f'capability="{cap}"}} 1')
        return any(l.endswith(want) or want in l for l in caps)
    assert has("capsPlain", "pre_login", "SASL-IR")
    assert not has("capsNoIR", "pre_login", "SASL-IR")
    assert has("capsCram", "sasl", "CRAM-MD5") and has("capsCram", "sasl", "CRAM-MD5", "pop3")
    assert has("capsPlain", "post_login", "IDLE")
    drift_lines = _metric_lines(mg, "capability_drift")
    value = {re.search(r'protocol="(\w+)"', l).group(1): float(l.split()[-1]) for l in drift_lines}
    assert value["imap"] >= 2 and value["pop3"] >= 1, drift_lines


def _login_results(mg, backend: str, result: str) -> float:
    total = 0.0
    code, _, body = mg.http("GET", "/metrics", token=None)
    for l in body.splitlines():
        if (l.startswith("mailgate_logins_total{") and f'backend="{backend}"' in l
                and f'result="{result}"' in l):
            total += float(l.split()[-1])
    return total


def test_a_mechanism_the_backend_lacks_gets_a_clean_no(mg, cap_backends):
    _probed(mg)
    _probed(mg, "pop3")
    backend = cap_backends["capsPlain"]
    user = "pat@caps-plain.test"
    token = base64.b64encode(f"user={user}\x01auth=Bearer t0ken\x01\x01".encode()).decode()
    rejected = _login_results(mg, "capsPlain", "rejected")
    since = backend.log_size()

    c = Line(mg.addr("imap"), source=SOURCE)
    c.line()
    c.send(f"x1 AUTHENTICATE XOAUTH2 {token}")
    reply = c.until("x1 ")[-1]
    assert reply == "x1 NO [CANNOT] Authentication mechanism not supported for this account.", reply
    # The session goes on: a password login on the same connection works.
    c.send(f'x2 LOGIN "{user}" "{PASSWORD}"')
    assert c.until("x2 ")[-1].startswith("x2 OK")
    c.close()

    p = Line(mg.addr("pop3"), source=SOURCE)
    p.line()
    p.send(f"AUTH XOAUTH2 {token}")
    assert p.line() == "-ERR Authentication mechanism not supported for this account."
    p.close()

    _wait("the refusals counted", lambda: _login_results(mg, "capsPlain", "rejected") >= rejected + 2)
    assert _login_results(mg, "capsPlain", "backend_error") == 0
    # The backend never saw the token, and stays up (probes go on, no failure counted).
    time.sleep(2.5)
    log = backend.log_text()[since:]
    assert "XOAUTH2" not in log and "t0ken" not in log, log[-2000:]
    status = mg.backend_status("capsPlain")
    assert status["state"] == "up", status
    assert "login relay failed" not in mg.output()
    assert "t0ken" not in mg.output()


def test_a_capability_change_between_probes_is_logged(mg, cap_backends):
    _probed(mg)
    assert "SASL-IR" not in _imap_caps(mg)
    b = cap_backends["capsNoIR"]
    b.imap_capability = None
    try:
        b.write_files()
        os.kill(b.master_pid(), signal.SIGHUP)  # Dovecot re-reads its config: the "upgrade"
        line = _wait("the change logged", lambda: next(
            (l for l in mg.output(200000).splitlines()
             if "backend capabilities changed" in l and "capsNoIR" in l and 'protocol="imap"' in l),
            None), timeout=20)
        # The pre-login additions come first (LITERAL+ comes back with the default list too).
        assert re.search(r"change=added: (\S+, )?SASL-IR, post-login ", line), line
        assert "removed: -" in line, line
        assert "SASL-IR" in _wait("SASL-IR offered again", lambda: _imap_caps(mg) & {"SASL-IR"})
        d = _wait("no SASL-IR drift", lambda: (lambda x: x if not any(
            e["capability"] == "SASL-IR" for e in x["differences"]) else None)(
            mg.status_json()["capability_drift"]["imap"]))
        assert d["advertised"]["sasl_ir"] is True
        changes = mg.backend_status("capsNoIR")["capabilities"]["imap"]["changes"]
        assert changes >= 1
        # One change, one line (the probes keep seeing the same new list).
        time.sleep(2.5)
        lines = [l for l in mg.output(200000).splitlines()
                 if "backend capabilities changed" in l and "capsNoIR" in l and 'protocol="imap"' in l]
        assert len(lines) == 1, lines
    finally:
        b.imap_capability = NO_SASL_IR
        b.write_files()
        os.kill(b.master_pid(), signal.SIGHUP)
