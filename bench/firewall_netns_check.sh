#!/usr/bin/env bash
# Issue 15: the default-deny rules checked on this host's own kernel and nft,
# without the VM tier: tests/golden/firewall.nft (three tenants: alice uid 998
# 20000-20127, bob uid 997 20128-20255, carol uid 996; allow-list
# 127.0.0.1:11434 and tcp/[::1]:8080; resolver 127.0.0.53) is loaded into a
# throwaway network namespace with extra host addresses on its loopback, root
# and tenant listeners are started there (tenants are bare uids: setpriv, no
# systemd), and each case is tried as alice, as nobody and as root. Then the
# same again with loopback exempted from conntrack (notrack), as some hosts'
# own rules do. Nothing outside the namespace changes. Root, nft, perl.
# Exit 1 if any case differs. (The VM tier does this for real tenants in
# their units: tests/vm/isolation.rs, loopback_default_deny.)
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
ns=ocusers-fw-check-$$
dir=$(mktemp -d); chmod 755 "$dir"
ip netns add "$ns"
# `ip netns exec` forks: the listeners are found by namespace, not by $!.
cleanup() { ip netns pids "$ns" | xargs -r kill 2>/dev/null; ip netns del "$ns"; rm -rf "$dir"; }
trap cleanup EXIT
N() { ip netns exec "$ns" "$@"; }
N ip link set lo up
N ip addr add 192.0.2.1/32 dev lo; N ip addr add 169.254.169.254/32 dev lo
N ip -6 addr add 2001:db8::1/128 dev lo nodad
N nft -f tests/golden/firewall.nft || exit 1

cat >"$dir/probe.pl" <<'PL'
use strict; use IO::Socket::IP;
my ($proto, $host, $port) = @ARGV;
$SIG{ALRM} = sub { print "timeout\n"; exit 0 }; alarm 3;
my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Proto => $proto)
    or do { print $! =~ /refused/i ? "refused\n" : "error:$!\n"; exit 0 };
if ($proto eq "tcp") { print "connected\n"; exit 0 }
defined $s->send("ping") or do { print $! =~ /not permitted|refused/i ? "refused\n" : "error:$!\n"; exit 0 };
my $buf; defined $s->recv($buf, 100) or do { print $! =~ /refused/i ? "refused\n" : "error:$!\n"; exit 0 };
print "answered\n";
PL
cat >"$dir/listen.pl" <<'PL'
use strict; use IO::Socket::IP;
my ($proto, $host, $port) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $host, LocalPort => $port, Proto => $proto, ReuseAddr => 1,
    ($proto eq "tcp" ? (Listen => 16) : ())) or die "listen $host $port: $!\n";
if ($proto eq "tcp") { while (my $c = $s->accept) { close $c } }
else { while (1) { my $buf; my $peer = $s->recv($buf, 100); $s->send($buf, 0, $peer) if defined $peer } }
PL
chmod 644 "$dir"/*.pl
L() { local uid=$1; shift; N setpriv --reuid "$uid" --regid "$uid" --clear-groups perl "$dir/listen.pl" "$@" & }
for h in 127.0.0.1 ::1 192.0.2.1 2001:db8::1; do L 0 tcp $h 5000; done
for h in 127.0.0.1 ::1; do L 0 tcp $h 2019; L 0 udp $h 5353; done
L 0 tcp 127.0.0.1 11434; L 0 udp 127.0.0.1 11434; L 0 tcp ::1 8080; L 0 udp ::1 8080
L 0 tcp 169.254.169.254 80
L 997 tcp :: 20128; L 997 tcp :: 3000           # bob: gateway, and outside his block
L 998 tcp :: 20005; L 998 udp 127.0.0.1 20006   # alice: her own block
sleep 1

fail=0
check() { # UID PROTO HOST PORT WANT
    local got; got=$(N setpriv --reuid "$1" --regid "$1" --clear-groups perl "$dir/probe.pl" "$2" "$3" "$4")
    local mark=ok; [ "$got" = "$5" ] || { mark=FAIL; fail=1; }
    printf '  %-4s uid %-5s %s %-16s %-5s %-9s (want %s)\n' "$mark" "$1" "$2" "$3" "$4" "$got" "$5"
}
cases() {
    # alice (998): refused
    for h in 127.0.0.1 ::1; do
        check 998 tcp $h 20128 refused; check 998 tcp $h 3000 refused
        check 998 tcp $h 5000 refused; check 998 tcp $h 2019 refused; check 998 udp $h 5353 refused
    done
    check 998 tcp 192.0.2.1 5000 refused; check 998 tcp 2001:db8::1 5000 refused
    check 998 tcp ::ffff:127.0.0.1 5000 refused; check 998 tcp 0.0.0.0 5000 refused
    check 998 tcp 169.254.169.254 80 refused
    check 998 udp ::1 8080 refused                 # tcp/[::1]:8080 opens TCP only
    # alice: allowed
    check 998 tcp 127.0.0.1 20005 connected; check 998 tcp ::1 20005 connected
    check 998 tcp 192.0.2.1 20005 connected; check 998 udp 127.0.0.1 20006 answered
    check 998 tcp 127.0.0.1 11434 connected; check 998 udp 127.0.0.1 11434 answered
    check 998 tcp ::1 8080 connected
    # nobody: not a tenant, so not default-denied, but no tenant's block
    check 65534 tcp 127.0.0.1 20128 refused; check 65534 tcp ::1 20005 refused
    check 65534 tcp 127.0.0.1 5000 connected; check 65534 tcp 127.0.0.1 3000 connected
    # root: everything, and the tenants' listeners answer it
    check 0 tcp 127.0.0.1 20128 connected; check 0 tcp ::1 20005 connected
    check 0 udp 127.0.0.1 20006 answered; check 0 tcp 127.0.0.1 3000 connected
    check 0 tcp 169.254.169.254 80 connected
}
echo "conntrack on loopback (nft $(nft --version | awk '{print $2}'), kernel $(uname -r)):"; cases
N nft -f - <<'NFT'
table inet ocusers_check_notrack {
	chain out { type filter hook output priority raw; oif lo notrack; }
	chain pre { type filter hook prerouting priority raw; iif lo notrack; }
}
NFT
echo "loopback exempted from conntrack (notrack):"; cases
[ "$fail" = 0 ] && echo "all cases as expected" || echo "SOME CASES FAILED"
exit "$fail"
