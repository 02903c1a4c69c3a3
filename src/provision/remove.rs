//! The remove plan: stop, wait until the tenant's processes are gone,
//! archive (or delete) the state, and remove the secrets, limits, runtime
//! link, user, group and registry entry (which frees the port block). Every
//! step checks first, so re-running after a failure finishes the job.
use std::path::PathBuf;

use anyhow::Result;

use crate::backup;
use crate::config::HostConfig;
use crate::error::Error;
use crate::fsutil;
use crate::identity::{self, Accounts};
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::systemd::Systemd;
use crate::tenant::{self, TenantName};

/// What [`remove`] did with the state.
pub struct Removed {
    pub name: TenantName,
    pub archive: Option<PathBuf>,
}

impl Removed {
    /// The lines `ocusers remove` prints.
    pub fn report(&self) -> Vec<String> {
        let mut out = vec![format!("tenant {} removed", self.name)];
        match &self.archive {
            Some(a) if a.exists() => out.push(format!(
                "  state archived to {} (`ocusers restore {}` brings the tenant back)",
                a.display(),
                a.display()
            )),
            Some(a) if backup::removal::moved_aside(a).exists() => out.push(format!(
                "  state moved to {} (no registry entry or user: not a backup)",
                backup::removal::moved_aside(a).display()
            )),
            Some(_) => {}
            None => out.push("  state deleted (--purge)".into()),
        }
        out
    }
}

/// What a dry run does with the remove plan instead of applying it (the
/// command prints it).
pub type ShowPlan<'s> = &'s mut dyn FnMut(&Plan<'_>) -> Result<()>;

/// A tenant or its leftovers, removed under the host lock the caller
/// holds: the checks, then the plan applied, or (with `dry_run`) handed to
/// it instead (`None` back). `purge`: delete the state instead of archiving.
pub fn remove(
    paths: &Paths,
    sd: &dyn Systemd,
    name: &TenantName,
    purge: bool,
    dry_run: Option<ShowPlan<'_>>,
) -> Result<Option<Removed>> {
    let user = paths::user_name(name);
    let unit = paths::unit_name(name);
    let account = our_account(&identity::SYSTEM, name);
    let registered = tenant::load(paths, name)?.is_some();
    let leftovers = account.is_some()
        || fsutil::exists(&paths.secrets_file(name))
        || fsutil::exists(&paths.state_dir(name))
        || fsutil::exists(&paths.cache_dir(name))
        || sd.unit_file_state(&unit)? == "enabled";
    if !registered && !leftovers {
        return Err(Error::UnknownTenant {
            name: name.to_string(),
        }
        .into());
    }

    let archive = (!purge).then(|| archive_path(paths, name));
    let cfg = HostConfig::load(paths)?;
    let others: Vec<tenant::Record> = tenant::list(paths)?
        .into_iter()
        .filter(|r| &r.name != name)
        .collect();
    let had_domains = tenant::load(paths, name)?.is_some_and(|r| !r.domains.is_empty());
    let extra_after = had_domains.then(|| crate::proxy::extra_domains(&others));
    let plan = plan(
        paths,
        &cfg,
        sd,
        &identity::SYSTEM,
        name,
        &user,
        account,
        &unit,
        archive.clone(),
        extra_after.as_deref(),
    )?;
    if let Some(show) = dry_run {
        show(&plan)?;
        return Ok(None);
    }
    plan.apply()?;
    Ok(Some(Removed {
        name: name.clone(),
        archive,
    }))
}

/// Where `remove` archives the tenant's state: a new name each time.
pub fn archive_path(paths: &Paths, name: &TenantName) -> PathBuf {
    paths.archive_dir().join(format!(
        "{name}-{}.tar.gz",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(':', "")
    ))
}

/// The tenant's user in `ids`, if it is ours (its home is the tenant's
/// state directory).
pub fn our_account(ids: &dyn Accounts, name: &TenantName) -> Option<identity::Account> {
    ids.lookup(&paths::user_name(name))
        .filter(|a| a.home == paths::home_dir(name))
}

/// The remove plan: the public routes go first (while they exist, the
/// tenant is whole); with `extra_after` (the tenant had extra domains) the
/// proxy's include is rewritten with the others' extra domains; then the
/// tenant itself. `ocusers apply --prune` runs it for each pruned tenant.
#[allow(clippy::too_many_arguments)]
pub fn plan<'a>(
    p: &'a Paths,
    cfg: &'a HostConfig,
    sd: &'a dyn Systemd,
    ids: &'a dyn Accounts,
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
    let uid = account.as_ref().map(|a| a.uid);
    plan.push(Step::new(
        format!("stop {unit} and wait until its processes are gone"),
        move || {
            let u = sd.unit(unit)?;
            Ok(!u.is_active()
                && u.active_state != "deactivating"
                && uid.is_none_or(|uid| ids.processes_of(uid).is_empty()))
        },
        move || {
            sd.stop(unit)?;
            if let Some(uid) = uid {
                ids.wait_no_processes(uid)?;
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
    if crate::sleep::relay_dropin(p, name).exists() || crate::sleep::is_sleeper(p, name) {
        plan.push(Step::new(
            format!("remove the idle_stop drop-ins of {name}"),
            move || {
                Ok(!crate::sleep::relay_dropin(p, name).exists()
                    && !crate::sleep::is_sleeper(p, name))
            },
            move || {
                crate::sleep::remove_dropins(p, name)?;
                sd.daemon_reload()
            },
        ));
    }
    let state = p.state_dir(name);
    let state_check = state.clone();
    // The archive is packed as the tenant in a transient unit that carries
    // the template's CacheDirectory=, which systemd makes: the compile cache
    // is there to delete after it even when it is not now.
    let archiving = archive.is_some() && fsutil::exists(&state);
    match archive {
        Some(archive) => plan.push(Step::new(
            format!(
                "archive {} to {} (an `ocusers backup` with secrets, made as the tenant) and delete it",
                state.display(),
                archive.display()
            ),
            move || Ok(!fsutil::exists(&state_check)),
            move || {
                backup::removal::archive_state(
                    p,
                    name,
                    &state,
                    &archive,
                    our_account(ids, name).is_some(),
                )?;
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
    // systemd does not remove a CacheDirectory= of a static user's unit.
    let cache = p.cache_dir(name);
    let cache_check = cache.clone();
    plan.push(Step::new(
        format!("delete the compile cache {}", cache.display()),
        move || Ok(!archiving && !fsutil::exists(&cache_check)),
        move || fsutil::remove_tree(&cache),
    ));
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
        move || crate::firewall::is_current(p, cfg, Some(name), ids),
        move || crate::firewall::sync(p, cfg, Some(name), ids),
    ));
    let ours = account.is_some();
    plan.push(Step::new(
        format!("delete user and group {user}"),
        move || Ok(!ours || (ids.lookup(user).is_none() && !ids.group_exists(user))),
        move || ids.delete_user(user),
    ));
    plan.push(Step::new(
        format!(
            "remove {} (frees the port block)",
            p.registry_file(name).display()
        ),
        move || Ok(!fsutil::exists(&p.registry_file(name))),
        move || tenant::remove(p, name),
    ));
    Ok(plan)
}
