#!/usr/bin/env bash
# Issue 15: how ocusers' nftables ruleset grows with tenants, and how long
# `nft -f` takes to load (and to replace) it. Runs in a throwaway network
# namespace (`ip netns add`), which has its own ruleset and no real traffic:
# nothing on the host changes. Needs root, nftables and iproute2.
#
# For comparison it also loads the rules as they were before (three rules a
# tenant, reproduced here in the old format), which grow with tenants.
# Output also saved to target/bench-firewall.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nft >/dev/null || { echo "nft is missing: apt-get install nftables" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (ip netns, nft)" >&2; exit 1; }
cargo build --locked --quiet --example firewall_ruleset
gen=target/debug/examples/firewall_ruleset
dir=$(mktemp -d)
ns=ocusers-fw-bench-$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null; rm -rf "$dir"' EXIT
N() { ip netns exec "$ns" "$@"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

old_rules() { # the per-tenant rules ocusers generated before issue 15
    echo "table inet ocusers"; echo "delete table inet ocusers"
    echo "table inet ocusers {"; echo "	chain output {"
    echo "		type filter hook output priority filter; policy accept;"
    for i in $(seq 0 $(($1 - 1))); do
        a=$((20000 + 128 * i)); b=$((a + 127)); u=$((2000 + i))
        echo "		tcp dport $a-$b meta skuid != { 0, $u } counter reject with tcp reset comment \"t$i connect $a-$b from 0,$u\""
        echo "		udp dport $a-$b meta skuid != { 0, $u } counter reject comment \"t$i connect $a-$b from 0,$u\""
        echo "		meta l4proto { tcp, udp } th sport $a-$b meta skuid != { 0, $u } counter drop comment \"t$i answer $a-$b from 0,$u\""
    done
    echo "	}"; echo "}"
}

# Rules as the kernel lists them: lines of the chains, not set elements.
count_rules() { awk '/^\tchain /{c=1; next} /^\t}/{c=0} c && !/type filter/ {n++} END {print n+0}'; }

run() { # NAME FILE
    local name=$1 file=$2 t first reload listed elems
    N nft delete table inet ocusers 2>/dev/null || true
    t=$(date +%s%N); N nft -f "$file"; first=$(ms "$t")
    local times=()
    for _ in 1 2 3 4 5; do t=$(date +%s%N); N nft -f "$file"; times+=("$(ms "$t")"); done
    reload=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
    listed=$(N nft list table inet ocusers)
    elems=$( { grep -o 'comment "t[0-9]* \(uid\|block\|own\)' <<<"$listed" || true; } | wc -l)
    printf '%-5s %8s %7s %6s %9s %9s %10s\n' "$name" "$3" "$(wc -c <"$file")" \
        "$(count_rules <<<"$listed")" "$elems" "$first" "$reload"
}

{
    echo "nft: $(nft --version); kernel $(uname -r); $(date -u +%FT%TZ)"
    printf '%-5s %8s %7s %6s %9s %9s %10s\n' rules tenants bytes chain set-elems "load-ms" "reload-ms"
    for n in 0 3 50 200; do
        "$gen" "$n" >"$dir/new-$n.nft"
        run new "$dir/new-$n.nft" "$n"
    done
    for n in 3 50 200; do
        old_rules "$n" >"$dir/old-$n.nft"
        run old "$dir/old-$n.nft" "$n"
    done
    echo "(new: sets and fixed chains; old: three rules a tenant. reload-ms: median of 5 replacing loads)"
} 2>&1 | tee target/bench-firewall.txt
