//! `ocusers doctor [--json]` and `ocusers repair [--remove-orphans]`.
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::JsonArg;
use super::print_json;
use crate::config::HostConfig;
use crate::doctor::{self, Status};
use crate::identity;
use crate::lock::HostLock;
use crate::paths::{self, Paths};
use crate::plan::Step;
use crate::policy::Tier;
use crate::privilege;
use crate::provision::remove;
use crate::provision::{Ctx, Start, push_restart};
use crate::statedir;
use crate::systemd::{DbusSystemd, Systemd};
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

pub fn run(paths: &Paths, args: JsonArg) -> Result<()> {
    let checks = doctor::run(paths);
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    if args.json {
        print_json(
            &json!({ "ok": fails == 0, "failures": fails, "warnings": warns, "checks": checks }),
        )?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => " ok ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("[{mark}] {:<8} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                println!("         fix: {fix}");
            }
        }
    }
    if fails > 0 {
        bail!("doctor found {fails} problem(s) and {warns} warning(s); each has its fix above");
    }
    if !args.json {
        println!("doctor: no problems ({warns} warning(s))");
    }
    Ok(())
}

/// Re-apply each problem tenant's `add` plan (every step checks first, so
/// only what is missing is made), give its state back to its user, and
/// start it; orphans are removed with `--remove-orphans`.
pub fn repair(paths: &Paths, args: RepairArgs) -> Result<()> {
    privilege::require_root("repair")?;
    let records = tenant::list(paths)?;
    let orphans = doctor::orphan_names(paths, &records);
    if args.remove_orphans && !args.dry_run {
        for name in &orphans {
            let _lock = HostLock::acquire(paths)?;
            let removal = TenantName::parse(name)
                .map_err(anyhow::Error::from)
                .and_then(|n| remove::remove(paths, &n, false, None))
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
        let unit = paths::unit_name(&r.name);
        let info = sd.unit(&unit)?;
        let files_ok = doctor::tenant_files(paths, r)
            .iter()
            .all(|c| c.status == Status::Ok);
        let link_ok = crate::runtime::tenant_link_is(paths, &r.name, &r.runtime);
        let unit_ok = info.active_state != "failed" && info.unit_file_state == "enabled";
        let origins_ok = crate::proxy::origins::drift(paths, &cfg.proxy, r).is_empty();
        let includes = crate::proxy::origins::includes_step(paths, &r.name);
        // Unreadable config: doctor names that; repair does the rest.
        let includes_ok =
            !statedir::state_exists(paths, &r.name) || includes.is_done().unwrap_or(true);
        if files_ok && link_ok && unit_ok && origins_ok && includes_ok {
            continue;
        }
        let tier = Tier::load(paths, &r.tier)?;
        let user = paths::user_name(&r.name);
        let ctx = Ctx::new(
            paths,
            &cfg,
            &sd,
            r,
            &tier,
            &[],
            crate::proxy::extra_domains(&records),
        );
        let state = paths.state_dir(&r.name);
        let mut plan = ctx.plan(Start::No, false);
        plan.push(Step::new(
            format!("give {} back to {user}", state.display()),
            || {
                Ok(identity::lookup(&user).is_some_and(|a| {
                    !statedir::state_exists(paths, &r.name)
                        || statedir::state_owned_by(paths, &r.name, &a)
                }))
            },
            || {
                let a = identity::lookup(&user).context("the tenant user is missing")?;
                for note in statedir::give_back(paths, &r.name, &a)? {
                    println!("note: {note}");
                }
                Ok(())
            },
        ));
        // A config without the origin includes (a tenant from before them):
        // the tenant's own CLI puts them back, once the state is its own.
        if !includes_ok {
            plan.push(includes);
        }
        // Start it if it should run: failed, or was running before.
        // Origins alone need no restart: the gateway reloads included files.
        let start = !(files_ok && link_ok && unit_ok)
            && (info.active_state == "failed" || info.is_active() || !files_ok || !link_ok);
        if start {
            push_restart(&mut plan, paths, &sd, r);
        }
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
        println!("dry run: nothing changed");
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
