#!/usr/bin/env python3
"""Real Cyrus IMAP 3.6 instances as mailgate's second backend kind (beside Dovecot).

Cyrus is not installed with dpkg (it conflicts with dovecot-imapd): scripts/install-deps.sh
unpacks the Debian bookworm packages cyrus-imapd, cyrus-common and cyrus-pop3d into
``$CYRUS_ROOT`` (default /opt/mailgate-test/cyrus), and its binaries run from
``ROOT/usr/lib/cyrus/bin`` with ``LD_LIBRARY_PATH=ROOT/usr/lib/x86_64-linux-gnu``.

Each instance lives in its own directory: ``imapd.conf`` (virtual domains, logins are
``user@domain``, INBOX created at first login), ``cyrus.conf`` (a ``recover`` START entry,
``imap`` and ``pop3`` services on loopback high ports), ``conf/`` (Cyrus's databases and
sockets), ``spool/``. The ``master`` runs in the foreground of its own session; as root it
runs as ``nobody`` (``setpriv``), otherwise as the calling user.

Passwords: Cyrus checks them with ``sasl_pwcheck_method: saslauthd``, and the saslauthd at
``DIR/sasl/mux`` is :class:`SaslAuthd`, a small responder in this process that speaks the
saslauthd protocol. It knows the instance's users and their passwords (a wrong one gets a
real Cyrus refusal), and can be switched to refuse every password, to not answer at all
(logins hang while greetings and CAPABILITY still work: the incident's symptom) or to be
gone (Cyrus's "auth backend down" answers).

Cyrus logs only to syslog and there is no /dev/log here, so ``master.log`` (the master's
stderr) is all there is; tests assert on what clients see. The responder's request log
(users, services, realms; never passwords) shows what Cyrus asked.

Command line, for trying things by hand::

    python3 tests/e2e/cyrus.py run --dir /tmp/cy --imap-port 24143 --pop3-port 24110

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import grp
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dovecot import _alive, _cmdline, _ppid_map, _signal_all, process_tree
from ports import free_port

LOOPBACK = "127.0.0.1"
DEFAULT_ROOT = "/opt/mailgate-test/cyrus"
CONF_SUBDIRS = ("db", "socket", "proc", "lock", "log", "msg", "ptclient", "sieve", "quota",
                "user")

# The test layout of the Cyrus backend (the Dovecot ones are in layout.py).
CYRUS_NAME = "cyrus1"
CYRUS_DOMAIN = "example.edu"
CYRUS_USERS = ["dave@example.edu", "erin@example.edu"]
CYRUS_PROBE_USER = "probe@example.edu"

# Instances started by this process: stopped at interpreter exit whatever happens.
_STARTED: list["Cyrus"] = []


# --- installation -----------------------------------------------------------------------------

def cyrus_root() -> Path:
    """Where the Cyrus packages are unpacked: $CYRUS_ROOT or /opt/mailgate-test/cyrus."""
    return Path(os.environ.get("CYRUS_ROOT") or DEFAULT_ROOT)


def bin_dir() -> Path:
    return cyrus_root() / "usr" / "lib" / "cyrus" / "bin"


def lib_dir() -> Path:
    return cyrus_root() / "usr" / "lib" / "x86_64-linux-gnu"


def missing_reason() -> str | None:
    """None when Cyrus can run here, else why not (for a skip or failure message)."""
    for binary in ("master", "imapd", "pop3d", "ctl_cyrusdb"):
        if not os.access(bin_dir() / binary, os.X_OK):
            return (f"Cyrus IMAP is not installed: {bin_dir() / binary} is missing "
                    f"(run scripts/install-deps.sh, or set CYRUS_ROOT)")
    ldd = shutil.which("ldd")
    if ldd:
        out = subprocess.run([ldd, str(bin_dir() / "imapd")], capture_output=True, text=True,
                             env={**os.environ, "LD_LIBRARY_PATH": str(lib_dir())}).stdout
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
        if missing:
            return f"Cyrus imapd lacks libraries {missing} (run scripts/install-deps.sh)"
    return None


def version() -> str:
    """The unpacked package's version, e.g. 3.6.1-4+deb12u5 (from cyrus-hardwired-config)."""
    path = cyrus_root() / "usr" / "lib" / "cyrus" / "cyrus-hardwired-config.txt"
    try:
        for line in path.read_text().splitlines():
            if line.startswith("PACKAGE_VERSION "):
                return line.split(None, 1)[1]
    except OSError:
        pass
    return "unknown"


def run_user() -> tuple[str, int, int]:
    """The account Cyrus runs as: ``nobody`` as root, else ourselves."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("nobody")
    else:
        entry = pwd.getpwuid(os.getuid())
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def _socket_path(wanted: Path) -> Path:
    """``wanted``, or a path in a fresh /tmp directory when ``wanted`` is too long for a
    unix socket (108 bytes with the NUL)."""
    if len(os.fsencode(str(wanted))) <= 100:
        return wanted
    return Path(tempfile.mkdtemp(prefix="mailgate-cyrus-")) / wanted.name


# --- the saslauthd responder ------------------------------------------------------------------

def _read_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("saslauthd client closed")
        buf += chunk
    return buf


class SaslAuthd:
    """A saslauthd at ``path`` for Cyrus's ``sasl_pwcheck_method: saslauthd``.

    The protocol (cyrus-sasl lib/checkpw.c): the client sends four strings, each as a
    two-byte big-endian length and the bytes: login, password, service, realm; the server
    answers one such string, ``OK`` or ``NO <reason>``. With ``virtdomains: userid`` Cyrus
    sends ``dave`` + realm ``example.edu`` for ``dave@example.edu``; the service is
    ``imap`` or ``pop``.

    Modes: ``normal`` (check ``users``), ``reject`` (refuse every password), ``hang`` (read
    the request, never answer until the mode changes; then answer as ``normal``), ``gone``
    (the socket file is removed: Cyrus cannot connect).
    """

    def __init__(self, path: Path, users: dict[str, str]):
        self.path = Path(path)
        self.users = dict(users)
        self.mode = "normal"
        self.requests: list[tuple[str, str, str]] = []  # (user@realm, service, answer)
        self.lock = threading.Lock()
        self.answer = threading.Event()  # cleared while hanging
        self.answer.set()
        self.stopping = threading.Event()
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.conns: set[socket.socket] = set()

    def start(self) -> "SaslAuthd":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o755)
        self._bind()
        self.thread = threading.Thread(target=self._accept_loop, name=f"saslauthd {self.path}",
                                       daemon=True)
        self.thread.start()
        return self

    def _bind(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # Cyrus runs as another user
        sock.listen(64)
        sock.settimeout(0.2)
        self.sock = sock

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            sock = self.sock
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.conns.add(conn)
        try:
            conn.settimeout(5.0)
            fields = []
            for _ in range(4):
                (length,) = struct.unpack("!H", _read_exact(conn, 2))
                fields.append(_read_exact(conn, length).decode(errors="replace"))
            login, password, service, realm = fields
            user = f"{login}@{realm}" if realm else login
            while not self.answer.wait(0.1):
                if self.stopping.is_set():
                    return
            with self.lock:
                mode = self.mode
            if mode != "reject" and self.users.get(user) == password:
                reply = "OK"
            else:
                reply = "NO authentication failed"
            with self.lock:
                self.requests.append((user, service, reply.split()[0]))
            conn.sendall(struct.pack("!H", len(reply)) + reply.encode())
        except (OSError, EOFError, struct.error):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def set_mode(self, mode: str) -> None:
        """Switch to normal | reject | hang | gone (see the class docstring)."""
        if mode not in ("normal", "reject", "hang", "gone"):
            raise ValueError(mode)
        with self.lock:
            previous, self.mode = self.mode, mode
        if mode == "gone":
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        elif previous == "gone":
            old = self.sock
            self._bind()
            if old is not None:
                old.close()
        if mode == "hang":
            self.answer.clear()
        else:
            self.answer.set()

    def waiting(self) -> int:
        """Requests read but not answered yet (in ``hang`` mode)."""
        with self.lock:
            return len(self.conns)

    def stop(self) -> None:
        self.stopping.set()
        self.answer.set()
        if self.sock is not None:
            self.sock.close()
        if self.thread is not None:
            self.thread.join(2)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self.path.parent.name.startswith("mailgate-cyrus-"):  # made by _socket_path
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def log_text(self) -> str:
        with self.lock:
            return "\n".join(f"{u} {s} -> {a}" for u, s, a in self.requests[-30:])


# --- one instance ------------------------------------------------------------------------------

@dataclass
class Cyrus:
    """One Cyrus instance in ``root`` (a directory of its own), named ``name``.

    ``users`` maps ``user@domain`` to a password (checked by the instance's
    :class:`SaslAuthd`). ``imap_maxchild``/``pop3_maxchild`` cap the concurrent sessions
    of a service (Cyrus forks one process per session); ``failed_login_pause`` is Cyrus's
    ``failedloginpause`` (its default is 3 s; 0 keeps wrong-password tests fast).
    """

    name: str
    root: Path
    users: dict[str, str] = field(default_factory=dict)
    imap_port: int = 0
    pop3_port: int = 0
    imap_maxchild: int = 200
    pop3_maxchild: int = 200
    failed_login_pause: int | None = 0
    host: str = LOOPBACK

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.frozen: list[int] = []
        self.proc: subprocess.Popen | None = None
        self.saslauthd = SaslAuthd(_socket_path(self.root / "sasl" / "mux"), self.users)

    # paths
    @property
    def imapd_conf(self) -> Path:
        return self.root / "imapd.conf"

    @property
    def cyrus_conf(self) -> Path:
        return self.root / "cyrus.conf"

    @property
    def pid_path(self) -> Path:
        return self.root / "master.pid"

    @property
    def log_path(self) -> Path:
        return self.root / "master.log"

    @property
    def shutdown_file(self) -> Path:
        """``conf/msg/shutdown``: while it exists Cyrus turns sessions away with its text."""
        return self.root / "conf" / "msg" / "shutdown"

    # configuration
    def render_imapd_conf(self) -> str:
        user, _, _ = run_user()
        conf = self.root / "conf"
        lines = [
            f"# Generated by tests/e2e/cyrus.py for backend {self.name}.",
            f"configdirectory: {conf}",
            f"partition-default: {self.root / 'spool'}",
            f"servername: {self.name}",
            f"cyrus_user: {user}",
            "virtdomains: userid",
            "unixhierarchysep: yes",
            "allowplaintext: yes",
            "sasl_mech_list: PLAIN LOGIN",
            "sasl_pwcheck_method: saslauthd",
            f"sasl_saslauthd_path: {self.saslauthd.path}",
            # INBOX is created at a user's first login (0 = no quota).
            "autocreate_quota: 0",
            f"lmtpsocket: {conf / 'socket' / 'lmtp'}",
            f"idlesocket: {conf / 'socket' / 'idle'}",
            f"notifysocket: {conf / 'socket' / 'notify'}",
        ]
        if self.failed_login_pause is not None:
            lines.append(f"failedloginpause: {self.failed_login_pause}")
        return "\n".join(lines) + "\n"

    def render_cyrus_conf(self) -> str:
        b, c = bin_dir(), self.imapd_conf
        return "\n".join([
            f"# Generated by tests/e2e/cyrus.py for backend {self.name}.",
            "START {",
            f'  recover cmd="{b}/ctl_cyrusdb -C {c} -r"',
            "}",
            "SERVICES {",
            f'  imap cmd="{b}/imapd -C {c}" listen="{self.host}:{self.imap_port}" '
            f"prefork=0 maxchild={self.imap_maxchild}",
            f'  pop3 cmd="{b}/pop3d -C {c}" listen="{self.host}:{self.pop3_port}" '
            f"prefork=0 maxchild={self.pop3_maxchild}",
            "}",
            "EVENTS {",
            "}",
        ]) + "\n"

    def write_files(self) -> None:
        """Create the directory layout and both config files, owned by the run user."""
        _, uid, gid = run_user()
        for sub in ["", "spool", "conf", *(f"conf/{s}" for s in CONF_SUBDIRS)]:
            d = self.root / sub
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        self.imapd_conf.write_text(self.render_imapd_conf())
        self.cyrus_conf.write_text(self.render_cyrus_conf())
        for path in [self.root, self.imapd_conf, self.cyrus_conf, self.root / "spool",
                     self.root / "conf", *self.root.glob("conf/**/*")]:
            os.chown(path, uid, gid)

    # lifecycle
    def master_pid(self) -> int | None:
        """PID of the running master, or None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and str(self.cyrus_conf) in _cmdline(pid):
            return pid
        return None

    def start(self, timeout: float = 10.0) -> "Cyrus":
        """Write the files, start the saslauthd responder and the master, wait for greetings."""
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        if self.master_pid() is not None:
            raise RuntimeError(f"{self.name}: already running (pid {self.master_pid()})")
        self.write_files()
        self.saslauthd.start()
        cmd = [str(bin_dir() / "master"), "-C", str(self.imapd_conf), "-M", str(self.cyrus_conf),
               "-p", str(self.pid_path)]
        if os.geteuid() == 0:
            user, _, gid = run_user()
            cmd = ["setpriv", f"--reuid={user}", f"--regid={grp.getgrgid(gid).gr_name}",
                   "--clear-groups", *cmd]
        env = {**os.environ, "LD_LIBRARY_PATH": str(lib_dir())}
        with open(self.log_path, "ab") as log:
            # Its own session: a terminal's ^C does not reach it, stop() does.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        _STARTED.append(self)
        try:
            for port, prefix in ((self.imap_port, b"* OK"), (self.pop3_port, b"+OK")):
                if port:
                    self._wait_greeting(port, prefix, timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _wait_greeting(self, port: int, prefix: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: master exited with {self.proc.returncode} "
                                   f"(Cyrus logs to syslog only; exit 78 = bad config)\n"
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection((self.host, port), timeout=1.0) as s:
                    last = s.recv(512)
                    if last.startswith(prefix):
                        return
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no greeting on port {port} ({last!r}); a port taken "
                           f"by another socket shows only in syslog\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """The master and all its live descendants."""
        pid = self.master_pid() or (self.proc.pid if self.proc and self.proc.poll() is None
                                    else None)
        return process_tree(pid) if pid else []

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the master and every child (kill what is left after ``timeout``), then the
        saslauthd responder."""
        tree = self.pids()
        _signal_all(tree, signal.SIGCONT)  # a frozen instance cannot shut down
        self.frozen = []
        if self.saslauthd.mode == "hang":
            self.saslauthd.set_mode("normal")  # children blocked in a login can exit
        if tree:
            _signal_all(tree[:1], signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(tree[0]) and time.monotonic() < deadline:
                time.sleep(0.02)
            live = _ppid_map()
            _signal_all([p for p in tree + process_tree(tree[0]) if p in live], signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while any(p in _ppid_map() for p in tree) and time.monotonic() < deadline:
                time.sleep(0.02)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.saslauthd.stop()
        if self in _STARTED:
            _STARTED.remove(self)

    # faults
    def freeze(self) -> list[int]:
        """SIGSTOP the master and all its children: a deadlocked backend. TCP still
        connects (the kernel's backlog), no greeting comes. Returns the stopped PIDs."""
        stopped: list[int] = []
        # The master first, so that it forks nothing new; then its children, twice, to
        # catch one forked just before the master stopped.
        for _ in range(2):
            new = [p for p in self.pids() if p not in stopped]
            _signal_all(new, signal.SIGSTOP)
            stopped += new
        self.frozen = stopped
        return stopped

    def thaw(self) -> None:
        """SIGCONT everything frozen (and anything else in the tree)."""
        _signal_all(sorted(set(self.frozen + self.pids())), signal.SIGCONT)
        self.frozen = []

    def hang_logins(self) -> None:
        """Logins hang (the saslauthd never answers); greetings and CAPABILITY still work."""
        self.saslauthd.set_mode("hang")

    def auth_mode(self, mode: str) -> None:
        """normal | reject | hang | gone: see :class:`SaslAuthd`."""
        self.saslauthd.set_mode(mode)

    # mailgate's routing file
    def routing_backend(self, probe_user: str | None, password_file: Path | None,
                        **extra) -> dict:
        """This instance as a ``backends.NAME`` entry of routing.yaml (plain TCP, client
        address via ID); ``probe_user=None`` configures no login probe."""
        entry = {
            "host": self.host,
            "imap_port": self.imap_port,
            "pop3_port": self.pop3_port,
            "tls": "none",
            "max_sessions": 200,
            "forward_client": "id",
            "unavailable_message": f"{self.name} is unavailable, see https://status.example.com/",
        }
        if probe_user is not None:
            entry["probe"] = {"user": probe_user, "password_file": str(password_file)}
        entry.update(extra)
        return entry

    # logs
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return (f"master.log: {tail or '(empty: Cyrus logs to syslog)'}\n"
                f"saslauthd requests:\n{self.saslauthd.log_text() or '(none)'}")

    def describe(self) -> str:
        state = f"pid {self.master_pid()}" if self.master_pid() else "stopped"
        return (f"{self.name}: Cyrus {version()} {self.host} imap {self.imap_port} "
                f"pop3 {self.pop3_port} ({state}); users: {', '.join(sorted(self.users))}")


def stop_all_started() -> None:
    """Stop every instance this process started (registered with atexit)."""
    for instance in list(_STARTED):
        try:
            instance.stop()
        except Exception as e:  # best effort at exit
            print(f"cyrus.py: stopping {instance.name}: {e}", file=sys.stderr)


atexit.register(stop_all_started)


def stop_instances_under(directory: Path) -> list[str]:
    """Stop every Cyrus master whose cyrus.conf lies under ``directory`` (left over by a
    test session that died). Its saslauthd died with that session."""
    stopped = []
    for conf in sorted(Path(directory).glob("**/cyrus.conf")):
        try:
            pid = int((conf.parent / "master.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid) and str(conf) in _cmdline(pid):
            tree = process_tree(pid)
            _signal_all(tree, signal.SIGCONT)
            _signal_all(tree, signal.SIGKILL)
            stopped.append(conf.parent.name)
    return stopped


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one instance in the foreground until ^C")
    run.add_argument("--dir", required=True)
    run.add_argument("--name", default=CYRUS_NAME)
    run.add_argument("--imap-port", type=int, default=0)
    run.add_argument("--pop3-port", type=int, default=0)
    run.add_argument("--password", default="secret", help="password of every test user")
    args = parser.parse_args(argv)
    reason = missing_reason()
    if reason:
        raise SystemExit(reason)
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    users = {u: args.password for u in CYRUS_USERS + [CYRUS_PROBE_USER]}
    instance = Cyrus(name=args.name, root=directory / args.name, users=users,
                     imap_port=args.imap_port or free_port(),
                     pop3_port=args.pop3_port or free_port()).start()
    print(instance.describe(), flush=True)
    try:
        while instance.master_pid() is not None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        instance.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
