#!/usr/bin/env bash
# Installs what mailgate's tests and demo need on Debian: Dovecot (with its package
# services kept from starting), Cyrus IMAP (unpacked into $CYRUS_ROOT, see below), openssl,
# curl, chromium (status page test), dnsmasq-base (a DNS server the backend DNS test runs
# on loopback; no service), haproxy (in front of mailgate in the PROXY v1/v2 e2e test; its
# service is disabled), prometheus (promtool checks
# deploy/prometheus/alerts.yaml), and Python's pytest and prometheus_client (parses
# /metrics); for building: a C compiler (gcc), the Rust toolchain pinned in
# rust-toolchain.toml (via rustup; without rustup it says so and stops), cargo-deb (make
# deb), systemd's tools (systemd-analyze, systemd-sysusers: unit and package tests) and
# kubernetes-validate (deploy/kubernetes schema check). Idempotent.
set -euo pipefail

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"

apt_install_missing dovecot-core dovecot-imapd dovecot-pop3d openssl curl chromium prometheus \
    dnsmasq-base haproxy gcc libc6-dev systemd
if [ "$APT_INSTALLED" -eq 1 ]; then
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

# kubernetes-validate: tests/e2e/test_kubernetes.py validates deploy/kubernetes against the
# Kubernetes API schemas the package carries (offline); it brings PyYAML and jsonschema.
# Not packaged by Debian: pip, and on Debian's own python3 (PEP 668) pip past the guard.
if ! python3 -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null; then
    python3 -m pip install -q kubernetes-validate 2>/dev/null || {
        python3 -m pip --version >/dev/null 2>&1 || {
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip
        }
        python3 -m pip install -q --break-system-packages kubernetes-validate
    }
fi
python3 -c 'import kubernetes_validate, yaml, jsonschema' || { echo "install-deps: kubernetes-validate is still missing for $(command -v python3)" >&2; exit 1; }

# The Rust toolchain of rust-toolchain.toml (README: prerequisites). rustup installs it
# when missing; without rustup, a cargo of exactly that version will do.
toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")"
if command -v rustup >/dev/null 2>&1; then
    rustup toolchain list | grep -q "^$toolchain-" \
        || rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy
elif ! cargo --version 2>/dev/null | grep -q "^cargo $toolchain "; then
    echo "install-deps: Rust $toolchain is needed (rust-toolchain.toml) and rustup is missing:" \
         "install rustup (https://rustup.rs) or Rust $toolchain itself, then run this again" >&2
    exit 1
fi
command -v cc >/dev/null 2>&1 || { echo "install-deps: no C compiler (cc): install gcc" >&2; exit 1; }

# cargo-deb for make deb; built from crates.io once (a few minutes), then kept in ~/.cargo/bin.
if ! (cd "$(dirname "$0")/.." && cargo deb --version 2>/dev/null) | grep -q "^cargo-deb 3\."; then
    (cd "$(dirname "$0")/.." && cargo install -q cargo-deb --locked --version "^3.8")
fi
