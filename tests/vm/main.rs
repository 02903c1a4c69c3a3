//! VM test tier: a qemu guest with a real kernel and cgroup v2 (see guest.rs), where resource
//! limits, systemd's socket-bind filter and ocusers' nftables rules are enforced. The gateway is
//! the stub (tests/support/stub_runtime.rs): the real one cannot become ready under TCG (its
//! 5 s startup heartbeat), and every check here is about the kernel and systemd, not the gateway.
//! Needs root and qemu; fails, never skips, when they are missing.
//!
//! The trials share one guest and run in order; later ones use the tenants the first one adds.

#[path = "../system/container.rs"]
mod container;
mod guest;
mod isolation;
#[path = "../support/stub_runtime.rs"]
mod stub_runtime;
#[path = "../support/trials.rs"]
mod trials;

use std::sync::Arc;
use std::time::Instant;

use isolation::Fixture;
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(&Fixture) -> Result<(), String>;

const TRIALS: &[(&str, Check)] = &[
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

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let selection = trials::Selection::new(&args);
    let wanted = !args.list && TRIALS.iter().any(|(n, _)| selection.selected(n));
    let fixture: Result<Arc<Fixture>, String> = if wanted {
        let t = Instant::now();
        let fx = Fixture::boot().map(Arc::new);
        eprintln!(
            "[setup] guest image, .deb, stub and boot in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        fx
    } else {
        Err("not booted".into())
    };
    let trials = TRIALS
        .iter()
        .map(|&(name, check)| {
            let fx = fixture.clone();
            let ignored = !selection.in_list(name);
            Trial::test(name, move || match &fx {
                Ok(fx) => trials::timed(name, || check(fx)).map_err(Failed::from),
                Err(e) => Err(Failed::from(format!("VM tier setup failed: {e}"))),
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(fx) = fixture {
        eprintln!("\n[figures]");
        for (k, v) in fx.figures.lock().unwrap().iter() {
            eprintln!("  {k}: {v}");
        }
        match Arc::try_unwrap(fx) {
            Ok(fx) => drop(fx),
            Err(_) => eprintln!("[teardown] fixture still shared; qemu dies with this process"),
        }
    }
    conclusion.exit();
}
