//! The add plan: validate everything, then one plan of idempotent steps; a
//! failure rolls back what this run did, and re-running after a crash
//! completes the tenant. [`Ctx`] is the tenant as it should be.
use std::time::Duration;

use anyhow::Result;

use crate::config::HostConfig;
use crate::error::Error;
use crate::health;
use crate::identity::{self, Account, Accounts};
use crate::openclaw_config;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::policy::{Limits, Tier};
use crate::proxy::{self, ProxyConfig};
use crate::runtime;
use crate::secrets::{self, EnvFile};
use crate::statedir;
use crate::systemd::Systemd;
use crate::tenant::{self, Record};

pub use super::request::{Prepared, Request, Resolved, check_identity, prepare, resolve};

/// Whether the plan starts the gateway, and waits for it to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    No,
    NoWait,
    Wait,
}

impl Start {
    /// From `--no-start` and `--no-wait`.
    pub fn from_flags(no_start: bool, no_wait: bool) -> Start {
        match (no_start, no_wait) {
            (true, _) => Start::No,
            (false, true) => Start::NoWait,
            (false, false) => Start::Wait,
        }
    }
}

/// Everything the add plan needs: the tenant as it should be. `ocusers
/// apply` builds one per tenant, so the same plan creates a tenant and
/// converges an existing one.
pub struct Ctx<'a> {
    pub paths: &'a Paths,
    pub cfg: &'a HostConfig,
    pub sd: &'a dyn Systemd,
    /// The user database: the host's ([`identity::SYSTEM`]) unless a test
    /// gives another with [`Ctx::with_accounts`].
    pub ids: &'a dyn Accounts,
    pub record: &'a Record,
    pub tier: &'a Tier,
    /// The tier's limits with the record's overrides.
    pub limits: Limits,
    /// Extra `KEY=value` entries for the env file (secrets from `apply`).
    pub secrets: &'a [(String, String)],
    /// Every tenant's extra domains as they will be (the proxy's include).
    pub extra_domains: Vec<String>,
    /// `oc-NAME`, from the record.
    pub user: String,
    /// `openclaw@NAME.service`, from the record.
    pub unit: String,
    /// Idle seconds before the gateway sleeps (`crate::sleep`); None:
    /// always on (also whenever public access is off: it wakes through it).
    pub idle: Option<u64>,
}

impl<'a> Ctx<'a> {
    /// The tenant as `record` and the host config say: its tier's limits
    /// with the record's overrides (the tier's alone if they no longer
    /// apply: `add` and `apply` have checked them, `restore` and `repair`
    /// re-create what the record says), `secrets` for its env file (`&[]`:
    /// none new), and every tenant's extra domains as they will be.
    pub fn new(
        paths: &'a Paths,
        cfg: &'a HostConfig,
        sd: &'a dyn Systemd,
        record: &'a Record,
        tier: &'a Tier,
        secrets: &'a [(String, String)],
        extra_domains: Vec<String>,
    ) -> Ctx<'a> {
        Ctx {
            paths,
            cfg,
            sd,
            ids: &identity::SYSTEM,
            record,
            tier,
            limits: record.limits.apply(tier.limits).unwrap_or(tier.limits),
            secrets,
            extra_domains,
            user: paths::user_name(&record.name),
            unit: paths::unit_name(&record.name),
            idle: cfg
                .proxy
                .enabled()
                .then(|| crate::sleep::effective(tier, &record.limits).ok().flatten())
                .flatten(),
        }
    }

    /// The same tenant with another user database (a test's).
    pub fn with_accounts(self, ids: &'a dyn Accounts) -> Ctx<'a> {
        Ctx { ids, ..self }
    }

    fn proxy(&self) -> &'a ProxyConfig {
        &self.cfg.proxy
    }

    fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.tenants.ready_timeout)
    }

    fn account(&self) -> Result<Account> {
        self.ids
            .lookup(&self.user)
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
    pub fn plan(&'a self, start: Start, restart_stale: bool) -> Plan<'a> {
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
                move || Ok(self.ids.lookup(&self.user).is_some()),
                move || {
                    self.ids.create_user(
                        &self.user,
                        &paths::home_dir(name),
                        &format!("OpenClaw tenant {name} (ocusers)"),
                    )
                },
            )
            .revert(move || self.ids.delete_user(&self.user)),
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
                    let text = openclaw_config::render(name, r.port, self.tier.plugins.as_deref());
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
                            && crate::firewall::is_current(p, cfg, None, self.ids)?))
                },
                move || crate::firewall::sync(p, cfg, None, self.ids),
            )
            .revert(move || crate::firewall::sync(p, cfg, Some(name), self.ids)),
        );

        // A sleeper's drop-ins (or a former sleeper's, taken away).
        if self.idle.is_some()
            || crate::sleep::relay_dropin(p, name).exists()
            || crate::sleep::is_sleeper(p, name)
        {
            plan.push(crate::sleep::dropin_step(
                p,
                self.sd,
                name,
                self.idle,
                self.cfg.tenants.ready_timeout,
            ));
        }
        if let Some(idle) = self.idle {
            plan.push(
                Step::new(
                    format!(
                        "leave {unit} out of openclaw.target (idle_stop {}: it wakes on its first connection)",
                        crate::sleep::show(idle)
                    ),
                    move || Ok(self.sd.unit_file_state(unit)? != "enabled"),
                    move || self.sd.disable(unit),
                )
                .revert(move || self.sd.enable(unit)),
            );
        } else {
            plan.push(
                Step::new(
                    format!("enable {unit} (wanted by openclaw.target; daemon-reload if systemd then asks for one, as `systemctl enable` does)"),
                    move || Ok(self.sd.unit_file_state(unit)? == "enabled"),
                    move || self.sd.enable(unit),
                )
                .revert(move || self.sd.disable(unit)),
            );
        }

        // The gateway's public origins, also with public access off (its
        // config includes the files: they must exist before it starts).
        plan.push(proxy::origins_step(p, self.proxy(), r));
        if self.proxy().enabled() {
            for step in proxy::global_steps(p, self.proxy(), self.sd, &self.extra_domains) {
                plan.push(step);
            }
            plan.push(proxy::route_step(p, self.proxy(), self.sd, r));
        }

        // A sleeper that has started before and sleeps now is left asleep
        // (`apply` must not wake every sleeper); a new one starts once.
        let sleeper = self.idle.is_some();
        let asleep = move || -> Result<bool> {
            let u = self.sd.unit(unit)?;
            Ok(sleeper
                && crate::fsutil::exists(&p.cache_dir(name))
                && crate::sleep::sleeping(p, self.sd, name, &u.active_state))
        };
        if start != Start::No {
            // systemd makes the compile cache (CacheDirectory=) at the first
            // start; a rolled-back first start takes it away again.
            let cache_was_there = std::rc::Rc::new(std::cell::Cell::new(true));
            let (was_apply, was_revert) = (cache_was_there.clone(), cache_was_there);
            plan.push(
                Step::new(
                    if sleeper {
                        format!(
                            "start {unit} through {} (it sleeps again when idle)",
                            crate::sleep::relay_unit(name)
                        )
                    } else {
                        format!("start {unit}")
                    },
                    move || Ok(self.sd.unit(unit)?.is_active() || asleep()?),
                    move || {
                        was_apply.set(crate::fsutil::exists(&p.cache_dir(name)));
                        if sleeper {
                            return crate::sleep::wake(p, self.sd, name);
                        }
                        self.sd.reset_failed(unit)?;
                        self.sd.start(unit)
                    },
                )
                .revert(move || {
                    if sleeper {
                        self.sd.stop(&crate::sleep::relay_unit(name))?;
                    }
                    self.sd.stop(unit)?;
                    if !was_revert.get() {
                        crate::fsutil::remove_tree(&p.cache_dir(name))?;
                    }
                    Ok(())
                })
                .tag("start"),
            );
        }
        if start == Start::Wait {
            plan.push(
                Step::new(
                    format!(
                        "wait until the gateway answers {} (at most {} s)",
                        health::readyz_url(r.port),
                        self.ready_timeout().as_secs()
                    ),
                    move || {
                        Ok(health::probe(r.port, Duration::from_secs(2)).is_ready() || asleep()?)
                    },
                    move || {
                        crate::health::wait_unit_ready(self.sd, unit, r.port, self.ready_timeout())
                            .map(|_| ())
                            .map_err(|detail| {
                                Error::NotReady {
                                    name: name.to_string(),
                                    seconds: self.ready_timeout().as_secs(),
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
                            crate::health::wait_unit_ready(
                                self.sd,
                                unit,
                                r.port,
                                self.ready_timeout(),
                            )
                            .map_err(|detail| Error::NotReady {
                                name: name.to_string(),
                                seconds: self.ready_timeout().as_secs(),
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
