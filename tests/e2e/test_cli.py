"""The offline subcommands on the generated config: `mailgate check` and `mailgate route`."""

from __future__ import annotations

import pytest

from layout import HOME_BACKEND


def test_check_accepts_the_generated_config(mailgate_factory):
    mg = mailgate_factory(start=False)
    result = mg.cli("check", "-c", str(mg.config_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_rejects_an_unknown_backend(mailgate_factory):
    mg = mailgate_factory(routing={"domains": {"example.com": "mail9"}}, start=False)
    result = mg.cli("check", "-c", str(mg.config_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mail9" in result.stdout + result.stderr


@pytest.mark.parametrize("user", sorted(HOME_BACKEND))
def test_route_prints_the_backend(mailgate_factory, user):
    mg = mailgate_factory(start=False)
    result = mg.cli("route", "-c", str(mg.config_path), user)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"-> {HOME_BACKEND[user]}" in result.stdout
