//! `ocusers runtime install|list`
use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::privilege;
use crate::runtime::{self, InstallOutcome};

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants.
    Install {
        /// OpenClaw version or npm dist-tag, e.g. `latest` (default: the version this release of ocusers was tested with, marked "tested" by `runtime list`).
        #[arg(long)]
        version: Option<String>,
    },
    /// Delete installed runtimes that no tenant runs, that are not the default and that `rollback` does not need.
    Prune {
        /// Print what would be deleted and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Installed runtimes, the default, and which tenants use each.
    List {
        /// Print JSON (shape documented in README.md, "Output").
        #[arg(long)]
        json: bool,
    },
}

pub fn run(paths: &Paths, cmd: RuntimeCommand) -> Result<()> {
    match cmd {
        RuntimeCommand::Install { version } => {
            // Said before the privilege check: it is the first thing to fix.
            let npm = runtime::find_npm()?;
            privilege::require_root("runtime install")?;
            let cfg = HostConfig::load(paths)?;
            let _lock = HostLock::acquire(paths)?;
            let chosen = version.is_some();
            match runtime::install(paths, &cfg.runtime, &npm, version.as_deref())? {
                InstallOutcome::Installed(v) => {
                    println!(
                        "installed OpenClaw {v}{} in {}",
                        tested_note(&v),
                        paths.runtime_dir(&v).display()
                    );
                    println!("new tenants use {v}");
                }
                InstallOutcome::AlreadyInstalled(v) => {
                    println!(
                        "OpenClaw {v}{} is already installed; new tenants use {v}",
                        tested_note(&v)
                    );
                }
            }
            if !chosen {
                println!(
                    "another version: `sudo ocusers runtime install --version X` (`--version latest` for the registry's newest), `sudo ocusers upgrade --to X` moves the tenants"
                );
            }
            Ok(())
        }
        RuntimeCommand::Prune { dry_run } => {
            privilege::require_root("runtime prune")?;
            let _lock = HostLock::acquire(paths)?;
            let unused = crate::upgrade::prunable(paths)?;
            if unused.is_empty() {
                println!("no unused runtime to remove");
            }
            for v in &unused {
                let dir = paths.runtime_dir(v);
                if dry_run {
                    println!("would remove OpenClaw {v} ({})", dir.display());
                    continue;
                }
                crate::upgrade::prune(paths, v)?;
                println!("removed OpenClaw {v} ({})", dir.display());
            }
            if dry_run {
                super::dry_run_done();
            }
            Ok(())
        }
        RuntimeCommand::List { json } => {
            let list = runtime::list(paths)?;
            if json {
                return print_json(&json!({ "runtimes": list }));
            }
            if list.is_empty() {
                println!("no runtime installed: run `sudo ocusers runtime install`");
            }
            for r in &list {
                let marks: Vec<&str> = [(r.default, "default"), (r.tested, "tested")]
                    .into_iter()
                    .filter_map(|(on, m)| on.then_some(m))
                    .collect();
                println!(
                    "{}{}  node {}  installed {}  tenants: {}",
                    r.version,
                    if marks.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", marks.join(", "))
                    },
                    r.node,
                    r.installed,
                    if r.tenants.is_empty() {
                        "-".to_string()
                    } else {
                        r.tenants.join(", ")
                    }
                );
            }
            if !list.iter().any(|r| r.tested) {
                println!(
                    "this release of ocusers was tested with OpenClaw {}: `sudo ocusers runtime install` installs it",
                    runtime::TESTED_OPENCLAW
                );
            }
            Ok(())
        }
    }
}

/// What the version is to this release of ocusers.
fn tested_note(v: &str) -> String {
    if v == runtime::TESTED_OPENCLAW {
        " (the version this release of ocusers was tested with)".into()
    } else {
        format!(
            " (this release of ocusers was tested with {})",
            runtime::TESTED_OPENCLAW
        )
    }
}
