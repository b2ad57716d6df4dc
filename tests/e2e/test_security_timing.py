"""No oracle for hosted domains, against real Dovecot: with Dovecot's own failure delay
(2 s, its default) and mailgate's `auth_failure_delay: 2s`, a wrong password on a hosted
domain and a login for a domain mailgate does not serve are answered with the same text
after the same time. (Before, the hosted domain took Dovecot's 2 s on top: about 4 s vs
2 s.) A correctness check of the delay, with a generous margin, not a benchmark."""

from __future__ import annotations

import imaplib
import statistics
import threading
import time

from dovecot import Dovecot, stop_many
from ports import free_port
from layout import PASSWORD


def _timed_login(port: int, user: str, out: list, i: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    try:
        imap.login(user, "not-the-password")
        out[i] = ("accepted", time.monotonic() - started)
    except imaplib.IMAP4.error as e:
        out[i] = (str(e), time.monotonic() - started)
    finally:
        try:
            imap.shutdown()
        except OSError:
            pass


def test_wrong_password_and_unknown_domain_look_alike(mailgate_factory, work_dir):
    slow = Dovecot(
        name="slowfail", root=work_dir / "backends" / "slowfail",
        users={"carol@timing.test": PASSWORD},
        imap_port=free_port(), pop3_port=free_port(), auth_failure_delay="2s",
    ).start()
    try:
        mg = mailgate_factory(
            config={"limits": {
                "auth_failure_delay": "2s",
                "max_auth_failures_per_ip": 0,
                "max_auth_failures_per_user": 0,
                "max_bad_commands": 10,
            }},
            routing={
                "backends": {"slowfail": {
                    "host": "127.0.0.1", "imap_port": slow.imap_port, "pop3_port": slow.pop3_port,
                }},
                "domains": {"timing.test": "slowfail"},
            },
        )
        port = mg.ports["imap"]
        users = ["carol@timing.test"] * 4 + ["carol@not-hosted.test"] * 4
        out: list = [None] * len(users)
        threads = [threading.Thread(target=_timed_login, args=(port, u, out, i))
                   for i, u in enumerate(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        hosted = [t for (_, t) in out[:4]]
        unknown = [t for (_, t) in out[4:]]
        texts = {text for (text, _) in out}
        assert len(texts) == 1 and "AUTHENTICATIONFAILED" in next(iter(texts)), texts
        assert min(hosted + unknown) >= 1.9, (hosted, unknown)
        gap = abs(statistics.median(hosted) - statistics.median(unknown))
        assert gap < 0.75, f"hosted {hosted} vs unknown {unknown}"
    finally:
        stop_many([slow])
