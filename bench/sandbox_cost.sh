#!/usr/bin/env bash
# What one sandboxed transient unit costs to start, directive by directive
# (issue 14: the tenant-side backup packer and `ocusers exec` start one per
# call). Run as root on a host (or container) with systemd; makes a system
# user `ocbench` if missing. Prints the best of 3 wall times of
# `systemd-run --wait --pipe -p User=ocbench [-p DIRECTIVE] true` for no
# directive, each directive alone, and all of them together.
set -euo pipefail
id ocbench >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin ocbench
best() {
    local b=999
    for _ in 1 2 3; do
        local s e d
        s=$(date +%s%N)
        systemd-run --quiet --wait --collect --pipe --service-type=exec -p User=ocbench "$@" true
        e=$(date +%s%N)
        d=$(( (e - s) / 1000000 ))
        (( d < b )) && b=$d
    done
    echo "$b"
}
all=(ProtectSystem=strict PrivateTmp=yes PrivateDevices=yes ProtectHome=yes
     ProtectProc=invisible ProcSubset=pid ProtectKernelTunables=yes ProtectControlGroups=yes
     ProtectKernelModules=yes ProtectKernelLogs=yes PrivateIPC=yes
     SystemCallFilter=@system-service NoNewPrivileges=yes CapabilityBoundingSet=
     "TemporaryFileSystem=/dev/shm:mode=1777,size=256M")
printf '%6s ms  %s\n' "$(best)" "(no directive)"
for d in "${all[@]}"; do
    printf '%6s ms  %s\n' "$(best -p "$d")" "$d"
done
args=()
for d in "${all[@]}"; do args+=(-p "$d"); done
printf '%6s ms  %s\n' "$(best "${args[@]}")" "(all of the above)"
