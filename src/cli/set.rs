//! `ocusers set NAME --tier T | --memory-high SIZE | --memory-max SIZE |
//! --cpu-quota PERCENT | --tasks-max N`: change one tenant's tier or limit
//! overrides without an apply file. The change is checked as `apply`
//! checks a file (src/onetenant.rs) and goes through apply's plan: limits
//! live over D-Bus, the gateway restarted only when its environment changes
//! (a new tier's V8 heap).
use anyhow::Result;
use clap::{ArgGroup, Args};

use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::onetenant::{self, Settings};
use crate::paths::Paths;
use crate::privilege;
use crate::provision::converge::{self, Opts};
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("setting")
        .required(true)
        .multiple(true)
        .args(["tier", "memory_high", "memory_max", "cpu_quota", "tasks_max"])
))]
pub struct SetArgs {
    /// The tenant to change.
    pub name: String,
    /// Move the tenant to another resource tier (its own limit overrides stay).
    #[arg(long)]
    pub tier: Option<String>,
    /// MemoryHigh of the tenant's unit, like 1536M or 3G (`tier`: the tier's).
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// MemoryMax of the tenant's unit, like 2G (`tier`: the tier's).
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// CPUQuota of the tenant's unit, like 150% (`tier`: the tier's).
    #[arg(long, value_name = "PERCENT")]
    pub cpu_quota: Option<String>,
    /// TasksMax of the tenant's unit (`tier`: the tier's).
    #[arg(long, value_name = "N")]
    pub tasks_max: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not wait for /readyz when the gateway is restarted (a new tier's V8 heap).
    #[arg(long)]
    pub no_wait: bool,
    /// Set even when the tenants' memory limits would exceed the capacity guard.
    #[arg(long)]
    pub force: bool,
}

pub fn run(paths: &Paths, args: SetArgs) -> Result<()> {
    let name = TenantName::parse(&args.name)?;
    let cfg = HostConfig::load(paths)?;
    let settings = Settings {
        tier: args.tier.clone(),
        memory_high: args.memory_high.clone(),
        memory_max: args.memory_max.clone(),
        cpu_quota: args.cpu_quota.clone(),
        tasks_max: args.tasks_max.clone(),
    };
    // Checked before root and the lock (bad input needs neither), and
    // again under the lock.
    let command = command_line(&args);
    let registry = tenant::list(paths)?;
    let desired = onetenant::set(paths, &registry, &name, &settings)?;
    if !args.force {
        // With --force, apply's guard below warns once.
        onetenant::check_capacity(paths, &cfg, &registry, &desired, &command, false)?;
    }
    privilege::require_root("set")?;
    let _lock = HostLock::acquire(paths)?;
    let desired = onetenant::set(paths, &tenant::list(paths)?, &name, &settings)?;
    let sd = crate::systemd::DbusSystemd::connect()?;
    let opts = Opts {
        command,
        file: None,
        action: Some("set"),
        prune: false,
        dry_run: args.dry_run,
        no_start: !onetenant::running(&sd, &name)?,
        no_wait: args.no_wait,
        force: args.force,
    };
    converge::converge(paths, &sd, &cfg, std::slice::from_ref(&desired), &opts)
}

/// The command as the operator typed it, for the plan's title.
fn command_line(args: &SetArgs) -> String {
    let mut out = format!("ocusers set {}", args.name);
    for (flag, value) in [
        ("--tier", &args.tier),
        ("--memory-high", &args.memory_high),
        ("--memory-max", &args.memory_max),
        ("--cpu-quota", &args.cpu_quota),
        ("--tasks-max", &args.tasks_max),
    ] {
        if let Some(v) = value {
            out.push_str(&format!(" {flag} {v}"));
        }
    }
    out
}
