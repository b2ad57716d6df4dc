"""A reload re-reads mailgate.yaml too (issue #13 part 1), against real Dovecot backends:
the greeting, a limit, the log level and format, a health setting and the listeners change
without a restart; a change only a restart can apply is refused and changes nothing."""

from __future__ import annotations

import copy
import json
import re
import signal
import socket
import time

import pytest

from clients import imap_backend, imap_open
from layout import PASSWORD
from mailgate_proc import to_yaml
from ports import free_port

DEADLINE = 10.0


def _greeting(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        return s.recv(512).decode(errors="replace").strip()


def _until(what: str, check, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _metrics(mg) -> str:
    code, _, body = mg.http("GET", "/metrics", token=None)
    assert code == 200
    return body


def _metric(text: str, name: str) -> float:
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _refused(connect) -> bool:
    try:
        with socket.create_connection(connect, timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def no_rust_log(monkeypatch):
    # The harness sets RUST_LOG=info unless it is set; RUST_LOG overrides log.level, so an
    # empty one (treated as unset) lets the reloaded log.level apply.
    monkeypatch.setenv("RUST_LOG", "")


def test_greeting_limit_log_and_health_reload_on_sighup(mailgate_factory, pki, no_rust_log):
    mg = mailgate_factory(config={"greeting": "Before the reload"})
    assert _greeting(mg.ports["imap"]).endswith("Before the reload")
    # A spliced session through Dovecot, open across the reload.
    live = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    live.login("alice@example.com", PASSWORD)
    assert imap_backend(live) == "mail1"
    code, _, body = mg.http("POST", "/kick?user=nobody@example.com")
    assert code == 200 and json.loads(body)["window_secs"] == 60, body
    before = len(mg.output(limit=10**7))

    mg.config["greeting"] = "After the reload"
    mg.config["limits"] = {"max_bad_commands": 1}
    mg.config["log"] = {"level": "debug", "format": "json"}
    mg.config["health"]["kick_window"] = "7s"
    mg.write()
    mg.signal(signal.SIGHUP)

    _until("the new greeting", lambda: _greeting(mg.ports["imap"]).endswith("After the reload"))
    # limits.max_bad_commands: 1 — the first bad command closes the connection.
    with socket.create_connection(("127.0.0.1", mg.ports["imap"]), timeout=5) as s:
        s.settimeout(5)
        s.recv(512)
        s.sendall(b"a1 FROB\r\n")
        got = b""
        while True:
            chunk = s.recv(512)
            if not chunk:
                break
            got += chunk
        assert b"a1 BAD" in got or b"BYE" in got, got
    # health.kick_window: the default window of a kick.
    code, _, body = mg.http("POST", "/kick?user=nobody@example.com")
    assert code == 200 and json.loads(body)["window_secs"] == 7, body
    # log.format json and log.level debug: a TLS handshake logs rustls debug events.
    imaps = imap_open("127.0.0.1", mg.ports["imaps"], "tls", pki.ca_cert)
    imaps.logout()

    def json_debug_lines():
        new = mg.output(limit=10**7)[before:]
        lines = [json.loads(l) for l in new.splitlines() if l.startswith("{")]
        return [l for l in lines if l.get("level") == "DEBUG"] and lines

    lines = _until("JSON debug lines", json_debug_lines)
    reloaded = [l for l in lines if l.get("message") == "configuration reloaded"]
    assert reloaded, lines[:5]
    for key in ("greeting", "limits.max_bad_commands", "log.level", "log.format",
                "health.kick_window"):
        assert key in reloaded[0]["config"], reloaded[0]
    # The session spliced before the reload still works.
    typ, _ = live.select("INBOX")
    assert typ == "OK"
    live.logout()
    assert mg.running()


def test_listeners_added_and_removed_keep_spliced_sessions(mailgate_factory, pki):
    mg = mailgate_factory()
    old_port = mg.ports["imap"]
    live = imap_open("127.0.0.1", old_port, "plain", pki.ca_cert)
    live.login("alice@example.com", PASSWORD)
    assert imap_backend(live) == "mail1"
    pop3_port = mg.ports["pop3"]

    new_port = free_port()
    mg.config["listen"]["imap"] = f"127.0.0.1:{new_port}"
    del mg.config["listen"]["pop3"]
    mg.write()
    # A dry run first: what a reload would do, nothing changed yet.
    dry = mg.ctl("reload", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"listener: listen.imap 127.0.0.1:{new_port} added" in dry.stdout, dry.stdout
    assert f"listener: listen.pop3 127.0.0.1:{pop3_port} removed" in dry.stdout, dry.stdout
    assert "a reload applies every change" in dry.stdout, dry.stdout
    assert not _refused(("127.0.0.1", pop3_port)), "a dry run changes nothing"
    result = mg.ctl("reload")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "listen.imap" in result.stdout and "listen.pop3" in result.stdout, result.stdout

    # The removed listeners refuse new connections ...
    _until("old imap port refusing", lambda: _refused(("127.0.0.1", old_port)))
    _until("pop3 port refusing", lambda: _refused(("127.0.0.1", pop3_port)))
    # ... the session the old one accepted keeps working against Dovecot ...
    typ, data = live.select("INBOX")
    assert typ == "OK", data
    typ, _ = live.noop()
    assert typ == "OK"
    live.logout()
    # ... and the new listener serves.
    fresh = imap_open("127.0.0.1", new_port, "plain", pki.ca_cert)
    fresh.login("bob@example.org", PASSWORD)
    assert imap_backend(fresh) == "mail2"
    fresh.logout()
    assert mg.running()


def test_restart_only_change_is_refused_and_changes_nothing(mailgate_factory, pki):
    mg = mailgate_factory(config={"greeting": "Unchanged greeting"})
    old_config = mg.dir / "mailgate.old.yaml"
    old_config.write_text(to_yaml(mg.config))
    new = copy.deepcopy(mg.config)
    new["listen"]["admin"] = f"127.0.0.1:{free_port()}"
    new["greeting"] = "Never shown"
    new["limits"] = {"max_bad_commands": 1}
    candidate = mg.dir / "mailgate.new.yaml"
    candidate.write_text(to_yaml(new))

    # mailgate check says so before any reload: exit 3, file:line:key, the reloadable rest.
    check = mg.cli("check", "-c", str(candidate), "--against", str(old_config))
    assert check.returncode == 3, check.stdout + check.stderr
    assert re.search(r"needs restart: .*mailgate\.new\.yaml:\d+: listen\.admin: changed from "
                     rf"127\.0\.0\.1:{mg.ports['admin']} to ", check.stdout), check.stdout
    assert "reloads: greeting" in check.stdout
    assert "reloads: limits.max_bad_commands" in check.stdout
    same = mg.cli("check", "-c", str(old_config), "--against", str(old_config))
    assert same.returncode == 0, same.stdout + same.stderr

    refused_before = _metric(_metrics(mg), 'mailgate_config_reloads_refused_total{reason="needs_restart"}')
    mg.config = new
    mg.write()
    # Against the running process: a dry run lists the same, exit 3, and changes nothing.
    dry = mg.ctl("reload", "--dry-run", "--admin", f"http://127.0.0.1:{mg.ports['admin']}")
    assert dry.returncode == 3, dry.stdout + dry.stderr
    assert re.search(r"needs restart: .*mailgate\.yaml:\d+: listen\.admin: changed from", dry.stdout), dry.stdout
    assert "reloads: greeting" in dry.stdout, dry.stdout
    code, _, body = mg.http("POST", "/reload")
    assert code == 422, body
    answer = json.loads(body)
    assert answer["reason"] == "needs_restart", answer
    assert "mailgate.yaml" in answer["error"] and "listen.admin" in answer["error"], answer
    # Nothing changed: the greeting, the limit and the admin listener are the old ones.
    assert _greeting(mg.ports["imap"]).endswith("Unchanged greeting")
    with socket.create_connection(("127.0.0.1", mg.ports["imap"]), timeout=5) as s:
        s.settimeout(5)
        s.recv(512)
        s.sendall(b"a1 FROB\r\n")
        assert b"a1 BAD" in s.recv(512)
        s.sendall(b"a2 NOOP\r\n")
        assert b"a2 OK" in s.recv(512), "one bad command no longer closes: old limit in force"
    text = _metrics(mg)
    assert _metric(text, 'mailgate_config_reloads_refused_total{reason="needs_restart"}') > refused_before
    mg.wait_log("listen.admin", "needs a restart")
    # Logins still work.
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    imap.login("alice@example.com", PASSWORD)
    assert imap_backend(imap) == "mail1"
    imap.logout()


def test_a_saved_mailgate_yaml_is_reloaded_by_the_file_watcher(mailgate_factory):
    mg = mailgate_factory(config={"greeting": "Watched before"})
    assert _greeting(mg.ports["imap"]).endswith("Watched before")
    mg.config["greeting"] = "Watched after"
    # Saved as editors and Kubernetes do (a new file renamed over the old one); no signal.
    tmp = mg.config_path.with_suffix(".yaml.tmp")
    tmp.write_text(to_yaml(mg.config))
    tmp.replace(mg.config_path)
    _until("the watcher's reload", lambda: _greeting(mg.ports["imap"]).endswith("Watched after"))
    assert re.search(r'configuration reloaded trigger="file_change".*config=reloads: greeting',
                     mg.output()), mg.output()
