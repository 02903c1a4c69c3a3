//! `ocusers add NAME`: the arguments, the lock and the printing; the plan
//! is [`crate::provision::add`].
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::config::HostConfig;
use crate::display::human_bytes;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::policy::Tier;
use crate::privilege;
use crate::provision::add::{self, Ctx, Prepared, Request, Start};
use crate::secrets;
use crate::systemd::DbusSystemd;
use crate::tenant::{self, TenantName};

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Tenant name: lower-case letters, digits and '-', starting with a letter.
    pub name: String,
    /// Resource tier (light, standard, heavy, or one of /etc/ocusers/tiers).
    #[arg(long)]
    pub tier: Option<String>,
    /// Gateway port (first of the tenant's block); allocated from the pool if left out.
    #[arg(long)]
    pub port: Option<u16>,
    /// An extra public host name for the tenant besides NAME.DOMAIN (repeat
    /// for more); its DNS must point at this host.
    #[arg(long = "domain", value_name = "HOST")]
    pub domains: Vec<String>,
    /// An OpenClaw plugin to load besides its lean tier's list (repeat for
    /// more), e.g. `--plugin browser` on a light tenant; written into the
    /// tenant's config when it is created (the config is the tenant's own
    /// afterwards).
    #[arg(long = "plugin", value_name = "ID")]
    pub plugins: Vec<String>,
    /// Scale-to-zero: stop the gateway after this long without a client
    /// connection (15m, 1h; "off": always on; default: the tier's); the
    /// next connection through its public route wakes it.
    #[arg(long, value_name = "DURATION")]
    pub idle_stop: Option<String>,
    /// Let it sleep even though its OpenClaw config has channels or cron jobs
    /// enabled (a sleeping gateway runs none of them).
    #[arg(long)]
    pub force_idle_stop: bool,
    /// Create and enable the tenant but do not start its gateway.
    #[arg(long)]
    pub no_start: bool,
    /// Start the gateway but do not wait until it answers /readyz.
    #[arg(long, conflicts_with = "no_start")]
    pub no_wait: bool,
    /// Add even when the tenants' memory limits would exceed the capacity guard.
    #[arg(long)]
    pub force: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(paths: &Paths, args: AddArgs) -> Result<()> {
    let name = TenantName::parse(&args.name)?;
    let cfg = HostConfig::load(paths)?;
    // Everything the command line can get wrong is checked before the
    // privilege check and the lock, read-only, so bad input never needs root
    // and never changes anything; it is checked again under the lock.
    let request = Request {
        tier: args.tier.clone(),
        port: args.port,
        domains: args.domains.clone(),
        idle_stop: args.idle_stop.clone(),
        force_idle_stop: args.force_idle_stop,
    };
    add::resolve(paths, &cfg, &name, &request, &tenant::list(paths)?)?;
    let tier_name = args.tier.as_deref().unwrap_or(&cfg.tenants.default_tier);
    Tier::load(paths, tier_name)?
        .with_plugins(&args.plugins)
        .map_err(anyhow::Error::msg)?;
    if cfg.proxy.enabled() {
        cfg.proxy.check_installed()?;
    }
    privilege::require_root("add")?;
    let _lock = HostLock::acquire(paths)?;
    // The registry, read once under the lock: each reading parses every
    // tenant's file, which at 100 tenants was most of what `add` grew by.
    let registry = tenant::list(paths)?;
    let resolved = add::resolve(paths, &cfg, &name, &request, &registry)?;
    // The proxy is installed and accepts its configuration as it is, before
    // anything changes (its own message if not).
    if cfg.proxy.enabled() && paths.host_path(cfg.proxy.include()).exists() {
        cfg.proxy.validate()?;
    }
    let Prepared {
        record,
        tier,
        extra_domains,
    } = add::prepare(paths, &cfg, &name, resolved, &registry, args.force)?;
    let tier = tier
        .with_plugins(&args.plugins)
        .map_err(anyhow::Error::msg)?;
    let port = record.port;

    let sd = DbusSystemd::connect()?;
    let ctx = Ctx::new(paths, &cfg, &sd, &record, &tier, &[], extra_domains);
    let start = Start::from_flags(args.no_start, args.no_wait);
    let plan = ctx.plan(start, false);

    if args.dry_run {
        super::print_plan(
            &format!(
                "plan for `ocusers add {name}` (port {port}, tier {}, openclaw {}):",
                tier.name, record.runtime
            ),
            &plan,
        )?;
        return Ok(());
    }

    let started = Instant::now();
    let outcome = plan.apply()?;
    if !outcome.changed() {
        println!(
            "tenant {name} already exists (port {port}, tier {}); nothing changed",
            tier.name
        );
        return Ok(());
    }
    let l = &ctx.limits;
    if args.no_start {
        println!(
            "tenant {name} created, not started: start it with `systemctl start {}`",
            ctx.unit
        );
    } else if args.no_wait {
        println!(
            "tenant {name} created and started in {:.1} s, not waiting for readiness: `ocusers status {name}` shows when it is ready",
            started.elapsed().as_secs_f64()
        );
    } else {
        // The gateway's own start-to-ready time beside what ocusers adds.
        let total = started.elapsed();
        let gateway = outcome.time_of(&["start", "ready"]);
        println!(
            "tenant {name} is ready in {:.1} s (gateway start to ready {:.1} s, ocusers {:.1} s)",
            total.as_secs_f64(),
            gateway.as_secs_f64(),
            total.saturating_sub(gateway).as_secs_f64()
        );
    }
    println!(
        "  url:    http://127.0.0.1:{port}/  (loopback; ports {port}-{})",
        record.last_port()
    );
    if cfg.proxy.enabled() {
        let urls: Vec<String> = cfg
            .proxy
            .hosts_of(&record)
            .iter()
            .map(|h| format!("https://{h}/"))
            .collect();
        println!(
            "  public: {}  (through {})",
            urls.join(" "),
            cfg.proxy.program()
        );
    }
    println!(
        "  token:  {} in {} (root only)",
        secrets::TOKEN_KEY,
        paths.secrets_file(&name).display()
    );
    println!(
        "  unit:   {}  (systemctl status {0}; journalctl -u {0})",
        ctx.unit
    );
    println!(
        "  tier:   {} (MemoryHigh {}, MemoryMax {}, CPUQuota {}%, TasksMax {})",
        tier.name,
        human_bytes(Some(l.memory_high)),
        human_bytes(Some(l.memory_max)),
        l.cpu_quota_per_sec_usec / 10_000,
        l.tasks_max
    );
    if let Some(list) = &tier.plugins {
        println!(
            "  plugins: {} (a lean tier: OpenClaw's plugins.allow in the tenant's config)",
            crate::openclaw_config::allow_list(list).join(", ")
        );
    }
    Ok(())
}
