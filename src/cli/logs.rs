//! `ocusers logs NAME [-f] [-n N]`: the tenant's journal, through journalctl.
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;

use crate::paths::{self, Paths};
use crate::tenant::registered;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Tenant name.
    pub name: String,
    /// Keep printing new entries.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the latest entries to show.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub lines: u32,
}

pub fn run(paths: &Paths, args: LogsArgs) -> Result<()> {
    let record = registered(paths, &args.name)?;
    let mut cmd = Command::new("journalctl");
    cmd.arg(format!("--unit={}", paths::unit_name(&record.name)))
        .arg(format!("--lines={}", args.lines))
        .arg("--no-pager");
    if args.follow {
        cmd.arg("--follow");
    }
    // Replace this process: journalctl owns the terminal and Ctrl-C.
    let err = cmd.exec();
    Err(err).context("running journalctl (is systemd's journal installed?)")
}
