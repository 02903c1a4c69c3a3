//! System test tier: a real systemd in a systemd-nspawn Debian 12 container
//! (see tests/support/nspawn.rs), the .deb installed with apt, the real OpenClaw
//! gateway from the npm registry (see tenants.rs). Needs root; fails, never
//! skips, when a prerequisite is missing.
//!
//! The trials share one container and run in order, one at a time: later
//! ones build on the tenants the earlier ones made.

mod browser;
mod day2;
mod hostile_archive;
mod hostile_fs;
mod hostile_proc;
mod invite;
mod isolation;
mod lean;
mod many;
mod onboarding;
mod onetenant;
mod origins;
mod proxy;
mod scripted;
mod sleep;
mod storm;
#[path = "../support/mod.rs"]
mod support;
mod tenants;

use support::trials::{self, Check, Tier};
use tenants::Fixture;

const TRIALS: &[(&str, Check<Fixture>)] = &[
    ("deb_installs_with_apt", tenants::deb_installs_with_apt),
    ("deb_lintian_clean", tenants::deb_lintian_clean),
    (
        "add_without_runtime_says_how",
        tenants::add_without_runtime_says_how,
    ),
    ("runtime_install", tenants::runtime_install),
    ("add_three_tenants", tenants::add_three_tenants),
    ("units_active_and_ready", tenants::units_active_and_ready),
    // A lean tier's tenant against a default one (bob), issue 18; the lean
    // tenant is removed again (later trials count tenants).
    ("lean_light_tenant", lean::lean_light_tenant),
    ("client_token_auth", tenants::client_token_auth),
    ("ports_spaced", tenants::ports_spaced),
    ("state_and_secrets_modes", tenants::state_and_secrets_modes),
    (
        "cross_tenant_reads_denied",
        tenants::cross_tenant_reads_denied,
    ),
    ("private_tmp", tenants::private_tmp),
    ("exposure_score", tenants::exposure_score),
    (
        "status_json_matches_systemd",
        tenants::status_json_matches_systemd,
    ),
    (
        "second_add_changes_nothing",
        tenants::second_add_changes_nothing,
    ),
    ("dry_run_changes_nothing", tenants::dry_run_changes_nothing),
    (
        "journal_and_no_secret_leaks",
        tenants::journal_and_no_secret_leaks,
    ),
    ("stop_and_start", tenants::stop_and_start),
    ("kill9_restarts", tenants::kill9_restarts),
    ("gateway_start_to_ready", tenants::gateway_start_to_ready),
    ("warm_start_faster", tenants::warm_start_faster),
    (
        "ten_start_a_few_at_a_time",
        storm::ten_start_a_few_at_a_time,
    ),
    ("failed_add_rolls_back", tenants::failed_add_rolls_back),
    ("remove_bob", tenants::remove_bob),
    // The process boundary as the tenant attacks it (issue 15); alice and
    // bob-smith.
    (
        "hostile_sigusr1_opens_no_inspector",
        hostile_proc::sigusr1_opens_no_inspector,
    ),
    (
        "hostile_config_restart_comes_back",
        hostile_proc::config_restart_comes_back,
    ),
    ("hostile_dev_shm_private", hostile_proc::dev_shm_private),
    (
        "hostile_start_gate_not_held",
        hostile_proc::start_gate_not_held,
    ),
    (
        "hostile_forged_history_entries_ignored",
        hostile_proc::forged_history_entries_ignored,
    ),
    // Day-2 operations (issue #5); they need alice and bob-smith.
    ("secret_set_via_stdin", day2::secret_set_via_stdin),
    ("exec_as_tenant", day2::exec_as_tenant),
    ("backup_and_restore", day2::backup_and_restore),
    ("upgrade_and_rollback", day2::upgrade_and_rollback),
    ("doctor_and_repair", day2::doctor_and_repair),
    // A tenant that prepares its state for root (issue 14).
    ("hostile_tenant_state", hostile_fs::hostile_tenant_state),
    (
        "hostile_archive_and_backup",
        hostile_archive::hostile_archive_and_backup,
    ),
    // Public access through the real Caddy and nginx (issue #3).
    ("proxy_caddy_setup", proxy::proxy_caddy_setup),
    ("proxy_routes_by_name", proxy::proxy_routes_by_name),
    // Opt-in scale-to-zero through the real Caddy (issue 18); dave, removed after.
    (
        "idle_stop_sleeps_and_wakes",
        sleep::idle_stop_sleeps_and_wakes,
    ),
    ("public_origins", origins::public_origins),
    ("proxy_cli_over_wss", proxy::proxy_cli_over_wss),
    // Invite links through the real Caddy (issue 16).
    ("invite_redeem_once", invite::invite_redeem_once),
    // The Control UI in a real browser through Caddy (issue 16).
    ("browser_control_ui_chat", browser::browser_control_ui_chat),
    // README's onboarding section, as written (issue 16): a new tenant,
    // her keys, an invite, a Telegram bot paired, her agent answering.
    ("readme_onboarding", onboarding::readme_onboarding),
    (
        "proxy_add_remove_keeps_websockets",
        proxy::proxy_add_remove_keeps_websockets,
    ),
    // One-tenant changes without an apply file (issue 16): alice, Caddy set up.
    ("set_and_domain_live", onetenant::set_and_domain_live),
    (
        "proxy_invalid_config_refused",
        proxy::proxy_invalid_config_refused,
    ),
    (
        "proxy_caddy_on_demand_ask",
        proxy::proxy_caddy_on_demand_ask,
    ),
    ("proxy_nginx", proxy::proxy_nginx),
    ("isolation_on_debian12", isolation::isolation_on_debian12),
    ("capacity_guard_refuses", many::capacity_guard_refuses),
    ("metrics_match_systemd", many::metrics_match_systemd),
    (
        "apply_converges_and_prunes",
        many::apply_converges_and_prunes,
    ),
];

const TIER: Tier = Tier {
    name: "system tier",
    setup: ".deb built and container booted",
    leftover: "container left to its kill signal",
};

fn main() {
    // One container for every trial; booted only when a trial will run.
    trials::run(&TIER, TRIALS, || {
        support::deb::build().and_then(|deb| Fixture::boot(&deb))
    })
}
