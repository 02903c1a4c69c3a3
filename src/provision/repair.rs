//! `repair`: what drifted on one tenant (files, runtime link, unit, proxy
//! origins, the config's origin includes) and the steps after its add plan
//! that put it back: the state given back to its user, the includes
//! restored as the tenant, and a restart when it should run.
use anyhow::{Context, Result};

use crate::config::HostConfig;
use crate::doctor::{self, Status};
use crate::identity::Accounts;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::proxy::origins;
use crate::statedir;
use crate::systemd::{Systemd, UnitInfo};
use crate::tenant::Record;

/// One tenant as repair finds it.
pub struct Drift {
    unit: UnitInfo,
    files_ok: bool,
    link_ok: bool,
    unit_ok: bool,
    origins_ok: bool,
    includes_ok: bool,
}

impl Drift {
    pub fn check(
        paths: &Paths,
        cfg: &HostConfig,
        sd: &dyn Systemd,
        record: &Record,
    ) -> Result<Drift> {
        let unit = sd.unit(&paths::unit_name(&record.name))?;
        let files_ok = doctor::tenant_files(paths, record)
            .iter()
            .all(|c| c.status == Status::Ok);
        let link_ok = crate::runtime::tenant_link_is(paths, &record.name, &record.runtime);
        // A sleeper is left out of openclaw.target and carries its drop-ins.
        let idle = crate::sleep::idle_of(paths, cfg, record);
        let unit_ok = unit.active_state != "failed"
            && (unit.unit_file_state == "enabled") == idle.is_none()
            && crate::sleep::dropins_are(paths, &record.name, idle, cfg.tenants.ready_timeout);
        let origins_ok = origins::drift(paths, &cfg.proxy, record).is_empty();
        // Unreadable config: doctor names that; repair does the rest.
        let includes_ok = !statedir::state_exists(paths, &record.name)
            || origins::includes_step(paths, &record.name)
                .is_done()
                .unwrap_or(true);
        Ok(Drift {
            unit,
            files_ok,
            link_ok,
            unit_ok,
            origins_ok,
            includes_ok,
        })
    }

    /// Nothing to repair.
    pub fn is_clean(&self) -> bool {
        self.files_ok && self.link_ok && self.unit_ok && self.origins_ok && self.includes_ok
    }

    /// Start it if it should run: failed, or was running before, or its
    /// files or runtime were broken. Origins alone need no restart: the
    /// gateway reloads included files.
    fn restarts(&self) -> bool {
        !(self.files_ok && self.link_ok && self.unit_ok)
            && (self.unit.active_state == "failed"
                || self.unit.is_active()
                || !self.files_ok
                || !self.link_ok)
    }
}

/// The steps after the tenant's add plan (built with `Start::No`); the
/// tenant's user from `ids` (`&identity::SYSTEM` but in tests).
pub fn push_steps<'a>(
    plan: &mut Plan<'a>,
    paths: &'a Paths,
    sd: &'a dyn Systemd,
    ids: &'a dyn Accounts,
    record: &'a Record,
    drift: &Drift,
) {
    let user = paths::user_name(&record.name);
    let state = paths.state_dir(&record.name);
    let owner = user.clone();
    plan.push(Step::new(
        format!("give {} back to {user}", state.display()),
        move || {
            Ok(ids.lookup(&owner).is_some_and(|a| {
                !statedir::state_exists(paths, &record.name)
                    || statedir::state_owned_by(paths, &record.name, &a)
            }))
        },
        move || {
            let a = ids.lookup(&user).context("the tenant user is missing")?;
            for note in statedir::give_back(paths, &record.name, &a)? {
                println!("note: {note}");
            }
            Ok(())
        },
    ));
    // A config without the origin includes (a tenant from before them):
    // the tenant's own CLI puts them back, once the state is its own.
    if !drift.includes_ok {
        plan.push(origins::includes_step(paths, &record.name));
    }
    if drift.restarts() {
        super::push_restart(plan, paths, sd, record);
    }
}
