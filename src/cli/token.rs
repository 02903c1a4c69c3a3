//! `ocusers token rotate NAME`: a fresh gateway token in the tenant's
//! root-only environment file, then a restart so the gateway uses it. If the
//! gateway does not come back ready, the old token is put back and the
//! gateway restarted with it.
use anyhow::Result;
use clap::Subcommand;

use crate::lock::HostLock;
use crate::plan::{Plan, Step};
use crate::privilege;
use crate::provision::push_restart;
use crate::secrets::{self, EnvFile};
use crate::systemd::DbusSystemd;
use crate::tenant::registered;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a new gateway token and restart the gateway (clients need the new token).
    Rotate {
        name: String,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(paths: &crate::paths::Paths, cmd: TokenCommand) -> Result<()> {
    let TokenCommand::Rotate { name, dry_run } = cmd;
    let record = registered(paths, &name)?;
    privilege::require_root("token rotate")?;
    let _lock = HostLock::acquire(paths)?;
    let name = &record.name;
    let path = paths.secrets_file(name);
    let old = EnvFile::load(&path)?;
    let new_token = secrets::new_token()?;
    let sd = DbusSystemd::connect()?;
    let mut plan = Plan::new(name.as_str(), "token-rotate");
    let (p_apply, p_revert) = (path.clone(), path.clone());
    let old_for_revert = old.clone();
    plan.push(
        Step::new(
            format!("write a new {} into {}", secrets::TOKEN_KEY, path.display()),
            || Ok(false),
            move || {
                let mut env = EnvFile::load(&p_apply)?.unwrap_or_default();
                env.set(secrets::TOKEN_KEY, &new_token)?;
                env.store(&p_apply, name.as_str())
            },
        )
        .revert(move || match &old_for_revert {
            Some(env) => env.store(&p_revert, name.as_str()),
            None => Ok(()),
        }),
    );
    push_restart(&mut plan, paths, &sd, &record);
    if dry_run {
        println!("plan for tenant {name}:");
        print!("{}", plan.describe()?);
        println!("dry run: nothing changed");
        return Ok(());
    }
    if let Err(e) = plan.apply() {
        // The old token is back in the file; start the gateway with it.
        let unit = crate::paths::unit_name(name);
        let _ = crate::systemd::Systemd::reset_failed(&sd, &unit);
        let _ = crate::systemd::Systemd::restart(&sd, &unit);
        return Err(e);
    }
    println!(
        "tenant {name}: new gateway token in {} (root only); gateway restarted and ready",
        path.display()
    );
    Ok(())
}
