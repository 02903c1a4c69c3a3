//! The values in an archive's manifest go through the checks `add`,
//! `apply` and `secret set` make (threat model rule 4): an archive from
//! anywhere must not bring in a runtime path, limits or environment
//! variables that ocusers would refuse from the operator.
use anyhow::{Context, Result, bail};

use super::Contents;
use crate::paths::Paths;
use crate::policy::Tier;
use crate::secrets::{self, EnvFile};
use crate::tenant::Record;

/// Refuse an archive whose record or secrets carry values `add` or
/// `secret set` would refuse. Host-independent but for the tier: the
/// archived tier if this host has it, else the host's default tier.
pub fn check_record(paths: &Paths, c: &Contents) -> Result<()> {
    let m = &c.manifest;
    let r = &m.record;
    let bad = |what: String| anyhow::anyhow!("the archive's manifest is not acceptable: {what}");
    if m.tenant != r.name.as_str() {
        return Err(bad(format!(
            "it names tenant {:?} but its record is {}",
            m.tenant, r.name
        )));
    }
    crate::runtime::check_version(&r.runtime).map_err(|e| bad(format!("{e:#}")))?;
    humantime::parse_rfc3339_weak(&r.created)
        .map_err(|_| bad(format!("created {:?} is not an RFC 3339 time", r.created)))?;
    let tier = match Tier::load(paths, &r.tier) {
        Ok(t) => t,
        Err(_) => {
            let cfg = crate::config::HostConfig::load(paths)?;
            Tier::load(paths, &cfg.tenants.default_tier)?
        }
    };
    r.limits
        .apply(tier.limits)
        .map_err(|m| bad(format!("limits: {m}")))?;
    let registered: Record = toml::from_str(&c.registry)
        .map_err(|e| bad(format!("{}: {}", super::REGISTRY, e.message())))?;
    if &registered != r {
        return Err(bad(format!(
            "{} differs from the manifest's record",
            super::REGISTRY
        )));
    }
    if let Some(raw) = &c.secrets {
        check_secrets(raw).map_err(|e| bad(format!("{}: {e:#}", super::SECRETS)))?;
    }
    Ok(())
}

/// The archived environment file: every line as `secret set` accepts it,
/// no key the unit or the loader honours (`LD_PRELOAD`, `PATH`,
/// `OPENCLAW_STATE_DIR`, ...), and ocusers' own three keys only with the
/// values ocusers writes (restore replaces the port and heap anyway).
pub fn check_secrets(raw: &[u8]) -> Result<()> {
    let text = std::str::from_utf8(raw).context("not UTF-8 text")?;
    let env = EnvFile::parse(text)?;
    for key in env.keys() {
        let value = env.get(key).unwrap_or_default();
        match key {
            secrets::TOKEN_KEY => {
                if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
                    bail!("{key} is not a token ocusers would write");
                }
            }
            secrets::PORT_KEY => {
                value
                    .parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("{key}={value} is not a port"))?;
            }
            secrets::NODE_OPTIONS_KEY => {
                if secrets::managed_heap(value).is_none() {
                    bail!(
                        "{key}={value} is not the setting ocusers writes ({})",
                        secrets::node_options(0).replace("=0", "=N")
                    );
                }
            }
            _ => secrets::check_operator_key(key)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_like_secret_set() {
        check_secrets(
            b"OPENCLAW_GATEWAY_TOKEN=abc123\nOCUSERS_PORT=20000\nNODE_OPTIONS=--max-old-space-size=1024\nOPENAI_API_KEY=sk\n",
        )
        .unwrap();
        check_secrets(b"NODE_OPTIONS=--max-old-space-size=1024 --disable-sigusr1\n").unwrap();
        for bad in [
            &b"LD_PRELOAD=/tmp/x.so\n"[..],
            b"PATH=/tmp\n",
            b"OPENCLAW_STATE_DIR=/etc\n",
            b"NODE_OPTIONS=--require=/tmp/x.js\n",
            b"OCUSERS_PORT=x\n",
            b"SYSTEMD_X=1\n",
            b"lower=1\n",
        ] {
            assert!(
                check_secrets(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
