"""Backends given by DNS name (issue #14 part 5): a real DNS server on loopback (dnsmasq from
Debian, serving a hosts file on a high port) answers for the backend's name, and mailgate is
pointed at it with ``resolver.nameservers``. Two real Dovecots listen on the same port of two
loopback addresses, so the address DNS gives decides which one a login reaches.

* When the answer changes (hosts file rewritten, SIGHUP), mailgate follows it once the TTL has
  run out; within the TTL it asks DNS once, not per login.
* When DNS stops answering, the last good addresses stand in — until
  ``resolver.keep_last_good`` after their TTL; then logins get ``NO [UNAVAILABLE]``. When DNS
  answers again, logins work again.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from clients import imap_backend, imap_open
from dovecot import Dovecot, stop_many
from ports import free_port

NAME = "backend.dns.test"
ADDR = {"dnsA": "127.0.0.71", "dnsB": "127.0.0.72"}
USER, PASSWORD = "dana@dns.test", "secret"


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port, answering from one hosts file only."""

    def __init__(self, directory: Path, ttl: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.hosts = self.dir / "hosts"
        self.log = self.dir / "dnsmasq.log"
        self.ttl = ttl
        self.port = free_port(udp=True)
        self.port_given_out = False  # once mailgate is told the port, a restart must keep it
        self.proc: subprocess.Popen | None = None

    def answer(self, ip: str) -> None:
        tmp = self.hosts.with_suffix(".tmp")
        tmp.write_text(f"{ip} {NAME}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.hosts)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)  # re-read the hosts file
            self.wait_log("read " + str(self.hosts), count=self.reads + 1)
            self.reads += 1

    def start(self) -> "Dnsmasq":
        # The port was free a moment ago, for UDP and TCP (dnsmasq binds both); another
        # socket can still take it before dnsmasq binds. Until the port is given out,
        # only that race is retried, on a fresh port.
        for attempt in range(5):
            seen = len(self.text())
            try:
                return self._start_once()
            except RuntimeError:
                lost_race = "Address already in use" in self.text()[seen:]
                if not lost_race or self.port_given_out or attempt == 4:
                    raise
                self.port = free_port(udp=True)
        raise AssertionError("unreachable")

    def address(self) -> str:
        """``127.0.0.1:port`` for mailgate's ``resolver.nameservers``; the port is fixed from now."""
        self.port_given_out = True
        return f"127.0.0.1:{self.port}"

    def _start_once(self) -> "Dnsmasq":
        text_before = self.text()
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.path.exists(binary):
            pytest.fail("dnsmasq is not installed: run scripts/install-deps.sh (dnsmasq-base)")
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [binary, "--keep-in-foreground", "-C", "/dev/null", f"--port={self.port}",
             "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
             f"--addn-hosts={self.hosts}", f"--local-ttl={self.ttl}", "--pid-file",
             "--log-queries", "--log-facility=-"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.reads = text_before.count("read " + str(self.hosts)) + 1
        self.wait_log("read " + str(self.hosts), count=self.reads)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, count: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited {self.proc.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dnsmasq: no {needle!r} (x{count}):\n{self.text()}")
            time.sleep(0.05)

    def queries(self) -> int:
        return len(re.findall(rf"query\[A\] {re.escape(NAME)} from", self.text()))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def dns_backends(work_dir: Path):
    imap_port = free_port(*ADDR.values())
    pop3_port = free_port(*ADDR.values())
    started = {}
    try:
        for name, ip in ADDR.items():
            started[name] = Dovecot(name=name, root=work_dir / "dns-backends" / name, host=ip,
                                    users={USER: PASSWORD}, imap_port=imap_port,
                                    pop3_port=pop3_port).start()
        yield started
    finally:
        stop_many(started.values())


@pytest.fixture
def dnsmasq(request, work_dir: Path):
    made = []

    def make(ttl: int) -> Dnsmasq:
        d = Dnsmasq(work_dir / "dnsmasq" / f"{request.node.name[:40]}-{len(made)}", ttl)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def _mailgate(mailgate_factory, dns_backends, dns: Dnsmasq, keep: str):
    b = dns_backends["dnsA"]
    routing = {
        "backends": {"dnsmail": {"host": NAME, "imap_port": b.imap_port, "pop3_port": b.pop3_port,
                                 "tls": "none", "max_sessions": 50, "forward_client": "id"}},
        "domains": {"dns.test": "dnsmail"},
    }
    config = {"resolver": {"nameservers": [dns.address()], "keep_last_good": keep},
              "limits": {"backend_resolve_timeout": "1s", "auth_failure_delay": "100ms"}}
    return mailgate_factory(config=config, routing=routing)


def _login(mg, pki) -> str:
    """Log in as USER through mailgate; the backend reached, or the refusal's text."""
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source="127.0.0.73")
    try:
        try:
            imap.login(USER, PASSWORD)
        except imaplib.IMAP4.error as e:
            return f"refused: {e}"
        return imap_backend(imap)
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def _until(fn, want, timeout: float, pause: float = 0.25):
    """Call ``fn`` until it returns something ``want`` accepts; (value, seconds taken)."""
    start = time.monotonic()
    while True:
        got = fn()
        if want(got):
            return got, time.monotonic() - start
        assert time.monotonic() - start < timeout, f"still {got!r} after {timeout}s"
        time.sleep(pause)


def test_mailgate_follows_a_changed_answer_after_its_ttl(mailgate_factory, dns_backends, dnsmasq, pki):
    dns = dnsmasq(ttl=2)
    dns.answer(ADDR["dnsA"])
    dns.start()
    mg = _mailgate(mailgate_factory, dns_backends, dns, keep="1h")
    assert _login(mg, pki) == "dnsA"
    # Within a TTL the answer is cached: a burst of logins asks DNS about once per TTL, not
    # once per login (health probes resolve too, through the same cache).
    before = dns.queries()
    burst_start = time.monotonic()
    for _ in range(8):
        assert _login(mg, pki) == "dnsA"
    burst = time.monotonic() - burst_start
    asked = dns.queries() - before
    assert asked <= int(burst / 2) + 2, f"{asked} DNS queries for 8 logins in {burst:.1f}s (TTL 2s)"
    dns.answer(ADDR["dnsB"])
    got, took = _until(lambda: _login(mg, pki), lambda b: b == "dnsB", timeout=15)
    assert got == "dnsB"
    for _ in range(3):
        assert _login(mg, pki) == "dnsB", "went back to the old address"
    print(f"followed the new answer {took:.1f}s after the change (TTL 2s)")


def test_the_last_good_answer_expires_after_keep_last_good(mailgate_factory, dns_backends, dnsmasq, pki):
    dns = dnsmasq(ttl=1)
    dns.answer(ADDR["dnsB"])
    dns.start()
    mg = _mailgate(mailgate_factory, dns_backends, dns, keep="4s")
    assert _login(mg, pki) == "dnsB"
    dns.stop()
    # DNS is gone: the last good address stands in for a while...
    assert _login(mg, pki) == "dnsB"
    mg.wait_log("DNS failed; using the last good addresses")
    # ...then it expires (TTL 1 s + keep_last_good 4 s), and logins are refused, not hung.
    got, took = _until(lambda: _login(mg, pki), lambda r: r.startswith("refused"), timeout=20)
    assert "[UNAVAILABLE]" in got, got
    mg.wait_log("last good addresses expired")
    print(f"refused {took:.1f}s after DNS stopped (TTL 1s, keep_last_good 4s)")
    # DNS answers again: logins work again (health comes back up first).
    dns.start()
    got, took = _until(lambda: _login(mg, pki), lambda b: b == "dnsB", timeout=20, pause=0.5)
    assert got == "dnsB"
