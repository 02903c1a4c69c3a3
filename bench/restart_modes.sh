#!/usr/bin/env bash
# How a tenant's gateway comes back from its own restart signal (SIGUSR2),
# two ways, side by side: under the template (the gateway exits and
# systemd's Restart=always starts a new process) and with the gateway's
# in-process restart (OPENCLAW_NO_RESPAWN=1, set by a runtime drop-in that
# is removed again). Run as root on a host (or the system tier's container)
# where `ocusers add NAME` made a ready tenant on the real gateway:
#   sudo bench/restart_modes.sh alice
# Prints, for each way: seconds until /readyz went down and was 200 again,
# and whether the main process is the same. (The system tier measured this
# in hostile_config_restart_comes_back until stop 15; it is a figure, not a
# check, so it lives here.)
set -euo pipefail
name=${1:?usage: restart_modes.sh TENANT}
unit="openclaw@$name.service"
port=$(sed -n 's/^OCUSERS_PORT=//p' "/etc/ocusers/tenants/$name.env")
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; }
wait_ready() { for _ in $(seq 600); do ready && return 0; sleep 0.25; done; echo "$name not ready" >&2; exit 1; }
measure() {
    local pid t0 down="" back=""
    pid=$(systemctl show -P MainPID "$unit")
    t0=$(date +%s%N)
    kill -USR2 "$pid"
    while :; do
        local now=$(( ($(date +%s%N) - t0) / 1000000 ))
        if ! ready; then [ -z "$down" ] && down=$now; elif [ -n "$down" ]; then back=$now; break; fi
        if [ -z "$down" ] && [ "$now" -gt 45000 ]; then break; fi
        [ "$now" -gt 120000 ] && break
        sleep 0.25
    done
    local same=new; [ "$(systemctl show -P MainPID "$unit")" = "$pid" ] && same=same
    printf '%-34s down after %6s ms, ready again %6s ms after the signal, %s process\n' "$1" "${down:--}" "${back:--}" "$same"
}
dropin="/run/systemd/system/$unit.d"
trap 'rm -rf "$dropin"; systemctl daemon-reload; systemctl restart "$unit"' EXIT
wait_ready
measure "Restart=always (the template):"
wait_ready
mkdir -p "$dropin"
printf '[Service]\nEnvironment=OPENCLAW_NO_RESPAWN=1\n' > "$dropin/zz-no-respawn.conf"
systemctl daemon-reload && systemctl restart "$unit"
wait_ready
measure "OPENCLAW_NO_RESPAWN=1 (in-process):"
