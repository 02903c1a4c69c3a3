//! `ocusers start|stop|restart NAME|--all`: thin conveniences over systemd
//! (`systemctl start openclaw@NAME` does the same), plus a readiness wait.
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::config::HostConfig;
use crate::paths::{self, Paths};
use crate::privilege;
use crate::systemd::{DbusSystemd, Systemd};
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Tenant name.
    pub name: Option<String>,
    /// Every tenant.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

pub fn run(paths: &Paths, action: Action, target: Target) -> Result<()> {
    let verb = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
    };
    let name = target.name.as_deref().map(TenantName::parse).transpose()?;
    privilege::require_root(verb)?;
    let records = tenant::one_or_all(paths, name.as_ref())?;
    let cfg = HostConfig::load(paths)?;
    let sd = DbusSystemd::connect()?;
    let mut failed = 0;
    for r in &records {
        let unit = paths::unit_name(&r.name);
        // A sleeper (idle_stop): start wakes it through its relay, so it
        // sleeps again when idle; restart is a stop then a wake; stop takes
        // its socket down too, so no connection wakes it until `start`.
        let sleeper = crate::sleep::is_sleeper(paths, &r.name);
        let result = match (action, sleeper) {
            (Action::Stop, true) => crate::sleep::stop(&sd, &r.name),
            (Action::Start, true) => crate::sleep::wake(paths, &sd, &r.name),
            (Action::Restart, true) => crate::sleep::restart(paths, &sd, &r.name),
            (Action::Stop, false) => sd.stop(&unit),
            (Action::Start, false) => sd.reset_failed(&unit).and_then(|_| sd.start(&unit)),
            (Action::Restart, false) => sd.reset_failed(&unit).and_then(|_| sd.restart(&unit)),
        }
        .and_then(|_| match action {
            Action::Stop => Ok(()),
            _ => crate::health::wait_unit_ready(
                &sd,
                &unit,
                r.port,
                Duration::from_secs(cfg.tenants.ready_timeout),
            )
            .map(|_| ())
            .map_err(|d| anyhow::anyhow!("{unit} is not ready: {d}")),
        });
        match result {
            Ok(()) => println!("{verb}: {} ok", r.name),
            Err(e) => {
                failed += 1;
                eprintln!("{verb}: {}: {}", r.name, crate::error::render_chain(&e));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} tenants failed to {verb}", records.len());
    }
    Ok(())
}
