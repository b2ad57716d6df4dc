# Sourced by scripts/install-deps.sh and scripts/bench-peers.sh.
#
# apt_install_missing PKG...: installs those of the Debian packages that are not installed,
# with their package services kept from starting (a policy-rc.d that refuses every start,
# removed again if this created it). Sets SUDO when not root. Prints what it installs to
# stderr, and sets APT_INSTALLED=1 when it installed something (0 otherwise).
SUDO="${SUDO-}"
if [ -z "$SUDO" ] && [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_install_missing() {
    local pkg missing=()
    APT_INSTALLED=0
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    printf 'installing %s (services kept from starting)\n' "${missing[*]}" >&2
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        created_policy=1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
    APT_INSTALLED=1
}
