//! `ocusers audit`: the tenant boundary, machine-checked. For each tenant the
//! files and settings that keep it apart (user, state directory, secrets
//! file, port block, token, channel credentials, log location, listeners,
//! bind and firewall rules, unit exposure), then live probes as each tenant
//! against the others (see [`probe`]), and the OS layers this host enforces.
//! Secrets are compared in memory and never printed.
//!
//! Where things go: a check of one tenant's files or settings in
//! `checks.rs`, a check between two tenants in `pairs.rs`, a probe that
//! runs as a tenant in `probe.rs`, one concern's reader (Caddy, OpenClaw's
//! config, the inspector, listeners) in its own file.
mod caddy;
mod checks;
mod inspector;
mod local;
mod openclaw;
mod pairs;
pub mod probe;
mod state;

pub use checks::exposure;

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::config::HostConfig;
use crate::firewall;
use crate::identity;
use crate::isolation::{self, Layer};
use crate::paths::{self, Paths};
use crate::ports;
use crate::secrets::{EnvFile, SETTINGS_KEYS};
use crate::systemd::Systemd;
use crate::tenant::{Record, TenantName};

/// `systemd-analyze security` exposure above this fails the audit.
pub const MAX_EXPOSURE: f64 = 2.0;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No failures.
    pub ok: bool,
    pub layers: Vec<Layer>,
    pub tenants: Vec<TenantAudit>,
    pub probes: Vec<ProbeResult>,
    /// One line each, naming the tenant, the cause and the fix.
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantAudit {
    pub name: String,
    pub user: String,
    pub uid: Option<u32>,
    pub ports: [u16; 2],
    pub state_dir: PathBuf,
    pub secrets_file: PathBuf,
    pub logs: Option<String>,
    pub exposure: Option<f64>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub from: String,
    pub to: String,
    pub probe: &'static str,
    pub target: String,
    /// `denied`, `contained` (bind allowed but the firewall drops every answer
    /// from it), `allowed`, `not_run` or `error`.
    pub result: &'static str,
    pub ok: bool,
    pub detail: String,
}

struct Tenant {
    record: Record,
    account: Option<identity::Account>,
    env: Option<EnvFile>,
    main_pid: u32,
    cgroup: Option<PathBuf>,
}

/// Audit `only` (or every tenant) against all tenants.
pub fn run(
    paths: &Paths,
    cfg: &HostConfig,
    sd: &dyn Systemd,
    records: &[Record],
    only: Option<&TenantName>,
    openclaw_audit: bool,
) -> Result<Report> {
    let layers = isolation::layers(cfg);
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for l in &layers {
        match (l.name, l.active) {
            (_, true) => {}
            ("bind", false) => warnings.push(format!("bind layer inactive: {}", l.detail)),
            (name, false) => failures.push(format!("{name} layer inactive: {}", l.detail)),
        }
    }
    failures.extend(caddy::admin_failure(cfg));
    let loaded = firewall::usable(cfg)
        .ok()
        .and_then(|()| firewall::loaded_table());
    let listeners = ports::listener_owners(paths.root());

    let mut tenants = Vec::new();
    for r in records {
        let account = identity::lookup(&paths::user_name(&r.name));
        let env = EnvFile::load(&paths.secrets_file(&r.name)).ok().flatten();
        let unit = sd.unit(&paths::unit_name(&r.name)).ok();
        let main_pid = unit.as_ref().map_or(0, |u| u.main_pid);
        let cgroup = unit
            .as_ref()
            .filter(|u| u.is_active() && !u.control_group.is_empty())
            .and_then(|u| crate::cgroup::existing_dir(&u.control_group));
        tenants.push(Tenant {
            record: r.clone(),
            account,
            env,
            main_pid,
            cgroup,
        });
    }

    let mut audits = Vec::new();
    for t in tenants
        .iter()
        .filter(|t| only.is_none_or(|n| *n == t.record.name))
    {
        let mut a =
            checks::audit_tenant(paths, cfg, sd, t, &tenants, loaded.as_deref(), &listeners);
        a.checks.push(inspector::check(paths, t, &listeners));
        // OpenClaw's own audit needs the gateway's namespace: running tenants.
        if openclaw_audit && t.main_pid != 0 {
            match openclaw::check(paths, &t.record.name) {
                Ok(c) => a.checks.push(c),
                Err(w) => warnings.push(w),
            }
        }
        warnings.extend(state::warning(paths, t));
        for c in a.checks.iter().filter(|c| !c.ok) {
            failures.push(format!("{}: {}: {}", a.name, c.check, c.detail));
        }
        audits.push(a);
    }

    // Against the host itself: root's bait listeners, the metadata
    // addresses (only where ocusers' table would refuse them on this host,
    // so no probe leaves it), other tenants' listeners outside their blocks.
    let bait = local::Bait::open(loaded.is_some(), &cfg.isolation.allow_local());
    // Each tenant's probes in a thread of their own: every probe is a
    // process of its own that may wait up to 2 s for a refusal, and no
    // probe of one tenant depends on another's. The report keeps its
    // order: every pair probe, then every probe of the host, by tenant.
    let per_tenant: Vec<(Vec<ProbeResult>, Vec<ProbeResult>)> = std::thread::scope(|s| {
        let handles: Vec<_> = tenants
            .iter()
            .filter(|t| only.is_none_or(|n| *n == t.record.name))
            .map(|from| {
                let (tenants, loaded, listeners, bait) =
                    (&tenants, loaded.as_deref(), &listeners, &bait);
                s.spawn(move || {
                    let mut pair = Vec::new();
                    for to in tenants.iter().filter(|t| t.record.name != from.record.name) {
                        pair.extend(pairs::probe_pair(paths, from, to, loaded, listeners));
                    }
                    (pair, local::probe_host(from, tenants, bait, listeners))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a thread of the audit's probes panicked"))
            })
            .collect::<Result<_>>()
    })?;
    drop(bait);
    let (pair, host): (Vec<_>, Vec<_>) = per_tenant.into_iter().unzip();
    let probes: Vec<ProbeResult> = pair.into_iter().chain(host).flatten().collect();
    for p in &probes {
        if !p.ok {
            failures.push(format!(
                "{} could {} {} of {} ({}): {}",
                p.from,
                verb(p.probe),
                p.target,
                p.to,
                p.result,
                p.detail
            ));
        } else if p.result == "contained" || p.result == "not_run" {
            warnings.push(format!(
                "{} -> {} {}: {}: {}",
                p.from, p.to, p.probe, p.result, p.detail
            ));
        }
    }
    Ok(Report {
        ok: failures.is_empty(),
        layers,
        tenants: audits,
        probes,
        failures,
        warnings,
    })
}

fn verb(probe: &str) -> &'static str {
    match probe {
        "read-state" | "read-secrets" | "read-environ" => "read",
        "signal" => "signal",
        "bind" => "bind",
        _ => "connect to",
    }
}
