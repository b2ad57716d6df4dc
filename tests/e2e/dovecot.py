#!/usr/bin/env python3
"""Real Dovecot instances as mailgate test and demo backends.

Each instance lives in its own directory (config, run/state dirs, log, passwd file,
mailboxes) and listens on loopback only. As root the instance runs "rootless": every
Dovecot-internal, login and mail user is the ``dovecot`` account, login services are not
chrooted. As a plain user, that user is used everywhere.

Used by the pytest fixtures (see conftest.py) and as a command line tool for the demo::

    python3 tests/e2e/dovecot.py demo --dir demo [--cert C --key K]   # start mail1..mail3
    python3 tests/e2e/dovecot.py status --dir demo
    python3 tests/e2e/dovecot.py freeze --dir demo mail2              # simulate a deadlock
    python3 tests/e2e/dovecot.py thaw --dir demo mail2
    python3 tests/e2e/dovecot.py stop --dir demo                      # stop every instance

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

DH_PEM = "/usr/share/dovecot/dh.pem"
LOOPBACK = "127.0.0.1"

# Instances started by this process: stopped at interpreter exit whatever happens.
_STARTED: list["Dovecot"] = []


def dovecot_binary() -> str:
    """Path of the ``dovecot`` master binary (often outside a plain user's PATH)."""
    found = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.path.exists(found):
        raise RuntimeError("dovecot is not installed: run scripts/install-deps.sh")
    return found


def run_user() -> tuple[str, int, int]:
    """The account Dovecot's processes and mail files use: ``dovecot`` as root, else ourselves."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("dovecot")
    else:
        entry = pwd.getpwuid(os.getuid())
    return entry.pw_name, entry.pw_uid, entry.pw_gid


# --- processes ----------------------------------------------------------------------------

def _ppid_map() -> dict[int, int]:
    """pid -> parent pid for every live (non-zombie) process."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # "pid (comm) state ppid ..." and comm may contain spaces or parentheses.
        rest = stat[stat.rfind(")") + 2:].split()
        if rest and rest[0] != "Z":
            parents[int(entry)] = int(rest[1])
    return parents


def process_tree(root_pid: int) -> list[int]:
    """root_pid and all its live descendants, root first."""
    parents = _ppid_map()
    if root_pid not in parents:
        return []
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        tree.extend(children)
        frontier = children
    return tree


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    return pid in _ppid_map()


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# Dovecot's sockets live under base_dir, the longest ~26 bytes below it
# ("token-login/imap-urlauth"); a unix socket path has 107 usable bytes.
_RUN_DIR_MAX = 107 - 32


def _short_run_dir(wanted: Path) -> Path:
    """``wanted``, or a fresh directory in /tmp when ``wanted`` is too long to hold
    Dovecot's unix sockets (a clone at a deep path, a long session directory)."""
    if len(os.fsencode(str(wanted))) <= _RUN_DIR_MAX:
        return wanted
    return Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))


# --- one instance ---------------------------------------------------------------------------

@dataclass
class Dovecot:
    """One Dovecot instance in ``root`` (a directory of its own), named ``name``.

    ``users`` maps ``user@domain`` to a plain-text password. Ports of 0 disable a listener;
    implicit-TLS listeners and STARTTLS need ``cert``/``key`` (PEM files).
    """

    name: str
    root: Path
    users: dict[str, str] = field(default_factory=dict)
    imap_port: int = 0
    pop3_port: int = 0
    imaps_port: int = 0
    pop3s_port: int = 0
    cert: Path | None = None
    key: Path | None = None
    imap_process_limit: int | None = None
    host: str = LOOPBACK
    # The plain IMAP and POP3 listeners require a PROXY protocol header (from loopback).
    haproxy: bool = False
    # Dovecot's own delay before answering a failed login ("0": none; its default is 2s).
    auth_failure_delay: str = "0"
    # Master users (name -> password): a master passdb, and ``user<sep>master`` logins
    # (auth_master_user_separator) as well as SASL PLAIN with authzid log in as ``user``.
    master_users: dict[str, str] = field(default_factory=dict)
    master_separator: str = "*"
    # SASL mechanisms offered (``auth_mechanisms``); passwords are {PLAIN}, so cram-md5 works.
    auth_mechanisms: str = "plain login"
    # ``imap_capability``: replaces the advertised IMAP list (pre- and post-login; the
    # AUTH= mechanisms and STARTTLS are still appended), "+..." adds to it. None: default.
    imap_capability: str | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.frozen: list[int] = []
        self.run_dir = _short_run_dir(self.root / "run")

    # paths
    @property
    def conf_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def passwd_path(self) -> Path:
        return self.root / "users.passwd"

    @property
    def master_passwd_path(self) -> Path:
        return self.root / "masters.passwd"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "master.pid"

    def home(self, user: str) -> Path:
        """Home directory of ``user@domain`` (matches the userdb's home=DIR/mail/%d/%n)."""
        local, _, domain = user.partition("@")
        return self.root / "mail" / domain / local

    # configuration
    def render_config(self) -> str:
        """The complete dovecot.conf for this instance."""
        user, _, _ = run_user()
        tls = self.cert is not None and self.key is not None
        if (self.imaps_port or self.pop3s_port) and not tls:
            raise ValueError(f"{self.name}: implicit TLS listeners need cert and key")
        lines = [
            f"# Generated by tests/e2e/dovecot.py for backend {self.name}.",
            "protocols = imap pop3",
            f"listen = {self.host}",
            f"base_dir = {self.run_dir}",
            f"state_dir = {self.root}/state",
            f"instance_name = dovecot-{self.name}",
            f"log_path = {self.log_path}",
            f"default_internal_user = {user}",
            f"default_login_user = {user}",
            f"mail_uid = {user}",
            f"mail_gid = {user}",
            "first_valid_uid = 1",
            "disable_plaintext_auth = no",
            f"auth_mechanisms = {self.auth_mechanisms}",
            *([f"imap_capability = {self.imap_capability}"] if self.imap_capability else []),
            f"auth_failure_delay = {self.auth_failure_delay}",
            "mail_max_userip_connections = 10000",
            "login_trusted_networks = 127.0.0.0/8 ::1/128",
            *(["haproxy_trusted_networks = 127.0.0.0/8 ::1/128"] if self.haproxy else []),
            f'login_greeting = Dovecot backend {self.name} ready.',
            # Unquoted keys on purpose: the fully quoted form silently yields "ID NIL".
            f'imap_id_send = name * version * x-backend "{self.name}"',
            # Log every ID a client (mailgate) sends: "ID sent: name=..., x-...=...".
            "imap_id_log = *",
            "mail_location = maildir:~/Maildir",
            *([f"auth_master_user_separator = {self.master_separator}",
               "passdb {", "  driver = passwd-file",
               f"  args = scheme=PLAIN username_format=%u {self.master_passwd_path}",
               "  master = yes", "}"] if self.master_users else []),
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {self.passwd_path}",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={user} gid={user} home={self.root}/mail/%d/%n",
            "}",
        ]
        if tls:
            lines += [
                "ssl = yes",
                f"ssl_cert = <{Path(self.cert).resolve()}",
                f"ssl_key = <{Path(self.key).resolve()}",
                f"ssl_dh = <{DH_PEM}",
            ]
        else:
            lines.append("ssl = no")
        for service, plain, plain_port, secure, secure_port in (
            ("imap-login", "imap", self.imap_port, "imaps", self.imaps_port),
            ("pop3-login", "pop3", self.pop3_port, "pop3s", self.pop3s_port),
        ):
            lines += [
                f"service {service} {{",
                "  chroot =",
                # One long-lived login process, connected to auth from the start: faster than
                # a fork per connection, and with auth stopped greetings still come.
                "  service_count = 0",
                "  process_min_avail = 1",
                f"  inet_listener {plain} {{",
                f"    address = {self.host}",
                f"    port = {plain_port}",
                *(["    haproxy = yes"] if self.haproxy else []),
                "  }",
                f"  inet_listener {secure} {{",
                f"    address = {self.host}",
                f"    port = {secure_port}",
                "  }",
                "}",
            ]
        # No auth penalty: every test client comes from 127.0.0.1, and after a few failed
        # logins anvil would delay *all* its logins by 2..15 s.
        lines += ["service anvil {", "  unix_listener anvil-auth-penalty {", "    mode = 0",
                  "  }", "}"]
        if self.imap_process_limit is not None:
            lines += ["service imap {", f"  process_limit = {self.imap_process_limit}", "}"]
        return "\n".join(lines) + "\n"

    def write_files(self) -> None:
        """Create the directory layout, dovecot.conf and the passwd file, owned correctly."""
        _, uid, gid = run_user()
        for d in (self.root, self.run_dir, self.root / "state", self.root / "mail"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        link = self.root / "run"
        if self.run_dir != link and not link.exists():
            link.symlink_to(self.run_dir)  # so the run directory is still found under root
        for d in (self.root / "state", self.root / "mail"):
            os.chown(d, uid, gid)
        self.conf_path.write_text(self.render_config())
        self.passwd_path.write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in sorted(self.users.items()))
        )
        os.chmod(self.passwd_path, 0o644)
        if self.master_users:
            self.master_passwd_path.write_text(
                "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in sorted(self.master_users.items())))
            os.chmod(self.master_passwd_path, 0o644)

    # lifecycle
    def master_pid(self) -> int | None:
        """PID of the running master, or None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and str(self.conf_path) in _cmdline(pid):
            return pid
        return None

    def start(self, timeout: float = 10.0) -> "Dovecot":
        """Write the files, start the master (it daemonizes) and wait for a greeting."""
        if self.master_pid() is not None:
            raise RuntimeError(f"{self.name}: already running (pid {self.master_pid()})")
        self.write_files()
        # Output goes to a file, not a pipe: the daemonized master would hold a pipe open.
        out_path = self.root / "start.out"
        with open(out_path, "wb") as out:
            result = subprocess.run(
                [dovecot_binary(), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout, start_new_session=True,
            )
        _STARTED.append(self)
        if result.returncode != 0:
            raise RuntimeError(
                f"{self.name}: dovecot failed to start (exit {result.returncode}):\n"
                f"{out_path.read_text(errors='replace')}\n{self.log_tail()}"
            )
        port = self.imap_port or self.pop3_port
        if port:
            self._wait_greeting(port, timeout, proxy=self.haproxy)
        return self

    def _wait_greeting(self, port: int, timeout: float, proxy: bool = False) -> None:
        deadline = time.monotonic() + timeout
        last = None
        # A PROXY v2 header with the LOCAL command: the connection's own addresses.
        local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, port), timeout=1.0) as s:
                    if proxy:
                        s.sendall(local)
                    if s.recv(512)[:1] in (b"*", b"+"):
                        return
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no greeting on port {port} ({last})\n{self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the master and every child; kill what is left after ``timeout``.

        Login processes keep serving connected clients after the master has gone (and hold
        the listening sockets), so whatever outlives the master is killed at once.
        """
        pid = self.master_pid()
        if pid is None:
            return
        tree = process_tree(pid)
        _signal_all(tree, signal.SIGCONT)  # a frozen instance cannot shut down
        self.frozen = []
        _signal_all([pid], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        live = _ppid_map()
        _signal_all([p for p in tree if p in live], signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(p in _ppid_map() for p in tree) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self in _STARTED:
            _STARTED.remove(self)
        if self.run_dir != self.root / "run":
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """The master and all its live descendants."""
        pid = self.master_pid()
        return process_tree(pid) if pid else []

    # faults
    def freeze(self) -> None:
        """SIGSTOP the master and all its children: a deadlocked backend (TCP still connects)."""
        self.frozen = self.pids()
        _signal_all(self.frozen, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT everything frozen (and anything else in the tree)."""
        _signal_all(sorted(set(self.frozen + self.pids())), signal.SIGCONT)
        self.frozen = []

    def auth_pids(self) -> list[int]:
        """PIDs of the instance's auth processes (greetings work without them, logins hang)."""
        return [p for p in self.pids()
                if _cmdline(p).split(" ")[0].rsplit("/", 1)[-1] in ("auth", "auth-worker")]

    def stop_auth(self) -> list[int]:
        """SIGSTOP only the auth processes; returns their PIDs (``thaw`` resumes them)."""
        pids = self.auth_pids()
        _signal_all(pids, signal.SIGSTOP)
        self.frozen += pids
        return pids

    # mail and logs
    def seed(self, user: str, subject: str, body: str = "Hello from the test harness.\r\n",
             sender: str = "harness@example.invalid") -> Path:
        """Deliver one message into ``user``'s INBOX by writing it into Maildir/new/."""
        _, uid, gid = run_user()
        maildir = self.home(user) / "Maildir"
        for path in (self.home(user).parent, self.home(user), maildir,
                     maildir / "new", maildir / "cur", maildir / "tmp"):
            path.mkdir(exist_ok=True, parents=True)
            os.chown(path, uid, gid)
        message = (
            f"From: {sender}\r\nTo: {user}\r\nSubject: {subject}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@harness.invalid>\r\n\r\n{body}"
        ).encode()
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.harness"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(message)
        os.chown(tmp, uid, gid)
        final = maildir / "new" / name
        os.rename(tmp, final)
        return final

    def log_text(self) -> str:
        """The whole log so far ('' before the first line)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_log(self, needle: str, timeout: float = 5.0, since: int = 0) -> str:
        """Wait until a log line (after byte offset ``since``) contains ``needle``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text()[since:].splitlines():
                if needle in line:
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name}: no log line with {needle!r}\n{self.log_tail()}")
            time.sleep(0.05)

    def log_size(self) -> int:
        """Current log length, to pass as ``since`` to :meth:`wait_log`."""
        return len(self.log_text())

    def describe(self) -> str:
        state = f"pid {self.master_pid()}" if self.master_pid() else "stopped"
        ports = ", ".join(f"{k} {v}" for k, v in (("imap", self.imap_port), ("pop3", self.pop3_port),
                                                  ("imaps", self.imaps_port), ("pop3s", self.pop3s_port)) if v)
        return f"{self.name}: {self.host} {ports} ({state}); users: {', '.join(sorted(self.users))}"


def stop_many(instances) -> None:
    """Stop several instances in parallel (each master takes about a second to exit)."""
    instances = list(instances)
    with ThreadPoolExecutor(max_workers=max(1, len(instances))) as pool:
        for instance, error in zip(instances, pool.map(_stop_quietly, instances)):
            if error:
                print(f"dovecot.py: stopping {instance.name}: {error}", file=sys.stderr)


def _stop_quietly(instance: "Dovecot") -> str | None:
    try:
        instance.stop()
        return None
    except Exception as e:  # best effort: report, go on with the others
        return str(e)


def stop_all_started() -> None:
    """Stop every instance this process started (registered with atexit).

    One after the other: at interpreter exit no new threads may be started."""
    for instance in list(_STARTED):
        error = _stop_quietly(instance)
        if error:
            print(f"dovecot.py: stopping {instance.name}: {error}", file=sys.stderr)


atexit.register(stop_all_started)


def stop_instances_under(directory: Path) -> list[str]:
    """Stop every instance whose dovecot.conf lies under ``directory`` (left over or demo)."""
    running = [Dovecot(name=conf.parent.name, root=conf.parent)
               for conf in sorted(Path(directory).glob("**/dovecot.conf"))]
    running = [i for i in running if i.master_pid() is not None]
    stop_many(running)
    return [i.name for i in running]


# --- small client helpers (used by the sanity test and the demo) ---------------------------

def tls_client_context(cafile: str | Path | None) -> ssl.SSLContext:
    """A client context that trusts ``cafile`` (or the system roots) and checks host names."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --- the demo layout ------------------------------------------------------------------------

# Must match examples/routing.yaml (backends mail1..mail3 on 127.0.0.1, fixed ports).
DEMO_PASSWORD = "secret"
DEMO_PROBE = ("probe@example.com", "probe-secret")
DEMO_BACKENDS = {
    "mail1": {"imap_port": 10143, "pop3_port": 10110,
              "users": ["alice@example.com", "moving@example.com"]},
    "mail2": {"imap_port": 11143, "pop3_port": 11110,
              "users": ["bob@example.org", "moving@example.com"]},
    "mail3": {"imap_port": 12143, "pop3_port": 12110,
              "users": ["carol@sub.example.net"]},
}


def demo_instances(directory: Path, cert: Path | None, key: Path | None) -> list[Dovecot]:
    """The three demo backends (not started)."""
    instances = []
    for name, spec in DEMO_BACKENDS.items():
        users = {u: DEMO_PASSWORD for u in spec["users"]}
        users[DEMO_PROBE[0]] = DEMO_PROBE[1]
        instances.append(Dovecot(name=name, root=Path(directory) / name, users=users,
                                 imap_port=spec["imap_port"], pop3_port=spec["pop3_port"],
                                 cert=cert, key=key))
    return instances


def _cmd_demo(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    stop_instances_under(directory)
    instances = demo_instances(directory, args.cert, args.key)
    try:
        for instance in instances:
            instance.start()
            for user in instance.users:
                if not user.startswith("probe@"):
                    instance.seed(user, f"Welcome to {instance.name}",
                                  f"This mailbox of {user} lives on backend {instance.name}.\r\n")
    except Exception:
        stop_many(instances)
        raise
    _STARTED.clear()  # the demo backends outlive this command; `stop` ends them
    for instance in instances:
        print(instance.describe())
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    stopped = stop_instances_under(Path(args.dir))
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    for conf in sorted(Path(args.dir).glob("*/dovecot.conf")):
        instance = Dovecot(name=conf.parent.name, root=conf.parent)
        pid = instance.master_pid()
        print(f"{instance.name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def _one(args: argparse.Namespace) -> Dovecot:
    root = Path(args.dir) / args.name
    if not (root / "dovecot.conf").exists():
        raise SystemExit(f"no backend {args.name!r} under {args.dir}")
    instance = Dovecot(name=args.name, root=root)
    if instance.master_pid() is None:
        raise SystemExit(f"backend {args.name!r} is not running")
    return instance


def _cmd_freeze(args: argparse.Namespace) -> int:
    instance = _one(args)
    instance.freeze()
    print(f"{args.name}: frozen ({len(instance.frozen)} processes stopped); `thaw` resumes it")
    return 0


def _cmd_thaw(args: argparse.Namespace) -> int:
    instance = _one(args)
    instance.thaw()
    print(f"{args.name}: thawed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start the three demo backends (ports of examples/routing.yaml)")
    demo.add_argument("--dir", default="demo", help="where the instances live (default: demo)")
    demo.add_argument("--cert", type=Path, help="PEM certificate: enables STARTTLS on the backends")
    demo.add_argument("--key", type=Path, help="PEM private key for --cert")
    for name, func, text in (("stop", _cmd_stop, "stop every instance under --dir"),
                             ("status", _cmd_status, "show which instances run")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", default="demo")
        p.set_defaults(func=func)
    for name, func, text in (("freeze", _cmd_freeze, "SIGSTOP one backend (simulated deadlock)"),
                             ("thaw", _cmd_thaw, "SIGCONT one frozen backend")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", default="demo")
        p.add_argument("name")
        p.set_defaults(func=func)
    demo.set_defaults(func=_cmd_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
