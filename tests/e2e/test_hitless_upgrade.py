"""Hitless binary upgrade (issue #13): SIGUSR2 or POST /upgrade start the binary at the
running one's path; the new process inherits the listening sockets and takes over, the old
one keeps its spliced sessions and exits when they end. Under a continuous stream of new
logins no connection is refused and no login fails; which process serves a connection is
read from /proc (the process holding the server side of the TCP connection), not from
mailgate's own word. A config that does not validate at upgrade time leaves the old
process in charge."""

from __future__ import annotations

import imaplib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from clients import imap_open
from layout import PASSWORD
from mailgate_proc import mailgate_binary

USERS = ["alice@example.com", "bob@example.org", "carol@sub.example.net"]


# --- which process holds a connection ---------------------------------------------------------

def _tcp_inode(server_port: int, client_port: int) -> str | None:
    """Inode of the server-side socket of the connection client_port -> server_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote, inode = f[1], f[2], f[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and \
               int(remote.rsplit(":", 1)[1], 16) == client_port and inode != "0":
                return inode
    return None


def _pid_holding(inode: str, pids) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def owner(imap: imaplib.IMAP4, server_port: int, pids) -> int | None:
    """The mailgate process (among ``pids``) that holds this client's connection."""
    client_port = imap.sock.getsockname()[1]
    inode = _tcp_inode(server_port, client_port)
    return _pid_holding(inode, pids) if inode else None


def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            out += [int(x) for x in text.split()]
    except OSError:
        pass
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


# --- a stream of new logins -----------------------------------------------------------------

class LoginLoop(threading.Thread):
    """New connections and logins back to back until stopped; every failure is recorded."""

    def __init__(self, mg, pki, pids):
        super().__init__(daemon=True)
        self.mg, self.pki, self.pids = mg, pki, pids
        self.stop = threading.Event()
        self.done: list[tuple[float, int | None]] = []   # (start time, serving pid)
        self.failures: list[str] = []

    def run(self):
        port = self.mg.ports["imap"]
        i = 0
        while not self.stop.is_set():
            user = USERS[i % len(USERS)]
            i += 1
            started = time.monotonic()
            try:
                imap = imap_open("127.0.0.1", port, "plain", self.pki.ca_cert)
                try:
                    typ, _ = imap.login(user, PASSWORD)
                    assert typ == "OK", typ
                    assert imap.noop()[0] == "OK"
                    self.done.append((started, owner(imap, port, self.pids())))
                finally:
                    imap.logout()
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append(f"{time.monotonic():.3f} {user}: {type(e).__name__}: {e}")


def wait_for(pred, timeout: float, what: str, mg=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{mg.output() if mg else ''}")


def test_sigusr2_under_load_refuses_nothing_and_new_logins_go_to_the_new_process(
        mailgate_factory, pki):
    mg = mailgate_factory(config={"upgrade_grace": "120s", "shutdown_close_window": "1s"})
    old = mg.proc.pid
    new: list[int] = []
    sessions = []
    loop = LoginLoop(mg, pki, lambda: [old, *new])
    try:
        for n in range(9):
            s = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
            assert s.login(USERS[n % 3], PASSWORD)[0] == "OK"
            assert s.select("INBOX")[0] == "OK"
            sessions.append(s)
        loop.start()
        wait_for(lambda: len(loop.done) >= 20, 30, "logins before the upgrade", mg)

        signalled = time.monotonic()
        os.kill(old, signal.SIGUSR2)
        new.append(wait_for(lambda: next(iter(children(old)), None), 10, "the new process", mg))
        wait_for(lambda: "the new process took over" in mg.output(), 60, "the hand-over", mg)
        took_over = time.monotonic()
        assert alive(old), "the old process must stay while it has sessions"
        wait_for(lambda: sum(1 for t, _ in loop.done if t > took_over + 0.5) >= 10, 30,
                 "logins after the hand-over", mg)
        loop.stop.set()
        loop.join(timeout=30)

        assert not loop.failures, "refused or failed logins during the upgrade:\n" + \
            "\n".join(loop.failures[:20]) + "\n" + mg.output()
        before = [p for t, p in loop.done if t < signalled]
        after = [p for t, p in loop.done if t > took_over + 0.5]
        assert before and all(p == old for p in before), before
        assert after and all(p == new[0] for p in after), \
            f"new logins not served by the new process {new[0]}: {after}"

        print(f"logins: {len(before)} before the signal, {len(after)} after the hand-over, "
              f"{len(loop.done)} in all, {len(loop.failures)} failed")

        # The old sessions keep working, still held by the old process.
        for s in sessions:
            assert s.noop()[0] == "OK"
            assert owner(s, mg.ports["imap"], [old, new[0]]) == old
        # The admin listener moved too: the new process answers it.
        status = mg.status_json()
        assert status["backends"], status

        # The old process exits once its last session ended.
        for s in sessions:
            s.logout()
        sessions.clear()
        assert mg.wait_exit(timeout=15) == 0, mg.output()
        assert alive(new[0])
        after_exit = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
        assert after_exit.login(USERS[0], PASSWORD)[0] == "OK"
        assert owner(after_exit, mg.ports["imap"], [new[0]]) == new[0]
        after_exit.logout()
        assert mg.http("GET", "/readyz", token=None)[0] == 200
    finally:
        loop.stop.set()
        for s in sessions:
            try:
                s.shutdown()
            except OSError:
                pass
        for pid in new:
            stop_pid(pid)


def admin_ready(mg) -> bool:
    try:
        return mg.http("GET", "/readyz", token=None, timeout=2)[0] == 200
    except OSError:
        return False


def test_bad_config_at_upgrade_leaves_the_old_process_in_charge(mailgate_factory, pki):
    mg = mailgate_factory(config={"upgrade_grace": "60s"})
    wait_for(lambda: admin_ready(mg), 10, "the admin listener", mg)
    old = mg.proc.pid
    new: list[int] = []
    good = mg.config_path.read_text()
    try:
        mg.config_path.write_text(good + "no_such_key: 1\n")
        code, _, body = mg.http("POST", "/upgrade", timeout=60)
        assert code == 422, body
        answer = json.loads(body)
        assert answer["ok"] is False and "exited before it was ready" in answer["error"], answer
        assert answer["old_pid"] == old
        # The new process said why; the old one logged that it stays (its log is written
        # by a thread of its own, so the line may come a moment after the answer).
        wait_for(lambda: "no_such_key" in mg.output(), 5, "the new process's error", mg)
        wait_for(lambda: "upgrade failed; this process stays in charge" in mg.output(), 5,
                 "the old process's log line", mg)
        assert mg.running() and children(old) == [], children(old)

        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
        assert imap.login(USERS[1], PASSWORD)[0] == "OK"
        assert owner(imap, mg.ports["imap"], [old]) == old
        imap.logout()
        assert mg.http("GET", "/readyz", token=None)[0] == 200

        # Without the admin token the endpoint refuses.
        assert mg.http("POST", "/upgrade", token=None)[0] == 401

        # `mailgate ctl upgrade` says why too, and exits non-zero.
        # (--admin and --token-file: the config it would read them from does not parse.)
        failed = subprocess.run(
            [str(mailgate_binary()), "ctl", "--admin", mg.admin_url("").rstrip("/"),
             "--token-file", mg.config["admin"]["token_file"], "upgrade"],
            capture_output=True, text=True, timeout=70, stdin=subprocess.DEVNULL)
        assert failed.returncode != 0 and "exited before it was ready" in failed.stderr + failed.stdout, failed
        assert mg.running() and children(old) == []

        # With the config fixed the same command upgrades.
        mg.config_path.write_text(good)
        done = mg.ctl("upgrade", timeout=70)
        assert done.returncode == 0, done.stdout + done.stderr + mg.output()
        m = re.search(r"upgraded: process (\d+) serves now; the old one \((\d+)\)", done.stdout)
        assert m, done.stdout
        new.append(int(m.group(1)))
        assert int(m.group(2)) == old and new[0] != old
        assert mg.wait_exit(timeout=15) == 0, mg.output()   # no sessions: exits at once
        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
        assert imap.login(USERS[0], PASSWORD)[0] == "OK"
        assert owner(imap, mg.ports["imap"], new) == new[0]
        imap.logout()
        wait_for(lambda: "upgrade: the old process handed over" in mg.output(), 5, "the hand-over", mg)
    finally:
        for pid in new:
            stop_pid(pid)


def test_old_sessions_close_spread_out_after_the_upgrade_grace(mailgate_factory, pki):
    grace, window = 3.0, 1.0
    mg = mailgate_factory(config={"upgrade_grace": f"{grace:g}s",
                                  "shutdown_close_window": f"{window:g}s",
                                  "shutdown_grace": "30s"})
    old = mg.proc.pid
    new: list[int] = []
    sessions = []
    try:
        for n in range(4):
            s = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
            assert s.login(USERS[n % 3], PASSWORD)[0] == "OK"
            assert s.select("INBOX")[0] == "OK"
            sessions.append(s)
        os.kill(old, signal.SIGUSR2)
        new.append(wait_for(lambda: next(iter(children(old)), None), 10, "the new process", mg))
        wait_for(lambda: "the new process took over" in mg.output(), 60, "the hand-over", mg)
        took_over = time.monotonic()
        for s in sessions:
            assert s.noop()[0] == "OK"
        # Each is closed by the old process after the grace, with a BYE, within the window
        # (plus at most 2 s waiting for a quiet moment and a generous margin).
        closed = {}
        while len(closed) < len(sessions) and time.monotonic() - took_over < grace + window + 10:
            for i, s in enumerate(sessions):
                if i in closed:
                    continue
                try:
                    s.noop()
                except (imaplib.IMAP4.abort, OSError, EOFError) as e:
                    closed[i] = (time.monotonic() - took_over, str(e))
            time.sleep(0.1)
        assert len(closed) == len(sessions), f"still open after the grace: {closed}\n{mg.output()}"
        for at, why in closed.values():
            assert at >= grace * 0.5, f"closed before the upgrade grace ended: {at:.1f}s"
            assert "shutting down" in why, f"closed without the BYE: {why!r}"
        assert mg.wait_exit(timeout=10) == 0, mg.output()
        assert "upgrade grace over" in mg.output()
        assert alive(new[0])
    finally:
        for s in sessions:
            try:
                s.shutdown()
            except OSError:
                pass
        for pid in new:
            stop_pid(pid)


def test_shutdown_while_the_new_process_is_not_ready_stops_it(mailgate_factory, pki):
    """The new process hangs before it is ready (its certificate path is a FIFO nobody
    writes): a second request is refused with 409, and a SIGTERM to the old process stops
    the new one too instead of leaving it to serve alone."""
    mg = mailgate_factory()
    wait_for(lambda: admin_ready(mg), 10, "the admin listener", mg)
    old = mg.proc.pid
    fifo = mg.dir / "stall.pem"
    os.mkfifo(fifo)
    mg.config["tls"]["cert"] = str(fifo)
    mg.write()
    child = None
    try:
        os.kill(old, signal.SIGUSR2)
        child = wait_for(lambda: next(iter(children(old)), None), 10, "the new process", mg)
        code, _, body = mg.http("POST", "/upgrade", timeout=30)
        assert code == 409 and "already in progress" in body, (code, body)
        imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
        assert imap.login(USERS[0], PASSWORD)[0] == "OK"     # the old one still serves
        imap.logout()
        mg.signal(signal.SIGTERM)
        assert mg.wait_exit(timeout=20) == 0, mg.output()
        wait_for(lambda: not alive(child), 10, "the new process to be stopped", mg)
    finally:
        if child:
            stop_pid(child, timeout=2)
