"""A throwaway test PKI made with the openssl CLI: one CA and one server certificate.

The server certificate names ``localhost`` and ``127.0.0.1`` (CN and subjectAltName), is
signed by the CA and is a proper end-entity certificate (rustls/webpki reject a CA
certificate used as a server certificate).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_pki(directory: Path, days: int = 2) -> Pki:
    """Create ca.pem/ca.key and server.pem/server.key (localhost, 127.0.0.1) in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
             "-subj", "/CN=mailgate test CA", "-keyout", "ca.key", "-out", "ca.pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "server.ext").write_text(
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", str(days), "-extfile", "server.ext",
             "-out", "server.pem", cwd=d)
    for key in ("ca.key", "server.key"):
        (d / key).chmod(0o600)
    return Pki(ca_cert=d / "ca.pem", ca_key=d / "ca.key",
               server_cert=d / "server.pem", server_key=d / "server.key")



def make_server_cert(pki: Pki, directory: Path, stem: str, names: list[str],
                     days: int = 2) -> tuple[Path, Path]:
    """One more end-entity certificate signed by ``pki``'s CA for the DNS ``names`` (CN is the
    first): ``STEM.pem`` and ``STEM.key`` in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}",
             "-keyout", f"{stem}.key", "-out", f"{stem}.csr", cwd=d)
    (d / f"{stem}.ext").write_text(
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = " + ",".join(f"DNS:{n}" for n in names) + "\n"
    )
    _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", str(pki.ca_cert), "-CAkey",
             str(pki.ca_key), "-CAcreateserial", "-days", str(days), "-extfile", f"{stem}.ext",
             "-out", f"{stem}.pem", cwd=d)
    (d / f"{stem}.key").chmod(0o600)
    return d / f"{stem}.pem", d / f"{stem}.key"
