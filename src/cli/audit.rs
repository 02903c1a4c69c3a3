//! `ocusers audit [NAME] [--json]`: the tenant-boundary checklist and live
//! probes between tenants (src/audit/); exit 1 when anything fails.
use anyhow::Result;
use clap::Args;

use super::print_json;
use crate::audit::{self, Report};
use crate::config::HostConfig;
use crate::error::Error;
use crate::paths::Paths;
use crate::privilege;
use crate::systemd::DbusSystemd;
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Tenant to audit (against all others); every tenant if left out.
    pub name: Option<String>,
    /// Print JSON (shape documented in README.md, "Audit").
    #[arg(long)]
    pub json: bool,
    /// Skip `openclaw security audit` inside each running tenant's sandbox
    /// (a few seconds per tenant).
    #[arg(long)]
    pub no_openclaw: bool,
}

pub fn run(paths: &Paths, args: AuditArgs) -> Result<()> {
    let only = args.name.as_deref().map(TenantName::parse).transpose()?;
    let cfg = HostConfig::load(paths)?;
    privilege::require_root("audit")?;
    let records = tenant::list(paths)?;
    if let Some(n) = &only
        && !records.iter().any(|r| r.name == *n)
    {
        return Err(Error::UnknownTenant {
            name: n.to_string(),
        }
        .into());
    }
    let sd = DbusSystemd::connect()?;
    let report = audit::run(paths, &cfg, &sd, &records, only.as_ref(), !args.no_openclaw)?;
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    if report.ok {
        Ok(())
    } else {
        Err(Error::AuditFailed {
            count: report.failures.len(),
        }
        .into())
    }
}

fn print_human(r: &Report) {
    println!("layers:");
    for l in &r.layers {
        let state = if l.active { "active" } else { "INACTIVE" };
        println!("  {:<9} {:<9} {}", l.name, state, l.detail);
    }
    if r.tenants.is_empty() {
        println!("no tenants yet");
    }
    for t in &r.tenants {
        println!(
            "{} ({}, ports {}-{}):",
            t.name, t.user, t.ports[0], t.ports[1]
        );
        for c in &t.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            println!("  {mark} {:<14} {}", c.check, c.detail);
        }
    }
    if !r.probes.is_empty() {
        println!("probes (each tenant against the others and the host; denied is good):");
        let mut pairs: Vec<(&str, &str)> = r
            .probes
            .iter()
            .map(|p| (p.from.as_str(), p.to.as_str()))
            .collect();
        pairs.dedup();
        for (from, to) in pairs {
            let line: Vec<String> = r
                .probes
                .iter()
                .filter(|p| p.from == from && p.to == to)
                .map(|p| {
                    let mark = if p.ok { "" } else { "FAIL " };
                    format!("{} {mark}{}", p.probe, p.result)
                })
                .collect();
            println!("  {from} -> {to}: {}", line.join(", "));
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    for f in &r.failures {
        println!("FAIL: {f}");
    }
    println!(
        "audit: {} failure(s), {} warning(s)",
        r.failures.len(),
        r.warnings.len()
    );
}
