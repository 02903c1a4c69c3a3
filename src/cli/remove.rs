//! `ocusers remove NAME [--purge]`: stop, wait until the cgroup is empty,
//! archive (or delete) the state, and remove the secrets, limits, runtime
//! link, user, group and registry entry (which frees the port block). Every
//! step checks first, so re-running after a failure finishes the job.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::HostConfig;
use crate::error::Error;
use crate::fsutil;
use crate::identity;
use crate::lock::HostLock;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::privilege;
use crate::systemd::{DbusSystemd, Systemd};
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
pub struct RemoveArgs {
    pub name: String,
    /// Delete the tenant's state instead of archiving it.
    #[arg(long)]
    pub purge: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(paths: &Paths, args: RemoveArgs) -> Result<()> {
    let name = TenantName::parse(&args.name)?;
    privilege::require_root("remove")?;
    let _lock = HostLock::acquire(paths)?;
    let sd = DbusSystemd::connect()?;
    let user = paths::user_name(&name);
    let unit = paths::unit_name(&name);
    let account = our_account(&name);
    let registered = tenant::load(paths, &name)?.is_some();
    let leftovers = account.is_some()
        || fsutil::exists(&paths.secrets_file(&name))
        || fsutil::exists(&paths.state_dir(&name))
        || sd.unit_file_state(&unit)? == "enabled";
    if !registered && !leftovers {
        return Err(Error::UnknownTenant {
            name: name.to_string(),
        }
        .into());
    }

    let archive = (!args.purge).then(|| archive_path(paths, &name));
    let cfg = HostConfig::load(paths)?;
    let others: Vec<tenant::Record> = tenant::list(paths)?
        .into_iter()
        .filter(|r| r.name != name)
        .collect();
    let had_domains = tenant::load(paths, &name)?.is_some_and(|r| !r.domains.is_empty());
    let extra_after = had_domains.then(|| crate::proxy::extra_domains(&others));
    let plan = plan(
        paths,
        &cfg,
        &sd,
        &name,
        &user,
        account,
        &unit,
        archive.clone(),
        extra_after.as_deref(),
    )?;
    if args.dry_run {
        println!("plan for `ocusers remove {name}`:");
        print!("{}", plan.describe()?);
        println!("dry run: nothing changed");
        return Ok(());
    }
    plan.apply()?;
    println!("tenant {name} removed");
    match archive {
        Some(a) if a.exists() => println!(
            "  state archived to {} (`ocusers restore {}` brings the tenant back)",
            a.display(),
            a.display()
        ),
        Some(a) if moved_aside(&a).exists() => println!(
            "  state moved to {} (no registry entry or user: not a backup)",
            moved_aside(&a).display()
        ),
        Some(_) => {}
        None => println!("  state deleted (--purge)"),
    }
    Ok(())
}

/// Where `remove` archives the tenant's state: a new name each time.
pub(crate) fn archive_path(paths: &Paths, name: &TenantName) -> PathBuf {
    paths.archive_dir().join(format!(
        "{name}-{}.tar.gz",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(':', "")
    ))
}

/// The tenant's user, if it is ours (its home is the tenant's state directory).
pub(crate) fn our_account(name: &TenantName) -> Option<identity::Account> {
    identity::lookup(&paths::user_name(name)).filter(|a| a.home == paths::home_dir(name))
}

/// The remove plan: the public routes go first (while they exist, the
/// tenant is whole); with `extra_after` (the tenant had extra domains) the
/// proxy's include is rewritten with the others' extra domains; then the
/// tenant itself. `ocusers apply --prune` runs it for each pruned tenant.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<'a>(
    p: &'a Paths,
    cfg: &'a HostConfig,
    sd: &'a dyn Systemd,
    name: &'a TenantName,
    user: &'a str,
    account: Option<identity::Account>,
    unit: &'a str,
    archive: Option<PathBuf>,
    extra_after: Option<&[String]>,
) -> Result<Plan<'a>> {
    let proxy = &cfg.proxy;
    let mut plan = Plan::new(name.as_str(), "remove");
    plan.push(crate::proxy::route_removal_step(p, sd, name));
    if let Some(extra) = extra_after.filter(|_| proxy.enabled()) {
        proxy.check_installed()?;
        for step in crate::proxy::global_steps(p, proxy, sd, extra) {
            plan.push(step);
        }
    }
    add_steps(&mut plan, p, cfg, sd, name, user, account, unit, archive);
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn add_steps<'a>(
    plan: &mut Plan<'a>,
    p: &'a Paths,
    cfg: &'a HostConfig,
    sd: &'a dyn Systemd,
    name: &'a TenantName,
    user: &'a str,
    account: Option<identity::Account>,
    unit: &'a str,
    archive: Option<PathBuf>,
) {
    let uid = account.as_ref().map(|a| a.uid);
    plan.push(Step::new(
        format!("stop {unit} and wait until its processes are gone"),
        move || {
            let u = sd.unit(unit)?;
            Ok(!u.is_active()
                && u.active_state != "deactivating"
                && uid.is_none_or(|uid| identity::processes_of(uid).is_empty()))
        },
        move || {
            sd.stop(unit)?;
            if let Some(uid) = uid {
                wait_no_processes(uid)?;
            }
            Ok(())
        },
    ));
    plan.push(Step::new(
        format!("disable {unit} (daemon-reload if systemd then asks for one, as `systemctl disable` does)"),
        move || Ok(sd.unit_file_state(unit)? != "enabled"),
        move || {
            sd.disable(unit)?;
            sd.reset_failed(unit)
        },
    ));
    let state = p.state_dir(name);
    let state_check = state.clone();
    match archive {
        Some(archive) => plan.push(Step::new(
            format!(
                "archive {} to {} (an `ocusers backup` with secrets, made as the tenant) and delete it",
                state.display(),
                archive.display()
            ),
            move || Ok(!fsutil::exists(&state_check)),
            move || {
                archive_state(p, name, &state, &archive)?;
                // std's remove_dir_all opens each directory with O_NOFOLLOW
                // below its parent's descriptor and unlinks links, never
                // following one (CVE-2022-21658 fix, Rust 1.58.1).
                fsutil::remove_tree(&state)
            },
        )),
        None => plan.push(Step::new(
            format!("delete {}", state.display()),
            move || Ok(!fsutil::exists(&state_check)),
            move || fsutil::remove_tree(&state),
        )),
    }
    let secrets = p.secrets_file(name);
    plan.push(Step::new(
        format!("remove secrets file {}", secrets.display()),
        {
            let s = secrets.clone();
            move || Ok(!fsutil::exists(&s))
        },
        move || fsutil::remove_file(&secrets),
    ));
    plan.push(Step::new(
        format!(
            "remove resource limits {}",
            p.unit_control_dir(unit).display()
        ),
        move || Ok(!fsutil::exists(&p.unit_control_dir(unit))),
        move || fsutil::remove_tree(&p.unit_control_dir(unit)),
    ));
    plan.push(crate::proxy::origins::removal_step(p, name));
    plan.push(crate::invite::removal_step(p, name));
    plan.push(Step::new(
        format!(
            "remove runtime link {}",
            p.tenant_runtime_link(name).display()
        ),
        move || Ok(!fsutil::exists(&p.tenant_runtime_link(name))),
        move || fsutil::remove_file(&p.tenant_runtime_link(name)),
    ));
    plan.push(Step::new(
        format!(
            "drop the firewall rules of {name} ({})",
            p.firewall_file().display()
        ),
        move || crate::firewall::is_current(p, cfg, Some(name)),
        move || crate::firewall::sync(p, cfg, Some(name)),
    ));
    let ours = account.is_some();
    plan.push(Step::new(
        format!("delete user and group {user}"),
        move || Ok(!ours || (identity::lookup(user).is_none() && !identity::group_exists(user))),
        move || identity::delete_user(user),
    ));
    plan.push(Step::new(
        format!(
            "remove {} (frees the port block)",
            p.registry_file(name).display()
        ),
        move || Ok(!fsutil::exists(&p.registry_file(name))),
        move || tenant::remove(p, name),
    ));
}

/// After the stop job, the kernel may still be reaping; a straggler outside
/// the unit (none should exist) is killed so userdel can proceed.
fn wait_no_processes(uid: u32) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let pids = identity::processes_of(uid);
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("processes of uid {uid} are still running after 30 s")
}

/// The archive `remove` leaves: a real `ocusers backup` of the tenant
/// (manifest, registry entry, secrets; the state packed by the tenant's own
/// uid in its sandbox), so `ocusers restore FILE` brings the tenant back.
/// A tenant with no registry entry or no user (the leftovers of a failed
/// add) cannot be described by a manifest: its state directory is moved
/// aside whole, by one rename of a path root owns, next to where the
/// archive would be.
fn archive_state(
    p: &Paths,
    name: &TenantName,
    state: &std::path::Path,
    archive: &std::path::Path,
) -> Result<()> {
    let record = tenant::load(p, name)?;
    let account = our_account(name);
    match (record, account) {
        (Some(record), Some(_)) => {
            let registry = std::fs::read_to_string(p.registry_file(name))
                .with_context(|| format!("reading the registry entry of {name}"))?;
            let secrets = match std::fs::read(p.secrets_file(name)) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).context("reading the secrets file"),
            };
            crate::backup::create_at(&record, state, &registry, secrets.as_deref(), archive)
                .context(
                    "archiving the state before removal failed (the state is kept; `ocusers remove --purge` deletes it without an archive)",
                )
        }
        _ => {
            let aside = moved_aside(archive);
            let parent = aside.parent().context("archive path has no parent")?;
            fsutil::ensure_dir(parent, 0o700)?;
            std::fs::rename(state, &aside)
                .with_context(|| format!("moving {} to {}", state.display(), aside.display()))
        }
    }
}

/// Where the state of a tenant without registry entry or user goes.
fn moved_aside(archive: &std::path::Path) -> PathBuf {
    let s = archive.display().to_string();
    PathBuf::from(format!("{}.state", s.trim_end_matches(".tar.gz")))
}
