"""Admin HTTP against a real mailgate with real Dovecot backends: /metrics parsed by the
prometheus_client OpenMetrics parser, /healthz, /readyz, /status; drain, undrain, kick and
reload through the API and through ``mailgate ctl`` change what clients see; requests
without the token are refused."""

from __future__ import annotations

import imaplib
import json
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from clients import imap_open
from layout import PASSWORD


def scrape(mg) -> dict[str, list]:
    """GET /metrics, parsed: family name -> samples."""
    code, headers, body = mg.http("GET", "/metrics", token=None)
    assert code == 200, body
    assert headers["content-type"].startswith("application/openmetrics-text")
    return {f.name: f.samples for f in text_string_to_metric_families(body)}


def value(families: dict, sample_name: str, **labels) -> float | None:
    """The value of the sample ``sample_name`` whose labels include ``labels``."""
    family = sample_name
    for suffix in ("_total", "_count", "_sum", "_bucket"):
        if family.endswith(suffix) and family[: -len(suffix)] in families:
            family = family[: -len(suffix)]
    for s in families.get(family, []):
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def login(mg, pki, user: str) -> imaplib.IMAP4:
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    imap.login(user, PASSWORD)
    return imap


def login_refusal(mg, pki, user: str) -> str:
    """Log in expecting a refusal; returns the server's text."""
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            imap.login(user, PASSWORD)
        return str(e.value)
    finally:
        imap.shutdown()


def wait_closed(imap: imaplib.IMAP4, timeout: float) -> bool:
    """Whether the server closes an idle session within ``timeout`` (a BYE may come first)."""
    imap.sock.settimeout(timeout)
    try:
        while True:
            line = imap.readline()
            if not line:
                return True
            if not line.startswith(b"* BYE"):
                return False
    except OSError:
        return True


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def test_metrics_parse_and_show_backends_and_logins(mailgate, pki):
    m = scrape(mailgate)
    for b in ("mail1", "mail2", "mail3"):
        assert value(m, "mailgate_backend_up", backend=b) == 1
        assert value(m, "mailgate_backend_state", backend=b, state="up") == 1
        assert value(m, "mailgate_backend_state", backend=b, state="down") == 0
        assert value(m, "mailgate_backend_drained", backend=b) == 0
        assert value(m, "mailgate_backend_max_sessions", backend=b) == 200
        assert value(m, "mailgate_backend_sessions", backend=b, protocol="imap") == 0
    assert value(m, "mailgate_config_reloads_total", result="success") >= 1
    assert value(m, "mailgate_config_last_reload_success_timestamp_seconds") > time.time() - 60
    assert value(m, "mailgate_routes", kind="domain") == 2
    assert value(m, "mailgate_routes", kind="wildcard") == 1
    # The test certificate's notAfter is read when it loads.
    assert value(m, "mailgate_tls_certificate_not_after_timestamp_seconds") > time.time()

    imap = login(mailgate, pki, "alice@example.com")
    try:
        m = scrape(mailgate)
        assert value(m, "mailgate_backend_sessions", backend="mail1", protocol="imap") == 1
        assert value(m, "mailgate_logins_total", backend="mail1", protocol="imap", result="ok") == 1
        assert value(m, "mailgate_backend_login_duration_seconds_count",
                     backend="mail1", protocol="imap") == 1
    finally:
        imap.logout()
    # Probes run every second: their histogram fills.
    wait_for(lambda: (value(scrape(mailgate), "mailgate_backend_probe_duration_seconds_count",
                            backend="mail2") or 0) >= 1, 5, "probe histogram")


def test_healthz_readyz_and_status(mailgate):
    assert mailgate.http("GET", "/healthz", token=None)[:1] == (200,)
    code, _, body = mailgate.http("GET", "/readyz", token=None)
    assert (code, body) == (200, "ready\n")
    st = mailgate.status_json()
    assert st["ready"] is True and st["shutting_down"] is False
    assert len(st["routing"]["version"]) >= 8 and st["routing"]["loaded_at"].endswith("Z")
    names = [b["name"] for b in st["backends"]]
    assert names == ["mail1", "mail2", "mail3"]
    b = wait_for(lambda: (lambda b: b if b["last_probe"] else None)(mailgate.backend_status("mail1")),
                 5, "a first probe")
    assert b["state"] == "up" and b["drained"] is False and b["max_sessions"] == 200
    assert b["last_probe"]["ok"] is True and b["last_probe"]["latency_ms"] > 0
    assert mailgate.http("POST", "/status")[0] == 405
    assert mailgate.http("GET", "/nope", token=None)[0] == 404


def test_mutations_without_the_right_token_are_refused(mailgate, pki):
    for token in (None, "wrong-token", mailgate.admin_token() + "x"):
        code, headers, body = mailgate.http("POST", "/backends/mail1/drain", token=token)
        assert code == 401, body
        assert headers.get("www-authenticate", "").startswith("Bearer")
        assert mailgate.admin_token() not in body
    for path in ("/reload", "/kick?backend=mail1"):
        assert mailgate.http("POST", path, token=None)[0] == 401
    assert mailgate.backend_status("mail1")["drained"] is False
    login(mailgate, pki, "alice@example.com").logout()
    # The token never reaches the log.
    assert mailgate.admin_token() not in mailgate.output()


def test_without_a_token_file_mutations_are_off(mailgate_factory):
    mg = mailgate_factory(config={"admin": {"token_file": None}})
    code, _, body = mg.http("POST", "/backends/mail1/drain", token="anything")
    assert code == 403
    assert "admin.token_file" in json.loads(body)["error"]
    assert mg.http("GET", "/status", token=None)[0] == 200


def test_drain_and_undrain_through_the_api(mailgate, pki):
    code, _, body = mailgate.http("POST", "/backends/mail1/drain")
    assert code == 200, body
    answer = json.loads(body)
    assert {k: answer[k] for k in ("backend", "drained", "changed")} == \
        {"backend": "mail1", "drained": True, "changed": True}
    # This instance's drain, no state file configured: not kept across a restart.
    assert answer["drain"] == {"file": None, "local": answer["drain"]["local"]}
    assert answer["drain"]["local"]["reason"] is None and answer["persisted"] is False
    text = login_refusal(mailgate, pki, "alice@example.com")
    assert "[UNAVAILABLE]" in text and "mail1 is unavailable" in text
    # Other backends are untouched.
    login(mailgate, pki, "bob@example.org").logout()
    assert mailgate.backend_status("mail1")["drained"] is True
    m = scrape(mailgate)
    assert value(m, "mailgate_backend_drained", backend="mail1") == 1
    assert value(m, "mailgate_refused_total", backend="mail1", reason="drained") == 1

    code, _, body = mailgate.http("POST", "/backends/mail1/undrain")
    assert code == 200 and json.loads(body)["changed"] is True
    login(mailgate, pki, "alice@example.com").logout()
    assert mailgate.http("POST", "/backends/nosuch/drain")[0] == 404
    mailgate.wait_log("admin: backend drain flag set")


def test_kick_through_the_api_closes_the_session(mailgate, pki):
    imap = login(mailgate, pki, "bob@example.org")
    other = login(mailgate, pki, "alice@example.com")
    try:
        code, _, body = mailgate.http("POST", "/kick?user=BOB%40example.org&window=0s")
        assert code == 200, body
        assert json.loads(body)["scheduled"] == 1
        # The kick closes the connection at a quiet moment (kick_quiet, 0.5 s).
        assert wait_closed(imap, 5), "kicked session still open"
        other.noop()  # not kicked
    finally:
        other.logout()
    assert mailgate.http("POST", "/kick?window=1s")[0] == 400
    assert mailgate.http("POST", "/kick?backend=mail1&user=a%40b")[0] == 400
    assert mailgate.http("POST", "/kick?backend=mail1&window=soon")[0] == 400


def test_reload_through_the_api_reports_errors(mailgate, pki):
    code, _, body = mailgate.http("POST", "/reload")
    assert code == 200 and json.loads(body)["ok"] is True
    broken = dict(mailgate.routing, domains={"example.com": "no-such-backend"})
    mailgate.write_routing(broken)
    code, _, body = mailgate.http("POST", "/reload")
    assert code == 422, body
    assert "no-such-backend" in json.loads(body)["error"]
    m = scrape(mailgate)
    assert value(m, "mailgate_config_reloads_total", result="failure") >= 1
    login(mailgate, pki, "alice@example.com").logout()


def test_ctl_status_drain_undrain_kick_reload(mailgate, pki):
    r = mailgate.ctl("status")
    assert r.returncode == 0, r.stderr
    assert "mail2" in r.stdout and "BACKEND" in r.stdout
    assert json.loads(mailgate.ctl("status", "--json").stdout)["backends"][1]["name"] == "mail2"

    r = mailgate.ctl("drain", "mail2", token=False)
    assert r.returncode == 1 and "401" in r.stderr
    assert mailgate.backend_status("mail2")["drained"] is False

    r = mailgate.ctl("drain", "mail2")
    assert r.returncode == 0, r.stderr
    assert "mail2: drained (changed)" in r.stdout
    assert "[UNAVAILABLE]" in login_refusal(mailgate, pki, "bob@example.org")
    status = mailgate.ctl("status").stdout
    # DRAINED says where the drain comes from: `local` is this instance's admin API.
    assert any(line.startswith("mail2") and " local " in line for line in status.splitlines()), status
    r = mailgate.ctl("undrain", "mail2")
    assert r.returncode == 0 and "not drained (changed)" in r.stdout
    imap = login(mailgate, pki, "bob@example.org")
    r = mailgate.ctl("kick", "--backend", "mail2", "--window", "0s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 session(s) of backend mail2"), r.stdout
    assert wait_closed(imap, 5), "kicked session still open"

    r = mailgate.ctl("reload")
    assert r.returncode == 0 and "reloaded" in r.stdout, r.stderr
    assert mailgate.ctl("drain", "nosuch").returncode == 1
    r = mailgate.ctl("status", "--admin", "http://127.0.0.1:1")
    assert r.returncode == 2 and "cannot reach" in r.stderr


def test_status_listener_serves_only_the_page(mailgate_factory):
    from ports import free_port
    port = free_port()
    mg = mailgate_factory(config={"listen": {"status": f"127.0.0.1:{port}"}})
    mg.ports["status"] = port
    code, headers, body = mg.http("GET", "/?domain=example.org", token=None, listener="status")
    assert code == 200 and "Mail service status" in body
    assert "content-security-policy" in headers
    for method, path in (("GET", "/metrics"), ("GET", "/status"), ("POST", "/backends/mail1/drain"),
                         ("POST", "/reload")):
        assert mg.http(method, path, listener="status")[0] in (404, 405), path
    assert mg.backend_status("mail1")["drained"] is False


def test_admin_bind_error_fails_startup(mailgate_factory):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        mg = mailgate_factory(config={"listen": {"admin": f"127.0.0.1:{port}"}}, start=False)
        with pytest.raises(RuntimeError) as e:
            mg.start()
        assert "listen.admin: cannot bind" in str(e.value)
