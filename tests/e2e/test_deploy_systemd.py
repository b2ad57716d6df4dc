"""deploy/systemd/mailgate.service is a valid unit (systemd-analyze verify, with the binary
path pointed at the built mailgate), and its stop timeout leaves room for shutdown_grace."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailgate_proc import mailgate_binary

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "mailgate.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    text = UNIT.read_text().replace("/usr/local/bin/mailgate", str(mailgate_binary()))
    unit = tmp_path / "mailgate.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    problems = [l for l in (result.stdout + result.stderr).splitlines()
                if "mailgate.service" in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_stop_timeout_exceeds_the_default_shutdown_grace():
    text = UNIT.read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M).group(1))
    assert stop > 30, "systemd would SIGKILL before mailgate's 30 s shutdown grace ends"
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M)
