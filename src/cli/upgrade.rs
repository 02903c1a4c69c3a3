//! `ocusers upgrade [--to VERSION] [--tenants A,B] [--parallel N]` and
//! `ocusers rollback`: health-gated moves between runtimes (see
//! `crate::upgrade`). Old runtimes stay installed until `runtime prune`.
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::privilege;
use crate::runtime;
use crate::systemd::DbusSystemd;
use crate::tenant::{self, Record, TenantName};
use crate::upgrade::{self, LastUpgrade, Mover};

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// OpenClaw version or npm dist-tag to move to, e.g. `latest` (installed
    /// first if needed; default: the version this release of ocusers was
    /// tested with, as for `runtime install`).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Only these tenants (comma-separated); default: all.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub tenants: Vec<String>,
    /// How many tenants to move (and so have down) at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Seconds to wait for each gateway to be ready (default: [tenants]
    /// ready_timeout from ocusers.toml).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print what would move and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Seconds to wait for each gateway to be ready.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print what would move and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn selected(paths: &Paths, names: &[String]) -> Result<Vec<Record>> {
    let all = tenant::list(paths)?;
    if names.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for raw in names {
        let name = TenantName::parse(raw)?;
        match all.iter().find(|r| r.name == name) {
            Some(r) => out.push(r.clone()),
            None => {
                return Err(crate::error::Error::UnknownTenant {
                    name: name.to_string(),
                }
                .into());
            }
        }
    }
    Ok(out)
}

pub fn run(paths: &Paths, args: UpgradeArgs) -> Result<()> {
    let tenants = selected(paths, &args.tenants)?;
    privilege::require_root("upgrade")?;
    let cfg = HostConfig::load(paths)?;
    let _lock = HostLock::acquire(paths)?;
    let previous_default = runtime::default_version(paths);
    let to = if args.dry_run {
        upgrade::planned_target(paths, args.to.as_deref())
    } else {
        match upgrade::target(paths, &cfg.runtime, args.to.as_deref(), || {
            Ok(runtime::find_npm()?)
        })? {
            runtime::InstallOutcome::Installed(v) => {
                println!("installed OpenClaw {v} beside the others");
                v
            }
            runtime::InstallOutcome::AlreadyInstalled(v) => v,
        }
    };
    let todo: Vec<Record> = tenants.into_iter().filter(|r| r.runtime != to).collect();
    let timeout = Duration::from_secs(args.timeout.unwrap_or(cfg.tenants.ready_timeout));
    let n = usize::from(args.parallel);
    if args.dry_run {
        println!(
            "plan for `ocusers upgrade` to OpenClaw {to}, {n} at a time (at most {} s each):",
            timeout.as_secs()
        );
        for (i, batch) in todo.chunks(n).enumerate() {
            let names: Vec<String> = batch
                .iter()
                .map(|r| format!("{} ({} -> {to})", r.name, r.runtime))
                .collect();
            println!("  {:>2}. {}", i + 1, names.join(", "));
        }
        super::dry_run_done();
        return Ok(());
    }
    if todo.is_empty() {
        println!("every selected tenant already runs OpenClaw {to}; nothing changed");
        return Ok(());
    }
    let sd = DbusSystemd::connect()?;
    let mover = Mover {
        paths,
        sd: &sd,
        timeout,
        back_timeout: timeout.max(Duration::from_secs(cfg.tenants.ready_timeout)),
    };
    let mut last = LastUpgrade {
        at: crate::display::now_rfc3339(),
        to: to.clone(),
        previous_default: previous_default.clone(),
        from: Default::default(),
        snapshots: Default::default(),
    };
    let total = todo.len();
    let mut done = 0;
    let snapshot_dir = paths.pre_upgrade_dir();
    for batch in todo.chunks(n) {
        // The state as it was, for the way back (see LastUpgrade::snapshots).
        for r in batch {
            let registry = std::fs::read_to_string(paths.registry_file(&r.name))?;
            let snap = crate::backup::create(
                r,
                &paths.state_dir(&r.name),
                &registry,
                None,
                &snapshot_dir,
            )?;
            last.snapshots.insert(r.name.to_string(), snap);
        }
        let (moved, failed) = mover.move_batch(batch, &to, &last.snapshots);
        for m in &moved {
            println!(
                "{}: {} -> {}, ready; down {:.1} s (restart job {:.1} s, start to ready {:.1} s)",
                m.tenant,
                m.from,
                m.to,
                m.down.as_secs_f64(),
                m.restart_job.as_secs_f64(),
                (m.down - m.restart_job).as_secs_f64()
            );
            last.from.insert(m.tenant.clone(), m.from.clone());
        }
        done += moved.len();
        if !last.from.is_empty() {
            upgrade::save_last(paths, &last)?;
        }
        if !failed.is_empty() {
            let mut lines = Vec::new();
            for f in &failed {
                let back = match &f.restored {
                    Ok(how) => format!("back on its old runtime and {how}"),
                    Err(e) => format!("NOT back to ready on its old runtime ({e})"),
                };
                lines.push(format!("{}: {}; {back}", f.tenant, f.detail));
            }
            bail!(
                "upgrade to {to} stopped: {}. {done} of {total} tenants moved, {} not tried; see `journalctl -u openclaw@{}`",
                lines.join("; "),
                total - done - failed.len(),
                failed[0].tenant
            );
        }
    }
    if args.tenants.is_empty() {
        runtime::set_default(paths, &to)?;
        println!("all {total} tenants run OpenClaw {to}; new tenants get it too");
    } else {
        println!("{total} tenants run OpenClaw {to}");
    }
    println!(
        "undo with `sudo ocusers rollback`; remove unused runtimes with `sudo ocusers runtime prune`"
    );
    Ok(())
}

pub fn rollback(paths: &Paths, args: RollbackArgs) -> Result<()> {
    privilege::require_root("rollback")?;
    let cfg = HostConfig::load(paths)?;
    let _lock = HostLock::acquire(paths)?;
    let Some(last) = upgrade::load_last(paths)? else {
        bail!(
            "no upgrade to roll back ({} is absent)",
            upgrade::last_upgrade_path(paths).display()
        );
    };
    let tenants = tenant::list(paths)?;
    let mut back: Vec<(Record, String)> = Vec::new();
    for (name, from) in &last.from {
        if let Some(r) = tenants.iter().find(|r| r.name.as_str() == name)
            && r.runtime != *from
        {
            if runtime::read_marker(&paths.runtime_dir(from)).is_none() {
                bail!(
                    "tenant {name} came from OpenClaw {from}, which is no longer installed: run `sudo ocusers runtime install --version {from}` first"
                );
            }
            back.push((r.clone(), from.clone()));
        }
    }
    if args.dry_run {
        println!(
            "plan for `ocusers rollback` of the upgrade to {} at {}:",
            last.to, last.at
        );
        for (r, from) in &back {
            println!("  {} ({} -> {from})", r.name, r.runtime);
        }
        super::dry_run_done();
        return Ok(());
    }
    let sd = DbusSystemd::connect()?;
    let timeout = Duration::from_secs(args.timeout.unwrap_or(cfg.tenants.ready_timeout));
    let mover = Mover {
        paths,
        sd: &sd,
        timeout,
        back_timeout: timeout.max(Duration::from_secs(cfg.tenants.ready_timeout)),
    };
    for (r, from) in &back {
        let started = std::time::Instant::now();
        // If the old release refuses the state the new one migrated, the
        // state goes back to its pre-upgrade snapshot (the newer state is
        // archived, not lost).
        let snap = last.snapshots.get(r.name.as_str()).map(|p| p.as_path());
        match mover.put_back(r, from, snap) {
            Ok(how) => {
                crate::logging::record(
                    r.name.as_str(),
                    "rollback",
                    &format!("runtime {} -> {from}", r.runtime),
                );
                println!(
                    "{}: {} -> {from}, {how}; down {:.1} s",
                    r.name,
                    r.runtime,
                    started.elapsed().as_secs_f64()
                )
            }
            Err(e) => bail!(
                "rollback stopped: {} is not ready on {from}: {e}; `ocusers upgrade --to {} --tenants {}` puts it forward again",
                r.name,
                r.runtime,
                r.name
            ),
        }
    }
    if let Some(prev) = &last.previous_default
        && runtime::read_marker(&paths.runtime_dir(prev)).is_some()
    {
        runtime::set_default(paths, prev)?;
    }
    upgrade::clear_last(paths)?;
    println!(
        "rolled back: {} tenants moved back{}",
        back.len(),
        last.previous_default
            .map(|p| format!("; new tenants get {p} again"))
            .unwrap_or_default()
    );
    Ok(())
}
