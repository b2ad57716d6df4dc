"""deploy/systemd/mailgate.service is a valid unit (systemd-analyze verify, with the binary
path pointed at the built mailgate), and its stop timeout leaves room for shutdown_grace;
mailgate.sysusers creates its user; a real mailgate speaks the notify protocol to a fake
NOTIFY_SOCKET (READY, RELOADING with MONOTONIC_USEC, WATCHDOG, MAINPID at an upgrade,
STOPPING) and writes plain lines with priorities to a JOURNAL_STREAM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mailgate_proc import mailgate_binary

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "mailgate.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    text = UNIT.read_text().replace("/usr/local/bin/mailgate", str(mailgate_binary()))
    unit = tmp_path / "mailgate.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    problems = [l for l in (result.stdout + result.stderr).splitlines()
                if "mailgate.service" in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_stop_timeout_exceeds_the_default_shutdown_grace():
    text = UNIT.read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M).group(1))
    assert stop > 30, "systemd would SIGKILL before mailgate's 30 s shutdown grace ends"
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M)


def test_unit_is_type_notify_with_a_watchdog():
    text = UNIT.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    # MAINPID= of a binary upgrade comes from the main process itself (the old one).
    assert re.search(r"^NotifyAccess=main$", text, re.M)
    watchdog = int(re.search(r"^WatchdogSec=(\d+)s$", text, re.M).group(1))
    assert watchdog >= 10


def _systemd_version() -> int:
    out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True,
                         timeout=10, stdin=subprocess.DEVNULL).stdout
    return int(re.match(r"systemd (\d+)", out).group(1))


def test_notify_reload_variant_matches_the_installed_systemd(tmp_path):
    """Type=notify-reload (systemd >= 253) verifies where systemd knows it; the shipped unit
    says Type=notify because 252 (Debian 12, this machine's kind) rejects it."""
    text = UNIT.read_text().replace("/usr/local/bin/mailgate", str(mailgate_binary()))
    text = text.replace("Type=notify\n", "Type=notify-reload\n").replace(
        "ExecReload=/bin/kill -HUP $MAINPID\n", "")
    unit = tmp_path / "mailgate.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    rejected = "Failed to parse service type" in result.stdout + result.stderr
    assert rejected == (_systemd_version() < 253), result.stdout + result.stderr


SYSUSERS = UNIT.parent / "mailgate.sysusers"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_sysusers_creates_the_unit_user(tmp_path):
    conf = tmp_path / "usr" / "lib" / "sysusers.d"
    conf.mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    shutil.copy(SYSUSERS, conf / "mailgate.conf")
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}"], check=True, capture_output=True,
                   timeout=60, stdin=subprocess.DEVNULL)
    user = [l.split(":") for l in (tmp_path / "etc" / "passwd").read_text().splitlines()
            if l.startswith("mailgate:")]
    assert user and user[0][6] in ("/usr/sbin/nologin", "/sbin/nologin"), user
    assert any(l.startswith("mailgate:") for l in (tmp_path / "etc" / "group").read_text().splitlines())
    unit = UNIT.read_text()
    assert re.search(r"^User=mailgate$", unit, re.M) and re.search(r"^Group=mailgate$", unit, re.M)


# --- a fake service manager: NOTIFY_SOCKET in Python, a real mailgate ------------------------

class FakeNotifySocket:
    """A datagram socket like systemd's: every message with the sender's pid."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.seen: list[tuple[float, int, str]] = []

    def _recv(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            return False
        pid = 0
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:12])[0]
        self.seen.append((time.monotonic(), pid, data.decode()))
        return True

    def wait(self, pred, timeout: float, what: str, since: int = 0):
        """The first message after index ``since`` with pred(pid, text); returns its index."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.seen):
                _, pid, text = self.seen[i]
                if pred(pid, text):
                    return i
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what}; got {self.seen}")
            self._recv(min(left, 0.5))

    def close(self):
        self.sock.close()


def _lines(text: str) -> dict[str, str]:
    return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)


def test_readiness_reload_watchdog_upgrade_and_stopping_reach_notify_socket(
        mailgate_factory, tmp_path, monkeypatch):
    notify = FakeNotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")   # WATCHDOG=1 every 0.5 s
    new_pid = None
    try:
        mg = mailgate_factory()
        old = mg.proc.pid
        i = notify.wait(lambda p, t: p == old and "READY=1" in t.splitlines(), 10, "READY=1")

        # The watchdog: from the main process, about every 0.5 s.
        first = notify.wait(lambda p, t: p == old and t == "WATCHDOG=1", 5, "WATCHDOG=1", i)
        notify.wait(lambda p, t: p == old and t == "WATCHDOG=1", 5, "a second WATCHDOG=1",
                    first + 1)

        # Reload: RELOADING=1 with the CLOCK_MONOTONIC time, then READY=1; one SIGHUP is
        # one reload (the notifier takes SIGHUP, the reloader's own handler does not).
        before = mg.metric("mailgate_config_reloads_total")
        mg.signal(signal.SIGHUP)
        now_usec = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        r = notify.wait(lambda p, t: p == old and "RELOADING=1" in t.splitlines(), 10,
                        "RELOADING=1", first)
        usec = int(_lines(notify.seen[r][2])["MONOTONIC_USEC"])
        assert abs(usec - now_usec) < 10e6, (usec, now_usec)
        notify.wait(lambda p, t: p == old and "READY=1" in t.splitlines(), 30,
                    "READY=1 after the reload", r + 1)
        time.sleep(1.0)  # a second reload, were there one, would be done by now
        assert mg.metric("mailgate_config_reloads_total") == before + 1

        # Binary upgrade: the old process names the new main process, which says READY=1
        # and then keeps the watchdog; the old one stops pinging and never says STOPPING=1.
        os.kill(old, signal.SIGUSR2)
        m = notify.wait(lambda p, t: p == old and t.startswith("MAINPID="), 60, "MAINPID=", r)
        new_pid = int(_lines(notify.seen[m][2])["MAINPID"])
        assert new_pid != old
        notify.wait(lambda p, t: p == new_pid and "READY=1" in t.splitlines(), 30,
                    "READY=1 from the new process", m)
        w = notify.wait(lambda p, t: p == new_pid and t == "WATCHDOG=1", 5,
                        "WATCHDOG=1 from the new process", m)
        assert mg.wait_exit(timeout=15) == 0, mg.output()    # no sessions: the old one exits
        late = [x for x in notify.seen[m + 1:] if x[1] == old]
        assert all(t != "WATCHDOG=1" and "STOPPING=1" not in t for _, _, t in late), late

        # Stopping: SIGTERM to the new main process.
        os.kill(new_pid, signal.SIGTERM)
        notify.wait(lambda p, t: p == new_pid and "STOPPING=1" in t.splitlines(), 10,
                    "STOPPING=1", w)
    finally:
        if new_pid:
            try:
                os.kill(new_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        notify.close()


def test_journal_stream_gets_plain_lines_with_priorities(mailgate_factory, monkeypatch):
    mg = mailgate_factory(start=False)
    mg.out_path.touch()
    st = os.stat(mg.out_path)
    # stderr is that file: as journald's stream would be, named by dev:inode.
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    mg.start()
    deadline = time.monotonic() + 10
    while "listening" not in mg.out_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    mg.stop()
    lines = [l for l in mg.out_path.read_text().splitlines() if l.strip()]
    assert any(l.startswith("<6>INFO ") and "listening" in l for l in lines), lines
    assert not [l for l in lines if re.match(r"^\d{4}-\d\d-\d\dT", l)], "timestamps in the journal"
    assert "\x1b[" not in "".join(lines)
    assert all(re.match(r"^<[3467]>", l) or not re.match(r"^\S+ +(INFO|WARN|ERROR)", l)
               for l in lines), lines


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate not installed")
def test_socket_activation_sockets_are_used_and_survive_an_upgrade(mailgate_factory, pki):
    """systemd-socket-activate (systemd's own tool) holds the IMAP and admin sockets and
    starts mailgate at the first connection: that connection, queued before mailgate ran,
    is served; mailgate binds only the other listeners; a SIGUSR2 upgrade hands the
    activated sockets on like its own."""
    from clients import imap_open, read_line
    from layout import PASSWORD

    mg = mailgate_factory(start=False)
    imap, admin = mg.ports["imap"], mg.ports["admin"]
    out = open(mg.out_path, "ab")
    mg.proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{imap}", "-l", f"127.0.0.1:{admin}",
         "--fdname=imap:admin", str(mailgate_binary()), "run", "-c", str(mg.config_path)],
        cwd=mg.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": "info"})
    out.close()
    new_pid = None
    try:
        deadline = time.monotonic() + 10
        while True:   # the activation socket listens before mailgate exists
            try:
                first = socket.create_connection(("127.0.0.1", imap), timeout=10)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, mg.output()
                time.sleep(0.05)
        with first:
            assert read_line(first, timeout=15).startswith(b"* OK"), mg.output()
        pid = mg.proc.pid   # systemd-socket-activate execs mailgate: same pid
        deadline = time.monotonic() + 10
        while "listening" not in mg.output() or "listener=\"pop3\"" not in mg.output():
            assert time.monotonic() < deadline, mg.output()
            time.sleep(0.05)
        text = mg.output()
        assert re.search(r"listener inherited.*handed_as=imap", text), text
        assert re.search(r"listener inherited.*handed_as=admin", text), text
        assert "cannot bind" not in text
        s = imap_open("127.0.0.1", imap, "plain", pki.ca_cert)
        assert s.login("alice@example.com", PASSWORD)[0] == "OK"
        s.logout()

        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while "the new process took over" not in mg.output():
            assert time.monotonic() < deadline, mg.output()
            time.sleep(0.05)
        new_pid = int(re.search(r"took over.*new_pid=(\d+)", mg.output()).group(1))
        assert mg.wait_exit(timeout=15) == 0, mg.output()
        s = imap_open("127.0.0.1", imap, "plain", pki.ca_cert)
        assert s.login("bob@example.org", PASSWORD)[0] == "OK"
        s.logout()
        assert mg.http("GET", "/readyz", token=None)[0] == 200
        assert "pop3" in re.search(r"took over.*listeners=(\S+)", mg.output()).group(1)
    finally:
        if new_pid:
            try:
                os.kill(new_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
