"""Run the real mailgate binary in front of the test backends.

:class:`Mailgate` writes ``mailgate.yaml`` and ``routing.yaml`` (design.md section 4) into a
directory of its own, starts ``mailgate run -c mailgate.yaml``, waits until its listeners
accept, and keeps its output in ``mailgate.out`` so that a failing test can show it. The
binary is ``target/debug/mailgate`` unless the environment variable ``MAILGATE_BIN`` names
another one.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
LISTENERS = ("imap", "imaps", "pop3", "pop3s")
START_TIMEOUT = 5.0


def mailgate_binary() -> Path:
    """The binary under test: $MAILGATE_BIN or target/debug/mailgate."""
    return Path(os.environ.get("MAILGATE_BIN") or REPO / "target" / "debug" / "mailgate")


# --- a tiny YAML writer (block style; strings always double-quoted, JSON escapes) ----------

def to_yaml(value, indent: int = 0) -> str:
    """Serialise dicts, lists, strings, numbers and booleans as block-style YAML."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for k, v in value.items():
            key = json.dumps(str(k))
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{key}:\n{to_yaml(v, indent + 1)}")
            else:
                out.append(f"{pad}{key}: {_scalar(v)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        return "".join(f"{pad}- {_scalar(v)}\n" for v in value)
    return pad + _scalar(value) + "\n"


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, list) and not v:
        return "[]"
    if isinstance(v, (dict, list)):
        raise TypeError("nested non-empty collections are written in block style")
    return json.dumps(str(v))


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``; a value of None deletes the key."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --- the process ----------------------------------------------------------------------------

class Mailgate:
    """One mailgate process with its own config directory and dynamic loopback ports.

    ``config`` and ``routing`` are plain dicts (written as YAML); ``ports`` maps listener
    names (imap, imaps, pop3, pop3s, admin) to the chosen ports.
    """

    def __init__(self, directory: Path, config: dict, routing: dict, ports: dict[str, int]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.routing = routing
        self.ports = ports
        self.proc: subprocess.Popen | None = None
        self.config_path = self.dir / "mailgate.yaml"
        self.routing_path = self.dir / "routing.yaml"
        self.out_path = self.dir / "mailgate.out"
        self.write()

    # files
    def write(self) -> None:
        """Write mailgate.yaml and routing.yaml as they are now."""
        self.config_path.write_text("# Written by tests/e2e/mailgate_proc.py\n" + to_yaml(self.config))
        self.write_routing(self.routing)

    def write_routing(self, routing: dict) -> None:
        """Replace routing.yaml atomically (write a temp file, rename), as editors do."""
        self.routing = routing
        tmp = self.routing_path.with_suffix(".yaml.tmp")
        tmp.write_text("# Written by tests/e2e/mailgate_proc.py\n" + to_yaml(routing))
        os.replace(tmp, self.routing_path)

    # lifecycle
    def start(self, timeout: float = START_TIMEOUT) -> "Mailgate":
        """Start ``mailgate run -c mailgate.yaml`` and wait until every listener accepts."""
        binary = mailgate_binary()
        if not binary.exists():
            raise RuntimeError(f"mailgate binary {binary} not found: run `cargo build -p mailgate` "
                               "(or `make test-e2e`), or set MAILGATE_BIN")
        out = open(self.out_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen([str(binary), "run", "-c", str(self.config_path)],
                                     cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env)
        out.close()
        deadline = time.monotonic() + timeout
        waiting = [name for name in LISTENERS if name in self.ports]

        def accepting() -> bool:
            waiting[:] = [name for name in waiting if not _accepts(self.ports[name])]
            return not waiting

        self._wait_startup(deadline, lambda: f"listeners {waiting} not accepting after {timeout}s",
                           accepting)
        # A bound listener accepts TCP before mailgate has its signal handlers (a SIGHUP
        # then would end it): the admin listener answers HTTP only after they exist.
        self._wait_startup(deadline, lambda: f"admin listener not answering after {timeout}s",
                           lambda: "admin" not in self.ports or _answers_http(self.ports["admin"]))
        return self

    def _wait_startup(self, deadline: float, what, done) -> None:
        """Poll ``done()`` until it holds; raise if mailgate exits or ``deadline`` passes."""
        while not done():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailgate exited with {self.proc.returncode} at startup\n"
                                   f"{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mailgate {what()}\n{self.output()}")
            time.sleep(0.02)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGHUP to reload, SIGTERM to shut down)."""
        assert self.proc is not None, "mailgate was not started"
        self.proc.send_signal(sig)

    def reload(self, routing: dict) -> None:
        """Rewrite routing.yaml and send SIGHUP."""
        self.write_routing(routing)
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; returns its exit code (raises on timeout)."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def output(self, limit: int = 20000) -> str:
        """mailgate's stdout/stderr so far (the last ``limit`` characters)."""
        try:
            text = self.out_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        text = text[-limit:]
        return f"--- mailgate output ({self.out_path}) ---\n{text}\n--- end of mailgate output ---"

    def wait_log(self, *needles: str, timeout: float = 10.0) -> None:
        """Wait until mailgate's output holds every one of ``needles``. Lines reach the file
        through the logger's writer thread, a moment after the event (a metric, a reply) that a
        test has just seen: read the log right after it and a line may not be there yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.out_path.read_text(errors="replace")
            except OSError:
                text = ""
            missing = [n for n in needles if n not in text]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no {missing!r} in mailgate's log after {timeout}s\n"
                                     f"{self.output()}")
            time.sleep(0.05)

    # offline subcommands
    def cli(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Run ``mailgate ARGS...`` (e.g. ``check -c FILE``) and capture its output."""
        return subprocess.run([str(mailgate_binary()), *args], cwd=self.dir, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    # addresses
    def addr(self, listener: str) -> tuple[str, int]:
        return (LOOPBACK, self.ports[listener])

    # admin API (listen.admin) and `mailgate ctl`
    def admin_url(self, path: str = "/", listener: str = "admin") -> str:
        """URL of ``path`` on the admin (or status) listener."""
        return f"http://{LOOPBACK}:{self.ports[listener]}{path}"

    def admin_token(self) -> str | None:
        """The token in admin.token_file, or None when none is configured."""
        path = self.config.get("admin", {}).get("token_file")
        return Path(path).read_text().strip() if path else None

    def http(self, method: str, path: str, token: str | bool | None = True,
             listener: str = "admin", timeout: float = 5.0) -> tuple[int, dict, str]:
        """One HTTP request; ``token=True`` sends the configured token, a string sends that,
        None/False none. Returns (status, headers with lower-case names, body), also for
        error statuses."""
        req = urllib.request.Request(self.admin_url(path, listener), method=method)
        if token is True:
            token = self.admin_token()
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the series of ``name`` on /metrics whose labels include ``labels``."""
        code, _, body = self.http("GET", "/metrics", token=None)
        assert code == 200, body
        want = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        for line in body.splitlines():
            m = re.match(rf"{re.escape(name)}(?:{{(.*)}})? (\S+)$", line)
            if m and all(w in (m.group(1) or "").split(",") for w in want):
                total += float(m.group(2))
        return total

    def status_json(self) -> dict:
        """GET /status as a dict."""
        code, _, body = self.http("GET", "/status", token=None)
        assert code == 200, body
        return json.loads(body)

    def backend_status(self, name: str) -> dict:
        """One backend's entry of GET /status."""
        for b in self.status_json()["backends"]:
            if b["name"] == name:
                return b
        raise KeyError(name)

    def ctl(self, *args: str, token: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
        """``mailgate ctl -c mailgate.yaml ARGS...``; without ``token`` no token reaches it."""
        env = {k: v for k, v in os.environ.items() if k != "MAILGATE_ADMIN_TOKEN"}
        cmd = [str(mailgate_binary()), "ctl", "-c", str(self.config_path), *args]
        if not token:
            cmd += ["--token-file", os.devnull]
        return subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def _answers_http(port: int) -> bool:
    """True once ``GET /healthz`` gets any HTTP answer (the admin server is running)."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/healthz", timeout=0.5):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False
