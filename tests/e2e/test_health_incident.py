"""The incident of design.md section 1, reproduced with real Dovecot: a backend that hangs.

* SIGSTOP every process of mail1 (TCP still connects, nothing answers): mailgate marks it
  down within interval x fall + timeout, from then on answers logins for its domain with
  ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]`` in well under a second while the other domains
  keep working, and SIGCONT brings it back within interval x rise (+ timeout, see below).
* Only mail1's auth processes stopped (greetings and CAPABILITY still work, logins hang):
  only the login probe catches it; a mailgate without a probe account does not.

"Marked down" is observed in mailgate's JSON log (the health view logs every transition
with its reason) and by logging in.

Timing bounds. Settings: interval 1s (+ up to 10 % jitter), timeout 1s, fall 3, rise 2,
slow_start 0s. Down: the third failed probe after the freeze completes at most
fall x interval x 1.1 + timeout = 4.3 s later. Up: a probe that started while frozen may
still fail up to one timeout after SIGCONT; then rise successful probes take at most
rise x interval x 1.1 = 2.2 s, so 3.2 s. SLACK (1.5 s) covers a shared 2-core machine
(probe tasks, Dovecot forking, the test's own threads) and the 50 ms log polling.
"""

from __future__ import annotations

import imaplib
import poplib
import threading
import time
from dataclasses import dataclass

import pytest

from clients import imap_backend, imap_open, pop3_open
from layout import PASSWORD
from health_log import health_transitions, wait_transition

INTERVAL, TIMEOUT, FALL, RISE, JITTER = 1.0, 1.0, 3, 2, 0.1
SLACK = 1.5
DOWN_BOUND = FALL * INTERVAL * (1 + JITTER) + TIMEOUT + SLACK
UP_BOUND = TIMEOUT + RISE * INTERVAL * (1 + JITTER) + SLACK
FAST = 1.0  # a refused login must be answered within this (vs. a 30 s login timeout)
GREETING_TIMEOUT = 10.0  # limits.backend_greeting_timeout default
CLIENT_TIMEOUT = 40.0  # longer than any mailgate backend timeout: a hang shows as a hang

HEALTH = {
    "health": {"interval": "1s", "timeout": "1s", "fall": FALL, "rise": RISE,
               "slow_start": "0s"},
    "log": {"level": "info", "format": "json"},
}


@dataclass
class Attempt:
    start: float
    end: float
    outcome: str  # ok | unavailable | other: ...

    @property
    def took(self) -> float:
        return self.end - self.start


def imap_attempt(mg, pki, user: str) -> Attempt:
    """One IMAP login through mailgate; the socket is just closed afterwards (no LOGOUT:
    a spliced session to a frozen backend would hang in LOGOUT)."""
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
    except Exception as e:  # a silent close, a timeout: all failures of the test
        outcome = f"other: {type(e).__name__}: {e}"
    return Attempt(start, time.monotonic(), outcome)


def pop3_attempt(mg, pki, user: str) -> Attempt:
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
    return Attempt(start, time.monotonic(), outcome)


class LoginLoad:
    """Starts a login for ``user`` every ``every`` seconds, each in its own thread (a login
    that hangs must not stop later ones from being tried)."""

    def __init__(self, attempt, every: float = 0.25):
        self.attempt, self.every = attempt, every
        self.results: list[Attempt] = []
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.driver = threading.Thread(target=self._drive, daemon=True)

    def __enter__(self) -> "LoginLoad":
        self.driver.start()
        return self

    def _one(self) -> None:
        result = self.attempt()
        with self.lock:
            self.results.append(result)

    def _drive(self) -> None:
        while not self.stop_event.is_set():
            t = threading.Thread(target=self._one, daemon=True)
            t.start()
            self.threads.append(t)
            self.stop_event.wait(self.every)

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.driver.join()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT + 5)


def _wait_all_up(mg, pki) -> None:
    """Every backend answers logins through mailgate (health starts up; this is a sanity
    check that the harness is sound before breaking something)."""
    for user, backend in (("alice@example.com", "mail1"), ("bob@example.org", "mail2"),
                          ("carol@sub.example.net", "mail3")):
        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
        imap.login(user, PASSWORD)
        assert imap_backend(imap) == backend
        imap.logout()


def test_frozen_backend_is_refused_fast_and_comes_back(mailgate_factory, backends, pki):
    mg = mailgate_factory(config=HEALTH)
    _wait_all_up(mg, pki)
    time.sleep(2 * INTERVAL)  # a few probes of every backend have succeeded
    assert health_transitions(mg) == []
    mail1 = backends["mail1"]

    with LoginLoad(lambda: imap_attempt(mg, pki, "alice@example.com")) as load:
        frozen_at = time.monotonic()
        mail1.freeze()
        try:
            down, down_seen = wait_transition(mg, "mail1", "down", timeout=DOWN_BOUND + 10)
            detected = down_seen - frozen_at
            print(f"mail1 frozen -> down in {detected:.2f}s: {down['reason']}")
            assert detected <= DOWN_BOUND, f"down after {detected:.2f}s > {DOWN_BOUND:.2f}s"

            # Refused fast, in both protocols; other domains keep working.
            for _ in range(3):
                a = imap_attempt(mg, pki, "alice@example.com")
                assert a.outcome == "unavailable" and a.took < FAST, a
                p = pop3_attempt(mg, pki, "alice@example.com")
                assert p.outcome == "unavailable" and p.took < FAST, p
            for user in ("bob@example.org", "carol@sub.example.net"):
                assert imap_attempt(mg, pki, user).outcome == "ok"
                assert pop3_attempt(mg, pki, user).outcome == "ok"
            time.sleep(1.0)  # let the load see a second of "down"
        finally:
            thawed_at = time.monotonic()
            mail1.thaw()
        up, up_seen = wait_transition(mg, "mail1", ("up", "degraded"), timeout=UP_BOUND + 10,
                                      after=len(health_transitions(mg, "mail1")) - 1)
        recovered = up_seen - thawed_at
        print(f"mail1 thawed -> up in {recovered:.2f}s: {up['reason']}")
        assert recovered <= UP_BOUND, f"up after {recovered:.2f}s > {UP_BOUND:.2f}s"
        time.sleep(0.5)  # a few logins after recovery

    a = imap_attempt(mg, pki, "alice@example.com")
    assert a.outcome == "ok", a
    assert pop3_attempt(mg, pki, "alice@example.com").outcome == "ok"

    results = sorted(load.results, key=lambda r: r.start)
    bad = [r for r in results if r.outcome.startswith("other")]
    assert not bad, f"logins that were neither answered nor refused: {bad}"
    after_down = [r for r in results if down_seen <= r.start and r.end <= thawed_at]
    assert after_down, "no login was tried while mail1 was down"
    slow = [r for r in after_down if r.outcome != "unavailable" or r.took >= FAST]
    assert not slow, f"logins after the down mark that were not refused fast: {slow}"
    # Nobody waited for a client timeout: the worst case is a login started just before the
    # mark, which waits for mailgate's backend greeting timeout (10 s default) or the thaw.
    assert max(r.took for r in results) < GREETING_TIMEOUT + SLACK, results
    after_up = [r for r in results if r.start >= up_seen]
    assert after_up and all(r.outcome == "ok" for r in after_up), after_up
    print(f"{len(results)} background logins: {len(after_down)} refused while down, "
          f"max {max(r.took for r in after_down) * 1000:.0f} ms")


@pytest.mark.parametrize("probe", [True, False], ids=["login-probe", "no-probe-account"])
def test_hanging_logins_are_caught_only_by_the_login_probe(mailgate_factory, backends, pki,
                                                           probe):
    routing = {} if probe else {"backends": {name: {"probe": None} for name in backends}}
    mg = mailgate_factory(config=HEALTH, routing=routing)
    _wait_all_up(mg, pki)
    mail1 = backends["mail1"]
    stopped_at = time.monotonic()
    pids = mail1.stop_auth()
    assert pids, "no auth process found"
    try:
        if probe:
            down, seen = wait_transition(mg, "mail1", "down", timeout=DOWN_BOUND + 10)
            print(f"mail1 auth stopped -> down in {seen - stopped_at:.2f}s: {down['reason']}")
            assert seen - stopped_at <= DOWN_BOUND
            assert "login" in down["reason"] or "imap" in down["reason"] \
                or "pop3" in down["reason"], down
            a = imap_attempt(mg, pki, "alice@example.com")
            assert a.outcome == "unavailable" and a.took < FAST, a
            p = pop3_attempt(mg, pki, "alice@example.com")
            assert p.outcome == "unavailable" and p.took < FAST, p
            assert imap_attempt(mg, pki, "bob@example.org").outcome == "ok"
        else:
            # Greeting + CAPABILITY probes keep passing: nothing is marked down (no real
            # logins are tried here, so no passive signal either).
            time.sleep(DOWN_BOUND)
            assert health_transitions(mg, "mail1") == []
    finally:
        mail1.thaw()
    if probe:
        wait_transition(mg, "mail1", ("up", "degraded"), timeout=UP_BOUND + 10,
                        after=len(health_transitions(mg, "mail1")) - 1)
    assert imap_attempt(mg, pki, "alice@example.com").outcome == "ok"
