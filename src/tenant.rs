//! The registry: the little that ocusers knows of a tenant and systemd
//! does not (port block, tier, runtime, creation time). Tenant names live
//! in [`crate::name`] (re-exported here).
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsutil;
use crate::paths::Paths;
use crate::policy::LimitOverrides;

pub use crate::name::TenantName;

/// One tenant's registry entry, `/var/lib/ocusers/tenants/NAME.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: TenantName,
    /// First port of the tenant's block; the gateway listens here.
    pub port: u16,
    /// Ports reserved from `port` on, for the ports OpenClaw derives.
    pub block: u16,
    pub tier: String,
    /// OpenClaw version the tenant runs.
    pub runtime: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// Extra public host names routed to the tenant besides NAME.DOMAIN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Per-tenant changes to the tier's limits (`ocusers apply`).
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
}

impl Record {
    pub fn last_port(&self) -> u16 {
        self.port.saturating_add(self.block.saturating_sub(1))
    }
}

pub fn load(paths: &Paths, name: &TenantName) -> Result<Option<Record>> {
    read_record(&paths.registry_file(name))
}

fn read_record(path: &Path) -> Result<Option<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let record = toml::from_str(&text).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    Ok(Some(record))
}

pub fn save(paths: &Paths, record: &Record) -> Result<()> {
    fsutil::ensure_dir(&paths.registry_dir(), 0o755)?;
    let text = format!(
        "# ocusers registry entry; systemd holds the runtime state (systemctl status {}).\n{}",
        crate::paths::unit_name(&record.name),
        toml::to_string(record).context("serialising registry entry")?
    );
    fsutil::write_atomic(&paths.registry_file(&record.name), text.as_bytes(), 0o644)
}

pub fn remove(paths: &Paths, name: &TenantName) -> Result<()> {
    fsutil::remove_file(&paths.registry_file(name))
}

/// The registered tenant named `raw`, or the one-line error naming it.
pub fn registered(paths: &Paths, raw: &str) -> Result<Record> {
    let name = TenantName::parse(raw)?;
    Ok(load(paths, &name)?.ok_or(Error::UnknownTenant {
        name: name.to_string(),
    })?)
}

/// The commands that take `[NAME]`: that registered tenant (or the error
/// naming it), or every tenant without one.
pub fn one_or_all(paths: &Paths, name: Option<&TenantName>) -> Result<Vec<Record>> {
    match name {
        Some(name) => Ok(vec![load(paths, name)?.ok_or(Error::UnknownTenant {
            name: name.to_string(),
        })?]),
        None => list(paths),
    }
}

/// Every registered tenant, by name.
pub fn list(paths: &Paths) -> Result<Vec<Record>> {
    let dir = paths.registry_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut records = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Some(r) = read_record(&path)?
        {
            records.push(r);
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

/// A registry record for tests: tier standard, port block 20000-20127.
#[cfg(test)]
impl Record {
    pub(crate) fn sample(name: &str, domains: &[&str]) -> Record {
        Record {
            name: TenantName::parse(name).unwrap(),
            port: 20000,
            block: 128,
            tier: "standard".into(),
            runtime: "2026.9.6".into(),
            created: "2026-11-22T00:00:00Z".into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            limits: LimitOverrides::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in [
            "alice",
            "bob",
            "bob-smith",
            "a",
            "x1",
            "team-42",
            &"a".repeat(29),
        ] {
            assert!(TenantName::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_bad_names() {
        let long = "a".repeat(30);
        for bad in [
            "", &long, "Alice", "1abc", "-abc", "abc-", "a--b", "..", "a/b", "a b", "a;b", "a$b",
            "a`b", "é", "ålice", "a.b", "a_b", "root", "daemon", "nobody", "admin", "www", "oc",
            "oc-alice", "openclaw",
        ] {
            let err = TenantName::parse(bad).expect_err(bad);
            let text = err.to_string();
            assert!(!text.contains('\n'), "one line: {text}");
            assert!(text.starts_with("invalid tenant name"), "{text}");
        }
    }

    #[test]
    fn registry_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert!(list(&paths).unwrap().is_empty());
        let rec = Record {
            name: TenantName::parse("alice").unwrap(),
            port: 20000,
            block: 128,
            tier: "standard".into(),
            runtime: "2026.9.6".into(),
            created: "2026-11-22T00:00:00Z".into(),
            domains: Vec::new(),
            limits: LimitOverrides::default(),
        };
        save(&paths, &rec).unwrap();
        assert_eq!(load(&paths, &rec.name).unwrap(), Some(rec.clone()));
        assert_eq!(list(&paths).unwrap(), vec![rec.clone()]);
        assert_eq!(rec.last_port(), 20127);
        let custom = Record {
            domains: vec!["alice.example.com".into()],
            limits: LimitOverrides {
                memory_max: Some("3G".into()),
                tasks_max: Some(600),
                ..Default::default()
            },
            ..rec.clone()
        };
        save(&paths, &custom).unwrap();
        assert_eq!(load(&paths, &rec.name).unwrap(), Some(custom));
        remove(&paths, &rec.name).unwrap();
        remove(&paths, &rec.name).unwrap();
        assert!(load(&paths, &rec.name).unwrap().is_none());
    }

    #[test]
    fn corrupt_registry_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.registry_dir()).unwrap();
        std::fs::write(paths.registry_dir().join("bad.toml"), "port = ").unwrap();
        let err = list(&paths).unwrap_err();
        assert!(format!("{err:#}").contains("bad.toml"), "{err:#}");
    }
}
