"""With ``CI=true`` a skipped test fails: a test that needs a tool (Cyrus, chromium,
promtool, systemd-analyze, dpkg, the .deb from ``make deb``, ...) must run in CI, where
scripts/install-deps.sh installs everything, so a missing install step shows up as a
failure instead of a silently shorter run.

A skip that is not about a missing tool (the environment cannot provide it at all, e.g.
no container daemon) opts out with ``@pytest.mark.ci_may_skip("why")``; xfail stays xfail.
Registered by conftest.py's ``pytest_configure``.
"""

from __future__ import annotations

import os

import pytest

MARKER = "ci_may_skip"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


class _SkipsFailInCi:
    """Turns skip reports (setup or call) into failures that carry the skip's reason."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        if item.get_closest_marker(MARKER) is not None:
            return
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        report.outcome = "failed"
        report.longrepr = (f"skipped, but CI=true: tests that need a tool must run in CI "
                           f"(scripts/install-deps.sh installs it): {reason}")


    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector):
        """A module that skips as a whole (``pytest.importorskip`` at import)."""
        outcome = yield
        report = outcome.get_result()
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            report.outcome = "failed"
            report.longrepr = (f"skipped at collection, but CI=true: tests that need a tool "
                               f"must run in CI (scripts/install-deps.sh installs it): {reason}")


def register(config) -> None:
    """Declare the marker; under CI=true install the hook."""
    config.addinivalue_line(
        "markers", f"{MARKER}(reason): this test may skip even under CI=true "
                   "(the environment cannot provide what it needs, not a missing install step)")
    if in_ci():
        config.pluginmanager.register(_SkipsFailInCi(), "mailgate-ci-skips-fail")
