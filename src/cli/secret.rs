//! `ocusers secret set|unset|list NAME ...`: the tenant's provider keys and
//! other secrets in its root-only environment file. Values come from stdin
//! or a file, never from argv; the journal records tenant, action and key
//! name, never the value.
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::print_json;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::plan::Plan;
use crate::privilege;
use crate::provision::{push_restart, secret};
use crate::secrets;
use crate::systemd::DbusSystemd;
use crate::tenant::{Record, registered};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret (value from stdin, or --file); restart to apply (or --restart).
    Set(SetArgs),
    /// Remove a secret; restart to apply (or --restart).
    Unset(UnsetArgs),
    /// The names of a tenant's secrets (never the values).
    List {
        name: String,
        /// Print JSON: {"tenant": NAME, "keys": [...]}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SetArgs {
    pub name: String,
    /// Variable name, like OPENAI_API_KEY (upper-case letters, digits, '_').
    pub key: String,
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Restart the gateway afterwards and wait until it is ready.
    #[arg(long)]
    pub restart: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct UnsetArgs {
    pub name: String,
    pub key: String,
    /// Restart the gateway afterwards and wait until it is ready.
    #[arg(long)]
    pub restart: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(paths: &Paths, cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Set(args) => set(paths, args),
        SecretCommand::Unset(args) => unset(paths, args),
        SecretCommand::List { name, json } => list(paths, &name, json),
    }
}

fn set(paths: &Paths, args: SetArgs) -> Result<()> {
    secrets::check_operator_key(&args.key)?;
    let record = registered(paths, &args.name)?;
    privilege::require_root("secret set")?;
    let raw = match &args.file {
        Some(f) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        None => {
            if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
                anyhow::bail!(
                    "give the value of {} on stdin (`printf %s VALUE | sudo ocusers secret set {} {}`) or with --file PATH; never on the command line",
                    args.key,
                    record.name,
                    args.key
                );
            }
            let mut buf = Vec::new();
            std::io::stdin()
                .take(64 * 1024 + 2)
                .read_to_end(&mut buf)
                .context("reading the value from stdin")?;
            buf
        }
    };
    let value = secrets::value_from_input(&args.key, &raw)?;
    let _lock = HostLock::acquire(paths)?;
    let sd = super::systemd_if(args.restart)?;
    let key = args.key.as_str();
    let plan = secret::set(paths, &record, key, value);
    apply(paths, &record, plan, key, sd.as_ref(), args.dry_run)
}

fn unset(paths: &Paths, args: UnsetArgs) -> Result<()> {
    secrets::check_operator_key(&args.key)?;
    let record = registered(paths, &args.name)?;
    privilege::require_root("secret unset")?;
    let _lock = HostLock::acquire(paths)?;
    let sd = super::systemd_if(args.restart)?;
    let key = args.key.as_str();
    let plan = secret::unset(paths, &record, key);
    apply(paths, &record, plan, key, sd.as_ref(), args.dry_run)
}

fn apply<'a>(
    paths: &'a Paths,
    record: &'a Record,
    mut plan: Plan<'a>,
    key: &str,
    sd: Option<&'a DbusSystemd>,
    dry_run: bool,
) -> Result<()> {
    let name = &record.name;
    let restart = sd.is_some();
    if let Some(sd) = sd {
        push_restart(&mut plan, paths, sd, record);
    }
    if dry_run {
        super::print_plan(&format!("plan for tenant {name}:"), &plan)?;
        return Ok(());
    }
    let outcome = plan.apply()?;
    if !outcome.changed() {
        println!("{key} of tenant {name} is already so; nothing changed");
    } else if restart {
        println!("{key} of tenant {name} changed; gateway restarted and ready");
    } else {
        println!(
            "{key} of tenant {name} changed; the gateway sees it after `sudo ocusers restart {name}`"
        );
    }
    Ok(())
}

fn list(paths: &Paths, raw: &str, json: bool) -> Result<()> {
    let record = registered(paths, raw)?;
    privilege::require_root("secret list")?;
    let env = secret::load_env(paths, &record.name)?;
    // The operator's secrets; ocusers' own keys are listed apart.
    let (own, user): (Vec<&str>, Vec<&str>) =
        env.keys().partition(|k| secrets::RESERVED_KEYS.contains(k));
    if json {
        return print_json(&json!({
            "tenant": record.name.as_str(),
            "keys": user,
            "managed_by_ocusers": own,
        }));
    }
    if user.is_empty() {
        println!("tenant {} has no secrets of its own yet", record.name);
    }
    for k in &user {
        println!("{k}");
    }
    println!("(managed by ocusers: {})", own.join(", "));
    Ok(())
}
