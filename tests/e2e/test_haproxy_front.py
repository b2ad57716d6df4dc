"""A real HAProxy (Debian 2.6, `mode tcp`) in front of mailgate: `send-proxy` (PROXY v1,
text) and `send-proxy-v2` (binary) on the same mailgate listeners, told apart by
mailgate itself (`listen.proxy_from` names the balancer). The client connects from
127.0.0.5, HAProxy connects to mailgate from 127.0.0.3, and Dovecot's login line must show
rip=127.0.0.5: the address from HAProxy's header, forwarded by mailgate (IMAP ID, POP3
XCLIENT) — not HAProxy's and not mailgate's own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from clients import imap_open, pop3_open
from layout import PASSWORD
from ports import free_port

CLIENT = "127.0.0.5"
BALANCER = "127.0.0.3"

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy not installed (scripts/install-deps.sh)")


class HAProxy:
    """haproxy -W -db -f haproxy.cfg: one frontend per (name, mailgate port, server option)."""

    def __init__(self, directory: Path, routes: dict[str, tuple[int, str]]):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in routes}
        lines = [
            "global",
            f"    pidfile {self.dir / 'haproxy.pid'}",
            "defaults",
            "    mode tcp",
            "    timeout connect 5s",
            "    timeout client 60s",
            "    timeout server 60s",
        ]
        for name, (target, option) in routes.items():
            lines += [
                f"frontend fe_{name}",
                f"    bind 127.0.0.1:{self.ports[name]}",
                f"    default_backend be_{name}",
                f"backend be_{name}",
                f"    server mg 127.0.0.1:{target} {option} source {BALANCER}",
            ]
        self.cfg = self.dir / "haproxy.cfg"
        self.cfg.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "haproxy.out"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HAProxy":
        check = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert check.returncode == 0, check.stdout + check.stderr
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(self.cfg)],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                assert self.proc.poll() is None, self.log.read_text(errors="replace")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"haproxy not listening on {port}"
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The master and its worker share a new session (process group) of their own.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@pytest.fixture
def front(mailgate_factory, work_dir, request):
    mg = mailgate_factory(config={"listen": {"proxy_from": [BALANCER]}})
    routes = {
        "imap_v1": (mg.ports["imap"], "send-proxy"),
        "imap_v2": (mg.ports["imap"], "send-proxy-v2"),
        "imaps_v1": (mg.ports["imaps"], "send-proxy"),
        "pop3_v1": (mg.ports["pop3"], "send-proxy"),
        "pop3s_v2": (mg.ports["pop3s"], "send-proxy-v2"),
    }
    hp = HAProxy(work_dir / "haproxy" / request.node.name[:60], routes).start()
    try:
        yield mg, hp
    finally:
        hp.stop()


@pytest.mark.parametrize("route,mode", [("imap_v1", "plain"), ("imap_v2", "plain"),
                                        ("imap_v1", "starttls"), ("imaps_v1", "tls")])
def test_imap_through_haproxy_backend_sees_the_client(front, backends, pki, route, mode):
    mg, hp = front
    mail1 = backends["mail1"]
    since = mail1.log_size()
    imap = imap_open("127.0.0.1", hp.ports[route], mode, pki.ca_cert, source=CLIENT)
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()
    line = mail1.wait_log("imap-login: Info: Login: user=<alice@example.com>", since=since)
    assert f"rip={CLIENT}," in line, line
    assert f"rip={BALANCER}," not in line


@pytest.mark.parametrize("route,mode", [("pop3_v1", "plain"), ("pop3s_v2", "tls")])
def test_pop3_through_haproxy_backend_sees_the_client(front, backends, pki, route, mode):
    mg, hp = front
    mail2 = backends["mail2"]
    since = mail2.log_size()
    pop = pop3_open("127.0.0.1", hp.ports[route], mode, pki.ca_cert, source=CLIENT)
    try:
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
        assert pop.stat()[0] >= 0
    finally:
        pop.quit()
    line = mail2.wait_log("pop3-login: Info: Login: user=<bob@example.org>", since=since)
    assert f"rip={CLIENT}," in line, line


def test_the_balancer_must_send_a_header(front):
    """Straight from the balancer's address without a header: closed, no greeting (the
    PROXY header is mandatory from `proxy_from`); v1 garbage likewise."""
    mg, _ = front
    for payload in (b"a1 CAPABILITY\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                    b"PROXY TCP4 " + b"9" * 120 + b"\r\n"):
        with socket.create_connection(("127.0.0.1", mg.ports["imap"]), timeout=10,
                                      source_address=(BALANCER, 0)) as sock:
            sock.sendall(payload)
            sock.settimeout(10)
            try:
                data = sock.recv(1024)
            except ConnectionResetError:
                data = b""
            assert data == b"", (payload, data)
