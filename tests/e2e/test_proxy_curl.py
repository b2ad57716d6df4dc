"""curl as the client: imap://, imaps://, pop3://, pop3s://, with --ssl-reqd for
STARTTLS/STLS and --cacert for the test CA."""

from __future__ import annotations

import uuid

import pytest

from clients import curl, imap_open, imap_search_subject
from layout import HOME_BACKEND, PASSWORD


def _seed_and_find_uid(backend, user: str) -> tuple[str, str]:
    """Seed a message on the backend; return (its marker, its UID) looked up directly."""
    marker = f"curl-{uuid.uuid4().hex[:12]}"
    backend.seed(user, marker, body=f"marker {marker}\r\n")
    imap = imap_open(backend.host, backend.imap_port, "plain", None)
    try:
        imap.login(user, PASSWORD)
        imap.select("INBOX", readonly=True)
        (uid,) = imap_search_subject(imap, marker)
    finally:
        imap.logout()
    return marker, uid.decode()


IMAP_VARIANTS = {
    "imap-plain": ("imap", "imap", []),
    "imap-starttls": ("imap", "imap", ["--ssl-reqd"]),
    "imaps": ("imaps", "imaps", []),
}


@pytest.mark.parametrize("variant", sorted(IMAP_VARIANTS))
@pytest.mark.parametrize("user", sorted(HOME_BACKEND))
def test_curl_fetches_a_message_over_imap(mailgate, backends, pki, user, variant):
    scheme, listener, extra = IMAP_VARIANTS[variant]
    marker, uid = _seed_and_find_uid(backends[HOME_BACKEND[user]], user)
    url = f"{scheme}://127.0.0.1:{mailgate.ports[listener]}/INBOX;UID={uid}"
    result = curl(*extra, "--cacert", str(pki.ca_cert), "--user", f"{user}:{PASSWORD}", url)
    assert result.returncode == 0, result.stderr
    assert f"marker {marker}" in result.stdout


def test_curl_custom_command_shows_the_backend(mailgate, pki):
    url = f"imaps://127.0.0.1:{mailgate.ports['imaps']}/"
    result = curl("--cacert", str(pki.ca_cert), "--user", f"carol@sub.example.net:{PASSWORD}",
                  "-X", "ID NIL", url)
    assert result.returncode == 0, result.stderr
    assert '"x-backend" "mail3"' in result.stdout


POP3_VARIANTS = {
    "pop3-plain": ("pop3", "pop3", []),
    "pop3-stls": ("pop3", "pop3", ["--ssl-reqd"]),
    "pop3s": ("pop3s", "pop3s", []),
}


@pytest.mark.parametrize("variant", sorted(POP3_VARIANTS))
def test_curl_lists_and_retrieves_over_pop3(mailgate, backends, pki, variant):
    scheme, listener, extra = POP3_VARIANTS[variant]
    user = "bob@example.org"
    marker = f"curl-pop3-{uuid.uuid4().hex[:12]}"
    backends["mail2"].seed(user, marker, body=f"marker {marker}\r\n")
    base = f"{scheme}://127.0.0.1:{mailgate.ports[listener]}/"
    common = [*extra, "--cacert", str(pki.ca_cert), "--user", f"{user}:{PASSWORD}"]

    listing = curl(*common, base)
    assert listing.returncode == 0, listing.stderr
    numbers = [int(line.split()[0]) for line in listing.stdout.splitlines() if line.strip()]
    assert numbers, listing.stdout
    message = curl(*common, f"{base}{max(numbers)}")
    assert message.returncode == 0, message.stderr
    assert f"marker {marker}" in message.stdout
