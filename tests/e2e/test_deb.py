"""The Debian package from ``make deb`` (target/debian/mailgate_*.deb; make test builds it before
the tests): its contents and conffiles, then — as root — a real ``dpkg -i``: the installed
``mailgate --version`` and ``mailgate check`` on the shipped /etc/mailgate (also as the
mailgate user, as the unit's ExecStartPre runs it), man pages, completions, the systemd
unit and the sysusers user. ``dpkg --purge`` afterwards, and a user the test created is
removed, so the machine is as before. Not root: the package is unpacked with
``dpkg-deb -x`` and the same checks run on the unpacked tree.

A machine that already has a mailgate package installed is not touched: the unpacked
checks run instead.
"""

from __future__ import annotations

import gzip
import os
import pwd
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def _version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def _deb() -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (not a Debian system)")
    debs = sorted((TARGET / "debian").glob(f"mailgate_{_version()}-*.deb"),
                  key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.skip(f"no package in {TARGET / 'debian'}: run `make deb` first")
    return debs[-1]


def _run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL, **kw)
    if check:
        assert result.returncode == 0, f"{cmd}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result


def _installed(package: str) -> bool:
    r = _run("dpkg-query", "-W", "-f=${Status}", package, check=False)
    return r.returncode == 0 and "install ok installed" in r.stdout


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


MANDATORY = [
    "usr/bin/mailgate",
    "usr/lib/systemd/system/mailgate.service",
    "usr/lib/sysusers.d/mailgate.conf",
    "etc/mailgate/mailgate.yaml",
    "etc/mailgate/routing.yaml",
    "usr/share/man/man1/mailgate.1.gz",
    "usr/share/man/man1/mailgate-check.1.gz",
    "usr/share/man/man1/mailgate-ctl.1.gz",
    "usr/share/bash-completion/completions/mailgate",
    "usr/share/zsh/vendor-completions/_mailgate",
    "usr/share/fish/vendor_completions.d/mailgate.fish",
    "usr/share/doc/mailgate/copyright",
    "usr/share/doc/mailgate/configuration.md",
]


def test_package_contents_and_conffiles():
    deb = _deb()
    listing = _run("dpkg-deb", "-c", str(deb)).stdout
    paths = {line.split()[-1].removeprefix("./") for line in listing.splitlines()}
    missing = [p for p in MANDATORY if p not in paths]
    assert not missing, f"not in the package: {missing}"
    control = _run("dpkg-deb", "-f", str(deb)).stdout
    assert f"Version: {_version()}-" in control
    assert "Package: mailgate" in control
    conffiles = _run("dpkg-deb", "-I", str(deb), "conffiles").stdout.split()
    assert sorted(conffiles) == ["/etc/mailgate/mailgate.yaml", "/etc/mailgate/routing.yaml"]
    # Every page of a visible subcommand is there (the hidden `assets` has none).
    help_text = _run(str(TARGET / "release" / "mailgate"), "--help").stdout \
        if (TARGET / "release" / "mailgate").exists() else ""
    assert "assets" not in help_text
    assert not any("assets" in p for p in paths)


def _check_tree(root: Path, bin_path: Path, as_user: str | None = None) -> None:
    """The checks on an installed (root=/) or unpacked tree."""
    version = _run(str(bin_path), "--version").stdout.strip()
    assert version == f"mailgate {_version()}", version
    config = root / "etc/mailgate/mailgate.yaml"
    check = _run(str(bin_path), "check", "-c", str(config))
    assert check.stdout.startswith("ok:"), check.stdout + check.stderr
    if as_user and shutil.which("setpriv"):
        # As the unit's ExecStartPre runs it: User=mailgate reads /etc/mailgate.
        user = pwd.getpwnam(as_user)
        _run("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
             str(bin_path), "check", "-c", str(config))
    # The shipped config exposes nothing until edited: loopback listeners only.
    text = config.read_text()
    assert "0.0.0.0:" not in "\n".join(l.split("#", 1)[0] for l in text.splitlines())

    page = gzip.decompress((root / "usr/share/man/man1/mailgate.1.gz").read_bytes()).decode()
    assert page.startswith(".ie") or ".TH mailgate 1" in page
    assert ".TH mailgate 1" in page and _version() in page
    check_page = gzip.decompress(
        (root / "usr/share/man/man1/mailgate-check.1.gz").read_bytes()).decode()
    assert "\\-\\-config" in check_page, "the page comes from the real CLI"
    if shutil.which("man"):
        rendered = _run("man", "-l", str(root / "usr/share/man/man1/mailgate-check.1.gz"),
                        env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"})
        assert "config" in rendered.stdout

    bash = root / "usr/share/bash-completion/completions/mailgate"
    if shutil.which("bash"):
        # Source it in a real bash and ask what it completes after "mailgate ".
        script = (f"source '{bash}'; COMP_WORDS=(mailgate ''); COMP_CWORD=1; "
                  "COMP_LINE='mailgate '; COMP_POINT=9; _mailgate mailgate '' mailgate; "
                  "printf '%s\\n' \"${COMPREPLY[@]}\"")
        words = _run("bash", "-c", script).stdout.split()
        for sub in ("run", "check", "route", "routes", "ctl"):
            assert sub in words, words
        assert "assets" not in words
    assert "mailgate" in (root / "usr/share/zsh/vendor-completions/_mailgate").read_text()
    assert "complete -c mailgate" in (root / "usr/share/fish/vendor_completions.d/mailgate.fish").read_text()

    unit = (root / "usr/lib/systemd/system/mailgate.service").read_text()
    assert "ExecStart=/usr/bin/mailgate run -c /etc/mailgate/mailgate.yaml" in unit
    assert "/usr/local/bin" not in unit, "the packaged unit must run the packaged binary"
    assert "User=mailgate" in unit
    sysusers = (root / "usr/lib/sysusers.d/mailgate.conf").read_text()
    assert any(l.split()[:2] == ["u", "mailgate"] for l in sysusers.splitlines()
               if l and not l.startswith("#"))


def test_unpacked_package(tmp_path):
    """dpkg-deb -x: the same checks without installing (the path for non-root runs)."""
    deb = _deb()
    root = tmp_path / "root"
    _run("dpkg-deb", "-x", str(deb), str(root))
    _check_tree(root, root / "usr/bin/mailgate")


def test_dpkg_install_check_and_purge():
    deb = _deb()
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root; test_unpacked_package covered the contents")
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed")
    if _installed("mailgate"):
        pytest.skip("a mailgate package is installed on this machine: not touching it")
    had_user = _user_exists("mailgate")
    try:
        _run("dpkg", "-i", str(deb))
        assert _installed("mailgate")
        assert _user_exists("mailgate"), "postinst did not create the mailgate user"
        etc = Path("/etc/mailgate")
        assert etc.stat().st_gid == pwd.getpwnam("mailgate").pw_gid
        assert oct(etc.stat().st_mode & 0o777) == "0o750"
        _check_tree(Path("/"), Path("/usr/bin/mailgate"), as_user="mailgate")
        if shutil.which("systemd-analyze"):
            verify = _run("systemd-analyze", "verify", "/usr/lib/systemd/system/mailgate.service",
                          check=False)
            problems = [l for l in (verify.stdout + verify.stderr).splitlines()
                        if "mailgate.service" in l]
            assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
        # Removing keeps the edited config (conffiles); purging removes it.
        _run("dpkg", "-r", "mailgate")
        assert not Path("/usr/bin/mailgate").exists()
        assert Path("/etc/mailgate/mailgate.yaml").exists()
        _run("dpkg", "--purge", "mailgate")
        assert not Path("/etc/mailgate/mailgate.yaml").exists()
    finally:
        if _installed("mailgate") or _run("dpkg-query", "-W", "mailgate", check=False).returncode == 0:
            _run("dpkg", "--purge", "mailgate", check=False)
        if not had_user and _user_exists("mailgate"):
            _run("userdel", "mailgate", check=False)
            _run("groupdel", "mailgate", check=False)
