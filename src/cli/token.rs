//! `ocusers token rotate NAME`: a fresh gateway token in the tenant's
//! root-only environment file, then a restart so the gateway uses it. If the
//! gateway does not come back ready, the old token is put back and the
//! gateway restarted with it.
use anyhow::Result;
use clap::Subcommand;

use crate::lock::HostLock;
use crate::privilege;
use crate::provision::secret;
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
    let rotation = secret::Rotation::new(paths, &record)?;
    let sd = DbusSystemd::connect()?;
    let plan = rotation.plan(paths, &sd, &record);
    if dry_run {
        super::print_plan(&format!("plan for tenant {name}:"), &plan)?;
        return Ok(());
    }
    if let Err(e) = plan.apply() {
        // The old token is back in the file; start the gateway with it.
        secret::after_failed_rotation(&sd, name);
        return Err(e);
    }
    println!(
        "tenant {name}: new gateway token in {} (root only); gateway restarted and ready",
        path.display()
    );
    Ok(())
}
