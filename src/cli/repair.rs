//! `ocusers repair [--remove-orphans] [--dry-run]`.
use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::HostConfig;
use crate::doctor;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::policy::Tier;
use crate::privilege;
use crate::provision::repair::{self, Drift};
use crate::provision::{Ctx, Start, remove};
use crate::systemd::DbusSystemd;
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Also remove tenant leftovers without a registry entry (their state is archived).
    #[arg(long)]
    pub remove_orphans: bool,
    /// Print the plans and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Re-apply each problem tenant's `add` plan (every step checks first, so
/// only what is missing is made), give its state back to its user, and
/// start it; orphans are removed with `--remove-orphans`.
pub fn run(paths: &Paths, args: RepairArgs) -> Result<()> {
    privilege::require_root("repair")?;
    let records = tenant::list(paths)?;
    let orphans = doctor::orphan_names(paths, &records);
    if args.remove_orphans && !args.dry_run && !orphans.is_empty() {
        let sd = DbusSystemd::connect()?;
        for name in &orphans {
            let _lock = HostLock::acquire(paths)?;
            let removal = TenantName::parse(name)
                .map_err(anyhow::Error::from)
                .and_then(|n| remove::remove(paths, &sd, &n, false, None))
                .with_context(|| format!("removing the leftovers of {name}"))?;
            if let Some(removed) = removal {
                for line in removed.report() {
                    println!("{line}");
                }
            }
        }
    }
    let _lock = HostLock::acquire(paths)?;
    let cfg = HostConfig::load(paths)?;
    let sd = DbusSystemd::connect()?;
    let mut repaired = 0;
    let mut failed = Vec::new();
    for r in &records {
        let drift = Drift::check(paths, &cfg, &sd, r)?;
        if drift.is_clean() {
            continue;
        }
        let tier = Tier::load(paths, &r.tier)?;
        let ctx = Ctx::new(
            paths,
            &cfg,
            &sd,
            r,
            &tier,
            &[],
            crate::proxy::extra_domains(&records),
        );
        let mut plan = ctx.plan(Start::No, false);
        repair::push_steps(&mut plan, paths, &sd, &crate::identity::SYSTEM, r, &drift);
        if args.dry_run {
            println!("plan to repair tenant {}:", r.name);
            print!("{}", plan.describe()?);
            continue;
        }
        match plan.apply() {
            Ok(o) => {
                repaired += 1;
                println!("repaired tenant {} ({} steps)", r.name, o.applied.len());
            }
            Err(e) => {
                eprintln!("tenant {}: {}", r.name, crate::error::render_chain(&e));
                failed.push(r.name.to_string());
            }
        }
    }
    if !args.remove_orphans {
        for n in &orphans {
            println!(
                "leftovers of {n} without a registry entry: `sudo ocusers remove {n}` or `sudo ocusers repair --remove-orphans`"
            );
        }
    }
    if args.dry_run {
        super::dry_run_done();
        return Ok(());
    }
    if !failed.is_empty() {
        bail!("could not repair {}", failed.join(", "));
    }
    if repaired == 0 {
        println!("nothing to repair");
    }
    Ok(())
}
