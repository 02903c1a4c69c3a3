//! VM test tier: a qemu guest with a real kernel and cgroup v2 (see tests/support/vm/), where
//! resource limits, systemd's socket-bind filter and ocusers' nftables rules are enforced. The gateway is
//! the stub (tests/support/stub_runtime.rs): the real one cannot become ready under TCG (its
//! 5 s startup heartbeat), and every check here is about the kernel and systemd, not the gateway.
//! Needs root and qemu; fails, never skips, when they are missing.
//!
//! The trials share one guest and run in order; later ones use the tenants the first one adds.

mod isolation;
#[path = "../support/mod.rs"]
mod support;

use isolation::Fixture;
use support::trials::{self, Check, Tier};

const TRIALS: &[(&str, Check<Fixture>)] = &[
    (
        "install_and_add_tenants",
        isolation::install_and_add_tenants,
    ),
    ("apply_reloads_once", isolation::apply_reloads_once),
    ("layers_enforced_here", isolation::layers_enforced_here),
    (
        "status_reads_cgroup_like_systemd",
        isolation::status_reads_cgroup_like_systemd,
    ),
    (
        "memory_hog_killed_at_limit",
        isolation::memory_hog_killed_at_limit,
    ),
    (
        "fork_bomb_stops_at_tasks_max",
        isolation::fork_bomb_stops_at_tasks_max,
    ),
    (
        "busy_loop_held_to_cpu_quota",
        isolation::busy_loop_held_to_cpu_quota,
    ),
    ("bind_only_own_ports", isolation::bind_only_own_ports),
    ("connect_only_own_ports", isolation::connect_only_own_ports),
    ("loopback_default_deny", isolation::loopback_default_deny),
    (
        "invite_and_ask_sockets_closed",
        isolation::invite_and_ask_sockets_closed,
    ),
    ("squatter_never_answers", isolation::squatter_never_answers),
    (
        "firewall_reloaded_by_unit",
        isolation::firewall_reloaded_by_unit,
    ),
    ("audit_passes_clean", isolation::audit_passes_clean),
    ("audit_names_each_fault", isolation::audit_names_each_fault),
    ("exposure_score", isolation::exposure_score),
    ("remove_drops_rules", isolation::remove_drops_rules),
];

const TIER: Tier = Tier {
    name: "VM tier",
    setup: "guest image, .deb, stub and boot",
    leftover: "qemu dies with this process",
};

fn main() {
    trials::run(&TIER, TRIALS, Fixture::boot)
}
