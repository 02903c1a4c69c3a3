#!/usr/bin/env bash
# Where a gateway start's seconds go (issue 18): N restarts of a tenant's
# gateway (warm compile cache, as every start after the first), each with
# OpenClaw's own phase trace (OPENCLAW_GATEWAY_STARTUP_TRACE=1, the
# package's documented profiling switch) in a runtime drop-in under /run
# that this script removes again. Run as root on a host (or the system
# tier's container) with a ready tenant on the real gateway:
#   sudo bench/startup_anatomy.sh alice [N=2]
# Prints, per start: start-to-ready (/readyz 200), and from the journal's
# timestamps exec -> first gateway log line (module loading before the
# gateway logs anything; the trace's own first line comes earlier and is
# left out) -> `http server listening` -> `ready`; the plugins the gateway
# loaded; the slowest trace phases (nested ones overlap: do not add them);
# the npm processes that ran by 5 s after ready, with their argv (npm writes
# one debug log per run under the tenant's ~/.npm/_logs, read as the tenant
# through `ocusers exec`, never by root in its state).
set -euo pipefail
name=${1:?usage: startup_anatomy.sh TENANT [N]}
n=${2:-2}
unit="openclaw@$name.service"
port=$(sed -n 's/^OCUSERS_PORT=//p' "/etc/ocusers/tenants/$name.env")
dropin="/run/systemd/system/$unit.d"
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; }
cleanup() { rm -rf "$dropin"; systemctl daemon-reload; }
trap cleanup EXIT
mkdir -p "$dropin"
printf '[Service]\nEnvironment=OPENCLAW_GATEWAY_STARTUP_TRACE=1\n' >"$dropin/50-startup-anatomy.conf"
systemctl daemon-reload
npm_logs() { ocusers exec "$name" -- sh -c 'ls "$HOME/.npm/_logs" 2>/dev/null | wc -l'; }
for i in $(seq "$n"); do
    before=$(npm_logs)
    since=$(date '+%Y-%m-%d %H:%M:%S')
    t0=$(date +%s%N)
    systemctl restart "$unit"
    for _ in $(seq 1200); do ready && break; sleep 0.1; done
    ready || { echo "$name not ready" >&2; exit 1; }
    t1=$(date +%s%N)
    sleep 5
    after=$(npm_logs)
    journal=$(journalctl -u "$unit" --since "$since" -o short-unix --no-pager)
    echo "== start $i of $name: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b-a)/1e9 }') s to /readyz 200"
    awk '
        / Started / && !s { s=$1 }
        s && $1 >= s && / node\[/ && !/startup trace:/ && !g { g=$1 }
        /http server listening/ && !h { h=$1 }
        /\[gateway\] ready/ && !r { r=$1 }
        END { if (s && g && h && r) printf "   exec -> first log line %.1f s -> http listening %.1f s -> ready %.1f s (exec -> ready %.1f s)\n", g-s, h-g, r-h, r-s }
    ' <<<"$journal"
    grep -m1 -o 'http server listening (.*' <<<"$journal" | sed 's/^/   /' || true
    echo "   npm runs by 5 s after ready (new logs under ~/.npm/_logs): $((after - before))"
    grep -o 'startup trace: [^ ]* [0-9.]*ms total=[0-9.]*ms' <<<"$journal" |
        awk '{ sub("ms","",$4); print $4, $3, $5 }' | sort -rn |
        awk 'NR <= 12 { printf "   %8.1f ms  %-40s %s\n", $1, $2, $3 }' || true
done
echo "npm commands the tenant's gateway ran (newest 5 debug logs):"
ocusers exec "$name" -- sh -c 'ls -t "$HOME"/.npm/_logs/*.log 2>/dev/null | sed 5q | while read -r f; do echo "$f"; grep -m1 -h " argv " "$f"; grep -m1 -h "timing npm Completed" "$f"; done' || true
