//! `ocusers status [NAME]`
use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::print_json;
use crate::display::{human_bytes, human_duration};
use crate::health::Readiness;
use crate::paths::Paths;
use crate::status::{self, TenantStatus};
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Tenant to show; all tenants if left out.
    pub name: Option<String>,
    /// Print JSON (shape documented in README.md, "Output").
    #[arg(long)]
    pub json: bool,
}

pub fn run(paths: &Paths, args: StatusArgs) -> Result<()> {
    let name = args.name.as_deref().map(TenantName::parse).transpose()?;
    let records = tenant::one_or_all(paths, name.as_ref())?;
    let sd = super::systemd_if(!records.is_empty())?;
    let statuses = status::collect_all(paths, sd.as_ref().map(|s| s as _), &records)?;
    if args.json {
        return match (&args.name, statuses.first()) {
            (Some(_), Some(one)) => print_json(one),
            _ => print_json(&json!({ "tenants": statuses })),
        };
    }
    if statuses.is_empty() {
        println!("no tenants yet: add one with `sudo ocusers add NAME`");
    }
    for (i, s) in statuses.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_one(s);
    }
    Ok(())
}

fn print_one(s: &TenantStatus) {
    let ready = match &s.readiness {
        Readiness::Ready => "ready".to_string(),
        Readiness::NotReady(d) | Readiness::Unreachable(d) => format!("not ready ({d})"),
        Readiness::Unknown(d) => format!("unknown ({d})"),
    };
    println!("{} ({})", s.name, s.unit);
    println!("  state:    {} ({}), {}", s.state, s.sub_state, s.enabled);
    println!("  ready:    {ready}");
    println!(
        "  url:      {}  (ports {}-{}, loopback)",
        s.url, s.ports[0], s.ports[1]
    );
    println!("  user:     {}", s.user);
    println!("  tier:     {}  runtime: openclaw {}", s.tier, s.runtime);
    println!(
        "  memory:   {} (high {}, max {})",
        human_bytes(s.memory.current),
        human_bytes(s.memory.high),
        human_bytes(s.memory.max)
    );
    println!(
        "  cpu:      {} used, quota {}",
        s.cpu_usage_nsec
            .map(|n| format!("{:.1}s", n as f64 / 1e9))
            .unwrap_or_else(|| "-".into()),
        s.cpu_quota_per_sec_usec
            .map(|q| format!("{}%", q / 10_000))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "  tasks:    {} (max {})",
        s.tasks.current.map(|n| n.to_string()).unwrap_or("-".into()),
        s.tasks.max.map(|n| n.to_string()).unwrap_or("-".into())
    );
    println!(
        "  uptime:   {}  restarts: {}  main pid: {}",
        human_duration(s.uptime_sec),
        s.restarts,
        s.main_pid.map(|p| p.to_string()).unwrap_or("-".into())
    );
}
