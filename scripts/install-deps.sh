#!/usr/bin/env bash
# Installs what mailgate's tests and demo need on Debian: Dovecot (with its package
# services kept from starting), openssl, curl, chromium (status page test), prometheus
# (promtool checks deploy/prometheus/alerts.yaml), and Python's pytest and
# prometheus_client (parses /metrics). Idempotent.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
for pkg in dovecot-core dovecot-imapd dovecot-pop3d openssl curl chromium prometheus; do
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
    fi
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
