//! `ocusers apply FILE [--prune] [--dry-run]`: the arguments, the file and
//! the lock; the run is [`crate::provision::converge`].
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::manifest::Manifest;
use crate::paths::Paths;
use crate::privilege;
use crate::provision::converge::{Opts, converge};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// TOML file of tenants: one [tenants.NAME] table each (see `man ocusers-apply`).
    pub file: PathBuf,
    /// Remove tenants that are on this host but not in FILE (state archived).
    #[arg(long)]
    pub prune: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Create new tenants without starting their gateways, and start or restart no gateway.
    #[arg(long)]
    pub no_start: bool,
    /// Start gateways but do not wait until they answer /readyz.
    #[arg(long, conflicts_with = "no_start")]
    pub no_wait: bool,
    /// Apply even when the tenants' memory limits would exceed the capacity guard.
    #[arg(long)]
    pub force: bool,
}

pub fn run(paths: &Paths, args: ApplyArgs) -> Result<()> {
    let cfg = HostConfig::load(paths)?;
    let manifest = Manifest::load(&args.file)?;
    // The file is checked (and its secrets read) before root and the lock.
    manifest.resolve(&args.file, paths, &cfg.tenants.default_tier)?;
    privilege::require_root("apply")?;
    let _lock = HostLock::acquire(paths)?;
    let desired = manifest.resolve(&args.file, paths, &cfg.tenants.default_tier)?;
    let file = args.file.display().to_string();
    let opts = Opts {
        command: format!("ocusers apply {file}"),
        file: Some(file),
        action: None,
        prune: args.prune,
        dry_run: args.dry_run,
        no_start: args.no_start,
        no_wait: args.no_wait,
        force: args.force,
    };
    let sd = crate::systemd::DbusSystemd::connect()?;
    converge(paths, &sd, &cfg, &desired, &opts)
}
