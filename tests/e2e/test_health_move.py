"""Moving a domain with real Dovecot: rewrite routing.yaml (example.com from mail1 to mail2)
and SIGHUP. Spliced sessions of example.com are kicked, spread over ``health.kick_window``
(2 s here); a new login lands on mail2; a session of an unmoved domain stays open.

moving@example.com exists on both mail1 and mail2, so its sessions can reconnect."""

from __future__ import annotations

import copy
import socket
import threading
import time

from clients import closed_within, imap_backend, imap_open
from layout import PASSWORD

KICK_WINDOW = 2.0
KICK_QUIET = 0.5  # health.md: kick_quiet default; an idle session closes that long after its slot
SLACK = 2.0


def _wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Block until the peer closes ``sock``; returns time.monotonic() then (None: still open)."""
    return time.monotonic() if closed_within(sock, timeout) else None


def test_moved_domain_sessions_are_kicked_spread_and_reconnect_to_new_backend(
        mailgate_factory, pki):
    mg = mailgate_factory(config={"health": {"kick_window": f"{KICK_WINDOW:g}s"}})
    port = mg.ports["imap"]
    moved_sessions = []
    for _ in range(6):
        imap = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
        imap.login("moving@example.com", PASSWORD)
        assert imap_backend(imap) == "mail1"
        moved_sessions.append(imap)
    stays = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
    stays.login("bob@example.org", PASSWORD)
    stays.select("INBOX")

    closed_at: list[float | None] = [None] * len(moved_sessions)

    def watch(i: int, imap) -> None:
        closed_at[i] = _wait_closed(imap.sock, KICK_WINDOW + KICK_QUIET + SLACK + 5)

    watchers = [threading.Thread(target=watch, args=(i, s), daemon=True)
                for i, s in enumerate(moved_sessions)]
    for w in watchers:
        w.start()

    moved = copy.deepcopy(mg.routing)
    moved["domains"]["example.com"] = "mail2"
    reloaded_at = time.monotonic()
    mg.reload(moved)
    for w in watchers:
        w.join()

    assert all(t is not None for t in closed_at), f"sessions not kicked: {closed_at}"
    offsets = sorted(t - reloaded_at for t in closed_at)
    print("kicks after reload (s): " + ", ".join(f"{o:.2f}" for o in offsets))
    assert offsets[-1] <= KICK_WINDOW + KICK_QUIET + SLACK, offsets
    # Spread, not all at once: six slots of 1/3 s each over the window.
    assert offsets[-1] - offsets[0] >= KICK_WINDOW / 3, offsets

    # A new login of the moved domain lands on the new backend.
    imap = imap_open("127.0.0.1", port, "plain", pki.ca_cert)
    imap.login("moving@example.com", PASSWORD)
    assert imap_backend(imap) == "mail2"
    imap.logout()

    # The unmoved domain's session was not touched.
    assert stays.noop()[0] == "OK"
    assert stays.select("INBOX")[0] == "OK"
    assert imap_backend(stays) == "mail2"
    stays.logout()
    for s in moved_sessions:
        try:
            s.shutdown()
        except OSError:
            pass
