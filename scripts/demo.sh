#!/usr/bin/env bash
# `make demo`: three real Dovecot backends (mail1..mail3, ports of examples/routing.yaml)
# under demo/, and mailgate in front of them with examples/mailgate.yaml. Ctrl-C stops
# mailgate (a second Ctrl-C skips its shutdown grace) and then the backends.
#
# Environment: MAILGATE_BIN=path uses that binary instead of building target/debug/mailgate.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEMO_DIR="$ROOT/demo"
HARNESS=(python3 "$ROOT/tests/e2e/dovecot.py")

if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
    echo "demo: installing Dovecot and friends (scripts/install-deps.sh)"
    scripts/install-deps.sh
fi

# TLS certificate for mailgate's listeners (self-signed, localhost and 127.0.0.1).
if [ ! -s examples/tls/cert.pem ] || [ ! -s examples/tls/key.pem ]; then
    echo "demo: generating examples/tls/cert.pem and key.pem (self-signed, localhost)"
    mkdir -p examples/tls
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout examples/tls/key.pem -out examples/tls/cert.pem 2>/dev/null
    chmod 600 examples/tls/key.pem
fi

# Bearer token for the admin API (drain, undrain, reload, kick).
if [ ! -s examples/admin.token ]; then
    echo "demo: writing a random examples/admin.token"
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > examples/admin.token)
fi

if [ -n "${MAILGATE_BIN:-}" ]; then
    MAILGATE="$MAILGATE_BIN"
else
    echo "demo: building mailgate"
    cargo build -q -p mailgate --bin mailgate
    MAILGATE="$ROOT/target/debug/mailgate"
fi

stop_backends() { "${HARNESS[@]}" stop --dir "$DEMO_DIR" || true; }
trap stop_backends EXIT
trap 'exit 130' INT TERM

echo "demo: starting Dovecot backends under demo/"
"${HARNESS[@]}" demo --dir "$DEMO_DIR" --cert examples/tls/cert.pem --key examples/tls/key.pem

cat <<'TXT'

mailgate listens on 127.0.0.1: IMAP 1143 (STARTTLS), IMAPS 1993, POP3 1110 (STLS), POP3S 1995,
admin http://127.0.0.1:9143/ . Users: alice@example.com (mail1), bob@example.org (mail2),
carol@sub.example.net (mail3), moving@example.com (moved to mail2 by users:); password: secret.

Try, in another terminal:
  curl -v --ssl-reqd --cacert examples/tls/cert.pem 'imap://127.0.0.1:1143/INBOX;UID=1' --user alice@example.com:secret
  curl --cacert examples/tls/cert.pem 'imaps://127.0.0.1:1993/' -X 'ID NIL' --user carol@sub.example.net:secret
  curl --ssl-reqd --cacert examples/tls/cert.pem 'pop3://127.0.0.1:1110/1' --user bob@example.org:secret
  curl --cacert examples/tls/cert.pem 'pop3s://127.0.0.1:1995/' --user moving@example.com:secret
  curl -s http://127.0.0.1:9143/status
  curl -X POST -H "Authorization: Bearer $(cat examples/admin.token)" http://127.0.0.1:9143/backends/mail2/drain
  python3 tests/e2e/dovecot.py freeze --dir demo mail2     # a deadlocked backend; `thaw` resumes it
  $EDITOR examples/routing.yaml                            # move a domain: reloaded on save

Ctrl-C stops mailgate and the backends.

TXT

"$MAILGATE" run -c examples/mailgate.yaml
