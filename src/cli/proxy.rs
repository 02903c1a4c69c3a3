//! `ocusers proxy sync|show`: the reverse proxy's routes from the registry.
use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::paths::{self, Paths};
use crate::plan::Plan;
use crate::privilege;
use crate::proxy::{self, ProxyConfig};
use crate::systemd::DbusSystemd;
use crate::tenant;

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Rewrite ocusers' proxy include and every tenant's route from the
    /// registry, check the proxy's config and reload it if it changed.
    Sync(SyncArgs),
    /// Print the include ocusers would write and the routes of every host name.
    Show(super::JsonArg),
    /// Answer one on-demand TLS `ask` request from Caddy on stdin/stdout
    /// (run by ocusers-ask@.service for each connection; internal).
    #[command(hide = true)]
    Ask,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(paths: &Paths, cmd: ProxyCommand) -> Result<()> {
    match cmd {
        ProxyCommand::Sync(args) => sync(paths, args),
        ProxyCommand::Show(args) => show(paths, args.json),
        ProxyCommand::Ask => ask(paths),
    }
}

fn ask(paths: &Paths) -> Result<()> {
    let a = proxy::ask::serve(paths)?;
    // One line in the unit's journal per answer, for the operator.
    eprintln!(
        "ask: {} {} for {}",
        a.status,
        a.reason,
        a.host.as_deref().unwrap_or("(no valid host name)")
    );
    Ok(())
}

fn sync(paths: &Paths, args: SyncArgs) -> Result<()> {
    let cfg = HostConfig::load(paths)?.proxy;
    if cfg.enabled() {
        cfg.check_installed()?;
    }
    privilege::require_root("proxy sync")?;
    let _lock = HostLock::acquire(paths)?;
    let records = tenant::list(paths)?;
    let sd = DbusSystemd::connect()?;
    let mut plan = Plan::new("-", "proxy-sync");
    if cfg.enabled() {
        for step in proxy::global_steps(paths, &cfg, &sd, &proxy::extra_domains(&records)) {
            plan.push(step);
        }
        for r in &records {
            plan.push(proxy::route_step(paths, &cfg, &sd, r));
        }
    } else {
        for r in &records {
            plan.push(proxy::route_removal_step(paths, &sd, &r.name));
        }
    }
    plan.push(proxy::stale_links_step(paths, &cfg, &records));
    // Each gateway's public origins follow the proxy's settings.
    for r in &records {
        plan.push(proxy::origins_step(paths, &cfg, r));
    }
    if args.dry_run {
        super::print_plan("plan for `ocusers proxy sync`:", &plan)?;
        return Ok(());
    }
    let outcome = plan.apply()?;
    if !cfg.enabled() {
        println!(
            "public access is off ([proxy] domain is empty or kind = \"none\"): no tenant is routed"
        );
    } else if outcome.changed() {
        println!(
            "proxy in step: {} tenant(s) at https://NAME.{} through {}",
            records.len(),
            cfg.domain,
            cfg.program()
        );
    } else {
        println!("proxy already in step; nothing changed");
    }
    Ok(())
}

#[derive(Serialize)]
struct Shown<'a> {
    enabled: bool,
    kind: &'a str,
    installed: bool,
    domain: &'a str,
    include: String,
    config: Option<String>,
    routes: Vec<Route>,
}

#[derive(Serialize)]
struct Route {
    host: String,
    tenant: String,
    socket: String,
    linked: bool,
}

fn show(paths: &Paths, json: bool) -> Result<()> {
    let cfg: ProxyConfig = HostConfig::load(paths)?.proxy;
    let records = tenant::list(paths)?;
    let linked = proxy::links(paths)?;
    let routes: Vec<Route> = if cfg.enabled() {
        records
            .iter()
            .flat_map(|r| {
                cfg.hosts_of(r).into_iter().map(|host| Route {
                    linked: linked.contains(&(host.clone(), r.name.to_string())),
                    socket: paths::proxy_socket_path(&r.name),
                    tenant: r.name.to_string(),
                    host,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let shown = Shown {
        enabled: cfg.enabled(),
        kind: cfg.program(),
        installed: cfg.check_installed().is_ok(),
        domain: &cfg.domain,
        include: cfg.include().display().to_string(),
        config: cfg
            .enabled()
            .then(|| cfg.render(&proxy::extra_domains(&records))),
        routes,
    };
    if json {
        return super::print_json(&shown);
    }
    let Some(config) = &shown.config else {
        println!(
            "public access is off: set [proxy] domain in {} (and kind, tls), then run `sudo ocusers proxy sync`",
            paths.host_config().display()
        );
        return Ok(());
    };
    println!("# {} ({})", shown.include, shown.kind);
    if !shown.installed {
        println!("# {} is not installed: sudo apt install {0}", shown.kind);
    }
    print!("{config}");
    println!();
    println!("{:<40} {:<20} {:<34} LINKED", "HOST", "TENANT", "SOCKET");
    for r in &shown.routes {
        println!(
            "{:<40} {:<20} {:<34} {}",
            r.host,
            r.tenant,
            r.socket,
            if r.linked { "yes" } else { "no" }
        );
    }
    Ok(())
}
