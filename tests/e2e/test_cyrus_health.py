"""Health of a real Cyrus backend: login probes keep it up, and the incident of design.md
section 1 on Cyrus, the kind of backend it happened on.

* Probes with a probe account (LOGIN + SELECT INBOX; POP3 PASS + STAT) keep cyrus1 ``up``
  in ``/status`` over several intervals; Cyrus's saslauthd sees the probe's logins.
* Cyrus's master and every child SIGSTOPped (TCP connects, no greeting): mailgate marks it
  down, refuses its domain's logins fast with ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]``,
  the Dovecot domain keeps working; SIGCONT brings it back.
* Cyrus whose logins hang (its saslauthd reads the request and never answers; greetings and
  CAPABILITY still work): only the login probe can see it, and does.

Timing bounds as in test_health_incident.py: interval 1s (+10 % jitter), timeout 1s, fall 3,
rise 2. Down at most fall x interval x 1.1 + timeout after the fault; up at most timeout +
rise x interval x 1.1 after the repair; SLACK covers a shared 2-core machine.
"""

from __future__ import annotations

import imaplib
import poplib
import socket
import time

import pytest

from clients import imap_backend, imap_open, pop3_open, read_line
from cyrus import CYRUS_PROBE_USER, CYRUS_USERS
from health_log import health_transitions, wait_transition
from layout import PASSWORD

INTERVAL, TIMEOUT, FALL, RISE, JITTER = 1.0, 1.0, 3, 2, 0.1
SLACK = 1.5
DOWN_BOUND = FALL * INTERVAL * (1 + JITTER) + TIMEOUT + SLACK
UP_BOUND = TIMEOUT + RISE * INTERVAL * (1 + JITTER) + SLACK
FAST = 1.0  # a refused login must be answered within this (vs. a 30 s login timeout)
CLIENT_TIMEOUT = 40.0  # longer than any mailgate backend timeout: a hang shows as a hang

HEALTH = {
    "health": {"interval": "1s", "timeout": "1s", "fall": FALL, "rise": RISE,
               "slow_start": "0s"},
    "log": {"level": "info", "format": "json"},
}
USER = CYRUS_USERS[0]


def imap_outcome(mg, pki, user: str) -> tuple[str, float]:
    """One IMAP login through mailgate: (ok | unavailable | other: ..., seconds)."""
    start = time.monotonic()
    try:
        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert,
                         timeout=CLIENT_TIMEOUT)
        try:
            imap.login(user, PASSWORD)
            outcome = "ok"
        except imaplib.IMAP4.error as e:
            outcome = "unavailable" if "[UNAVAILABLE]" in str(e) else f"other: {e}"
        finally:
            imap.shutdown()
    except Exception as e:
        outcome = f"other: {type(e).__name__}: {e}"
    return outcome, time.monotonic() - start


def pop3_outcome(mg, pki, user: str) -> tuple[str, float]:
    start = time.monotonic()
    try:
        pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert,
                        timeout=CLIENT_TIMEOUT)
        try:
            pop.user(user)
            pop.pass_(PASSWORD)
            outcome = "ok"
        except poplib.error_proto as e:
            outcome = "unavailable" if "[SYS/TEMP]" in str(e) else f"other: {e}"
        finally:
            pop.sock.close()
    except Exception as e:
        outcome = f"other: {type(e).__name__}: {e}"
    return outcome, time.monotonic() - start


def _assert_refused_fast_while_dovecot_works(mg, pki) -> None:
    for _ in range(2):
        outcome, took = imap_outcome(mg, pki, USER)
        assert outcome == "unavailable" and took < FAST, (outcome, took)
        outcome, took = pop3_outcome(mg, pki, USER)
        assert outcome == "unavailable" and took < FAST, (outcome, took)
    assert imap_outcome(mg, pki, "alice@example.com")[0] == "ok"
    assert pop3_outcome(mg, pki, "alice@example.com")[0] == "ok"
    assert health_transitions(mg, "mail1") == []


def test_login_probes_keep_cyrus_up(cyrus_mailgate_factory, cyrus, pki):
    mg = cyrus_mailgate_factory(cyrus, config=HEALTH)
    before = len(cyrus.saslauthd.requests)
    time.sleep(5 * INTERVAL)
    status = mg.backend_status(cyrus.name)
    assert status["state"] == "up" and status["admitting"], status
    probes = {p["protocol"]: p for p in status["probes"]}
    assert set(probes) == {"imap", "pop3"}, status["probes"]
    assert all(p["ok"] for p in probes.values()), status["probes"]
    assert health_transitions(mg, cyrus.name) == []
    # The probes really logged in (Cyrus asked its saslauthd), in both protocols.
    probe_logins = [r for r in cyrus.saslauthd.requests[before:] if r[0] == CYRUS_PROBE_USER]
    assert {(s, a) for _, s, a in probe_logins} == {("imap", "OK"), ("pop", "OK")}, probe_logins
    assert len(probe_logins) >= 6, probe_logins  # ~2 per interval over 5 intervals
    assert imap_outcome(mg, pki, USER)[0] == "ok"


def test_frozen_cyrus_is_refused_fast_and_comes_back(cyrus_mailgate_factory, cyrus, pki):
    mg = cyrus_mailgate_factory(cyrus, config=HEALTH)
    assert imap_outcome(mg, pki, USER)[0] == "ok"
    time.sleep(2 * INTERVAL)
    assert health_transitions(mg, cyrus.name) == []

    frozen_at = time.monotonic()
    stopped = cyrus.freeze()
    assert len(stopped) >= 1
    try:
        # TCP still connects, no greeting comes: the deadlocked backend of the incident.
        with socket.create_connection((cyrus.host, cyrus.imap_port), timeout=2) as s:
            try:
                assert read_line(s, timeout=0.5) == b"", "a frozen Cyrus greeted"
            except socket.timeout:
                pass
        down, seen = wait_transition(mg, cyrus.name, "down", timeout=DOWN_BOUND + 10)
        print(f"{cyrus.name} frozen -> down in {seen - frozen_at:.2f}s: {down['reason']}")
        assert seen - frozen_at <= DOWN_BOUND, f"down after {seen - frozen_at:.2f}s"
        status = mg.backend_status(cyrus.name)
        assert status["state"] == "down" and not status["admitting"], status
        _assert_refused_fast_while_dovecot_works(mg, pki)
    finally:
        thawed_at = time.monotonic()
        cyrus.thaw()
    up, seen = wait_transition(mg, cyrus.name, ("up", "degraded"), timeout=UP_BOUND + 10,
                               after=len(health_transitions(mg, cyrus.name)) - 1)
    print(f"{cyrus.name} thawed -> {up['to']} in {seen - thawed_at:.2f}s: {up['reason']}")
    assert seen - thawed_at <= UP_BOUND, f"up after {seen - thawed_at:.2f}s"
    assert imap_outcome(mg, pki, USER)[0] == "ok"
    assert pop3_outcome(mg, pki, USER)[0] == "ok"


@pytest.mark.parametrize("probe", [True, False], ids=["login-probe", "no-probe-account"])
def test_cyrus_with_hanging_logins_is_caught_only_by_the_login_probe(cyrus_mailgate_factory,
                                                                     cyrus, pki, probe):
    mg = cyrus_mailgate_factory(cyrus, config=HEALTH, probe=probe)
    assert imap_outcome(mg, pki, USER)[0] == "ok"
    hung_at = time.monotonic()
    cyrus.hang_logins()
    try:
        # Greetings and CAPABILITY still work directly; only a login hangs.
        imap = imap_open(cyrus.host, cyrus.imap_port, "plain", None, timeout=2)
        try:
            assert b"Cyrus IMAP" in imap.welcome
            assert imap.capability()[0] == "OK"
            with pytest.raises((TimeoutError, socket.timeout)):
                imap.login(USER, PASSWORD)
        finally:
            imap.shutdown()
        if not probe:
            # Greeting + CAPABILITY probes keep passing: nothing is marked down (no real
            # logins go through mailgate here, so no passive signal either).
            time.sleep(DOWN_BOUND)
            assert health_transitions(mg, cyrus.name) == []
            assert mg.backend_status(cyrus.name)["state"] == "up"
            return
        down, seen = wait_transition(mg, cyrus.name, "down", timeout=DOWN_BOUND + 10)
        print(f"{cyrus.name} logins hang -> down in {seen - hung_at:.2f}s: {down['reason']}")
        assert seen - hung_at <= DOWN_BOUND, f"down after {seen - hung_at:.2f}s"
        assert "login" in down["reason"], down
        assert cyrus.saslauthd.waiting() >= 1  # Cyrus processes sit in a login
        _assert_refused_fast_while_dovecot_works(mg, pki)
    finally:
        resumed_at = time.monotonic()
        cyrus.auth_mode("normal")
    up, seen = wait_transition(mg, cyrus.name, ("up", "degraded"), timeout=UP_BOUND + 10,
                               after=len(health_transitions(mg, cyrus.name)) - 1)
    print(f"{cyrus.name} logins answered again -> {up['to']} in {seen - resumed_at:.2f}s")
    assert seen - resumed_at <= UP_BOUND, f"up after {seen - resumed_at:.2f}s"
    assert imap_outcome(mg, pki, USER)[0] == "ok"
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", None)
    try:
        imap.login("alice@example.com", PASSWORD)
        assert imap_backend(imap) == "mail1"
    finally:
        imap.logout()
