#!/usr/bin/env bash
# Warm starts (issue 18): a tenant's gateway from stopped to ready with its
# compile cache (/var/cache/openclaw/NAME, the unit's CacheDirectory=)
# emptied first, and with the cache the previous start left, N times each,
# alternating so load drifts hit both alike. Run as root on a host (or the
# system tier's container) where `ocusers add NAME` made a ready tenant on
# the real gateway:
#   sudo bench/warm_start.sh alice [N=3]
# Prints every start, then the line the system tier's warm_start_faster
# prints: restart to ready: cold X s, warm Y s (Y/X = r), X and Y medians.
# Also: the seconds from exec to the gateway's first log line (module
# loading) and from there to `ready`, from the journal of each start.
set -euo pipefail
name=${1:?usage: warm_start.sh TENANT [N]}
n=${2:-3}
unit="openclaw@$name.service"
cache="/var/cache/openclaw/$name"
port=$(sed -n 's/^OCUSERS_PORT=//p' "/etc/ocusers/tenants/$name.env")
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; }
one() { # $1: cold|warm; prints seconds to ready
    systemctl stop "$unit"
    [ "$1" = cold ] && find "$cache" -mindepth 1 -delete
    local since t0 t1
    since=$(date '+%Y-%m-%d %H:%M:%S')
    t0=$(date +%s%N)
    systemctl start "$unit"
    for _ in $(seq 1200); do ready && break; sleep 0.25; done
    ready || { echo "$name not ready" >&2; exit 1; }
    t1=$(date +%s%N)
    # exec -> first gateway line -> ready, from the journal's timestamps.
    local j
    j=$(journalctl -u "$unit" --since "$since" -o short-unix --no-pager 2>/dev/null \
        | awk -v t0="$t0" '
            / Started / && !s { s=$1 } /\[gateway\]/ && !g { g=$1 } /\[gateway\] ready/ && !r { r=$1 }
            END { if (s && g && r) printf "exec->first log %.1f s, ->ready %.1f s", g-s, r-g }')
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b-a)/1e9 }')
    printf '%s start: %5s s  %s\n' "$1" "$secs" "$j" >&2
    echo "$secs"
}
median() { sort -n | awk '{a[NR]=$1} END { printf "%.1f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }'; }
colds=() warms=()
for _ in $(seq "$n"); do
    colds+=("$(one cold)")
    warms+=("$(one warm)")
done
# No respawn: the unit's main process itself listens on the port (a launcher
# that respawned itself for its compile cache would wait on a child that does).
main=$(systemctl show -P MainPID "$unit")
listeners=$(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | sort -u | tr '\n' ' ')
c=$(printf '%s\n' "${colds[@]}" | median)
w=$(printf '%s\n' "${warms[@]}" | median)
echo "cold: ${colds[*]}"
echo "warm: ${warms[*]}"
echo "restart to ready: cold $c s, warm $w s (Y/X = $(awk -v c="$c" -v w="$w" 'BEGIN { printf "%.2f", w/c }'))"
echo "main process $main; listening on $port: ${listeners:-nothing} (the main process alone: no respawn)"
