//! A tenant from a backup: its registry entry on this host (the archived
//! one where this host allows it) and the steps `restore` adds after the
//! add plan (the state unpacked as the tenant, the archived secrets).
use std::path::Path;

use anyhow::{Context, Result};

use super::add::check_identity;
use crate::backup::{self, Contents, Manifest};
use crate::config::HostConfig;
use crate::error::Error;
use crate::identity;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::policy::Tier;
use crate::ports;
use crate::proxy;
use crate::runtime;
use crate::secrets::{self, EnvFile};
use crate::tenant::{self, Record, TenantName};

/// Whether a tenant of that name is on this host: registered, or its user
/// exists (`restore` replaces it only with `--force`).
pub fn exists(paths: &Paths, name: &TenantName) -> Result<bool> {
    Ok(tenant::load(paths, name)?.is_some() || identity::lookup(&paths::user_name(name)).is_some())
}

/// The restored tenant as it will be on this host: its record, its tier,
/// and every tenant's extra domains with its own (what `add` prepares).
pub use super::request::Prepared as Restored;

/// The archived record made to fit this host: its tier (or the default
/// one), its runtime (or the default one), its port (or the next free
/// block), the extra domains this host can route; the limits and the
/// capacity guard checked as `add` checks them. `note` is told of each
/// thing that differs from the archive.
pub fn prepare(
    paths: &Paths,
    cfg: &HostConfig,
    m: &Manifest,
    name: &TenantName,
    note: &mut dyn FnMut(String),
) -> Result<Restored> {
    check_identity(name, &paths::user_name(name), false)?;
    let tier = match Tier::load(paths, &m.record.tier) {
        Ok(t) => t,
        Err(_) => {
            note(format!(
                "tier {} is not defined on this host; using {}",
                m.record.tier, cfg.tenants.default_tier
            ));
            Tier::load(paths, &cfg.tenants.default_tier)?
        }
    };
    let runtime_version = if runtime::read_marker(&paths.runtime_dir(&m.record.runtime)).is_some() {
        m.record.runtime.clone()
    } else {
        let v = runtime::default_version(paths).ok_or(Error::NoRuntime)?;
        note(format!(
            "OpenClaw {} (the archived runtime) is not installed here; using {v}",
            m.record.runtime
        ));
        v
    };
    let others = tenant::list(paths)?;
    // The archived limits on this host's tier, and the capacity guard, as
    // `add` checks them.
    let limits = m
        .record
        .limits
        .apply(tier.limits)
        .map_err(|e| anyhow::anyhow!("the archived limits on tier {}: {e}", tier.name))?;
    crate::capacity::check(
        &cfg.capacity,
        crate::capacity::host_ram(paths)?,
        crate::capacity::committed(paths, &others)?.saturating_add(limits.memory_max),
        &format!(
            "tenant {name} (tier {}, MemoryMax {})",
            tier.name,
            crate::display::human_bytes(Some(limits.memory_max))
        ),
        false,
    )?;
    let live = ports::live_listeners(paths.root())?;
    let port = match ports::check_requested(m.record.port, &cfg.ports, &others, &live) {
        Ok(()) => m.record.port,
        Err(_) => ports::allocate(&cfg.ports, &others, &live)?,
    };
    let record = Record {
        name: name.clone(),
        port,
        block: cfg.ports.block,
        tier: tier.name.clone(),
        runtime: runtime_version,
        created: m.record.created.clone(),
        domains: restored_domains(cfg, name, &m.record.domains, &others, note),
        limits: m.record.limits.clone(),
    };
    // Every tenant's extra domains, the restored one's included: the proxy
    // routes them as `add` would.
    let mut extra_domains = proxy::extra_domains(&others);
    extra_domains.extend(record.domains.iter().cloned());
    Ok(Restored {
        record,
        tier,
        extra_domains,
    })
}

/// After the add plan: the archived state unpacked into the new state
/// directory (as the tenant, in its sandbox), and the archived secrets
/// (the gateway token only with `keep_token`).
pub fn push_steps<'a>(
    plan: &mut Plan<'a>,
    paths: &'a Paths,
    ids: &'a dyn identity::Accounts,
    contents: &'a Contents,
    archive: &'a Path,
    record: &'a Record,
    keep_token: bool,
) {
    let m = &contents.manifest;
    let name = &record.name;
    let port = record.port;
    let user = paths::user_name(name);
    let state = paths.state_dir(name);
    let old_name = m.record.name.clone();
    let old_port = m.record.port;
    let new_name = name;
    let env_path = paths.secrets_file(name);
    plan.push(Step::new(
        format!(
            "unpack the state in {} into {}",
            archive.display(),
            state.display()
        ),
        || Ok(false),
        move || {
            let account = ids.lookup(&user).context("the tenant user is missing")?;
            // As the tenant, in its sandbox: the archive's links and names
            // reach only what the tenant could reach.
            let fix = backup::ConfigFix {
                home: (&old_name != new_name).then(|| {
                    (
                        paths::home_dir(&old_name).display().to_string(),
                        paths::home_dir(new_name).display().to_string(),
                    )
                }),
                port: (old_port != port).then_some(port),
            };
            backup::extract_verified(archive, m, &state, &account, &fix)?;
            Ok(())
        },
    ));
    if let Some(archived) = &contents.secrets {
        plan.push(Step::new(
            format!(
                "restore the archived secrets into {}{}",
                env_path.display(),
                if keep_token {
                    " (keeping the archived gateway token)"
                } else {
                    " (with a new gateway token)"
                }
            ),
            || Ok(false),
            move || {
                let old = EnvFile::parse(&String::from_utf8_lossy(archived))
                    .context("parsing the archived secrets")?;
                let mut env = EnvFile::load(&env_path)?.unwrap_or_default();
                for key in old.keys() {
                    let own = secrets::SETTINGS_KEYS.contains(&key);
                    if own || (key == secrets::TOKEN_KEY && !keep_token) {
                        continue;
                    }
                    env.set(key, old.get(key).unwrap_or_default())?;
                }
                env.store(&env_path, new_name.as_str())
            },
        ));
    }
}

/// The archived extra domains that this host can route to the restored
/// tenant; one that another tenant holds here is dropped with a note.
fn restored_domains(
    cfg: &HostConfig,
    name: &TenantName,
    archived: &[String],
    others: &[Record],
    note: &mut dyn FnMut(String),
) -> Vec<String> {
    let others: Vec<Record> = others.iter().filter(|r| &r.name != name).cloned().collect();
    archived
        .iter()
        .filter(|d| {
            let ok =
                proxy::check_extra_domains(&cfg.proxy, name, std::slice::from_ref(*d), &others)
                    .is_ok();
            if !ok {
                note(format!(
                    "extra domain {d} is not restored: it is taken or not valid here"
                ));
            }
            ok
        })
        .cloned()
        .collect()
}
