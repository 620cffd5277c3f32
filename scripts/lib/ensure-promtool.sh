# Sourced: makes sure `promtool` is on PATH, installing Debian's `prometheus`
# package (which ships it) when it is missing. The package comes with a
# service; it must not start, and nothing may be left running: while
# installing, a policy-rc.d that forbids every start is put in place when the
# host has none, and a service started anyway is stopped and disabled.

ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || {
        echo "promtool missing and no apt-get: install Prometheus' promtool" >&2
        return 1
    }
    local sudo_cmd="" policy=/usr/sbin/policy-rc.d made_policy=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    if [ ! -e "$policy" ]; then
        # 101: "action forbidden by policy" for invoke-rc.d/deb-systemd-invoke.
        printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
        $sudo_cmd chmod +x "$policy"
        made_policy=1
    fi
    echo "ensure-promtool: installing Debian's prometheus package for promtool" >&2
    local ok=0
    $sudo_cmd apt-get update -qq >&2 \
        && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
            --no-install-recommends prometheus >&2 \
        || ok=1
    [ -n "$made_policy" ] && $sudo_cmd rm -f "$policy"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $sudo_cmd systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        $sudo_cmd service prometheus stop >/dev/null 2>&1 || true
    fi
    [ "$ok" -eq 0 ] && command -v promtool >/dev/null 2>&1
}
