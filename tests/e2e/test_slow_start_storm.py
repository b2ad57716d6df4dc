"""Slow start under a reconnect burst, with real Dovecot (issue #12): mail1 is frozen until
mailgate marks it down, 300 clients keep trying to log in (refused, they retry after
0.2-0.6 s, as a mail client's back-off would), and mail1 is thawed. While it ramps:

* every refusal is ``NO [UNAVAILABLE]``, answered at once (no client waits for a backend);
* the ramp bounds mail1's logins in flight by ``health.slow_start_logins_in_flight`` (3
  here; sampled from ``mailgate_backend_logins_in_flight``), and turns the rest away as
  ``refused_total{reason="slow_start"}``;
* the burst never takes mail1 down again, and every client is logged in in the end.

300 clients are sized for a shared 2-core machine (Python threads, Dovecot and mailgate
on the same cores); the limit of 3 is far below what 300 retrying clients would put in
flight, so the cap is what bounds it.
"""

from __future__ import annotations

import imaplib
import random
import threading
import time
from dataclasses import dataclass, field

from clients import imap_open
from layout import PASSWORD
from health_log import health_transitions, wait_transition

CLIENTS = 300
IN_FLIGHT = 3
SLOW_START = 8.0
DEADLINE = 120.0  # every client must be in by then (the ramp itself lasts 8 s)
FAST = 2.0  # a refusal is answered from memory; 2 s covers 300 Python threads on 2 cores

CONFIG = {
    "health": {"interval": "1s", "timeout": "1s", "fall": 3, "rise": 2,
               "slow_start": f"{SLOW_START:g}s",
               "slow_start_logins_in_flight": IN_FLIGHT},
    "log": {"level": "info", "format": "json"},
    # 300 clients from 127.0.0.1 (the default allows 100 per address).
    "limits": {"max_sessions_per_ip": 1000},
}
ROUTING = {"backends": {"mail1": {"max_sessions": 1000}}}


@dataclass
class Client:
    refusals: list[float] = field(default_factory=list)  # seconds LOGIN took to be refused
    other: list[str] = field(default_factory=list)  # anything but ok / NO [UNAVAILABLE]
    done_at: float | None = None


def one_client(mg, pki, c: Client, stop: threading.Event, deadline: float) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, timeout=40)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            c.other.append(f"connect: {type(e).__name__}: {e}")
            time.sleep(random.uniform(0.2, 0.6))
            continue
        start = time.monotonic()
        try:
            imap.login("alice@example.com", PASSWORD)
            c.done_at = time.monotonic()
            imap.logout()
            return
        except imaplib.IMAP4.error as e:
            if "[UNAVAILABLE]" in str(e):
                c.refusals.append(time.monotonic() - start)
            else:
                c.other.append(f"login: {e}")
        except Exception as e:  # noqa: BLE001
            c.other.append(f"login: {type(e).__name__}: {e}")
        try:
            imap.shutdown()
        except OSError:
            pass
        time.sleep(random.uniform(0.2, 0.6))


def test_a_burst_on_a_recovering_backend_is_ramped_not_piled_in(mailgate_factory, backends, pki):
    mg = mailgate_factory(config=CONFIG, routing=ROUTING)
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    imap.login("alice@example.com", PASSWORD)
    imap.logout()
    mail1 = backends["mail1"]

    mail1.freeze()
    try:
        wait_transition(mg, "mail1", "down", timeout=20)
        after = len(health_transitions(mg, "mail1"))
        refused_before = mg.metric("mailgate_refused_total", backend="mail1", reason="slow_start")
        clients = [Client() for _ in range(CLIENTS)]
        stop = threading.Event()
        deadline = time.monotonic() + DEADLINE
        threads = [threading.Thread(target=one_client, args=(mg, pki, c, stop, deadline),
                                    daemon=True) for c in clients]
        for t in threads:
            t.start()
        time.sleep(1.0)  # every client is being refused (down) and retrying
    finally:
        mail1.thaw()

    samples: list[tuple[float, float]] = []

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(),
                            mg.metric("mailgate_backend_logins_in_flight", backend="mail1")))
            time.sleep(0.02)

    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    try:
        _, up_seen = wait_transition(mg, "mail1", ("up", "degraded"), timeout=20, after=after)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 5)
    finally:
        stop.set()
        sampling.join(10)

    later = health_transitions(mg, "mail1")[after:]
    assert [e["to"] for e in later if e.get("to") == "down"] == [], \
        f"the burst took mail1 down again: {later}"
    missing = sum(1 for c in clients if c.done_at is None)
    assert missing == 0, f"{missing} of {CLIENTS} clients never logged in"
    other = [o for c in clients for o in c.other]
    assert other == [], f"answers that were neither a login nor NO [UNAVAILABLE]: {other[:10]}"
    refusals = [r for c in clients for r in c.refusals]
    assert refusals and max(refusals) < FAST, \
        f"{len(refusals)} refusals, slowest {max(refusals, default=0):.2f}s"
    slow_start = mg.metric("mailgate_refused_total", backend="mail1",
                           reason="slow_start") - refused_before
    assert slow_start > 0, "nothing was turned away by the ramp"
    during = [n for at, n in samples if up_seen <= at <= up_seen + SLOW_START - 1.0]
    assert during, "no sample of logins in flight during the ramp"
    assert max(during) <= IN_FLIGHT, f"logins in flight during slow start: max {max(during)}"
    late = [c.done_at - up_seen for c in clients if c.done_at is not None]
    print(f"{CLIENTS} clients: {len(refusals)} refusals (slowest {max(refusals) * 1000:.0f} ms), "
          f"{int(slow_start)} as slow_start, logins in flight during the ramp max "
          f"{max(during):.0f} over {len(during)} samples, last login {max(late):.1f}s after up")
