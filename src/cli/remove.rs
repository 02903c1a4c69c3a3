//! `ocusers remove NAME [--purge]`: the arguments, the lock and the
//! printing; the plan is [`crate::provision::remove`].
use anyhow::Result;
use clap::Args;

use crate::lock::HostLock;
use crate::paths::Paths;
use crate::plan::Plan;
use crate::privilege;
use crate::provision::remove::{self, ShowPlan};
use crate::tenant::TenantName;

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
    let mut show = |plan: &Plan<'_>| -> Result<()> {
        super::print_plan(&format!("plan for `ocusers remove {name}`:"), plan)?;
        Ok(())
    };
    let dry_run = args.dry_run.then_some(&mut show as ShowPlan<'_>);
    let sd = crate::systemd::DbusSystemd::connect()?;
    if let Some(removed) = remove::remove(paths, &sd, &name, args.purge, dry_run)? {
        for line in removed.report() {
            println!("{line}");
        }
    }
    Ok(())
}
