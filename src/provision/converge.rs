//! `ocusers apply`'s run: converge the host to a list of desired tenants
//! (see [`crate::manifest`]). Each tenant gets the add plan
//! ([`super::add`]), which creates a missing tenant and, for an existing
//! one, updates its registry entry, env file and limits (live, over D-Bus)
//! and restarts a running gateway whose environment changed. Tenants on the
//! host but not in the file are reported, and removed with the remove plan
//! ([`super::remove`]) only with `prune`. The whole plan is printed first;
//! a second run has nothing to do. `set` and `domain` run it for one
//! tenant.
use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;

use super::add::{Ctx, Start, check_identity};
use crate::capacity;
use crate::config::HostConfig;
use crate::display::human_bytes;
use crate::error::Error;
use crate::identity::Account;
use crate::manifest::Desired;
use crate::paths::{self, Paths};
use crate::plan::Plan;
use crate::ports;
use crate::proxy;
use crate::runtime;
use crate::systemd::DbusSystemd;
use crate::tenant::{self, Record, TenantName};

/// Marks a planned step found done when apply reached it.
const ALREADY_DONE: &str = "(already done when reached)";

/// What happens to one tenant.
enum Change {
    Add,
    Update(Vec<String>),
    Converge,
}

struct Removal {
    name: TenantName,
    user: String,
    unit: String,
    account: Option<Account>,
    archive: PathBuf,
}

/// How [`converge`] runs: apply's flags, and the command line its messages
/// name.
pub struct Opts {
    /// `ocusers apply FILE`, `ocusers set alice --memory-max 3G`.
    pub command: String,
    /// The file of `apply`; `None` for a one-tenant change (`set`,
    /// `domain`), where the other tenants are simply left as they are.
    pub file: Option<String>,
    /// The action `ocusers history` records the steps under (`set`,
    /// `domain-add`); `None`: the add plan's own (`add`).
    pub action: Option<&'static str>,
    pub prune: bool,
    pub dry_run: bool,
    pub no_start: bool,
    pub no_wait: bool,
    pub force: bool,
}

/// Converge the host to `desired` (checked tenants, as `Manifest::resolve`
/// gives them), under the host lock the caller holds: every tenant through
/// the add plan, the plan printed first, `--dry-run` stops there. `set` and
/// `domain` call this with the one tenant they change.
pub fn converge(
    paths: &Paths,
    sd: &DbusSystemd,
    cfg: &HostConfig,
    desired: &[Desired],
    args: &Opts,
) -> Result<()> {
    let command = args.command.as_str();
    let existing = tenant::list(paths)?;
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    let (kept, pruned): (Vec<&Record>, Vec<&Record>) = existing
        .iter()
        .filter(|r| !wanted.contains(r.name.as_str()))
        .partition(|_| !args.prune);

    // Registry entries as they will be; new tenants get ports one after
    // another from the pool (every current block counts as taken).
    let mut taken: Vec<Record> = existing.clone();
    let live = ports::live_listeners(paths.root())?;
    let mut records = Vec::new();
    let mut changes = Vec::new();
    for d in desired {
        let old = existing.iter().find(|r| r.name == d.name);
        let record = match old {
            Some(r) => Record {
                tier: d.tier.name.clone(),
                domains: d.domains.clone(),
                limits: d.overrides.clone(),
                ..r.clone()
            },
            None => {
                let version = runtime::default_version(paths).ok_or(Error::NoRuntime)?;
                if runtime::read_marker(&paths.runtime_dir(&version)).is_none() {
                    return Err(Error::RuntimeMissing { version }.into());
                }
                let port = ports::allocate(&cfg.ports, &taken, &live)?;
                let r = Record {
                    name: d.name.clone(),
                    port,
                    block: cfg.ports.block,
                    tier: d.tier.name.clone(),
                    runtime: version,
                    created: crate::display::now_rfc3339(),
                    domains: d.domains.clone(),
                    limits: d.overrides.clone(),
                };
                taken.push(r.clone());
                r
            }
        };
        check_identity(&d.name, &paths::user_name(&d.name), old.is_some())?;
        crate::sleep::check_tenant(paths, cfg, &d.name, &d.tier, &d.overrides)?;
        changes.push(match old {
            None => Change::Add,
            Some(o) => {
                let diff = differences(o, &record);
                if diff.is_empty() {
                    Change::Converge
                } else {
                    Change::Update(diff)
                }
            }
        });
        records.push(record);
    }

    // Capacity: only a change that raises the total is refused.
    let mut after = records.clone();
    after.extend(kept.iter().map(|r| (*r).clone()));
    capacity::check_change(
        paths,
        &cfg.capacity,
        &existing,
        &after,
        &format!("`{command}`"),
        args.force,
    )?;

    // Extra domains: well-formed and nobody else's, against the host as it
    // will be; the proxy's include lists them all.
    let final_records: Vec<Record> = after.clone();
    for r in &records {
        proxy::check_extra_domains(&cfg.proxy, &r.name, &r.domains, &final_records)?;
    }
    if cfg.proxy.enabled() {
        cfg.proxy.check_installed()?;
    }
    let extra_domains = proxy::extra_domains(&final_records);

    let start = Start::from_flags(args.no_start, args.no_wait);
    let ctxs: Vec<Ctx> = desired
        .iter()
        .zip(&records)
        .map(|(d, record)| {
            Ctx::new(
                paths,
                cfg,
                sd,
                record,
                &d.tier,
                &d.secrets,
                extra_domains.clone(),
            )
        })
        .collect();
    let removals: Vec<Removal> = pruned
        .iter()
        .map(|r| Removal {
            name: r.name.clone(),
            user: paths::user_name(&r.name),
            unit: paths::unit_name(&r.name),
            account: super::remove::our_account(&crate::identity::SYSTEM, &r.name),
            archive: super::remove::archive_path(paths, &r.name),
        })
        .collect();

    // Removals first (they free ports and memory), then the file's tenants.
    let mut plans: Vec<(String, String, Plan)> = Vec::new();
    for r in &removals {
        // The include is rewritten once, by the file's tenants' plans,
        // with the extra domains as they will be.
        let plan = super::remove::plan(
            paths,
            cfg,
            sd,
            &crate::identity::SYSTEM,
            &r.name,
            &r.user,
            r.account.clone(),
            &r.unit,
            Some(r.archive.clone()),
            None,
        )?;
        plans.push((r.name.to_string(), "remove (--prune)".into(), plan));
    }
    for ((ctx, change), d) in ctxs.iter().zip(&changes).zip(desired) {
        let label = match change {
            Change::Add => format!(
                "add (tier {}, port {}, MemoryMax {})",
                d.tier.name,
                ctx.record.port,
                human_bytes(Some(d.limits.memory_max))
            ),
            Change::Update(diff) => format!("update ({})", diff.join("; ")),
            Change::Converge => "converge (drift from the file)".into(),
        };
        let plan = ctx.plan(start, true);
        let plan = match args.action {
            Some(a) => plan.recorded_as(a),
            None => plan,
        };
        plans.push((d.name.to_string(), label, plan));
    }

    let mut todo = Vec::new();
    for (name, label, plan) in &plans {
        let steps = plan.todo()?;
        if !steps.is_empty() {
            todo.push((name.clone(), label.clone(), steps));
        }
    }
    let kept: Vec<&Record> = if args.file.is_some() {
        kept
    } else {
        Vec::new()
    };
    if todo.is_empty() {
        match &args.file {
            Some(f) => println!(
                "nothing to do: the host matches {f} ({} tenants)",
                desired.len()
            ),
            None => println!("nothing to do: the tenant is already like that (`{command}`)"),
        }
        print_kept(&kept, args.file.as_deref().unwrap_or_default());
        return Ok(());
    }
    println!("plan for `{command}`:");
    for (name, label, steps) in &todo {
        println!("{name}: {label}");
        for s in steps {
            println!("  - {s}");
        }
    }
    print_kept(&kept, args.file.as_deref().unwrap_or_default());
    if args.dry_run {
        println!("dry run: nothing changed");
        return Ok(());
    }

    println!("applying:");
    // One daemon-reload after all tenants, not one per enabled unit; done
    // even when a tenant fails, so nothing is left pending for the operator.
    sd.defer_reloads();
    let result = apply_plans(plans, &todo, command, args.file.is_none());
    let reload = sd.finish_reloads();
    let (applied, tenants) = result?;
    reload?;
    println!("applied {applied} steps to {tenants} tenants");
    if args.no_start {
        println!("gateways were not started or restarted (--no-start)");
    }
    Ok(())
}

type Todo = Vec<(String, String, Vec<String>)>;

/// Applies the tenants' plans in order; (steps applied, tenants changed).
/// A tenant whose plan fails (its own plan reverted) does not stop the
/// others: each failure is printed on one line and the command fails at
/// the end, naming them.
fn apply_plans(
    plans: Vec<(String, String, Plan)>,
    todo: &Todo,
    command: &str,
    one: bool,
) -> Result<(usize, usize)> {
    let mut applied = 0;
    let mut tenants = 0;
    let mut failed = Vec::new();
    for (name, _, plan) in plans {
        let planned: Vec<String> = todo
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, steps)| steps.clone())
            .unwrap_or_default();
        let outcome = match plan.apply() {
            Ok(o) => o,
            // One tenant (`set`, `domain`): its own one-line error.
            Err(e) if one => return Err(e),
            Err(e) => {
                eprintln!("tenant {name}: {}", crate::error::render_chain(&e));
                failed.push(name);
                continue;
            }
        };
        if outcome.changed() {
            tenants += 1;
        }
        for s in &outcome.applied {
            println!("  {name}: {s}");
            applied += 1;
        }
        // A planned step can be done by the time it is reached (a fast
        // gateway answers /readyz before the wait begins): say so.
        for s in planned.iter().filter(|s| outcome.already_done.contains(s)) {
            println!("  {name}: {s} {ALREADY_DONE}");
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "apply could not finish tenant(s) {} (each says why above; the other tenants were applied); re-run `{command}` when fixed",
            failed.join(", ")
        );
    }
    Ok((applied, tenants))
}

fn print_kept(kept: &[&Record], file: &str) {
    for r in kept {
        println!(
            "{}: on this host but not in {file}: kept (--prune removes it)",
            r.name
        );
    }
}

/// What differs between a tenant's registry entry and the file's.
fn differences(old: &Record, new: &Record) -> Vec<String> {
    let mut out = Vec::new();
    if old.tier != new.tier {
        out.push(format!("tier {} -> {}", old.tier, new.tier));
    }
    if old.limits != new.limits {
        let (o, n) = (&old.limits, &new.limits);
        let show = |v: Option<String>| v.unwrap_or_else(|| "(tier)".into());
        for (key, before, after) in [
            ("memory_high", o.memory_high.clone(), n.memory_high.clone()),
            ("memory_max", o.memory_max.clone(), n.memory_max.clone()),
            ("cpu_quota", o.cpu_quota.clone(), n.cpu_quota.clone()),
            (
                "tasks_max",
                o.tasks_max.map(|t| t.to_string()),
                n.tasks_max.map(|t| t.to_string()),
            ),
            ("idle_stop", o.idle_stop.clone(), n.idle_stop.clone()),
            (
                "force_idle_stop",
                o.force_idle_stop.then(|| "true".into()),
                n.force_idle_stop.then(|| "true".into()),
            ),
        ] {
            if before != after {
                out.push(format!("{key} {} -> {}", show(before), show(after)));
            }
        }
    }
    if old.domains != new.domains {
        out.push(format!(
            "domains [{}] -> [{}]",
            old.domains.join(", "),
            new.domains.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests;
