"""Every login form routes on the mailbox user (issue #14 part 3), against two real Dovecot
instances that have a master passdb (``auth_master_user_separator = *``, ``master = yes``):

* IMAP ``LOGIN user*master``, ``AUTHENTICATE PLAIN`` with an authzid (authzid = mailbox user,
  authcid = the master user) and POP3 ``USER user*master`` each land on the backend that holds
  the mailbox — one of two — and the login reaches it unchanged (Dovecot checks the master
  password and logs the mailbox user in);
* a wrong master password is the backend's refusal of credentials (``NO
  [AUTHENTICATIONFAILED]`` / ``-ERR``, counted as ``result="rejected"``), never a backend error;
* a login without a domain takes ``default_domain``, also in the master-user form;
* a kick by user names the mailbox user; ``mailgate route`` understands both forms.
"""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import time
from pathlib import Path

import pytest

from clients import imap_backend, imap_open, pop3_open
from dovecot import Dovecot, stop_many
from ports import free_port

MASTER, MASTER_PASSWORD = "admin", "master-secret"
PASSWORD = "secret"
# Two backends, each holding one mailbox of its own domain.
HOMES = {"ann@masters-a.test": "mastersA", "ben@masters-b.test": "mastersB"}
# Every test fails logins from its own loopback address: mailgate's per-IP back-off must not
# carry over between tests.
SOURCE = {"imap": "127.0.0.61", "plain": "127.0.0.62", "pop3": "127.0.0.63",
          "wrong": "127.0.0.64", "bare": "127.0.0.65", "kick": "127.0.0.66"}


@pytest.fixture(scope="module")
def master_backends(work_dir: Path):
    started = {}
    try:
        for user, name in HOMES.items():
            started[name] = Dovecot(
                name=name, root=work_dir / "master-backends" / name, users={user: PASSWORD},
                master_users={MASTER: MASTER_PASSWORD},
                imap_port=free_port(), pop3_port=free_port()).start()
        yield started
    finally:
        stop_many(started.values())


@pytest.fixture
def mg(mailgate_factory, master_backends):
    routing = {
        "backends": {name: {"host": b.host, "imap_port": b.imap_port, "pop3_port": b.pop3_port,
                            "tls": "none", "max_sessions": 50, "forward_client": "id"}
                     for name, b in master_backends.items()},
        "domains": {"masters-a.test": "mastersA", "masters-b.test": "mastersB"},
        # Bare logins (no "@") belong to masters-b.test here.
        "default_domain": "masters-b.test",
    }
    return mailgate_factory(config={"limits": {"auth_failure_delay": "200ms"}}, routing=routing)


def master_login(user: str, quoted: bool = True) -> str:
    """``user*master``, as an IMAP quoted string or (``quoted=False``) as the bare atom that
    imaplib sends when given the name as it is: ``*`` is an atom-special in RFC 3501, but
    Dovecot accepts it unquoted and so does mailgate."""
    return f'"{user}*{MASTER}"' if quoted else f"{user}*{MASTER}"


def _logged_in_as(backend: Dovecot, user: str, since: int) -> None:
    """Dovecot logged ``user`` in (its mailbox user, not the master) after log offset ``since``."""
    backend.wait_log(f"Login: user=<{user}>", since=since)


@pytest.mark.parametrize("quoted", [True, False], ids=["quoted", "bare"])
@pytest.mark.parametrize("user", sorted(HOMES))
def test_imap_login_in_the_master_user_form_lands_on_the_mailbox_backend(mg, pki, master_backends, user, quoted):
    backend = master_backends[HOMES[user]]
    since = backend.log_size()
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE["imap"])
    try:
        typ, _ = imap.login(master_login(user, quoted), MASTER_PASSWORD)
        assert typ == "OK"
        assert imap_backend(imap) == HOMES[user]
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()
    _logged_in_as(backend, user, since)


@pytest.mark.parametrize("user", sorted(HOMES))
def test_authenticate_plain_with_an_authzid_lands_on_the_mailbox_backend(mg, pki, master_backends, user):
    backend = master_backends[HOMES[user]]
    since = backend.log_size()
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE["plain"])
    try:
        # authzid = the mailbox, authcid = the master user: only the authzid says where.
        payload = f"{user}\0{MASTER}\0{MASTER_PASSWORD}".encode()
        typ, _ = imap.authenticate("PLAIN", lambda _: payload)
        assert typ == "OK"
        assert imap_backend(imap) == HOMES[user]
    finally:
        imap.logout()
    _logged_in_as(backend, user, since)


@pytest.mark.parametrize("user", sorted(HOMES))
def test_pop3_user_in_the_master_user_form_lands_on_the_mailbox_backend(mg, pki, master_backends, user):
    backend = master_backends[HOMES[user]]
    since = backend.log_size()
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert, source=SOURCE["pop3"])
    try:
        pop.user(f"{user}*{MASTER}")
        assert pop.pass_(MASTER_PASSWORD).startswith(b"+OK")
        assert pop.stat()[0] == 0
    finally:
        pop.quit()
    backend.wait_log(f"pop3-login: Info: Login: user=<{user}>", since=since)


def test_pop3_auth_plain_with_an_authzid_and_imap_plain_in_the_master_form(mg, pki, master_backends):
    ann, ben = master_backends["mastersA"], master_backends["mastersB"]
    since = ann.log_size()
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert, source=SOURCE["pop3"])
    try:
        payload = base64.b64encode(f"ann@masters-a.test\0{MASTER}\0{MASTER_PASSWORD}".encode())
        assert pop._shortcmd("AUTH PLAIN " + payload.decode()).startswith(b"+OK")
        assert pop.stat()[0] == 0
    finally:
        pop.quit()
    ann.wait_log("pop3-login: Info: Login: user=<ann@masters-a.test>", since=since)
    # SASL PLAIN without an authzid, its authcid in the master-user form.
    since = ben.log_size()
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE["plain"])
    try:
        payload = f"\0ben@masters-b.test*{MASTER}\0{MASTER_PASSWORD}".encode()
        assert imap.authenticate("PLAIN", lambda _: payload)[0] == "OK"
        assert imap_backend(imap) == "mastersB"
    finally:
        imap.logout()
    _logged_in_as(ben, "ben@masters-b.test", since)


def test_a_wrong_master_password_is_refused_as_credentials(mg, pki, master_backends):
    before = mg.metric("mailgate_logins_total", backend="mastersB", result="rejected")
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE["wrong"])
    try:
        with pytest.raises(imaplib.IMAP4.error) as err:
            imap.login(master_login("ben@masters-b.test"), "not-the-master-password")
        assert "[AUTHENTICATIONFAILED]" in str(err.value)
        with pytest.raises(imaplib.IMAP4.error) as err:
            payload = f"ben@masters-b.test\0{MASTER}\0wrong".encode()
            imap.authenticate("PLAIN", lambda _: payload)
        assert "[AUTHENTICATIONFAILED]" in str(err.value)
        # The same connection may still log in: a refusal, not a backend failure.
        assert imap.login(master_login("ben@masters-b.test"), MASTER_PASSWORD)[0] == "OK"
        assert imap_backend(imap) == "mastersB"
    finally:
        imap.logout()
    pop = pop3_open("127.0.0.1", mg.ports["pop3"], "plain", pki.ca_cert, source=SOURCE["wrong"])
    try:
        pop.user(f"ann@masters-a.test*{MASTER}")
        with pytest.raises(poplib.error_proto) as perr:
            pop.pass_("wrong")
        assert perr.value.args[0].startswith(b"-ERR")
        assert b"[SYS/TEMP]" not in perr.value.args[0]
    finally:
        pop.quit()
    after = mg.metric("mailgate_logins_total", backend="mastersB", result="rejected")
    assert after - before == 2, "both IMAP refusals are counted as rejected credentials"
    assert mg.metric("mailgate_logins_total", backend="mastersA", result="rejected") >= 1
    assert mg.metric("mailgate_logins_total", result="backend_error") == 0
    assert MASTER_PASSWORD not in mg.output() and "not-the-master-password" not in mg.output()


def test_a_bare_login_takes_default_domain_in_both_forms(mg, pki, master_backends):
    backend = master_backends["mastersB"]
    since = backend.log_size()
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE["bare"])
    try:
        # "ben*admin" routes as ben@masters-b.test; Dovecot gets "ben*admin" unchanged and,
        # knowing no default realm, logs in "ben": the route alone made it reach mastersB.
        assert imap.login(master_login("ben"), MASTER_PASSWORD)[0] == "OK"
        assert imap_backend(imap) == "mastersB"
    finally:
        imap.logout()
    _logged_in_as(backend, "ben", since)


def test_a_kick_by_user_names_the_mailbox_user(mg, pki):
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert, source=SOURCE["kick"])
    try:
        assert imap.login(master_login("ann@masters-a.test"), MASTER_PASSWORD)[0] == "OK"
        code, _, body = mg.http("POST", f"/kick?user={MASTER}&window=0s")
        assert code == 200 and json.loads(body)["scheduled"] == 0, body
        code, _, body = mg.http("POST", "/kick?user=ann%40masters-a.test&window=0s")
        assert code == 200 and json.loads(body)["scheduled"] == 1, body
        imap.sock.settimeout(5)
        deadline = time.monotonic() + 5
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                line = imap.readline()
            except OSError:
                line = b""
            closed = not line
        assert closed, "the master user's session of ann was not kicked"
    finally:
        try:
            imap.shutdown()
        except OSError:
            pass


def test_mailgate_route_understands_both_forms(mg):
    r = mg.cli("route", "-c", str(mg.config_path), f"ben@masters-b.test*{MASTER}")
    assert r.returncode == 0, r.stderr
    assert "-> mastersB (domain masters-b.test, master user form: mailbox ben@masters-b.test)" in r.stdout
    r = mg.cli("route", "-c", str(mg.config_path), "--authzid", "ann@masters-a.test", MASTER)
    assert r.returncode == 0, r.stderr
    assert "ann@masters-a.test (authzid; authcid admin) -> mastersA" in r.stdout
    r = mg.cli("route", "-c", str(mg.config_path), f"ann*{MASTER}")
    assert r.returncode == 0, r.stderr
    assert "-> mastersB" in r.stdout and "mailbox ann@masters-b.test" in r.stdout
    r = mg.cli("route", "-c", str(mg.config_path), f"nobody@elsewhere.test*{MASTER}")
    assert r.returncode == 1
    assert "no route" in r.stdout
