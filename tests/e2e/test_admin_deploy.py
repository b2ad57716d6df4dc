"""deploy/: the Prometheus alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), the Grafana dashboard is valid JSON whose queries parse, and both
use only metrics that docs/metrics.md documents and that a live mailgate exports. Every
alert has a ``runbook_url`` whose anchor is a heading of docs/operations.md; every rate in
the dashboard is over ``$__rate_interval``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "mailgate.json"
METRICS_DOC = REPO / "docs" / "metrics.md"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (scripts/install-deps.sh)")


def documented() -> set[str]:
    return set(re.findall(r"`((?:mailgate|process)_[a-z_]+)`", METRICS_DOC.read_text()))


def used(text: str) -> set[str]:
    names = set(re.findall(r"\b(?:mailgate|process)_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def family(name: str) -> str:
    """The ``# TYPE`` name of a series name (counters lose ``_total`` there)."""
    return re.sub(r"_total$", "", name)


def alert_rules() -> list[dict]:
    """Each alert's name and annotations (a small reader for alerts.yaml's own layout:
    one ``- alert:`` per rule, one ``key: value`` annotation per line)."""
    rules = []
    for block in re.split(r"^\s*- alert: ", ALERTS.read_text(), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        annotations = dict(re.findall(r"^\s+(runbook_url|summary): (.+)$", body, re.M))
        rules.append({"alert": name.strip(), "annotations": annotations})
    return rules


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def operations_anchors() -> set[str]:
    return {github_anchor(m) for m in
            re.findall(r"^#{1,6} (.+)$", OPERATIONS_DOC.read_text(), re.M)}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests():
    r = promtool("check", "rules", ALERTS.name, cwd=ALERTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_runbook_url_whose_anchor_exists():
    anchors = operations_anchors()
    assert "a-backend-is-down" in anchors, sorted(anchors)
    rules = alert_rules()
    assert len(rules) >= 15
    for rule in rules:
        url = rule.get("annotations", {}).get("runbook_url", "")
        m = re.fullmatch(r"https://\S+/docs/operations\.md#([a-z0-9-]+)", url)
        assert m, f"{rule['alert']}: runbook_url {url!r}"
        assert m.group(1) in anchors, f"{rule['alert']}: no section #{m.group(1)} in docs/operations.md"
        # The runbook section names the alert, so a reader landing there knows it is theirs.
        sections = OPERATIONS_DOC.read_text().split("\n## ")
        body = next(s for s in sections if github_anchor(s.split("\n", 1)[0]) == m.group(1))
        assert f"`{rule['alert']}`" in body, f"section #{m.group(1)} does not name {rule['alert']}"


def test_every_dashboard_rate_uses_rate_interval():
    exprs = dashboard_exprs()
    rates = 0
    for e in exprs:
        for fn, window in re.findall(r"\b(rate|irate|increase)\([^\[]*\[([^\]]+)\]", e):
            if fn in ("rate", "irate"):
                rates += 1
                assert window == "$__rate_interval", e
    assert rates >= 8
    # A fixed window only where the panel's title names it ("Reload failures (1h)").
    dash = json.loads(DASHBOARD.read_text())
    for p in dash["panels"]:
        for t in p.get("targets", []):
            for window in re.findall(r"\bincrease\([^\[]*\[([^\]]+)\]", t["expr"]):
                assert window == "$__rate_interval" or f"({window})" in p["title"], (p["title"], t["expr"])


def test_alerts_and_dashboard_use_documented_metrics():
    docs = documented()
    text = ALERTS.read_text()
    for name in ("MailgateBackendDown", "MailgateBackendBudgetNearlyExhausted",
                 "MailgateProbeLatencyHigh", "MailgateReloadFailing",
                 "MailgateCertificateExpiresSoon"):
        assert f"alert: {name}" in text
    assert used(text) <= docs, used(text) - docs
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    assert used("\n".join(exprs)) <= docs, used("\n".join(exprs)) - docs


@needs_promtool
def test_dashboard_queries_parse(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}",
         "expr": e.replace("$instance", ".*").replace("$__rate_interval", "1m")}
        for i, e in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    r = promtool("check", "rules", path.name, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_exported_metrics_are_documented(mailgate):
    # A login and a refused one first: families labelled per backend exist once a session
    # ran (bytes, logins) or a login was refused (refused_total).
    import imaplib
    from clients import IMAP4
    from layout import PASSWORD
    imap = IMAP4("127.0.0.1", mailgate.ports["imap"])
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
    finally:
        imap.logout()
    assert mailgate.http("POST", "/backends/mail3/drain")[0] == 200
    imap = IMAP4("127.0.0.1", mailgate.ports["imap"])
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"UNAVAILABLE"):
            imap.login("carol@sub.example.net", PASSWORD)
    finally:
        imap.logout()
    time.sleep(0.5)
    code, _, body = mailgate.http("GET", "/metrics", token=None)
    assert code == 200
    exported = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    docs = documented()
    missing = {n for n in exported if not any(d == n or d.startswith(n + "_") for d in docs)}
    assert not missing, f"exported but not in docs/metrics.md: {missing}"
    # The other way round: every family an alert or a panel uses is exported (a family
    # without series yet still has its # TYPE line), so no rule watches a name that never
    # comes. `up` is Prometheus' own.
    dash = "\n".join(dashboard_exprs())
    for name in used(ALERTS.read_text()) | used(dash):
        assert family(name) in exported, f"{name} is used in deploy/ but not on /metrics"
    # The process families carry values, not just descriptors.
    for name in ("process_open_fds", "process_max_fds", "process_resident_memory_bytes",
                 "process_start_time_seconds"):
        value = re.search(rf"^{name} (\S+)$", body, re.M)
        assert value and float(value.group(1)) > 0, name
    assert re.search(r"^process_cpu_seconds_total \S+$", body, re.M), body
