//! Host configuration: `/etc/ocusers/ocusers.toml` over the shipped defaults
//! in `/usr/share/ocusers/ocusers.toml` (itself a copy of
//! `policy/ocusers.toml`, compiled in as the last fallback).
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::paths::Paths;

const BUILTIN: &str = include_str!("../policy/ocusers.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub ports: PortsConfig,
    pub tenants: TenantsConfig,
    pub runtime: RuntimeConfig,
    pub proxy: crate::proxy::ProxyConfig,
    pub isolation: IsolationConfig,
    pub capacity: CapacityConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// The tenants' MemoryMax may add up to this many times the host's RAM.
    pub overcommit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsConfig {
    pub start: u16,
    pub end: u16,
    pub block: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsConfig {
    pub default_tier: String,
    pub ready_timeout: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub package: String,
    pub node: String,
    pub npm: String,
}

/// How tenants are kept apart on loopback (see `ocusers audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationConfig {
    /// nftables rules closing each tenant's port block to the others.
    pub firewall: FirewallMode,
    /// Users whose processes may connect to every tenant's ports (the
    /// reverse proxy); users missing on the host are left out.
    pub proxy_users: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallMode {
    /// Load the rules; where the kernel refuses (a container without
    /// CAP_NET_ADMIN) or nft is missing, warn, and `ocusers audit` fails.
    Auto,
    /// Load the rules or fail the change.
    Required,
    /// Never touch nftables.
    Off,
}

impl HostConfig {
    /// Built-in defaults, then the shipped file, then the host's file; each
    /// later one overrides the keys it sets.
    pub fn load(paths: &Paths) -> Result<HostConfig> {
        let mut merged: toml::Table = toml::from_str(BUILTIN).context("built-in defaults")?;
        for path in [paths.shipped_config(), paths.host_config()] {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            let table: toml::Table = toml::from_str(&text).map_err(|e| Error::BadFile {
                path: path.clone(),
                message: e.message().to_string(),
            })?;
            merge(&mut merged, table);
        }
        let config: HostConfig =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| Error::BadFile {
                    path: paths.host_config(),
                    message: e.message().to_string(),
                })?;
        config.validate(paths)?;
        Ok(config)
    }

    fn validate(&self, paths: &Paths) -> Result<(), Error> {
        let p = &self.ports;
        let problem = if p.block < 120 {
            Some("[ports] block must be at least 120 (OpenClaw derives ports up to gateway+110)")
        } else if p.start < 1024 {
            Some("[ports] start must be 1024 or more")
        } else if u32::from(p.start) + u32::from(p.block) - 1 > u32::from(p.end) {
            Some("[ports] start..=end must hold at least one block")
        } else if !(self.capacity.overcommit > 0.0 && self.capacity.overcommit.is_finite()) {
            Some("[capacity] overcommit must be a positive number like 1.5")
        } else {
            None
        };
        let problem = problem.map(str::to_string).or_else(|| self.proxy.problem());
        match problem {
            Some(message) => Err(Error::BadFile {
                path: paths.host_config(),
                message,
            }),
            None => Ok(()),
        }
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_without_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = HostConfig::load(&Paths::new(dir.path())).unwrap();
        assert_eq!(c.ports.start, 20000);
        assert_eq!(c.ports.block, 128);
        assert_eq!(c.tenants.default_tier, "standard");
        assert_eq!(c.capacity.overcommit, 1.5);
    }

    #[test]
    fn host_file_overrides_single_keys() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.etc_dir()).unwrap();
        std::fs::write(paths.host_config(), "[ports]\nstart = 30000\n").unwrap();
        let c = HostConfig::load(&paths).unwrap();
        assert_eq!(c.ports.start, 30000);
        assert_eq!(c.ports.end, 32767);
    }

    #[test]
    fn bad_host_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.etc_dir()).unwrap();
        std::fs::write(paths.host_config(), "[ports]\nblock = 50\n").unwrap();
        let err = HostConfig::load(&paths).unwrap_err();
        assert!(format!("{err:#}").contains("ocusers.toml"), "{err:#}");
        std::fs::write(paths.host_config(), "[port]\nstart = 1\n").unwrap();
        let err = HostConfig::load(&paths).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}
