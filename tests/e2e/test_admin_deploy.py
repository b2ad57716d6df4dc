"""deploy/: the Prometheus alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), the Grafana dashboard is valid JSON whose queries parse, and both
use only metrics that docs/metrics.md documents (and that mailgate exports)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "mailgate.json"
METRICS_DOC = REPO / "docs" / "metrics.md"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (scripts/install-deps.sh)")


def documented() -> set[str]:
    return set(re.findall(r"`(mailgate_[a-z_]+)`", METRICS_DOC.read_text()))


def used(text: str) -> set[str]:
    names = set(re.findall(r"\bmailgate_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


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
        {"record": f"dashboard:query{i}", "expr": e.replace("$instance", ".*")}
        for i, e in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    r = promtool("check", "rules", path.name, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_exported_metrics_are_documented(mailgate):
    code, _, body = mailgate.http("GET", "/metrics", token=None)
    assert code == 200
    exported = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    docs = documented()
    missing = {n for n in exported if not any(d == n or d.startswith(n + "_") for d in docs)}
    assert not missing, f"exported but not in docs/metrics.md: {missing}"
