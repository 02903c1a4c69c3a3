//! `ocusers domain add|remove NAME HOST`: an extra public host name of one
//! tenant, without an apply file. Checked as `apply` checks a file's
//! domains (src/onetenant.rs) and made by apply's plan: the host link in
//! the proxy's hosts directory, and the include re-rendered (and the proxy
//! reloaded) only when the host is outside `*.DOMAIN`.
use anyhow::Result;
use clap::{Args, Subcommand};

use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::onetenant;
use crate::paths::Paths;
use crate::privilege;
use crate::provision::converge::{self, Opts};
use crate::tenant::{self, TenantName};

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Route one more public host name to the tenant (its DNS must point at this host).
    Add(DomainArgs),
    /// Take an extra host name away from the tenant.
    Remove(DomainArgs),
}

#[derive(Debug, Args)]
pub struct DomainArgs {
    /// The tenant.
    pub name: String,
    /// The host name, like alice.example.org.
    pub host: String,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(paths: &Paths, cmd: DomainCommand) -> Result<()> {
    let (verb, args) = match cmd {
        DomainCommand::Add(a) => ("add", a),
        DomainCommand::Remove(a) => ("remove", a),
    };
    let name = TenantName::parse(&args.name)?;
    let cfg = HostConfig::load(paths)?;
    let change = |registry: &[tenant::Record]| match verb {
        "add" => onetenant::domain_add(paths, &cfg, registry, &name, &args.host),
        _ => onetenant::domain_remove(paths, &cfg, registry, &name, &args.host),
    };
    // Checked before root and the lock, and again under the lock.
    change(&tenant::list(paths)?)?;
    if cfg.proxy.enabled() {
        cfg.proxy.check_installed()?;
    }
    privilege::require_root(&format!("domain {verb}"))?;
    let _lock = HostLock::acquire(paths)?;
    let desired = change(&tenant::list(paths)?)?;
    if !cfg.proxy.enabled() {
        println!(
            "note: public access is off ([proxy] in /etc/ocusers/ocusers.toml): the domain is recorded, and routed once it is on"
        );
    }
    let sd = crate::systemd::DbusSystemd::connect()?;
    let opts = Opts {
        command: format!("ocusers domain {verb} {name} {}", args.host),
        file: None,
        action: Some(if verb == "add" {
            "domain-add"
        } else {
            "domain-remove"
        }),
        prune: false,
        dry_run: args.dry_run,
        no_start: !onetenant::running(&sd, &name)?,
        no_wait: false,
        force: false,
    };
    converge::converge(paths, &sd, &cfg, std::slice::from_ref(&desired), &opts)
}
