"""Drains that last and span instances (issue #13 part 3), against real Dovecot backends:

- `drain: true` with a `drain_reason` in one routing file that two mailgate instances read:
  both refuse new logins with `NO [UNAVAILABLE]`, a live session keeps working, /status and
  the status page show the reason, and the drain survives a restart (it is in the file);
- the admin API's drain is an instance-local override kept in `admin.state_file`: it
  survives a restart, an undrain is kept too, a broken state file is reported and ignored;
- `mailgate ctl --admin A,B` (and `--all-addresses` on a name that resolves to both, with
  a real dnsmasq) drains, undrains and shows status on every instance, per instance, and
  fails naming the instance it could not reach."""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from clients import imap_open
from layout import PASSWORD
from mailgate_proc import to_yaml
from ports import free_port

REASON = "disk replacement, back by 14:00 UTC"


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def refusal(mg, pki, user: str) -> str | None:
    """The refusal text of a login through ``mg``, or None when it is accepted."""
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        imap.login(user, PASSWORD)
    except imaplib.IMAP4.error as e:
        imap.shutdown()
        return str(e)
    imap.logout()
    return None


def drain_of(mg, backend: str) -> dict:
    return mg.backend_status(backend)["drain"]


def shared_routing(path: Path, routing: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_yaml(routing))
    os.replace(tmp, path)


@pytest.fixture
def two_instances(mailgate_factory, work_dir, request):
    """Two mailgates whose routing_file is one shared file (as a ConfigMap would be)."""
    shared = work_dir / "shared" / request.node.name[:60] / "routing.yaml"
    shared.parent.mkdir(parents=True, exist_ok=True)
    a = mailgate_factory(start=False)
    routing = json.loads(json.dumps(a.routing))
    shared_routing(shared, routing)
    instances = []
    for _ in range(2):
        mg = mailgate_factory(config={"routing_file": str(shared)}, start=False)
        mg.start()
        instances.append(mg)
    return instances, shared, routing


def test_a_drain_in_the_file_refuses_new_logins_on_every_instance_and_survives_restart(
        two_instances, pki):
    (mg_a, mg_b), shared, routing = two_instances
    # Before: both admit; a session through A stays open across the drain.
    assert refusal(mg_a, pki, "alice@example.com") is None
    live = imap_open("127.0.0.1", mg_a.ports["imap"], "plain", pki.ca_cert)
    assert live.login("alice@example.com", PASSWORD)[0] == "OK"
    assert live.select("INBOX")[0] == "OK"

    routing["backends"]["mail1"]["drain"] = True
    routing["backends"]["mail1"]["drain_reason"] = REASON
    shared_routing(shared, routing)
    for mg in (mg_a, mg_b):
        wait_for(lambda: drain_of(mg, "mail1")["file"], 10, "the file's drain on /status")
        text = refusal(mg, pki, "alice@example.com")
        assert text is not None and "[UNAVAILABLE]" in text, text
        assert "mail1 is unavailable" in text, text
        st = mg.backend_status("mail1")
        assert st["drained"] is True and st["drain"]["local"] is None
        assert st["drain"]["file"]["reason"] == REASON
        assert st["page_state"] == "maintenance"
        # Other backends are untouched.
        assert refusal(mg, pki, "bob@example.org") is None
        # The status page says why.
        code, _, page = mg.http("GET", "/", token=None)
        assert code == 200 and REASON in page, page[:2000]
        out = mg.ctl("status")
        assert out.returncode == 0, out.stderr
        assert REASON in out.stdout and "file" in out.stdout, out.stdout
    # The live session still works.
    assert live.noop()[0] == "OK"
    assert live.select("INBOX")[0] == "OK"
    live.logout()

    # An undrain through the admin API lifts only the instance's own drain.
    out = mg_a.ctl("undrain", "mail1")
    assert out.returncode == 0, out.stderr
    assert "still drained by the routing file" in out.stdout, out.stdout
    assert refusal(mg_a, pki, "alice@example.com") is not None

    # Restart A: the drain is in the file, so it holds from the first login.
    mg_a.stop()
    mg_a.start()
    assert drain_of(mg_a, "mail1")["file"]["reason"] == REASON
    text = refusal(mg_a, pki, "alice@example.com")
    assert text is not None and "[UNAVAILABLE]" in text

    # Lifting it in the file lifts it everywhere.
    routing["backends"]["mail1"]["drain"] = False
    del routing["backends"]["mail1"]["drain_reason"]
    shared_routing(shared, routing)
    for mg in (mg_a, mg_b):
        wait_for(lambda: not mg.backend_status("mail1")["drained"], 10, "the undrain")
        assert refusal(mg, pki, "alice@example.com") is None


def test_the_admin_drain_is_kept_in_the_state_file_across_restarts(mailgate_factory, pki):
    mg = mailgate_factory(config={"admin": {"state_file": "state/mailgate-state.json"}})
    state = mg.dir / "state" / "mailgate-state.json"
    (mg.dir / "state").mkdir(exist_ok=True)
    assert mg.status_json()["state_file"] == {"path": str(state), "problem": None}

    out = mg.ctl("drain", "mail2", "--reason", "ticket 42")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "mail2: drained (changed)", out.stdout
    kept = json.loads(state.read_text())
    assert kept["format"] == 1
    assert [(d["backend"], d["reason"]) for d in kept["drained"]] == [("mail2", "ticket 42")]
    since = kept["drained"][0]["since_unix"]
    assert [p.name for p in state.parent.iterdir()] == [state.name], "no temporary left"

    mg.stop()
    mg.start()
    st = mg.backend_status("mail2")
    assert st["drained"] is True and st["drain"]["file"] is None
    assert st["drain"]["local"] == {"reason": "ticket 42", "since_unix": since}
    text = refusal(mg, pki, "bob@example.org")
    assert text is not None and "[UNAVAILABLE]" in text
    # The log goes through a queue: wait for the line rather than race it.
    wait_for(lambda: "local drain restored" in mg.output(), 10, "the restore log line")

    # The undrain is kept too.
    out = mg.ctl("undrain", "mail2")
    assert out.returncode == 0 and "not drained (changed)" in out.stdout, out.stdout
    assert json.loads(state.read_text())["drained"] == []
    mg.stop()
    mg.start()
    assert mg.backend_status("mail2")["drained"] is False
    assert refusal(mg, pki, "bob@example.org") is None

    # A broken state file: reported, ignored, never fatal; the next change rewrites it.
    mg.stop()
    state.write_text('{"format": 1, "drained": [{"backend": "mail2"')
    mg.start()
    problem = mg.status_json()["state_file"]["problem"]
    assert problem and "not a mailgate state file" in problem, problem
    wait_for(lambda: "state file is broken" in mg.output(), 10, "the broken-file log line")
    assert mg.backend_status("mail2")["drained"] is False
    assert mg.ctl("drain", "mail3").returncode == 0
    assert mg.status_json()["state_file"]["problem"] is None
    assert [d["backend"] for d in json.loads(state.read_text())["drained"]] == ["mail3"]


def test_ctl_drains_and_shows_every_instance_of_a_list(mailgate_factory, pki):
    a = mailgate_factory()
    b = mailgate_factory()
    admins = f"http://127.0.0.1:{a.ports['admin']},http://127.0.0.1:{b.ports['admin']}"
    out = a.ctl("--admin", admins, "drain", "mail3", "--reason", "move to new disks")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [f"127.0.0.1:{a.ports['admin']}: mail3: drained (changed)",
                     f"127.0.0.1:{b.ports['admin']}: mail3: drained (changed)"], out.stdout
    for mg in (a, b):
        assert mg.backend_status("mail3")["drain"]["local"]["reason"] == "move to new disks"
        assert "[UNAVAILABLE]" in (refusal(mg, pki, "carol@sub.example.net") or "")

    # Repeated --admin works the same; status has one block per instance.
    out = a.ctl("--admin", f"http://127.0.0.1:{a.ports['admin']}",
                "--admin", f"http://127.0.0.1:{b.ports['admin']}", "status")
    assert out.returncode == 0, out.stderr
    for mg in (a, b):
        assert f"== 127.0.0.1:{mg.ports['admin']} ==" in out.stdout
    assert out.stdout.count("BACKEND") == 2

    # One instance that cannot be reached: the others still get the command, the exit code
    # says something failed, and stderr names the instance.
    dead = free_port()
    out = a.ctl("--admin", f"{admins},http://127.0.0.1:{dead}", "undrain", "mail3")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout.count("not drained (changed)") == 2, out.stdout
    assert f"127.0.0.1:{dead}" in out.stderr and "1 of 3 instances failed" in out.stderr
    for mg in (a, b):
        assert mg.backend_status("mail3")["drained"] is False
    # An instance that refuses (unknown backend): exit 1, named.
    out = a.ctl("--admin", admins, "drain", "nope")
    assert out.returncode == 1 and "2 of 2 instances failed" in out.stderr, out.stderr
    # Kick goes to every instance too.
    out = a.ctl("--admin", admins, "kick", "--backend", "mail1")
    assert out.returncode == 0 and out.stdout.count("scheduled to close") == 2, out.stdout


@pytest.mark.skipif(shutil.which("dnsmasq") is None,
                    reason="dnsmasq not installed (scripts/install-deps.sh)")
def test_ctl_addresses_every_record_of_a_name(mailgate_factory, work_dir, pki):
    """A name with two A records (127.0.0.1 and 127.0.0.2, served by a real dnsmasq on a
    loopback port) and one admin port: `--all-addresses` reaches both instances."""
    port = free_port()
    a = mailgate_factory(config={"listen": {"admin": f"127.0.0.1:{port}"}}, start=False)
    a.ports["admin"] = port
    a.start()
    b = mailgate_factory(config={"listen": {"admin": f"127.0.0.2:{port}"}}, start=False)
    del b.ports["admin"]  # not on 127.0.0.1: the harness's helpers cannot reach it
    b.start()

    def drained_on_b() -> bool:
        out = a.ctl("--admin", f"http://127.0.0.2:{port}", "status", "--json")
        assert out.returncode == 0, out.stderr
        return next(x for x in json.loads(out.stdout)["backends"]
                    if x["name"] == "mail2")["drained"]
    hosts = work_dir / "dns" / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text("127.0.0.1 mailgate-admin.test\n127.0.0.2 mailgate-admin.test\n")
    dns_port = free_port()
    dns = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", f"--port={dns_port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
         "--local-ttl=1", "--user=root", "--pid-file="],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        assert dns.poll() is None, dns.stderr.read().decode() if dns.stderr else ""
        args = ["--admin", f"http://mailgate-admin.test:{port}", "--all-addresses",
                "--nameserver", f"127.0.0.1:{dns_port}"]
        out = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(
            a.ctl(*args, "drain", "mail2")), 10, "ctl through dnsmasq")
        assert sorted(out.stdout.splitlines()) == [
            f"127.0.0.1:{port}: mail2: drained (changed)",
            f"127.0.0.2:{port}: mail2: drained (changed)"], out.stdout
        assert a.backend_status("mail2")["drained"] is True and drained_on_b()
        # Without --all-addresses the name is one instance (whichever address answers).
        out = a.ctl("--admin", f"http://127.0.0.2:{port}", "undrain", "mail2")
        assert out.returncode == 0 and out.stdout.startswith("mail2: not drained")
        assert not drained_on_b()
        assert a.backend_status("mail2")["drained"] is True
    finally:
        dns.send_signal(signal.SIGTERM)
        dns.wait(timeout=5)
