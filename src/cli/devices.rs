//! `ocusers devices NAME [list | approve ID | revoke ID] [--json]`.
use anyhow::Result;
use clap::{Args, Subcommand};

use crate::devices::{self, Action};
use crate::paths::Paths;
use crate::privilege;
use crate::tenant::registered;

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Tenant name.
    pub name: String,
    #[command(subcommand)]
    pub action: Option<DevicesAction>,
    /// Print JSON (OpenClaw's own `devices --json` output).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// Pending pairing requests and paired devices (the default).
    List,
    /// Approve a pending pairing request (its id from `list`).
    Approve { id: String },
    /// Remove a paired device and its tokens.
    Revoke { id: String },
}

pub fn run(paths: &Paths, args: DevicesArgs) -> Result<()> {
    let record = registered(paths, &args.name)?;
    privilege::require_root("devices")?;
    let action = match args.action {
        None | Some(DevicesAction::List) => Action::List,
        Some(DevicesAction::Approve { id }) => Action::Approve(id),
        Some(DevicesAction::Revoke { id }) => Action::Revoke(id),
    };
    print!("{}", devices::run(paths, &record.name, &action, args.json)?);
    Ok(())
}
