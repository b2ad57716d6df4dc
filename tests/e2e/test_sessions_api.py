"""Sessions as operators see them (issue #14, part 4), with real Dovecot and real IMAP
sessions held open: ``GET /sessions`` (counts by backend and domain; user names only with
``?users=true``), ``mailgate ctl sessions``, and ``POST /kick?...&dry_run=true`` /
``mailgate ctl kick --dry-run``, which say what a kick would close and close nothing."""

from __future__ import annotations

import json
import time

from clients import closed_within, imap_open
from layout import PASSWORD

KICK_WINDOW = 1.0


def _hold(mg, pki, user: str, n: int = 1) -> list:
    out = []
    for _ in range(n):
        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
        imap.login(user, PASSWORD)
        out.append(imap)
    return out


def _sessions(mg, query: str = "") -> dict:
    code, _, body = mg.http("GET", f"/sessions{query}")
    assert code == 200, body
    return json.loads(body)


def _wait_total(mg, n: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    doc = {}
    while time.monotonic() < deadline:
        doc = _sessions(mg)
        if doc["total"] == n:
            return doc
        time.sleep(0.05)
    raise AssertionError(f"expected {n} sessions: {doc}")


def _backend(doc: dict, name: str) -> dict:
    return next(b for b in doc["backends"] if b["name"] == name)


def test_sessions_lists_counts_by_backend_and_domain_and_users_only_when_asked(
        mailgate_factory, pki):
    mg = mailgate_factory()
    alice = _hold(mg, pki, "alice@example.com", 2)
    bob = _hold(mg, pki, "bob@example.org")
    carol = _hold(mg, pki, "carol@sub.example.net")

    code, _, body = mg.http("GET", "/sessions", token=None)
    assert code == 401, body
    code, _, _ = mg.http("GET", "/sessions", token="wrong-token")
    assert code == 401

    doc = _wait_total(mg, 4)
    assert doc["users_listed"] is False
    mail1 = _backend(doc, "mail1")
    assert mail1["sessions"] == 2 and mail1["max_sessions"] == 200
    assert mail1["domains"] == [{"domain": "example.com", "sessions": 2}]
    assert _backend(doc, "mail2")["domains"] == [{"domain": "example.org", "sessions": 1}]
    assert _backend(doc, "mail3")["domains"] == [{"domain": "sub.example.net", "sessions": 1}]
    raw = json.dumps(doc)
    for name in ("alice", "bob", "carol"):
        assert name not in raw, f"user names without ?users=true: {raw}"

    doc = _sessions(mg, "?users=true")
    assert _backend(doc, "mail1")["domains"][0]["users"] == [
        {"user": "alice@example.com", "sessions": 2}]
    assert _backend(doc, "mail2")["domains"][0]["users"] == [
        {"user": "bob@example.org", "sessions": 1}]

    r = mg.ctl("sessions")
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    assert "mail1: 2 session(s) (max_sessions 200)\n  example.com  2\n" in r.stdout
    assert "total: 4 session(s)" in r.stdout
    assert "alice" not in r.stdout
    r = mg.ctl("sessions", "--users")
    assert "    alice@example.com  2" in r.stdout, r.stdout
    assert mg.ctl("sessions", token=False).returncode == 1

    # A session that logs out leaves the listing.
    carol[0].logout()
    doc = _wait_total(mg, 3)
    assert _backend(doc, "mail3") == {"name": "mail3", "sessions": 0, "max_sessions": 200,
                                      "in_routing_table": True, "domains": []}
    assert all(s.noop()[0] == "OK" for s in alice + bob)


def test_kick_dry_run_says_what_would_close_and_closes_nothing_then_the_kick_does(
        mailgate_factory, pki):
    mg = mailgate_factory(config={"health": {"kick_window": f"{KICK_WINDOW:g}s"}})
    alice = _hold(mg, pki, "alice@example.com", 2)
    moving = _hold(mg, pki, "moving@example.com")
    bob = _hold(mg, pki, "bob@example.org")
    _wait_total(mg, 4)

    code, _, body = mg.http("POST", "/kick?domain=Example.COM&dry_run=true")
    assert code == 200, body
    doc = json.loads(body)
    assert doc["dry_run"] is True and doc["would_close"] == 3, doc
    [b] = doc["backends"]
    assert b["name"] == "mail1" and b["domains"] == [{"domain": "example.com", "sessions": 3}]
    assert "alice" not in body
    code, _, body = mg.http("POST", "/kick?user=alice@example.com&dry_run=true&users=true")
    doc = json.loads(body)
    assert doc["would_close"] == 2
    assert doc["backends"][0]["domains"][0]["users"] == [
        {"user": "alice@example.com", "sessions": 2}]
    code, _, body = mg.http("POST", "/kick?backend=nosuch&dry_run=true")
    assert code == 404, body
    code, _, body = mg.http("POST", "/kick?domain=example.com&dry_run=perhaps")
    assert code == 400, body
    code, _, _ = mg.http("POST", "/kick?domain=example.com&dry_run=true", token=None)
    assert code == 401

    r = mg.ctl("kick", "--domain", "example.com", "--dry-run")
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    assert "dry run: 3 session(s) of domain example.com would close" in r.stdout
    assert "nothing was closed" in r.stdout

    # Longer than the kick window plus its quiet wait: a real kick would have closed them.
    time.sleep(KICK_WINDOW + 1.5)
    assert all(s.noop()[0] == "OK" for s in alice + moving + bob), "a dry run closed a session"
    assert _sessions(mg)["total"] == 4

    r = mg.ctl("kick", "--domain", "example.com")
    assert r.returncode == 0, r.stderr
    assert "3 session(s) of domain example.com scheduled to close" in r.stdout, r.stdout
    for s in alice + moving:
        assert closed_within(s.sock, KICK_WINDOW + 10), "the real kick left a session open"
    assert bob[0].noop()[0] == "OK", "another domain's session was closed"
    doc = _wait_total(mg, 1)
    assert _backend(doc, "mail2")["sessions"] == 1
