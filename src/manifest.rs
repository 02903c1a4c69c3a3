//! The file `ocusers apply` reads and `ocusers export` writes: one
//! `[tenants.NAME]` table per tenant with its tier, extra domains, limit
//! overrides and secret references (a file path or an environment variable
//! name, never a value).
//!
//! ```toml
//! [tenants.alice]
//! tier = "standard"
//! domains = ["alice.example.com"]
//! memory_max = "3G"          # optional: memory_high, memory_max, cpu_quota, tasks_max
//! secrets = { OPENAI_API_KEY = { file = "/root/keys/alice-openai" }, ANTHROPIC_API_KEY = { env = "ALICE_ANTHROPIC" } }
//! ```
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::capacity::TierCache;
use crate::error::Error;
use crate::paths::Paths;
use crate::policy::{LimitOverrides, Limits, Tier};
use crate::secrets::{self, EnvFile};
use crate::tenant::{self, Record, TenantName};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSpec>,
}

/// One tenant as the file describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Resource tier; the host's default tier when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Extra public domain names (reverse proxy), beyond NAME.<domain>.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u64>,
    /// Scale-to-zero: `"15m"` (sleep after that long without a client
    /// connection), `"off"`; the tier's when left out (see `crate::sleep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<String>,
    /// Let the tenant sleep even with channels or cron jobs enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_idle_stop: bool,
    /// `KEY = { file = "/path" }` or `KEY = { env = "VAR" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, toml::Value>,
}

impl TenantSpec {
    pub fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            memory_high: self.memory_high.clone(),
            memory_max: self.memory_max.clone(),
            cpu_quota: self.cpu_quota.clone(),
            tasks_max: self.tasks_max,
            idle_stop: self.idle_stop.clone(),
            force_idle_stop: self.force_idle_stop,
        }
    }

    /// The spec `export` writes for a registered tenant.
    pub fn from_record(record: &Record) -> TenantSpec {
        let o = &record.limits;
        TenantSpec {
            tier: Some(record.tier.clone()),
            domains: record.domains.clone(),
            memory_high: o.memory_high.clone(),
            memory_max: o.memory_max.clone(),
            cpu_quota: o.cpu_quota.clone(),
            tasks_max: o.tasks_max,
            idle_stop: o.idle_stop.clone(),
            force_idle_stop: o.force_idle_stop,
            secrets: BTreeMap::new(),
        }
    }
}

/// Where a secret's value comes from when `apply` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

/// One tenant of the file, checked: a valid name, a known tier, limits
/// that parse, domains that are host names, secrets read from their
/// references.
#[derive(Debug, Clone)]
pub struct Desired {
    pub name: TenantName,
    pub tier: Tier,
    pub overrides: LimitOverrides,
    pub limits: Limits,
    pub domains: Vec<String>,
    /// `(KEY, value)`: values read from the referenced files or variables.
    /// Never printed.
    pub secrets: Vec<(String, String)>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Manifest::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        toml::from_str(text).map_err(|e| {
            Error::BadFile {
                path: path.to_path_buf(),
                message: e.message().trim().to_string(),
            }
            .into()
        })
    }

    /// Check every tenant and read its secrets; the first problem is an
    /// error naming the file, the tenant and the fix.
    pub fn resolve(&self, path: &Path, paths: &Paths, default_tier: &str) -> Result<Vec<Desired>> {
        let mut tiers = TierCache::default();
        let mut out = Vec::new();
        for (raw, spec) in &self.tenants {
            let bad = |message: String| Error::BadFile {
                path: path.to_path_buf(),
                message: format!("[tenants.{raw}]: {message}"),
            };
            let name = TenantName::parse(raw).map_err(|e| bad(e.to_string()))?;
            if tenant::load(paths, &name)?.is_none() {
                name.check_new().map_err(|e| bad(e.to_string()))?;
            }
            let tier_name = spec.tier.as_deref().unwrap_or(default_tier);
            let tier = tiers
                .get(paths, tier_name)
                .map_err(|e| bad(format!("{e:#}")))?
                .clone();
            let overrides = spec.overrides();
            let limits = overrides.apply(tier.limits).map_err(bad)?;
            crate::sleep::effective(&tier, &overrides).map_err(bad)?;
            for d in &spec.domains {
                check_domain(d).map_err(|m| bad(format!("domains: {m}")))?;
            }
            let mut values = Vec::new();
            let mut scratch = EnvFile::default();
            for (key, value) in &spec.secrets {
                let r = secret_ref(key, value).map_err(&bad)?;
                if secrets::MANAGED_KEYS.contains(&key.as_str()) {
                    return Err(bad(format!(
                        "secrets.{key}: ocusers manages {key} itself; remove it from the file"
                    ))
                    .into());
                }
                let v = read_secret(&r).map_err(|m| bad(format!("secrets.{key}: {m}")))?;
                scratch
                    .set(key, &v)
                    .map_err(|e| bad(format!("secrets.{key}: {e:#}")))?;
                values.push((key.clone(), v));
            }
            out.push(Desired {
                name,
                tier,
                overrides,
                limits,
                domains: spec.domains.clone(),
                secrets: values,
            });
        }
        Ok(out)
    }
}

fn secret_ref(key: &str, value: &toml::Value) -> Result<SecretRef, String> {
    let how = "write { file = \"/path/to/file\" } or { env = \"VARIABLE\" }";
    let toml::Value::Table(t) = value else {
        return Err(format!(
            "secrets.{key}: a value in the file is not allowed (files get copied and committed); {how}"
        ));
    };
    let text = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (t.len(), text("file"), text("env")) {
        (1, Some(f), None) if f.starts_with('/') => Ok(SecretRef::File(PathBuf::from(f))),
        (1, Some(_), None) => Err(format!("secrets.{key}: the file path must be absolute")),
        (1, None, Some(v)) if !v.is_empty() => Ok(SecretRef::Env(v)),
        _ => Err(format!("secrets.{key}: {how}")),
    }
}

/// The secret's value: the file's content without its final newline, or
/// the variable's value. Errors never contain the value.
fn read_secret(r: &SecretRef) -> Result<String, String> {
    match r {
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        SecretRef::Env(var) => std::env::var(var)
            .map_err(|_| format!("environment variable {var} is not set (or not UTF-8)")),
    }
}

/// A host name: dot-separated DNS labels, lower case.
fn check_domain(d: &str) -> Result<(), String> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(ok_label) {
        return Err(format!(
            "{d:?} is not a domain name like alice.example.com (lower case, dot-separated labels)"
        ));
    }
    Ok(())
}

/// The current host as a file `apply` takes: registered tenants with their
/// tier, domains and overrides. Secrets are not exported (values never
/// leave the host this way); the keys each tenant has are listed in a
/// comment so they can be referenced in the copy.
pub fn export(records: &[Record], secret_keys: impl Fn(&Record) -> Vec<String>) -> Result<String> {
    let mut out = String::from(
        "# ocusers export: the tenants of this host, for `ocusers apply FILE` here or on another host.\n\
         # Secret values are never exported: reference them under `secrets` (file or env).\n",
    );
    for r in records {
        out.push('\n');
        let keys = secret_keys(r);
        if !keys.is_empty() {
            out.push_str(&format!(
                "# {} also has secrets: {} (not exported)\n",
                r.name,
                keys.join(", ")
            ));
        }
        let one = Manifest {
            tenants: BTreeMap::from([(r.name.to_string(), TenantSpec::from_record(r))]),
        };
        out.push_str(&toml::to_string(&one).context("serialising the export")?);
    }
    Ok(out)
}

/// Put secrets read from the file's references into a tenant's env file
/// (the one place `apply` writes secret values; `EnvFile` checks them).
pub fn set_secrets(env: &mut EnvFile, secrets: &[(String, String)]) -> Result<()> {
    for (key, value) in secrets {
        env.set(key, value)?;
    }
    Ok(())
}

/// Keys in a tenant's env file beyond those ocusers manages.
pub fn extra_keys(env: &EnvFile) -> Vec<String> {
    env.keys()
        .filter(|k| !secrets::MANAGED_KEYS.contains(k))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(Path::new("/x/tenants.toml"), text)
    }

    #[test]
    fn resolves_a_full_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-test-123\n").unwrap();
        // SAFETY: single-threaded in this test; the variable is ours.
        unsafe { std::env::set_var("OCUSERS_TEST_MANIFEST_VAR", "from-env") };
        let m = parse(&format!(
            "[tenants.alice]\ntier = \"light\"\ndomains = [\"alice.example.com\"]\nmemory_max = \"1536M\"\n\
             secrets = {{ OPENAI_API_KEY = {{ file = \"{}\" }}, OTHER = {{ env = \"OCUSERS_TEST_MANIFEST_VAR\" }} }}\n\
             [tenants.bob]\n",
            key.display()
        ))
        .unwrap();
        let d = m.resolve(Path::new("f"), &paths, "standard").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name.as_str(), "alice");
        assert_eq!(d[0].tier.name, "light");
        assert_eq!(d[0].limits.memory_max, 1536 << 20);
        assert_eq!(d[0].domains, ["alice.example.com"]);
        assert_eq!(
            d[0].secrets,
            [
                ("OPENAI_API_KEY".to_string(), "sk-test-123".to_string()),
                ("OTHER".to_string(), "from-env".to_string())
            ]
        );
        assert_eq!(d[1].tier.name, "standard");
        assert!(d[1].overrides.is_empty());
    }

    #[test]
    fn bad_files_name_tenant_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let cases = [
            ("[tenants.Alice]\n", "invalid tenant name"),
            ("[tenants.alice]\ntier = \"huge\"\n", "unknown tier"),
            ("[tenants.alice]\nmemory_max = \"lots\"\n", "memory_max"),
            ("[tenants.alice]\ncolour = \"red\"\n", "unknown field"),
            (
                "[tenants.alice]\nsecrets = { KEY = \"sk-live-value\" }\n",
                "a value in the file is not allowed",
            ),
            (
                "[tenants.alice]\nsecrets = { KEY = { env = \"OCUSERS_SURELY_UNSET\" } }\n",
                "OCUSERS_SURELY_UNSET is not set",
            ),
            (
                "[tenants.alice]\nsecrets = { KEY = { file = \"rel\" } }\n",
                "absolute",
            ),
            (
                "[tenants.alice]\nsecrets = { OPENCLAW_GATEWAY_TOKEN = { env = \"HOME\" } }\n",
                "manages OPENCLAW_GATEWAY_TOKEN itself",
            ),
            ("[tenants.alice]\ndomains = [\"Not A Domain\"]\n", "domains"),
        ];
        for (text, want) in cases {
            let err = parse(text)
                .and_then(|m| m.resolve(Path::new("/x/tenants.toml"), &paths, "standard"))
                .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(want), "{text:?}: {msg}");
            assert!(msg.contains("tenants.toml"), "{msg}");
            assert!(!msg.contains("sk-live-value"), "secret value leaked: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }

    #[test]
    fn export_round_trips_through_parse() {
        let rec = Record {
            name: TenantName::parse("alice").unwrap(),
            port: 20000,
            block: 128,
            tier: "light".into(),
            runtime: "1".into(),
            created: String::new(),
            domains: vec!["alice.example.com".into()],
            limits: LimitOverrides {
                memory_max: Some("1536M".into()),
                idle_stop: Some("15m".into()),
                force_idle_stop: true,
                ..Default::default()
            },
        };
        let text = export(std::slice::from_ref(&rec), |_| {
            vec!["OPENAI_API_KEY".into()]
        })
        .unwrap();
        assert!(
            text.contains("alice also has secrets: OPENAI_API_KEY"),
            "{text}"
        );
        let m = parse(&text).unwrap();
        assert_eq!(m.tenants["alice"], TenantSpec::from_record(&rec));
    }
}
