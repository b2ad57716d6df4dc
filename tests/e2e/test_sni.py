"""Certificate choice by SNI (issue #14 part 5), checked by a real client: mailgate has a
default certificate (localhost) and ``tls.sni`` entries for two more names, each with a
certificate of its own. Python's ssl client sends ``server_hostname`` and checks the
certificate it gets against it (CA and host name), over implicit TLS (IMAPS, POP3S) and
after STARTTLS / STLS; a login then works over that connection.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from certs import make_server_cert
from clients import read_line, tls_context
from layout import PASSWORD

ALPHA, BETA = "imap.alpha.test", "mail.beta.test"
# A wildcard entry: any single label under this domain.
WILD = "pop.gamma.test"


@pytest.fixture(scope="module")
def sni_certs(pki, work_dir: Path):
    d = work_dir / "pki-sni"
    return {
        "alpha": make_server_cert(pki, d, "alpha", [ALPHA]),
        "beta": make_server_cert(pki, d, "beta", [BETA, "other.beta.test"]),
        "gamma": make_server_cert(pki, d, "gamma", ["*.gamma.test"]),
    }


@pytest.fixture
def mg(mailgate_factory, sni_certs):
    sni = [
        {"names": [ALPHA], "cert": str(sni_certs["alpha"][0]), "key": str(sni_certs["alpha"][1])},
        {"names": [BETA, "other.beta.test"], "cert": str(sni_certs["beta"][0]),
         "key": str(sni_certs["beta"][1])},
        {"names": ["*.gamma.test"], "cert": str(sni_certs["gamma"][0]),
         "key": str(sni_certs["gamma"][1])},
    ]
    # The YAML writer writes lists of scalars only: the sni list goes in as flow mappings.
    mg = mailgate_factory(start=False)
    mg.config["tls"]["sni"] = sni
    text = mg.config_path.read_text()
    lines = ["  \"sni\":"]
    for entry in sni:
        names = ", ".join(f'"{n}"' for n in entry["names"])
        lines.append(f'    - {{"names": [{names}], "cert": "{entry["cert"]}", "key": "{entry["key"]}"}}')
    text = text.replace('  "require_tls_for_login": false\n',
                        '  "require_tls_for_login": false\n' + "\n".join(lines) + "\n")
    mg.config_path.write_text(text)
    return mg.start()


def _names(cert: dict) -> tuple[str, list[str]]:
    cn = next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")
    return cn, [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def _implicit(port: int, server_name: str, cafile: Path) -> tuple[ssl.SSLSocket, dict]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = tls_context(cafile).wrap_socket(sock, server_hostname=server_name)
    return tls, tls.getpeercert()


def _starttls(port: int, server_name: str, cafile: Path, imap: bool) -> tuple[ssl.SSLSocket, dict]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    greeting = read_line(sock)
    assert greeting.startswith(b"* OK" if imap else b"+OK"), greeting
    sock.sendall(b"s1 STARTTLS\r\n" if imap else b"STLS\r\n")
    answer = read_line(sock)
    assert answer.startswith(b"s1 OK" if imap else b"+OK"), answer
    tls = tls_context(cafile).wrap_socket(sock, server_hostname=server_name)
    return tls, tls.getpeercert()


def _imap_login(tls: ssl.SSLSocket, implicit: bool) -> bytes:
    if implicit:
        assert read_line(tls).startswith(b"* OK")
    tls.sendall(f'a1 LOGIN "alice@example.com" "{PASSWORD}"\r\n'.encode())
    while True:
        line = read_line(tls)
        assert line, "closed before the login's verdict"
        if line.startswith(b"a1 "):
            return line


@pytest.mark.parametrize("listener", ["imaps", "imap-starttls", "pop3s", "pop3-stls"])
@pytest.mark.parametrize("name,want_cn", [(ALPHA, ALPHA), (BETA, BETA),
                                          ("other.beta.test", BETA),
                                          (WILD, "*.gamma.test"), ("localhost", "localhost")])
def test_the_certificate_follows_the_server_name(mg, pki, listener, name, want_cn):
    imap = listener.startswith("imap")
    if listener in ("imaps", "pop3s"):
        tls, cert = _implicit(mg.ports[listener], name, pki.ca_cert)
    else:
        tls, cert = _starttls(mg.ports["imap" if imap else "pop3"], name, pki.ca_cert, imap)
    try:
        cn, sans = _names(cert)
        assert cn == want_cn, f"{name} got the certificate of {cn} ({sans})"
        if imap:
            assert _imap_login(tls, implicit=listener == "imaps").startswith(b"a1 OK")
        else:
            if listener == "pop3s":
                assert read_line(tls).startswith(b"+OK")
            tls.sendall(b"QUIT\r\n")
            assert read_line(tls).startswith(b"+OK")
    finally:
        tls.close()


def test_a_name_no_certificate_has_gets_the_default_and_fails_the_host_check(mg, pki):
    """An unknown name gets the default certificate (localhost), which a checking client
    refuses for that name: the SNI entries are the only place other names come from."""
    with pytest.raises(ssl.SSLCertVerificationError):
        _implicit(mg.ports["imaps"], "imap.unknown.test", pki.ca_cert)
    ctx = tls_context(pki.ca_cert)
    ctx.check_hostname = False
    sock = socket.create_connection(("127.0.0.1", mg.ports["imaps"]), timeout=5)
    with ctx.wrap_socket(sock, server_hostname="imap.unknown.test") as tls:
        assert _names(tls.getpeercert())[0] == "localhost"
    # A deeper name is not matched by the one-label wildcard.
    with pytest.raises(ssl.SSLCertVerificationError):
        _implicit(mg.ports["imaps"], "a.pop.gamma.test", pki.ca_cert)
