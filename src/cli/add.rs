//! `ocusers add NAME`: validate everything, then one plan of idempotent
//! steps; a failure rolls back what this run did, and re-running after a
//! crash completes the tenant.
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use crate::capacity;
use crate::config::HostConfig;
use crate::error::Error;
use crate::health;
use crate::identity::{self, Account};
use crate::lock::HostLock;
use crate::openclaw_config;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::policy::{Limits, Tier};
use crate::ports;
use crate::privilege;
use crate::proxy::{self, ProxyConfig};
use crate::runtime;
use crate::secrets::{self, EnvFile};
use crate::statedir;
use crate::status::human_bytes;
use crate::systemd::{DbusSystemd, Systemd};
use crate::tenant::{self, Record, TenantName};

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
    resolve(paths, &cfg, &name, &args, &tenant::list(paths)?)?;
    if cfg.proxy.enabled() {
        cfg.proxy.check_installed()?;
    }
    privilege::require_root("add")?;
    let _lock = HostLock::acquire(paths)?;
    // The registry, read once under the lock: each reading parses every
    // tenant's file, which at 100 tenants was most of what `add` grew by.
    let registry = tenant::list(paths)?;
    let (existing, tier, port, domains) = resolve(paths, &cfg, &name, &args, &registry)?;
    // The proxy is installed and accepts its configuration as it is, before
    // anything changes (its own message if not).
    if cfg.proxy.enabled() && paths.host_path(cfg.proxy.include()).exists() {
        cfg.proxy.validate()?;
    }
    let user = paths::user_name(&name);
    check_identity(&name, &user, existing.is_some())?;

    let runtime_version = match &existing {
        Some(r) => r.runtime.clone(),
        None => runtime::default_version(paths).ok_or(Error::NoRuntime)?,
    };
    if runtime::read_marker(&paths.runtime_dir(&runtime_version)).is_none() {
        return Err(Error::RuntimeMissing {
            version: runtime_version,
        }
        .into());
    }

    let record = Record {
        name: name.clone(),
        port,
        block: existing.as_ref().map_or(cfg.ports.block, |r| r.block),
        tier: tier.name.clone(),
        runtime: runtime_version,
        created: existing
            .as_ref()
            .map_or_else(runtime::now_rfc3339, |r| r.created.clone()),
        domains,
        limits: existing
            .as_ref()
            .map_or_else(Default::default, |r| r.limits.clone()),
    };
    let limits = record
        .limits
        .apply(tier.limits)
        .map_err(|message| Error::BadFile {
            path: paths.registry_file(&name),
            message,
        })?;
    if existing.is_none() {
        let committed = capacity::committed(paths, &registry)?.saturating_add(limits.memory_max);
        capacity::check(
            &cfg.capacity,
            capacity::host_ram(paths)?,
            committed,
            &format!(
                "tenant {name} (tier {}, MemoryMax {})",
                tier.name,
                human_bytes(Some(limits.memory_max))
            ),
            args.force,
        )?;
    }
    // Every tenant's extra domains, this one's as they will be.
    let mut extra_domains: Vec<String> = proxy::extra_domains(
        &registry
            .iter()
            .filter(|r| r.name != name)
            .cloned()
            .collect::<Vec<_>>(),
    );
    extra_domains.extend(record.domains.iter().cloned());

    let sd = DbusSystemd::connect()?;
    let ctx = Ctx {
        paths,
        cfg: &cfg,
        sd: &sd,
        record: &record,
        tier: &tier,
        limits,
        secrets: &[],
        user: &user,
        unit: paths::unit_name(&name),
        proxy: &cfg.proxy,
        extra_domains,
        ready_timeout: Duration::from_secs(cfg.tenants.ready_timeout),
    };
    let start = match (args.no_start, args.no_wait) {
        (true, _) => Start::No,
        (false, true) => Start::NoWait,
        (false, false) => Start::Wait,
    };
    let plan = ctx.plan(start, false);

    if args.dry_run {
        println!(
            "plan for `ocusers add {name}` (port {port}, tier {}, openclaw {}):",
            tier.name, record.runtime
        );
        print!("{}", plan.describe()?);
        println!("dry run: nothing changed");
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
    Ok(())
}

/// The tenant's registry entry (if it exists), tier and port, from the
/// command line, the registry and the live system.
fn resolve(
    paths: &Paths,
    cfg: &HostConfig,
    name: &TenantName,
    args: &AddArgs,
    registry: &[Record],
) -> Result<(Option<Record>, Tier, u16, Vec<String>)> {
    let existing = tenant::load(paths, name)?;
    if existing.is_none() {
        name.check_new()?;
    }
    let mut requested = args.domains.clone();
    requested.sort();
    requested.dedup();
    let domains = match &existing {
        Some(r) if !requested.is_empty() && requested != r.domains => {
            // README's `add alice --domain alice.example.org` after an
            // earlier `add alice`: say how to change one tenant's domains.
            let fix: Vec<String> = requested
                .iter()
                .filter(|d| !r.domains.contains(d))
                .map(|d| format!("`ocusers domain add {name} {d}`"))
                .chain(
                    r.domains
                        .iter()
                        .filter(|d| !requested.contains(d))
                        .map(|d| format!("`ocusers domain remove {name} {d}`")),
                )
                .collect();
            return Err(Error::Conflict {
                name: name.to_string(),
                what: format!("domains {:?}", r.domains),
                fix: format!("to change them use {}", fix.join(" and ")),
            }
            .into());
        }
        Some(r) => r.domains.clone(),
        None => {
            proxy::check_extra_domains(&cfg.proxy, name, &requested, registry)?;
            // Its own NAME.DOMAIN must not be another tenant's extra domain
            // (`ocusers domain add`): the new route would take it over.
            if cfg.proxy.enabled() {
                let own = cfg.proxy.host_of(name);
                if let Some(other) = registry.iter().find(|r| r.domains.contains(&own)) {
                    return Err(Error::InvalidName {
                        name: name.to_string(),
                        reason: format!(
                            "its public name {own} is an extra domain of tenant {}; choose another name or run `ocusers domain remove {} {own}` first",
                            other.name, other.name
                        ),
                    }
                    .into());
                }
            }
            requested
        }
    };
    let tier_name = match (&existing, &args.tier) {
        (Some(r), Some(t)) if *t != r.tier => {
            return Err(Error::Conflict {
                name: name.to_string(),
                what: format!("tier {}", r.tier),
                fix: format!("to change it use `ocusers set {name} --tier {t}`"),
            }
            .into());
        }
        (Some(r), _) => r.tier.clone(),
        (None, t) => t
            .clone()
            .unwrap_or_else(|| cfg.tenants.default_tier.clone()),
    };
    let tier = Tier::load(paths, &tier_name)?;
    let port = match (&existing, args.port) {
        (Some(r), Some(p)) if p != r.port => {
            return Err(Error::Conflict {
                name: name.to_string(),
                what: format!("port {}", r.port),
                fix: "leave --port out or remove the tenant first".into(),
            }
            .into());
        }
        (Some(r), _) => r.port,
        (None, requested) => {
            let live = ports::live_listeners(paths.root())?;
            match requested {
                Some(p) => {
                    ports::check_requested(p, &cfg.ports, registry, &live)?;
                    p
                }
                None => ports::allocate(&cfg.ports, registry, &live)?,
            }
        }
    };
    Ok((existing, tier, port, domains))
}

/// A tenant's user must be ours: refuse names of existing accounts and an
/// `oc-NAME` user that ocusers did not make.
pub(crate) fn check_identity(name: &TenantName, user: &str, registered: bool) -> Result<()> {
    if identity::lookup(name.as_str()).is_some() {
        return Err(Error::InvalidName {
            name: name.to_string(),
            reason: "a user account of that name exists on this host; choose another name".into(),
        }
        .into());
    }
    if let Some(account) = identity::lookup(user) {
        // A user with our home path is ours: left by an interrupted `add`.
        if !registered && account.home != paths::home_dir(name) {
            return Err(Error::ForeignUser {
                user: user.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// Whether the plan starts the gateway, and waits for it to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    No,
    NoWait,
    Wait,
}

/// Everything the add plan needs; `ocusers apply` builds one per tenant, so
/// the same plan creates a tenant and converges an existing one.
pub(crate) struct Ctx<'a> {
    pub paths: &'a Paths,
    pub cfg: &'a HostConfig,
    pub sd: &'a dyn Systemd,
    pub record: &'a Record,
    pub tier: &'a Tier,
    /// The tier's limits with the record's overrides.
    pub limits: Limits,
    /// Extra `KEY=value` entries for the env file (secrets from `apply`).
    pub secrets: &'a [(String, String)],
    pub user: &'a str,
    pub unit: String,
    pub ready_timeout: Duration,
    pub proxy: &'a ProxyConfig,
    /// Every tenant's extra domains as they will be (the proxy's include).
    pub extra_domains: Vec<String>,
}

impl<'a> Ctx<'a> {
    /// The context that re-creates an existing tenant from its record
    /// (`restore`, `repair`): its tier's limits with the record's overrides
    /// (the tier's alone if they no longer apply), no new secrets.
    pub(crate) fn for_record(
        paths: &'a Paths,
        cfg: &'a HostConfig,
        sd: &'a dyn Systemd,
        record: &'a Record,
        tier: &'a Tier,
        user: &'a str,
        extra_domains: Vec<String>,
    ) -> Ctx<'a> {
        Ctx {
            paths,
            cfg,
            sd,
            record,
            tier,
            limits: record.limits.apply(tier.limits).unwrap_or(tier.limits),
            secrets: &[],
            user,
            unit: paths::unit_name(&record.name),
            proxy: &cfg.proxy,
            extra_domains,
            ready_timeout: Duration::from_secs(cfg.tenants.ready_timeout),
        }
    }

    fn account(&self) -> Result<Account> {
        identity::lookup(self.user)
            .ok_or_else(|| anyhow::anyhow!("user {} does not exist", self.user))
    }

    fn desired_env(&self, current: Option<EnvFile>) -> Result<EnvFile> {
        let mut env = current.unwrap_or_default();
        if env.get(secrets::TOKEN_KEY).is_none() {
            env.set(secrets::TOKEN_KEY, &secrets::new_token()?)?;
        }
        env.set(secrets::PORT_KEY, &self.record.port.to_string())?;
        env.set(
            secrets::NODE_OPTIONS_KEY,
            &secrets::node_options(self.tier.v8_heap_mb),
        )?;
        crate::manifest::set_secrets(&mut env, self.secrets)?;
        Ok(env)
    }

    /// Whether the env file on disk is what the plan wants.
    fn env_is_current(&self) -> Result<bool> {
        Ok(
            match EnvFile::load(&self.paths.secrets_file(&self.record.name))? {
                Some(current) => self.desired_env(Some(current.clone()))? == current,
                None => false,
            },
        )
    }

    /// The add plan. `restart_stale` (for `apply`) adds a last step that
    /// restarts a running gateway started before its env file last changed
    /// (a new tier's V8 heap, new secrets), so it reads the new values.
    pub(crate) fn plan(&'a self, start: Start, restart_stale: bool) -> Plan<'a> {
        let p = self.paths;
        let r = self.record;
        let name = &r.name;
        let mut plan = Plan::new(name.as_str(), "add");

        // An existing tenant's entry (apply, set, domain) is put back as it
        // was, not removed, when a later step fails.
        let entry_before = tenant::load(p, name).ok().flatten();
        plan.push(
            Step::new(
                format!(
                    "record tenant in {} (port block {}-{})",
                    p.registry_file(name).display(),
                    r.port,
                    r.last_port()
                ),
                move || Ok(tenant::load(p, name)?.as_ref() == Some(r)),
                move || tenant::save(p, r),
            )
            .revert(move || match &entry_before {
                Some(old) => tenant::save(p, old),
                None => tenant::remove(p, name),
            }),
        );

        let state = p.state_dir(name);
        plan.push(
            Step::new(
                format!("create system user and group {}", self.user),
                move || Ok(identity::lookup(self.user).is_some()),
                move || {
                    identity::create_user(
                        self.user,
                        &paths::home_dir(name),
                        &format!("OpenClaw tenant {name} (ocusers)"),
                    )
                },
            )
            .revert(move || identity::delete_user(self.user)),
        );

        // Root's steps in the state directory go through descriptors and
        // refuse a link, FIFO or device where its own file or directory
        // belongs (see src/statedir.rs). Reverts remove only what this run
        // made.
        let state_made = std::rc::Rc::new(std::cell::Cell::new(false));
        let (made_apply, made_revert) = (state_made.clone(), state_made);
        plan.push(
            Step::new(
                format!(
                    "create state directory {} (0700, {})",
                    state.display(),
                    self.user
                ),
                move || {
                    Ok(self
                        .account()
                        .is_ok_and(|a| statedir::state_is(p, name, &a)))
                },
                move || {
                    let existed = statedir::state_exists(p, name);
                    statedir::ensure_state(p, name, &self.account()?)?;
                    made_apply.set(!existed);
                    Ok(())
                },
            )
            .revert(move || {
                if made_revert.get() {
                    statedir::remove_state(p, name)?;
                }
                Ok(())
            }),
        );

        let config_path = state.join(statedir::CONFIG);
        let config_written = std::rc::Rc::new(std::cell::Cell::new(false));
        let (written_apply, written_revert) = (config_written.clone(), config_written);
        plan.push(
            Step::new(
                format!("write OpenClaw config {}", config_path.display()),
                move || Ok(statedir::config_is_there(p, name)),
                move || {
                    let account = self.account()?;
                    let text = openclaw_config::render(name, r.port);
                    written_apply.set(statedir::ensure_config(p, name, &account, &text)?);
                    Ok(())
                },
            )
            .revert(move || {
                if written_revert.get() {
                    statedir::remove_config(p, name)?;
                }
                Ok(())
            }),
        );

        let env_path = p.secrets_file(name);
        let env_existed = crate::fsutil::exists(&env_path);
        let env_apply = env_path.clone();
        let mut step = Step::new(
            format!(
                "write secrets file {} (0600 root; gateway token, port, V8 heap{})",
                env_path.display(),
                self.secrets
                    .iter()
                    .map(|(k, _)| format!(", {k}"))
                    .collect::<String>()
            ),
            move || self.env_is_current(),
            move || {
                let env = self.desired_env(EnvFile::load(&env_apply)?)?;
                env.store(&env_apply, name.as_str())
            },
        );
        if !env_existed {
            step = step.revert(move || crate::fsutil::remove_file(&env_path));
        }
        plan.push(step);

        plan.push(
            Step::new(
                format!(
                    "use OpenClaw runtime {} ({})",
                    r.runtime,
                    p.tenant_runtime_link(name).display()
                ),
                move || Ok(runtime::tenant_link_is(p, name, &r.runtime)),
                move || runtime::link_tenant(p, name, &r.runtime),
            )
            .revert(move || crate::fsutil::remove_file(&p.tenant_runtime_link(name))),
        );

        let unit = self.unit.as_str();
        // Closed before the gateway first starts: other tenants cannot bind
        // this block, nor connect to it (see src/firewall.rs). The bind lists
        // and the limits go in one call, in drop-in order (see
        // `systemd::limits_and_bind_props`): in two, systemd 252 would flag
        // the unit as needing a daemon-reload.
        let bind = crate::isolation::socket_bind_for(self.cfg, r);
        let bind_check = bind.clone();
        let l = self.limits;
        let limits_before = std::rc::Rc::new(std::cell::RefCell::new(None));
        let revert_to = limits_before.clone();
        plan.push(
            Step::new(
                format!(
                    "restrict bind() in {unit} to its own ports (SocketBindAllow={} SocketBindDeny={}) and set limits of tier {}{} (MemoryHigh={} MemoryMax={} CPUQuota={}% TasksMax={})",
                    bind.allow[0],
                    bind.deny[0],
                    self.tier.name,
                    if r.limits.is_empty() { "" } else { " with overrides" },
                    l.memory_high,
                    l.memory_max,
                    l.cpu_quota_per_sec_usec / 10_000,
                    l.tasks_max
                ),
                move || {
                    let u = self.sd.unit(unit)?;
                    Ok(u.memory_high == Some(l.memory_high)
                        && u.memory_max == Some(l.memory_max)
                        && u.cpu_quota_per_sec_usec == Some(l.cpu_quota_per_sec_usec)
                        && u.tasks_max == Some(l.tasks_max)
                        && self.sd.socket_bind(unit)? == bind_check
                        && p.unit_control_dir(unit)
                            .join("50-SocketBindAllow.conf")
                            .is_file())
                },
                move || {
                    // What the unit had, so a failure later puts it back
                    // (an existing tenant keeps its bind lists and limits).
                    let u = self.sd.unit(unit)?;
                    if let (Some(memory_high), Some(memory_max), Some(cpu), Some(tasks_max)) =
                        (u.memory_high, u.memory_max, u.cpu_quota_per_sec_usec, u.tasks_max)
                        && p.unit_control_dir(unit)
                            .join("50-SocketBindAllow.conf")
                            .is_file()
                    {
                        let old = Limits {
                            memory_high,
                            memory_max,
                            cpu_quota_per_sec_usec: cpu,
                            tasks_max,
                        };
                        limits_before.replace(Some((old, self.sd.socket_bind(unit)?)));
                    }
                    self.sd.set_limits_and_bind(unit, &l, &bind)
                },
            )
            .revert(move || match revert_to.take() {
                Some((old, old_bind)) => self.sd.set_limits_and_bind(unit, &old, &old_bind),
                None => crate::fsutil::remove_tree(&p.unit_control_dir(unit)),
            }),
        );
        let cfg = self.cfg;
        plan.push(
            Step::new(
                format!(
                    "firewall: ports {}-{} to all but {} and root, host addresses outside them closed to {} ({}, table inet {})",
                    r.port,
                    r.last_port(),
                    self.user,
                    self.user,
                    p.firewall_file().display(),
                    crate::firewall::TABLE
                ),
                // The rules are made from the registry: before this tenant's
                // record is written (a dry run, the plan `apply` prints) they
                // cannot include it yet, whatever the file says now.
                move || {
                    Ok(cfg.isolation.firewall == crate::config::FirewallMode::Off
                        || (tenant::load(p, name)?.is_some()
                            && crate::firewall::is_current(p, cfg, None)?))
                },
                move || crate::firewall::sync(p, cfg, None),
            )
            .revert(move || crate::firewall::sync(p, cfg, Some(name))),
        );

        plan.push(
            Step::new(
                format!("enable {unit} (wanted by openclaw.target; daemon-reload if systemd then asks for one, as `systemctl enable` does)"),
                move || Ok(self.sd.unit_file_state(unit)? == "enabled"),
                move || self.sd.enable(unit),
            )
            .revert(move || self.sd.disable(unit)),
        );

        // The gateway's public origins, also with public access off (its
        // config includes the files: they must exist before it starts).
        plan.push(proxy::origins_step(p, self.proxy, r));
        if self.proxy.enabled() {
            for step in proxy::global_steps(p, self.proxy, self.sd, &self.extra_domains) {
                plan.push(step);
            }
            plan.push(proxy::route_step(p, self.proxy, self.sd, r));
        }

        if start != Start::No {
            plan.push(
                Step::new(
                    format!("start {unit}"),
                    move || Ok(self.sd.unit(unit)?.is_active()),
                    move || {
                        self.sd.reset_failed(unit)?;
                        self.sd.start(unit)
                    },
                )
                .revert(move || self.sd.stop(unit))
                .tag("start"),
            );
        }
        if start == Start::Wait {
            plan.push(
                Step::new(
                    format!(
                        "wait until the gateway answers {} (at most {} s)",
                        health::readyz_url(r.port),
                        self.ready_timeout.as_secs()
                    ),
                    move || Ok(health::probe(r.port, Duration::from_secs(2)).is_ready()),
                    move || {
                        crate::status::wait_unit_ready(self.sd, unit, r.port, self.ready_timeout)
                            .map(|_| ())
                            .map_err(|detail| {
                                Error::NotReady {
                                    name: name.to_string(),
                                    seconds: self.ready_timeout.as_secs(),
                                    detail,
                                }
                                .into()
                            })
                    },
                )
                .tag("ready"),
            );
        }
        if start != Start::No && restart_stale {
            let env_path = p.secrets_file(name);
            let wait = start == Start::Wait;
            plan.push(
                Step::new(
                    format!("restart {unit} so the gateway reads its changed environment"),
                    move || {
                        let u = self.sd.unit(unit)?;
                        if !u.is_active() {
                            return Ok(true);
                        }
                        Ok(self.env_is_current()?
                            && u.active_enter_usec >= crate::fsutil::mtime_usec(&env_path)?)
                    },
                    move || {
                        self.sd.restart(unit)?;
                        if wait {
                            crate::status::wait_unit_ready(
                                self.sd,
                                unit,
                                r.port,
                                self.ready_timeout,
                            )
                            .map_err(|detail| Error::NotReady {
                                name: name.to_string(),
                                seconds: self.ready_timeout.as_secs(),
                                detail,
                            })?;
                        }
                        Ok(())
                    },
                )
                .tag("start"),
            );
        }
        plan
    }
}
