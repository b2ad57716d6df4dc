"""Session fixtures for the end-to-end tests: a test PKI, three real Dovecot backends and
mailgate processes in front of them.

Layout (design.md section 4 and ../shared/backends.md):

* mail1 holds example.com (alice, moving), mail2 example.org (bob) and moving@example.com
  too, mail3 *.example.net (carol@sub.example.net); probe@example.com exists on every
  backend. Passwords are ``secret`` (probe: ``probe-secret``).
* Everything lives under tests/e2e/.work/session-<time>-<pid>/ (gitignored); a failing
  test's report shows mailgate's output and the tail of every backend log.
* No Dovecot outlives the session: fixtures stop them, an atexit hook stops them, and a new
  session stops those left behind by a session whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

import ci_skips
import cyrus as cyrus_harness
from certs import Pki, make_pki
from dovecot import Dovecot, stop_instances_under, stop_many
from ports import free_port
from layout import BACKEND_USERS, DOMAINS, PASSWORD, PROBE_PASSWORD, PROBE_USER
from mailgate_proc import Mailgate, merge

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"

# --- work directory -------------------------------------------------------------------------

def _world_traversable(path: Path) -> bool:
    """Whether the unprivileged Dovecot user can reach ``path`` (o+x on every ancestor)."""
    for p in [path, *path.parents]:
        if p.exists() and not os.stat(p).st_mode & 0o001:
            return False
    return True


def _reap_stale_sessions() -> None:
    """Stop Dovecots of earlier sessions whose pytest process is gone; prune old dirs."""
    if not WORK.exists():
        return
    sessions = sorted(WORK.glob("session-*"))
    for d in sessions:
        m = re.match(r"session-\d+-(\d+)$", d.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            stop_instances_under(d)
            cyrus_harness.stop_instances_under(d)
    for d in sessions[:-3]:  # keep the last few for post-mortems
        m = re.match(r"session-\d+-(\d+)$", d.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def work_dir() -> Path:
    """A fresh directory for this session, reachable by the dovecot user."""
    _reap_stale_sessions()
    WORK.mkdir(exist_ok=True)
    if _world_traversable(WORK):
        d = WORK / f"session-{int(time.time())}-{os.getpid()}"
        d.mkdir()
    else:
        d = Path(tempfile.mkdtemp(prefix=f"mailgate-e2e-{os.getpid()}-"))
    os.chmod(d, 0o755)
    return d


def pytest_configure(config):
    """CI=true: a skipped test fails, unless marked ci_may_skip (tests/e2e/ci_skips.py)."""
    ci_skips.register(config)


def pytest_sessionstart(session):
    """Turn SIGTERM into KeyboardInterrupt so that fixture teardown still stops Dovecot."""
    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _interrupt)


# --- PKI and backends -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def pki(work_dir: Path) -> Pki:
    """Test CA plus a localhost/127.0.0.1 server certificate (used by mailgate and Dovecot)."""
    return make_pki(work_dir / "pki")


@pytest.fixture(scope="session")
def probe_secret_file(work_dir: Path) -> Path:
    """The probe account's password file (no trailing newline)."""
    path = work_dir / "probe.secret"
    path.write_text(PROBE_PASSWORD)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def backends(work_dir: Path, pki: Pki):
    """mail1..mail3: real Dovecot instances with IMAP, POP3, IMAPS, POP3S on loopback."""
    started: dict[str, Dovecot] = {}
    try:
        for name, users in BACKEND_USERS.items():
            accounts = {u: PASSWORD for u in users}
            accounts[PROBE_USER] = PROBE_PASSWORD
            started[name] = Dovecot(
                name=name, root=work_dir / "backends" / name, users=accounts,
                imap_port=free_port(), pop3_port=free_port(),
                imaps_port=free_port(), pop3s_port=free_port(),
                cert=pki.server_cert, key=pki.server_key,
            ).start()
        yield started
    finally:
        stop_many(started.values())


# --- mailgate -------------------------------------------------------------------------------

def default_routing(backends: dict[str, Dovecot], probe_secret: Path) -> dict:
    """routing.yaml for the three backends (plain TCP to Dovecot, client address via ID)."""
    return {
        "backends": {
            name: {
                "host": b.host,
                "imap_port": b.imap_port,
                "pop3_port": b.pop3_port,
                "tls": "none",
                "max_sessions": 200,
                "forward_client": "id",
                "probe": {"user": PROBE_USER, "password_file": str(probe_secret)},
                "unavailable_message": f"{name} is unavailable, see https://status.example.com/",
            }
            for name, b in backends.items()
        },
        "domains": dict(DOMAINS),
        "users": {},
        "default_domain": "example.com",
    }


def default_config(ports: dict[str, int], pki: Pki, token_file: Path) -> dict:
    """mailgate.yaml: every listener on 127.0.0.1, short health and shutdown timings."""
    return {
        "listen": {name: f"127.0.0.1:{port}" for name, port in ports.items()},
        "tls": {
            "cert": str(pki.server_cert),
            "key": str(pki.server_key),
            # Off by default so plain-port tests can log in; a test turns it on.
            "require_tls_for_login": False,
        },
        "routing_file": "routing.yaml",
        "health": {"interval": "1s", "timeout": "2s", "fall": 3, "rise": 2},
        "admin": {"token_file": str(token_file)},
        "log": {"level": "info", "format": "text"},
        "limits": {},
        "shutdown_grace": "3s",
    }


@pytest.fixture
def mailgate_factory(request, work_dir: Path, backends, pki: Pki, probe_secret_file: Path):
    """make(config=..., routing=..., start=True) -> Mailgate; overrides are deep-merged dicts.

    Every instance is stopped at teardown; a failed test's report shows its output.
    """
    made: list[Mailgate] = []
    request.node._mailgates = made
    token = work_dir / "admin.token"
    if not token.exists():
        token.write_text("e2e-admin-token")
        token.chmod(0o600)

    def make(config: dict | None = None, routing: dict | None = None, start: bool = True) -> Mailgate:
        # free_port() releases the port before mailgate binds it; on a busy machine another
        # socket can take it in between. Only that race ("cannot bind") is retried.
        for attempt in range(3):
            ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s", "admin")}
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
            directory = work_dir / "mailgate" / f"{safe}-{len(made)}"
            cfg = merge(default_config(ports, pki, token), config or {})
            rt = merge(default_routing(backends, probe_secret_file), routing or {})
            mg = Mailgate(directory, cfg, rt, {k: v for k, v in ports.items()
                                               if k in cfg.get("listen", {})})
            made.append(mg)
            if not start:
                return mg
            try:
                return mg.start()
            except RuntimeError as e:
                if "cannot bind" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    yield make
    for mg in made:
        mg.stop()


@pytest.fixture
def mailgate(mailgate_factory) -> Mailgate:
    """A started mailgate with the default config and routing."""
    return mailgate_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach mailgate output and backend log tails to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for mg in getattr(item, "_mailgates", []):
        report.sections.append((f"mailgate {mg.dir.name}", mg.output()))
    backends = item.funcargs.get("backends") if hasattr(item, "funcargs") else None
    for name, b in (backends or {}).items():
        report.sections.append((f"dovecot {name} log (tail)", b.log_tail(12)))
    for c in getattr(item, "_cyrus", []):
        report.sections.append((f"cyrus {c.name} (tail)", c.log_tail(12)))


# --- Cyrus, the second backend kind (tests/e2e/cyrus.py) -------------------------------------

def require_cyrus() -> None:
    """Skip when Cyrus is not installed; with CI=true a missing Cyrus fails instead."""
    reason = cyrus_harness.missing_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Cyrus tests must run)", pytrace=False)
    pytest.skip(reason)


def _cyrus_accounts() -> dict[str, str]:
    accounts = {u: PASSWORD for u in cyrus_harness.CYRUS_USERS}
    accounts[cyrus_harness.CYRUS_PROBE_USER] = PROBE_PASSWORD
    return accounts


@pytest.fixture(scope="session")
def cyrus_session(work_dir: Path):
    """cyrus1: one real Cyrus IMAP 3.6 instance (IMAP + POP3 on loopback) holding
    example.edu, shared by the session; use the ``cyrus`` fixture, which resets it."""
    require_cyrus()
    instance = cyrus_harness.Cyrus(
        name=cyrus_harness.CYRUS_NAME, root=work_dir / "cyrus" / cyrus_harness.CYRUS_NAME,
        users=_cyrus_accounts(), imap_port=free_port(), pop3_port=free_port())
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def cyrus(request, cyrus_session):
    """The shared Cyrus, put back to normal after the test (thawed, logins answered, no
    shutdown file), so that a failing fault test cannot break the next one."""
    request.node._cyrus = [cyrus_session]
    yield cyrus_session
    cyrus_session.thaw()
    cyrus_session.auth_mode("normal")
    cyrus_session.shutdown_file.unlink(missing_ok=True)


@pytest.fixture
def cyrus_factory(request, work_dir: Path):
    """make(name, **Cyrus fields) -> a started extra Cyrus (e.g. a low maxchild) with the
    usual example.edu accounts; stopped at teardown."""
    require_cyrus()
    made: list[cyrus_harness.Cyrus] = []
    request.node._cyrus = made

    def make(name: str, **kwargs) -> cyrus_harness.Cyrus:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:40]
        instance = cyrus_harness.Cyrus(
            name=name, root=work_dir / "cyrus" / f"{safe}-{name}-{len(made)}",
            users=_cyrus_accounts(), imap_port=free_port(), pop3_port=free_port(), **kwargs)
        made.append(instance)
        return instance.start()

    yield make
    for instance in made:
        instance.stop()


@pytest.fixture
def cyrus_mailgate_factory(mailgate_factory, probe_secret_file: Path):
    """make(cyrus, config=..., routing=..., probe=True) -> mailgate routing example.edu to
    ``cyrus`` beside the three Dovecot backends (default routing otherwise)."""

    def make(instance: cyrus_harness.Cyrus, config: dict | None = None,
             routing: dict | None = None, probe: bool = True):
        entry = instance.routing_backend(cyrus_harness.CYRUS_PROBE_USER if probe else None,
                                         probe_secret_file)
        base = {"backends": {instance.name: entry},
                "domains": {cyrus_harness.CYRUS_DOMAIN: instance.name}}
        return mailgate_factory(config=config, routing=merge(base, routing or {}))

    return make
