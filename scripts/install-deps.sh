#!/usr/bin/env bash
# Installs what mailgate's tests and demo need on Debian: Dovecot (with its package
# services kept from starting), Cyrus IMAP (unpacked into $CYRUS_ROOT, see below), openssl,
# curl, chromium (status page test), dnsmasq-base (a DNS server the backend DNS test runs
# on loopback; no service), haproxy (in front of mailgate in the PROXY v1/v2 e2e test; its
# service is disabled), prometheus (promtool checks
# deploy/prometheus/alerts.yaml), and Python's pytest and prometheus_client (parses
# /metrics). Idempotent.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
for pkg in dovecot-core dovecot-imapd dovecot-pop3d openssl curl chromium prometheus dnsmasq-base haproxy; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done

if [ "${#need_apt[@]}" -gt 0 ]; then
    # Keep the packages' own services from starting: a system Dovecot would grab 143/110.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        created_policy=1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
    # A system Dovecot must not hold the ports, even if something started it.
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now dovecot >/dev/null 2>&1 || true
        $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
        # haproxy: only the e2e suite runs it (tests/e2e/test_haproxy_front.py), in the foreground.
        $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
fi

# Cyrus IMAP 3.6 (Debian bookworm) as the e2e suite's second backend kind. It conflicts with
# dovecot-imapd (Conflicts: imap-server) and cyrus-common wants an MTA, so it is not
# installed: its .debs are unpacked into CYRUS_ROOT (dpkg's state is untouched, no package
# service can start) and the tests run ROOT/usr/lib/cyrus/bin/* with
# LD_LIBRARY_PATH=ROOT/usr/lib/x86_64-linux-gnu. Only the plain libraries it links are
# installed. tests/e2e/cyrus.py reads the same CYRUS_ROOT.
CYRUS_ROOT="${CYRUS_ROOT:-/opt/mailgate-test/cyrus}"
cyrus_libdir="$CYRUS_ROOT/usr/lib/x86_64-linux-gnu"
cyrus_missing_libs() {
    local bin
    for bin in imapd pop3d master ctl_cyrusdb; do
        LD_LIBRARY_PATH="$cyrus_libdir" ldd "$CYRUS_ROOT/usr/lib/cyrus/bin/$bin" 2>/dev/null \
            | awk '/=> not found/ {print $1}'
    done | sort -u
}
if [ ! -x "$CYRUS_ROOT/usr/lib/cyrus/bin/imapd" ]; then
    $SUDO apt-get update -qq
    cyrus_tmp="$(mktemp -d)"
    # As root, apt-get download fetches as the _apt user, which must be able to write here.
    chmod 0777 "$cyrus_tmp"
    (cd "$cyrus_tmp" && apt-get download -qq cyrus-imapd cyrus-common cyrus-pop3d)
    # Unpack into a staging directory and move it into place, so that an interrupted run
    # never leaves a half-unpacked root that the check above would take for complete.
    $SUDO mkdir -p "$(dirname "$CYRUS_ROOT")"
    staging="$CYRUS_ROOT.unpack.$$"
    $SUDO rm -rf "$staging"
    for deb in "$cyrus_tmp"/cyrus-*.deb; do
        $SUDO dpkg -x "$deb" "$staging"
    done
    $SUDO rm -rf "$CYRUS_ROOT"
    $SUDO mv "$staging" "$CYRUS_ROOT"
    rm -rf "$cyrus_tmp"
fi
for bin in imapd pop3d master ctl_cyrusdb; do
    [ -x "$CYRUS_ROOT/usr/lib/cyrus/bin/$bin" ] || {
        echo "install-deps: $CYRUS_ROOT/usr/lib/cyrus/bin/$bin is missing" >&2; exit 1; }
done
cyrus_libs=()
# libxapian30 is linked by imapd too; libsasl2-modules holds the PLAIN/LOGIN mechanisms.
for pkg in libical3 libpcre3 libxapian30 libsasl2-modules; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || cyrus_libs+=("$pkg")
done
if [ "${#cyrus_libs[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${cyrus_libs[@]}"
fi
if [ -n "$(cyrus_missing_libs)" ]; then
    # Whatever else the binaries link (on a minimal system): every library package the three
    # .debs depend on. Most are already there; libclamav12/libzephyr4 are only linked by
    # tools the tests do not run, so they are not installed by default.
    cyrus_deps=()
    for pkg in $(apt-cache depends --important cyrus-imapd cyrus-common cyrus-pop3d \
                 | awk '$1 == "Depends:" && $2 ~ /^lib/ {print $2}' | sort -u); do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || cyrus_deps+=("$pkg")
    done
    if [ "${#cyrus_deps[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${cyrus_deps[@]}"
    fi
fi
if [ -n "$(cyrus_missing_libs)" ]; then
    echo "install-deps: Cyrus in $CYRUS_ROOT still lacks: $(cyrus_missing_libs | tr '\n' ' ')" >&2
    exit 1
fi

# pytest for the end-to-end tests: pip where it may install (a pyenv or venv Python), else
# Debian's package (Debian's own python3 refuses pip installs: PEP 668).
if ! command -v python3 >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3
fi
if ! python3 -c 'import pytest' 2>/dev/null; then
    python3 -m pip install -q pytest 2>/dev/null || {
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pytest
    }
fi
python3 -c 'import pytest' || { echo "install-deps: pytest is still missing for $(command -v python3)" >&2; exit 1; }

# prometheus_client: the e2e tests parse /metrics with its OpenMetrics parser.
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    python3 -m pip install -q prometheus_client 2>/dev/null || {
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-prometheus-client
    }
fi
python3 -c 'import prometheus_client' || { echo "install-deps: prometheus_client is still missing for $(command -v python3)" >&2; exit 1; }
