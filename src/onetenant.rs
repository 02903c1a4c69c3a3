//! One-tenant changes without an apply file: `ocusers set NAME --tier T
//! --memory-max SIZE ...` and `ocusers domain add|remove NAME HOST`.
//!
//! Each builds the tenant as an apply file would describe it after the
//! change (a [`Desired`], checked with the same rules as `apply` checks its
//! file: known tier, limits that parse and fit the tier, host names that are
//! nobody else's), and the command hands it to apply's own plan, so a
//! one-tenant change and the same edit in an apply file do the same steps:
//! registry entry, limits live over D-Bus (no restart unless the
//! environment changed, as for a new tier's V8 heap), proxy routes.
use anyhow::Result;

use crate::capacity;
use crate::config::HostConfig;
use crate::display::human_bytes;
use crate::error::Error;
use crate::manifest::Desired;
use crate::paths::Paths;
use crate::policy::{LimitOverrides, Limits, Tier};
use crate::proxy;
use crate::systemd::Systemd;
use crate::tenant::{Record, TenantName};

/// The value of a limit option that drops the tenant's own value and goes
/// back to its tier's (`--memory-max tier`).
pub const TIER_VALUE: &str = "tier";

/// What `ocusers set` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub tier: Option<String>,
    pub memory_high: Option<String>,
    pub memory_max: Option<String>,
    pub cpu_quota: Option<String>,
    pub tasks_max: Option<String>,
}

/// Refusals of a one-tenant change, each naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "cannot set the limits of tenant {name}: {message} (tier {tier}: {limits}); change the value, or give `{TIER_VALUE}` to take the tier's"
    )]
    BadLimit {
        name: String,
        message: String,
        tier: String,
        limits: String,
    },
    #[error(
        "tenant {name:?} has no extra domain {domain:?} (its extra domains: {have}): see `ocusers export`"
    )]
    NoSuchDomain {
        name: String,
        domain: String,
        have: String,
    },
    #[error(
        "{domain:?} is tenant {name}'s own public name (NAME.DOMAIN), not an extra domain: it goes only with the tenant (`ocusers remove {name}`)"
    )]
    OwnName { name: String, domain: String },
}

/// Whether the tenant's gateway runs: a one-tenant change starts no
/// stopped gateway (only the operator's stop keeps it stopped, and only
/// the operator's start starts it), and restarts a running one only when
/// its environment changed.
pub fn running(sd: &dyn Systemd, name: &TenantName) -> Result<bool> {
    Ok(sd.unit(&crate::paths::unit_name(name))?.is_active())
}

/// apply's capacity guard on the host as the change leaves it: refused
/// (with the numbers and `--force`) only when the change raises the
/// tenants' total MemoryMax above what the host allows.
pub fn check_capacity(
    paths: &Paths,
    cfg: &HostConfig,
    registry: &[Record],
    desired: &Desired,
    command: &str,
    force: bool,
) -> Result<()> {
    let after: Vec<Record> = registry
        .iter()
        .map(|r| {
            if r.name == desired.name {
                Record {
                    tier: desired.tier.name.clone(),
                    limits: desired.overrides.clone(),
                    ..r.clone()
                }
            } else {
                r.clone()
            }
        })
        .collect();
    capacity::check_change(
        paths,
        &cfg.capacity,
        registry,
        &after,
        &format!("`{command}`"),
        force,
    )?;
    Ok(())
}

/// The tenant's registry entry, or the error `ocusers list` fixes.
pub fn find<'r>(registry: &'r [Record], name: &TenantName) -> Result<&'r Record> {
    registry.iter().find(|r| r.name == *name).ok_or_else(|| {
        Error::UnknownTenant {
            name: name.to_string(),
        }
        .into()
    })
}

/// A tier's limits as `status` shows them, for the refusal.
fn show(l: &Limits) -> String {
    format!(
        "MemoryHigh {}, MemoryMax {}, CPUQuota {}%, TasksMax {}",
        human_bytes(Some(l.memory_high)),
        human_bytes(Some(l.memory_max)),
        l.cpu_quota_per_sec_usec / 10_000,
        l.tasks_max
    )
}

/// One override from the command line: `tier` clears it.
fn take(value: &Option<String>, current: &mut Option<String>) {
    match value.as_deref() {
        None => {}
        Some(TIER_VALUE) => *current = None,
        Some(v) => *current = Some(v.trim().to_string()),
    }
}

/// The tenant after `ocusers set`: its tier and overrides changed as asked,
/// checked against the tier as `apply` checks a file's tenant.
pub fn set(paths: &Paths, registry: &[Record], name: &TenantName, s: &Settings) -> Result<Desired> {
    let record = find(registry, name)?;
    let tier = Tier::load(paths, s.tier.as_deref().unwrap_or(&record.tier))?;
    let mut o = record.limits.clone();
    take(&s.memory_high, &mut o.memory_high);
    take(&s.memory_max, &mut o.memory_max);
    take(&s.cpu_quota, &mut o.cpu_quota);
    let bad = |message: String| ChangeError::BadLimit {
        name: name.to_string(),
        message,
        tier: tier.name.clone(),
        limits: show(&tier.limits),
    };
    match s.tasks_max.as_deref().map(str::trim) {
        None => {}
        Some(TIER_VALUE) => o.tasks_max = None,
        Some(v) => {
            o.tasks_max = Some(v.parse().map_err(|_| {
                bad(format!(
                    "tasks_max: {v:?} is not a number of tasks like 512"
                ))
            })?)
        }
    }
    let limits = o.apply(tier.limits).map_err(bad)?;
    Ok(Desired {
        name: name.clone(),
        tier,
        overrides: o,
        limits,
        domains: record.domains.clone(),
        secrets: Vec::new(),
    })
}

/// The tenant as it is, for a change of its domains only.
fn as_is(paths: &Paths, record: &Record, domains: Vec<String>) -> Result<Desired> {
    let tier = Tier::load(paths, &record.tier)?;
    let limits: Limits = record
        .limits
        .apply(tier.limits)
        .map_err(|message| Error::BadFile {
            path: paths.registry_file(&record.name),
            message,
        })?;
    Ok(Desired {
        name: record.name.clone(),
        tier,
        overrides: LimitOverrides::clone(&record.limits),
        limits,
        domains,
        secrets: Vec::new(),
    })
}

/// The tenant after `ocusers domain add NAME HOST`: HOST checked as
/// `apply` checks a file's domains (a host name, not the proxy's domain,
/// nobody else's). Adding a domain it has already changes nothing.
pub fn domain_add(
    paths: &Paths,
    cfg: &HostConfig,
    registry: &[Record],
    name: &TenantName,
    host: &str,
) -> Result<Desired> {
    let record = find(registry, name)?;
    let mut domains = record.domains.clone();
    if !domains.iter().any(|d| d == host) {
        proxy::check_extra_domains(&cfg.proxy, name, &[host.to_string()], registry)?;
        domains.push(host.to_string());
        domains.sort();
    }
    as_is(paths, record, domains)
}

/// The tenant after `ocusers domain remove NAME HOST`.
pub fn domain_remove(
    paths: &Paths,
    cfg: &HostConfig,
    registry: &[Record],
    name: &TenantName,
    host: &str,
) -> Result<Desired> {
    let record = find(registry, name)?;
    if !record.domains.iter().any(|d| d == host) {
        if cfg.proxy.enabled() && host == cfg.proxy.host_of(name) {
            return Err(ChangeError::OwnName {
                name: name.to_string(),
                domain: host.to_string(),
            }
            .into());
        }
        return Err(ChangeError::NoSuchDomain {
            name: name.to_string(),
            domain: host.to_string(),
            have: if record.domains.is_empty() {
                "none".into()
            } else {
                record.domains.join(", ")
            },
        }
        .into());
    }
    let domains = record
        .domains
        .iter()
        .filter(|d| *d != host)
        .cloned()
        .collect();
    as_is(paths, record, domains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, domains: &[&str]) -> Record {
        Record::sample(name, domains)
    }

    fn host() -> (tempfile::TempDir, Paths, HostConfig) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let mut cfg = HostConfig::load(&paths).unwrap();
        cfg.proxy.domain = "test.internal".into();
        (dir, paths, cfg)
    }

    fn one_line(err: &anyhow::Error) -> String {
        let text = crate::error::render_chain(err);
        assert!(!text.contains('\n'), "one line: {text}");
        text
    }

    #[test]
    fn set_changes_only_what_is_given() {
        let (_d, paths, _) = host();
        let reg = [record("alice", &["alice.example.org"])];
        let alice = &reg[0].name;
        let s = Settings {
            memory_max: Some("3G".into()),
            ..Default::default()
        };
        let d = set(&paths, &reg, alice, &s).unwrap();
        assert_eq!(d.tier.name, "standard");
        assert_eq!(d.limits.memory_max, 3 << 30);
        assert_eq!(d.limits.memory_high, 1536 << 20);
        assert_eq!(d.overrides.memory_max.as_deref(), Some("3G"));
        assert_eq!(d.domains, ["alice.example.org"]);
        assert!(d.secrets.is_empty());

        // A new tier keeps the overrides; `tier` drops one.
        let mut with = reg.clone();
        with[0].limits = d.overrides.clone();
        let s = Settings {
            tier: Some("heavy".into()),
            tasks_max: Some("2000".into()),
            ..Default::default()
        };
        let d = set(&paths, &with, alice, &s).unwrap();
        assert_eq!(
            (d.tier.name.as_str(), d.limits.memory_max),
            ("heavy", 3 << 30)
        );
        assert_eq!(d.limits.tasks_max, 2000);
        with[0].limits = d.overrides.clone();
        with[0].tier = d.tier.name.clone();
        let s = Settings {
            memory_max: Some(TIER_VALUE.into()),
            ..Default::default()
        };
        let d = set(&paths, &with, alice, &s).unwrap();
        assert_eq!(d.limits.memory_max, 4 << 30);
        assert_eq!(d.overrides.memory_max, None);
        assert_eq!(d.overrides.tasks_max, Some(2000));
    }

    #[test]
    fn set_refuses_bad_values_on_one_line() {
        let (_d, paths, _) = host();
        let reg = [record("alice", &[])];
        let alice = &reg[0].name;
        let cases = [
            (
                Settings {
                    tier: Some("huge".into()),
                    ..Default::default()
                },
                "unknown tier \"huge\"",
            ),
            (
                Settings {
                    memory_max: Some("lots".into()),
                    ..Default::default()
                },
                "memory_max: unknown unit 's' in \"lots\"",
            ),
            (
                Settings {
                    memory_max: Some("1G".into()),
                    ..Default::default()
                },
                "memory_high (1610612736) must not be above memory_max (1073741824) (tier standard: MemoryHigh 1.5G",
            ),
            (
                Settings {
                    cpu_quota: Some("150".into()),
                    ..Default::default()
                },
                "not a percentage like 50%",
            ),
            (
                Settings {
                    tasks_max: Some("0".into()),
                    ..Default::default()
                },
                "tasks_max must be positive",
            ),
            (
                Settings {
                    tasks_max: Some("many".into()),
                    ..Default::default()
                },
                "not a number of tasks",
            ),
        ];
        for (s, want) in cases {
            let err = set(&paths, &reg, alice, &s).unwrap_err();
            let text = one_line(&err);
            assert!(text.contains(want), "{s:?}: {text}");
        }
        let bob = TenantName::parse("bob").unwrap();
        let err = set(&paths, &reg, &bob, &Settings::default()).unwrap_err();
        assert!(one_line(&err).contains("no tenant named \"bob\": see `ocusers list`"));
    }

    #[test]
    fn domains_are_checked_like_apply_checks_them() {
        let (_d, paths, cfg) = host();
        let reg = [
            record("alice", &[]),
            record("bob-smith", &["bob.example.org"]),
        ];
        let alice = &reg[0].name;
        let d = domain_add(&paths, &cfg, &reg, alice, "alice.example.org").unwrap();
        assert_eq!(d.domains, ["alice.example.org"]);
        assert_eq!(d.limits.memory_max, 2 << 30);
        for (host, want) in [
            ("bob.example.org", "already routes to tenant \"bob-smith\""),
            (
                "bob-smith.test.internal",
                "already routes to tenant \"bob-smith\"",
            ),
            ("alice.test.internal", "gets that name anyway"),
            ("Alice.Example.org", "lower-case"),
            ("localhost", "at least two labels"),
            ("a..b", "label"),
        ] {
            let err = domain_add(&paths, &cfg, &reg, alice, host).unwrap_err();
            assert!(one_line(&err).contains(want), "{host}: {err:#}");
        }
        let mut with = reg.clone();
        with[0].domains = d.domains.clone();
        // Already there: the same tenant, nothing to change.
        let again = domain_add(&paths, &cfg, &with, alice, "alice.example.org").unwrap();
        assert_eq!(again.domains, ["alice.example.org"]);
        let gone = domain_remove(&paths, &cfg, &with, alice, "alice.example.org").unwrap();
        assert!(gone.domains.is_empty());
        let err = domain_remove(&paths, &cfg, &with, alice, "alice.example.com").unwrap_err();
        assert!(
            one_line(&err).contains(
                "has no extra domain \"alice.example.com\" (its extra domains: alice.example.org)"
            ),
            "{err:#}"
        );
        let err = domain_remove(&paths, &cfg, &with, alice, "alice.test.internal").unwrap_err();
        assert!(one_line(&err).contains("own public name"), "{err:#}");
    }
}
