"""TLS towards backends: STARTTLS on the backend's plain port and implicit TLS on its
IMAPS/POP3S ports, verified against a configured CA file. A backend whose certificate does
not verify is unavailable for the client (never a silent close), unless the operator
explicitly set `tls_verify: false`."""

from __future__ import annotations

import imaplib
import poplib
import subprocess

from clients import imap_backend, imap_open
from layout import PASSWORD


def _routing(**per_backend) -> dict:
    return {"backends": {name: dict(over) for name, over in per_backend.items()}}


def test_imap_starttls_and_implicit_tls_to_backends(mailgate_factory, backends, pki):
    ca = str(pki.ca_cert)
    mg = mailgate_factory(routing=_routing(
        mail1={"tls": "starttls", "tls_ca_file": ca, "tls_server_name": "localhost"},
        mail2={"tls": "implicit", "tls_ca_file": ca, "tls_server_name": "localhost",
               "imap_port": backends["mail2"].imaps_port,
               "pop3_port": backends["mail2"].pop3s_port},
    ))
    for user, backend in (("alice@example.com", "mail1"), ("bob@example.org", "mail2")):
        b = backends[backend]
        since = b.log_size()
        imap = imap_open("127.0.0.1", mg.ports["imaps"], "tls", pki.ca_cert)
        try:
            assert imap.login(user, PASSWORD)[0] == "OK"
            assert imap_backend(imap) == backend
            assert imap.select("INBOX")[0] == "OK"
        finally:
            imap.logout()
        line = b.wait_log(f"imap-login: Info: Login: user=<{user}>", since=since)
        assert "TLS" in line, f"backend connection was not TLS: {line}"


def test_pop3_over_implicit_tls_to_the_backend(mailgate_factory, backends, pki):
    mg = mailgate_factory(routing=_routing(
        mail2={"tls": "implicit", "tls_ca_file": str(pki.ca_cert), "tls_server_name": "localhost",
               "imap_port": backends["mail2"].imaps_port,
               "pop3_port": backends["mail2"].pop3s_port},
    ))
    b = backends["mail2"]
    since = b.log_size()
    pop = poplib.POP3("127.0.0.1", mg.ports["pop3"], timeout=10)
    try:
        pop.user("bob@example.org")
        assert pop.pass_(PASSWORD).startswith(b"+OK")
        assert pop.stat()[0] >= 0
    finally:
        pop.quit()
    line = b.wait_log("pop3-login: Info: Login: user=<bob@example.org>", since=since)
    assert "TLS" in line, line


def test_unverifiable_backend_certificate_is_unavailable_unless_verify_is_off(
        mailgate_factory, backends, pki, tmp_path):
    # A CA that did not sign the backend's certificate.
    other_key, other_ca = tmp_path / "other.key", tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=Other CA", "-keyout", str(other_key), "-out", str(other_ca)],
                   check=True, capture_output=True, timeout=60)
    implicit = {"tls": "implicit", "tls_server_name": "localhost",
                "imap_port": backends["mail1"].imaps_port,
                "pop3_port": backends["mail1"].pop3s_port}
    mg = mailgate_factory(routing=_routing(
        mail1={**implicit, "tls_ca_file": str(other_ca)}))
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        typ, data = imap._simple_command("LOGIN", "alice@example.com", PASSWORD)
    except imaplib.IMAP4.error as e:  # imaplib raises on NO
        text = str(e)
    else:
        text = f"{typ} {data}"
    finally:
        imap.shutdown()
    assert "[UNAVAILABLE]" in text, text

    mg2 = mailgate_factory(routing=_routing(
        mail1={**implicit, "tls_ca_file": str(other_ca), "tls_verify": False}))
    imap = imap_open("127.0.0.1", mg2.ports["imap"], "plain", pki.ca_cert)
    try:
        assert imap.login("alice@example.com", PASSWORD)[0] == "OK"
        assert imap_backend(imap) == "mail1"
    finally:
        imap.logout()

