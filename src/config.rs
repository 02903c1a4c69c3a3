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
    /// How many gateways start at once (0: one per two online CPUs); see
    /// `crate::startgate`.
    #[serde(default)]
    pub start_batch: u32,
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
    /// nftables rules: each tenant reaches host-local addresses only in its
    /// own port block, plus `allow_local`.
    pub firewall: FirewallMode,
    /// Host-local (or link-local, cloud metadata) destinations every tenant
    /// may reach: `[tcp/|udp/]ADDRESS:PORT`, IPv6 in brackets.
    #[serde(default)]
    pub allow_local: Vec<String>,
    /// Deprecated and ignored: the proxy reaches a tenant through
    /// `systemd-socket-proxyd` running as the tenant, so no proxy user needs
    /// the tenants' ports. Still accepted so an older ocusers.toml loads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_users: Vec<String>,
}

/// A transport protocol of an `allow_local` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One `[isolation] allow_local` entry: `127.0.0.1:11434` (TCP and UDP),
/// `tcp/[::1]:8080`, `udp/127.0.0.1:5353`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AllowLocal {
    /// None: both TCP and UDP.
    pub proto: Option<Proto>,
    pub addr: std::net::IpAddr,
    pub port: u16,
}

impl AllowLocal {
    /// Parse one entry; the error is one line naming the entry and the fix.
    pub fn parse(entry: &str) -> Result<AllowLocal, String> {
        let fix = "write it as \"127.0.0.1:11434\" (TCP and UDP), \"tcp/[::1]:8080\" or \"udp/127.0.0.1:5353\"";
        let bad = |why: &str| format!("[isolation] allow_local: {entry:?} {why}; {fix}");
        let (proto, rest) = match entry.split_once('/') {
            Some(("tcp", rest)) => (Some(Proto::Tcp), rest),
            Some(("udp", rest)) => (Some(Proto::Udp), rest),
            Some((p, _)) => {
                return Err(bad(&format!("names protocol {p:?} (only tcp or udp)")));
            }
            _ => (None, entry),
        };
        let addr: std::net::SocketAddr = match rest.parse() {
            Ok(a) => a,
            Err(_) if rest.parse::<std::net::Ipv6Addr>().is_ok() => {
                return Err(bad(
                    "has no port (an IPv6 address goes in brackets: [::1]:8080)",
                ));
            }
            Err(_) if rest.parse::<std::net::IpAddr>().is_ok() => {
                return Err(bad("has no port"));
            }
            Err(_) if rest.contains('-') => {
                return Err(bad("is a port range (one port an entry)"));
            }
            Err(_) => return Err(bad("is not an address and port")),
        };
        if addr.port() == 0 {
            return Err(bad("has port 0"));
        }
        if let std::net::SocketAddr::V6(a) = addr
            && (a.scope_id() != 0 || a.flowinfo() != 0)
        {
            return Err(bad("has a scope (%) or flow info"));
        }
        Ok(AllowLocal {
            proto,
            addr: addr.ip(),
            port: addr.port(),
        })
    }

    /// The protocols this entry opens.
    pub fn protos(&self) -> Vec<Proto> {
        match self.proto {
            Some(p) => vec![p],
            None => vec![Proto::Tcp, Proto::Udp],
        }
    }
}

impl std::fmt::Display for AllowLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.proto {
            write!(f, "{}/", p.as_str())?;
        }
        write!(f, "{}", std::net::SocketAddr::new(self.addr, self.port))
    }
}

impl IsolationConfig {
    /// The parsed allow-list (validated when the configuration loads).
    pub fn allow_local(&self) -> Vec<AllowLocal> {
        self.allow_local
            .iter()
            .filter_map(|e| AllowLocal::parse(e).ok())
            .collect()
    }
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
        let problem = problem
            .map(str::to_string)
            .or_else(|| {
                self.isolation
                    .allow_local
                    .iter()
                    .find_map(|e| AllowLocal::parse(e).err())
            })
            .or_else(|| self.proxy.problem());
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
        assert_eq!(c.ports.start, 6176);
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

    #[test]
    fn allow_local_entries_parse_or_say_the_fix() {
        let ok = |e: &str| AllowLocal::parse(e).unwrap();
        let a = ok("127.0.0.1:11434");
        assert_eq!((a.proto, a.port), (None, 11434));
        assert_eq!(a.protos(), vec![Proto::Tcp, Proto::Udp]);
        assert_eq!(ok("tcp/[::1]:8080").to_string(), "tcp/[::1]:8080");
        assert_eq!(ok("udp/169.254.169.254:53").proto, Some(Proto::Udp));
        for (bad, says) in [
            ("127.0.0.1", "has no port"),
            ("::1", "has no port"),
            ("localhost:80", "is not an address and port"),
            ("127.0.0.1:0", "port 0"),
            ("127.0.0.1:8000-8010", "port range"),
            ("sctp/127.0.0.1:80", "only tcp or udp"),
            ("::1:80", "brackets"),
            ("[fe80::1%2]:80", "scope"),
        ] {
            let err = AllowLocal::parse(bad).unwrap_err();
            assert!(
                err.contains(says) && err.contains("tcp/[::1]:8080"),
                "{bad}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        // At load time, with the file named.
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.etc_dir()).unwrap();
        std::fs::write(
            paths.host_config(),
            "[isolation]\nallow_local = [\"127.0.0.1:11434\", \"127.0.0.1\"]\n",
        )
        .unwrap();
        let err = format!("{:#}", HostConfig::load(&paths).unwrap_err());
        assert!(
            err.contains("ocusers.toml") && err.contains("has no port"),
            "{err}"
        );
        // The deprecated key still loads.
        std::fs::write(
            paths.host_config(),
            "[isolation]\nproxy_users = [\"caddy\"]\nallow_local = [\"tcp/[::1]:8080\"]\n",
        )
        .unwrap();
        let c = HostConfig::load(&paths).unwrap();
        assert_eq!(c.isolation.proxy_users, vec!["caddy".to_string()]);
        assert_eq!(c.isolation.allow_local().len(), 1);
    }
}
