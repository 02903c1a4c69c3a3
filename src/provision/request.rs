//! What `ocusers add NAME` asks, checked against the registry, the host and
//! the live system, and made into the tenant's registry entry as it will be
//! (the add plan in [`super::add`] then makes it so).
use anyhow::Result;

use crate::capacity;
use crate::config::HostConfig;
use crate::display::human_bytes;
use crate::error::Error;
use crate::identity;
use crate::paths::{self, Paths};
use crate::policy::Tier;
use crate::ports;
use crate::proxy;
use crate::runtime;
use crate::tenant::{self, Record, TenantName};

/// What the command line asks of `ocusers add NAME`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub tier: Option<String>,
    pub port: Option<u16>,
    pub domains: Vec<String>,
    /// `--idle-stop` (see `crate::sleep`); the tier's when None.
    pub idle_stop: Option<String>,
    /// `--force-idle-stop`.
    pub force_idle_stop: bool,
}

/// The tenant's registry entry (if it exists), tier, port and extra
/// domains, from the request, the registry and the live system.
pub struct Resolved {
    pub existing: Option<Record>,
    pub tier: Tier,
    pub port: u16,
    pub domains: Vec<String>,
    /// A new tenant's overrides (its idle_stop); an existing one keeps its own.
    pub overrides: crate::policy::LimitOverrides,
}

/// Checks the request against the registry and the live system: read-only,
/// so `add` runs it before root and the lock, and again under the lock.
pub fn resolve(
    paths: &Paths,
    cfg: &HostConfig,
    name: &TenantName,
    args: &Request,
    registry: &[Record],
) -> Result<Resolved> {
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
    let overrides = match &existing {
        Some(r) => {
            if (args.idle_stop.is_some() && args.idle_stop != r.limits.idle_stop)
                || (args.force_idle_stop && !r.limits.force_idle_stop)
            {
                return Err(Error::Conflict {
                    name: name.to_string(),
                    what: format!(
                        "idle_stop {}",
                        r.limits.idle_stop.as_deref().unwrap_or("(tier)")
                    ),
                    fix: "to change it use `ocusers apply` with idle_stop in the tenant's entry"
                        .into(),
                }
                .into());
            }
            r.limits.clone()
        }
        None => crate::policy::LimitOverrides {
            idle_stop: args.idle_stop.clone(),
            force_idle_stop: args.force_idle_stop,
            ..Default::default()
        },
    };
    crate::sleep::effective(&tier, &overrides)
        .map_err(|m| anyhow::anyhow!("tenant {name}: {m}"))?;
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
    Ok(Resolved {
        existing,
        tier,
        port,
        domains,
        overrides,
    })
}

/// The tenant `add` makes or completes (or `restore` brings back): its
/// registry entry as it will be, its tier, and every tenant's extra domains
/// with its own.
pub struct Prepared {
    pub record: Record,
    pub tier: Tier,
    pub extra_domains: Vec<String>,
}

/// From the resolved request: the user is ours, the runtime is installed,
/// the limits apply to the tier and (for a new tenant) fit the capacity
/// guard (`force`: warn instead).
pub fn prepare(
    paths: &Paths,
    cfg: &HostConfig,
    name: &TenantName,
    resolved: Resolved,
    registry: &[Record],
    force: bool,
) -> Result<Prepared> {
    let Resolved {
        existing,
        tier,
        port,
        domains,
        overrides,
    } = resolved;
    let user = paths::user_name(name);
    check_identity(name, &user, existing.is_some())?;

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
            .map_or_else(crate::display::now_rfc3339, |r| r.created.clone()),
        domains,
        limits: overrides,
    };
    crate::sleep::check_tenant(paths, cfg, name, &tier, &record.limits)?;
    let limits = record
        .limits
        .apply(tier.limits)
        .map_err(|message| Error::BadFile {
            path: paths.registry_file(name),
            message,
        })?;
    if existing.is_none() {
        let committed = capacity::committed(paths, registry)?.saturating_add(limits.memory_max);
        capacity::check(
            &cfg.capacity,
            capacity::host_ram(paths)?,
            committed,
            &format!(
                "tenant {name} (tier {}, MemoryMax {})",
                tier.name,
                human_bytes(Some(limits.memory_max))
            ),
            force,
        )?;
    }
    // Every tenant's extra domains, this one's as they will be.
    let mut extra_domains: Vec<String> = proxy::extra_domains(
        &registry
            .iter()
            .filter(|r| &r.name != name)
            .cloned()
            .collect::<Vec<_>>(),
    );
    extra_domains.extend(record.domains.iter().cloned());
    Ok(Prepared {
        record,
        tier,
        extra_domains,
    })
}

/// A tenant's user must be ours: refuse names of existing accounts and an
/// `oc-NAME` user that ocusers did not make.
pub fn check_identity(name: &TenantName, user: &str, registered: bool) -> Result<()> {
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
