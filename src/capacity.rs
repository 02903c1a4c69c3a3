//! The capacity guard: the sum of the tenants' MemoryMax against the
//! configured overcommit ratio of the host's RAM. Idle gateways use far less
//! than their MemoryMax, so some overcommit is fine; `openclaw.slice` caps
//! all tenants together so the host's own services survive the worst case.
use std::collections::HashMap;

use anyhow::{Context, Result};

use crate::config::CapacityConfig;
use crate::display::human_bytes;
use crate::error::Error;
use crate::paths::Paths;
use crate::policy::{Limits, Tier};
use crate::tenant::Record;

/// The host's RAM in bytes (`MemTotal` of `/proc/meminfo`; a file under the
/// test root wins, so tests can pretend a host size).
pub fn host_ram(paths: &Paths) -> Result<u64> {
    let under_root = paths.root().join("proc/meminfo");
    let text = std::fs::read_to_string(&under_root)
        .or_else(|_| std::fs::read_to_string("/proc/meminfo"))
        .context("reading /proc/meminfo")?;
    parse_memtotal(&text).context("no MemTotal in /proc/meminfo")
}

fn parse_memtotal(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Tiers loaded once per name: many tenants share a few tiers.
#[derive(Default)]
pub struct TierCache(HashMap<String, Tier>);

impl TierCache {
    pub fn get(&mut self, paths: &Paths, name: &str) -> Result<&Tier> {
        if !self.0.contains_key(name) {
            let tier = Tier::load(paths, name)?;
            self.0.insert(name.to_string(), tier);
        }
        Ok(&self.0[name])
    }
}

/// The limits a registered tenant should have: its tier with its overrides.
pub fn effective_limits(tiers: &mut TierCache, paths: &Paths, record: &Record) -> Result<Limits> {
    let tier = tiers.get(paths, &record.tier)?;
    record.limits.apply(tier.limits).map_err(|message| {
        Error::BadFile {
            path: paths.registry_file(&record.name),
            message,
        }
        .into()
    })
}

/// Sum of the MemoryMax the registry gives these tenants.
pub fn committed(paths: &Paths, records: &[Record]) -> Result<u64> {
    let mut tiers = TierCache::default();
    let mut sum = 0u64;
    for r in records {
        sum = sum.saturating_add(effective_limits(&mut tiers, paths, r)?.memory_max);
    }
    Ok(sum)
}

/// What the guard allows on this host: ratio x RAM.
pub fn allowed(cfg: &CapacityConfig, ram: u64) -> u64 {
    (ram as f64 * cfg.overcommit) as u64
}

/// Refuse when `committed` (after the change) exceeds ratio x RAM, unless
/// forced; a forced overcommit is logged.
/// A change from the tenants `before` to the tenants `after`: refused (as
/// [`check`] refuses) only when it raises what is committed, so a change
/// that lowers or keeps the total passes on an already full host.
pub fn check_change(
    paths: &Paths,
    cfg: &CapacityConfig,
    before: &[Record],
    after: &[Record],
    what: &str,
    force: bool,
) -> Result<()> {
    let total = committed(paths, after)?;
    if total <= committed(paths, before)? {
        return Ok(());
    }
    check(cfg, host_ram(paths)?, total, what, force)
}

pub fn check(
    cfg: &CapacityConfig,
    ram: u64,
    committed: u64,
    what: &str,
    force: bool,
) -> Result<()> {
    let limit = allowed(cfg, ram);
    if committed <= limit {
        return Ok(());
    }
    let err = Error::OverCapacity {
        what: what.to_string(),
        committed: human_bytes(Some(committed)),
        ratio: cfg.overcommit,
        ram: human_bytes(Some(ram)),
        limit: human_bytes(Some(limit)),
    };
    if force {
        tracing::warn!("--force: {err}");
        eprintln!("warning (--force): {err}");
        return Ok(());
    }
    Err(err.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtotal() {
        let text = "MemTotal:       24554556 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_memtotal(text), Some(24554556 * 1024));
        assert_eq!(parse_memtotal("nothing"), None);
    }

    #[test]
    fn guard_names_the_numbers_and_yields_to_force() {
        let cfg = CapacityConfig { overcommit: 1.5 };
        let ram = 4u64 << 30;
        assert!(check(&cfg, ram, 6 << 30, "x", false).is_ok());
        let err = check(&cfg, ram, 7 << 30, "tenant carol", false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tenant carol"), "{text}");
        assert!(text.contains("7.0G"), "{text}");
        assert!(text.contains("1.5 x RAM 4.0G = 6.0G"), "{text}");
        assert!(text.contains("--force"), "{text}");
        assert!(check(&cfg, ram, 7 << 30, "x", true).is_ok());
    }

    #[test]
    fn committed_sums_tiers_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let rec = |name: &str, tier: &str, max: Option<&str>| Record {
            name: crate::tenant::TenantName::parse(name).unwrap(),
            port: 20000,
            block: 128,
            tier: tier.into(),
            runtime: "1".into(),
            created: String::new(),
            domains: Vec::new(),
            limits: crate::policy::LimitOverrides {
                memory_max: max.map(str::to_string),
                ..Default::default()
            },
        };
        let records = [
            rec("a", "standard", None),
            rec("b", "heavy", None),
            rec("c", "light", Some("1536M")),
        ];
        assert_eq!(
            committed(&paths, &records).unwrap(),
            (2u64 << 30) + (4 << 30) + (1536 << 20)
        );
    }
}
