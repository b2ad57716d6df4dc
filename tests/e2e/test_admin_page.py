"""A frozen (deadlocked) real backend as operators and customers see it: /status and
/metrics name it down with the reason, logins get ``NO [UNAVAILABLE]`` at once, and the
status page, loaded in real headless Chromium, shows it down and answers the domain check
for a healthy and an affected domain. A screenshot is kept under tests/e2e/.work/.

The page says what a login meets, not only the health state: a frozen backend that the
blast-radius guard keeps admitted shows as accepting logins (with the operator's note in
/status and ``mailgate ctl status``), a drained backend whose fallback takes its logins
shows as served by the fallback (and a real login lands there), and a domain only the
``default:`` route catches gets the default backend's state."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from clients import imap_backend
from test_admin import login, login_refusal, scrape, value, wait_for

HERE = Path(__file__).resolve().parent
SCREENSHOT = HERE / ".work" / "status-page.png"

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="chromium is not installed (scripts/install-deps.sh)")


def chromium(work: Path, url: str, *, screenshot: Path | None = None) -> str:
    """Load ``url`` in headless Chromium; returns the DOM (or '' when taking a screenshot)."""
    profile = work / f"chromium-profile-{time.monotonic_ns()}"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--window-size=1200,900"]
    cmd += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    try:
        r = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_frozen_backend_in_status_metrics_and_page(mailgate, backends, pki, work_dir):
    mail3 = backends["mail3"]
    mail3.freeze()
    try:
        down = wait_for(lambda: (lambda b: b if b["state"] == "down" else None)(
            mailgate.backend_status("mail3")), 20, "mail3 down in /status")
        assert down["admitting"] is False
        assert down["last_transition"]["reason"], down
        assert down["last_probe"]["ok"] is False and down["last_probe"]["error"]
        m = scrape(mailgate)
        assert value(m, "mailgate_backend_up", backend="mail3") == 0
        assert value(m, "mailgate_backend_state", backend="mail3", state="down") == 1
        assert value(m, "mailgate_backend_up", backend="mail1") == 1
        ctl = mailgate.ctl("status").stdout
        assert "reason: " in ctl and "last probe: " in ctl, ctl

        started = time.monotonic()
        assert "[UNAVAILABLE]" in login_refusal(mailgate, pki, "carol@sub.example.net")
        assert time.monotonic() - started < 2, "refusal must be fast"
        login(mailgate, pki, "alice@example.com").logout()

        page = mailgate.admin_url("/")
        dom = chromium(work_dir, page + "?domain=sub.example.net")
        assert "Some customers cannot log in" in dom
        row = dom[dom.index('class="backend down"'):]
        assert row.split("</tr>")[0].count("mail3") == 1
        assert "Not accepting logins — we are working on it" in row
        assert "Mail for <b>sub.example.net</b> is served by <b>mail3</b>" in dom
        assert 'class="answer down"' in dom
        # Nothing internal on the page: no backend address, no probe error text.
        assert f":{mail3.imap_port}" not in dom and "127.0.0.1" not in dom
        assert down["last_probe"]["error"] not in dom

        dom = chromium(work_dir, page + "?domain=ALICE%40Example.com")
        assert "Mail for <b>Example.com</b> is served by <b>mail1</b>" in dom
        assert "It is healthy." in dom and 'class="answer ok"' in dom

        dom = chromium(work_dir, page + "?domain=unknown.invalid")
        assert "We do not know the domain <b>unknown.invalid</b>" in dom

        SCREENSHOT.parent.mkdir(exist_ok=True)
        chromium(work_dir, page + "?domain=sub.example.net", screenshot=SCREENSHOT)
        assert SCREENSHOT.stat().st_size > 10_000
        shutil.copy(SCREENSHOT, work_dir / SCREENSHOT.name)
    finally:
        mail3.thaw()
    wait_for(lambda: mailgate.backend_status("mail3")["state"] == "up", 20, "mail3 up again")


def test_metrics_and_status_answer_during_shutdown_grace(mailgate, pki):
    imap = login(mailgate, pki, "alice@example.com")
    try:
        mailgate.signal(signal.SIGTERM)
        code, _, body = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(mailgate.http("GET", "/readyz", token=None)),
            3, "/readyz 503 after SIGTERM")
        assert "shutting down" in body
        m = scrape(mailgate)
        assert value(m, "mailgate_backend_sessions", backend="mail1", protocol="imap") == 1
        assert mailgate.status_json()["shutting_down"] is True
    finally:
        imap.shutdown()
    assert mailgate.wait_exit(10) == 0


def test_page_says_what_a_login_meets(mailgate_factory, backends, pki, work_dir):
    mg = mailgate_factory(
        # The guard may refuse no backend automatically: a down backend stays admitted.
        config={"health": {"max_auto_down_share": 0}},
        routing={"backends": {"mail2": {"fallback": "mail1"}},
                 "users": {"moving@example.com": "mail2"},
                 "default": "mail1"})
    mail3 = backends["mail3"]
    mail3.freeze()
    try:
        down = wait_for(lambda: (lambda b: b if b["state"] == "down" else None)(
            mg.backend_status("mail3")), 20, "mail3 down in /status")
        assert down["down_suppressed"] is True and down["admitting"] is True, down
        assert down["page_state"] == "down_admitted", down
        assert down["note"].startswith("down, but still admitted: refusing it would exceed "
                                       "health.max_auto_down_share"), down
        ctl = mg.ctl("status").stdout
        assert "down*" in ctl and "note: down, but still admitted" in ctl, ctl

        code, _, body = mg.http("POST", "/backends/mail2/drain")
        assert code == 200, body
        mail2 = mg.backend_status("mail2")
        assert mail2["fallback"] == "mail1" and mail2["fallback_in_use"] is True, mail2
        assert mail2["note"] == "not admitting (drained): its logins go to its fallback mail1"
        assert mg.backend_status("mail1")["serving_fallback_for"] == ["mail2"]
        # What the page will claim holds: mail2's user logs in, on mail1.
        imap = login(mg, pki, "moving@example.com")
        try:
            assert imap_backend(imap) == "mail1"
        finally:
            imap.logout()

        page = mg.admin_url("/")
        dom = chromium(work_dir, page + "?domain=sub.example.net")
        assert "Some customers cannot log in" not in dom and "Not accepting" not in dom, dom
        assert "Some mail services have problems; logins are still accepted." in dom
        row3 = dom[dom.index("<td><b>mail3</b>"):].split("</tr>")[0]
        assert "Accepting logins — checking a problem" in row3, row3
        row2 = dom[dom.index("<td><b>mail2</b>"):].split("</tr>")[0]
        assert "Accepting logins via backup" in row2, row2
        assert "in maintenance; served by <b>mail1</b>" in row2, row2
        assert 'class="answer slow"' in dom
        assert "Mail for <b>sub.example.net</b> is served by <b>mail3</b>: Accepting logins" in dom
        assert "127.0.0.1" not in dom and "max_auto_down_share" not in dom

        dom = chromium(work_dir, page + "?domain=example.org")
        assert 'class="answer backup"' in dom
        assert "while it is in maintenance, <b>mail1</b> serves them." in dom

        dom = chromium(work_dir, page + "?domain=nowhere.invalid")
        assert ("We have no entry of our own for <b>nowhere.invalid</b>; logins for it go to "
                "our default service area, <b>mail1</b>: Operating normally.") in dom, dom
        assert 'class="answer ok"' in dom
    finally:
        mail3.thaw()
    wait_for(lambda: mg.backend_status("mail3")["state"] == "up", 20, "mail3 up again")
