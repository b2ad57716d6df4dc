"""Routing changes without a restart: a domain moved from mail1 to mail2 in routing.yaml
(SIGHUP) sends new logins to mail2; a per-user override wins over the domain."""

from __future__ import annotations

import copy
import signal
import socket
import subprocess
import time

from clients import imap_backend, imap_open
from layout import PASSWORD
from mailgate_proc import mailgate_binary


def _backend_of(mailgate, pki, user: str) -> str:
    imap = imap_open("127.0.0.1", mailgate.ports["imap"], "plain", pki.ca_cert)
    try:
        imap.login(user, PASSWORD)
        return imap_backend(imap)
    finally:
        imap.logout()


def test_domain_moved_in_routing_file_takes_effect_on_sighup(mailgate, pki):
    assert _backend_of(mailgate, pki, "moving@example.com") == "mail1"

    moved = copy.deepcopy(mailgate.routing)
    moved["domains"]["example.com"] = "mail2"
    mailgate.reload(moved)

    deadline = time.monotonic() + 5
    seen = "mail1"
    while time.monotonic() < deadline and seen != "mail2":
        time.sleep(0.1)
        seen = _backend_of(mailgate, pki, "moving@example.com")
    assert seen == "mail2", "new logins still go to mail1 after the reload"
    assert mailgate.running()
    # Other domains keep their routes.
    assert _backend_of(mailgate, pki, "bob@example.org") == "mail2"
    assert _backend_of(mailgate, pki, "carol@sub.example.net") == "mail3"


def test_bad_routing_file_on_reload_changes_nothing(mailgate, pki):
    broken = copy.deepcopy(mailgate.routing)
    broken["domains"]["example.com"] = "no-such-backend"
    mailgate.reload(broken)
    time.sleep(0.5)
    assert mailgate.running()
    assert _backend_of(mailgate, pki, "moving@example.com") == "mail1"


def test_user_override_wins_over_domain(mailgate_factory, pki):
    mg = mailgate_factory(routing={"users": {"moving@example.com": "mail2"}})
    assert _backend_of(mg, pki, "moving@example.com") == "mail2"
    assert _backend_of(mg, pki, "alice@example.com") == "mail1"


def test_a_sighup_as_soon_as_the_listener_accepts_does_not_end_mailgate(mailgate_factory):
    """A bound listener accepts TCP before mailgate's reloader has its SIGHUP handler; a
    SIGHUP at that moment used to end the process (its default action), 3 times in 20."""
    mg = mailgate_factory(start=False)
    binary = str(mailgate_binary())
    port = mg.ports["imap"]
    for attempt in range(20):
        proc = subprocess.Popen([binary, "run", "-c", str(mg.config_path)], cwd=mg.dir,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                assert proc.poll() is None, f"attempt {attempt}: exited at startup"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "never accepted"
                    time.sleep(0.001)
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            assert proc.poll() is None, f"attempt {attempt}: a SIGHUP at startup ended mailgate"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _reloads_logged(mg) -> int:
    return mg.output(limit=10**8).count("configuration reloaded")


def test_an_edit_then_sighup_is_one_reload(mailgate_factory, pki):
    """An operator saves routing.yaml and sends SIGHUP: the directory watcher and the
    signal each ask for a reload, but the reload the SIGHUP started had read the new bytes
    before the watcher's event was served, so that event is dropped: one "configuration
    reloaded" and one more success in mailgate_config_reloads_total per edit (before the
    coalescing, two). Edits by rename-over and by appending in place, SIGHUP right after."""
    mg = mailgate_factory()
    time.sleep(1.0)  # nothing of the start is left in the watcher's debounce
    logged = _reloads_logged(mg)
    counted = mg.metric("mailgate_config_reloads_total", result="success")
    edits = 0
    for target in ("mail2", "mail1"):
        moved = copy.deepcopy(mg.routing)
        moved["domains"]["example.com"] = target
        mg.reload(moved)  # rename-over, then SIGHUP at once
        edits += 1
        # Debounce (300 ms) and the reload; a second reload, were there one, is done by then.
        time.sleep(2.0)
        assert _backend_of(mg, pki, "moving@example.com") == target
    with open(mg.routing_path, "a") as f:
        f.write("# appended in place\n")
    mg.signal(signal.SIGHUP)
    edits += 1
    time.sleep(2.0)
    assert mg.running()
    n = _reloads_logged(mg) - logged
    assert n == edits, f"{n} reloads logged for {edits} edits, each with a SIGHUP"
    assert mg.metric("mailgate_config_reloads_total", result="success") - counted == edits

    # A change of the file alone (no SIGHUP) is still reloaded, once.
    with open(mg.routing_path, "a") as f:
        f.write("# appended, no signal\n")
    deadline = time.monotonic() + 10
    while _reloads_logged(mg) - logged == edits and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    n = _reloads_logged(mg) - logged
    assert n == edits + 1, f"a change without SIGHUP: {n - edits} reloads"
