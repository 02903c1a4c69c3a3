//! `ocusers restore FILE [--as NAME] [--keep-token] [--force]`: recreate a
//! tenant from a backup on this host (the same or a fresh one). The archive
//! is verified first; the tenant is then made with the same plan as `add`
//! (user, state directory, secrets file, runtime link, limits, unit), its
//! state unpacked over it, and its gateway started and waited for. A failure
//! rolls everything back. The port is the archived one if it is free here,
//! else the next free block; the gateway token is new unless --keep-token.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::add::{Ctx, check_identity};
use super::secret::push_restart;
use crate::backup;
use crate::config::HostConfig;
use crate::error::Error;
use crate::identity;
use crate::lock::HostLock;
use crate::paths::{self, Paths};
use crate::plan::Step;
use crate::policy::Tier;
use crate::ports;
use crate::privilege;
use crate::proxy;
use crate::runtime;
use crate::secrets::{self, EnvFile};
use crate::systemd::DbusSystemd;
use crate::tenant::{self, Record, TenantName};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Archive written by `ocusers backup`.
    pub file: PathBuf,
    /// Restore under another tenant name.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
    /// Keep the archived gateway token (needs an archive made --with-secrets).
    #[arg(long)]
    pub keep_token: bool,
    /// Replace an existing tenant of that name (its current state is deleted).
    #[arg(long)]
    pub force: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(paths: &Paths, args: RestoreArgs) -> Result<()> {
    // Strictly, before anything else: every member, and every value of the
    // manifest's record through the checks `add` and `secret set` make.
    let contents = backup::verify(&args.file)?;
    backup::check_record(paths, &contents)?;
    let m = &contents.manifest;
    let name = match &args.as_name {
        Some(raw) => TenantName::parse(raw)?,
        None => m.record.name.clone(),
    };
    if tenant::load(paths, &name)?.is_none() {
        name.check_new()?;
    }
    if args.keep_token && contents.secrets.is_none() {
        bail!(
            "--keep-token needs the archived secrets, and {} was made without --with-secrets: leave --keep-token out for a new token",
            args.file.display()
        );
    }
    privilege::require_root("restore")?;
    let user = paths::user_name(&name);
    let exists = tenant::load(paths, &name)?.is_some() || identity::lookup(&user).is_some();
    if exists && !args.force {
        bail!(
            "tenant {name} already exists on this host and restore does not overwrite it: restore under another name with --as OTHER, or replace it with --force"
        );
    }
    if exists && !args.dry_run {
        super::remove::run(
            paths,
            super::remove::RemoveArgs {
                name: name.to_string(),
                purge: true,
                dry_run: false,
            },
        )
        .with_context(|| format!("removing the existing tenant {name} (--force)"))?;
    }

    let _lock = HostLock::acquire(paths)?;
    let cfg = HostConfig::load(paths)?;
    check_identity(&name, &user, false)?;
    let tier = match Tier::load(paths, &m.record.tier) {
        Ok(t) => t,
        Err(_) => {
            println!(
                "tier {} is not defined on this host; using {}",
                m.record.tier, cfg.tenants.default_tier
            );
            Tier::load(paths, &cfg.tenants.default_tier)?
        }
    };
    let runtime_version = if runtime::read_marker(&paths.runtime_dir(&m.record.runtime)).is_some() {
        m.record.runtime.clone()
    } else {
        let v = runtime::default_version(paths).ok_or(Error::NoRuntime)?;
        println!(
            "OpenClaw {} (the archived runtime) is not installed here; using {v}",
            m.record.runtime
        );
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
            crate::status::human_bytes(Some(limits.memory_max))
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
        domains: restored_domains(&cfg, &name, &m.record.domains, &others),
        limits: m.record.limits.clone(),
    };
    // Every tenant's extra domains, the restored one's included: the proxy
    // routes them as `add` would.
    let mut extra_domains = proxy::extra_domains(&others);
    extra_domains.extend(record.domains.iter().cloned());
    let sd = DbusSystemd::connect()?;
    let ctx = Ctx::for_record(paths, &cfg, &sd, &record, &tier, &user, extra_domains);
    let state = paths.state_dir(&name);
    let archive = &args.file;
    let old_name = m.record.name.clone();
    let old_port = m.record.port;
    let new_name = &name;
    let env_path = paths.secrets_file(&name);
    let mut plan = ctx.plan(super::add::Start::No, false);
    plan.push(Step::new(
        format!(
            "unpack the state in {} into {}",
            archive.display(),
            state.display()
        ),
        || Ok(false),
        || {
            let account = identity::lookup(&user).context("the tenant user is missing")?;
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
        let keep_token = args.keep_token;
        let env_path = &env_path;
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
                let mut env = EnvFile::load(env_path)?.unwrap_or_default();
                for key in old.keys() {
                    let own = secrets::SETTINGS_KEYS.contains(&key);
                    if own || (key == secrets::TOKEN_KEY && !keep_token) {
                        continue;
                    }
                    env.set(key, old.get(key).unwrap_or_default())?;
                }
                env.store(env_path, new_name.as_str())
            },
        ));
    }
    push_restart(&mut plan, paths, &sd, &record);

    if args.dry_run {
        println!(
            "plan for `ocusers restore` of {} as {name} (port {port}, tier {}, openclaw {}):",
            m.tenant, tier.name, record.runtime
        );
        if exists {
            println!("  (first: remove the existing tenant {name}, --force)");
        }
        print!("{}", plan.describe()?);
        println!("dry run: nothing changed");
        return Ok(());
    }
    let started = std::time::Instant::now();
    plan.apply()?;
    println!(
        "tenant {name} restored from {} (backup of {} at {}) and ready in {:.1} s",
        archive.display(),
        m.tenant,
        m.created,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  url:    http://127.0.0.1:{port}/{}",
        if port != m.record.port {
            format!("  (port changed: {} is taken here)", m.record.port)
        } else {
            String::new()
        }
    );
    println!(
        "  token:  {} in {} (root only){}",
        secrets::TOKEN_KEY,
        paths.secrets_file(&name).display(),
        if args.keep_token {
            ", kept from the archive"
        } else {
            ", new: clients need it"
        }
    );
    Ok(())
}

/// The archived extra domains that this host can route to the restored
/// tenant; one that another tenant holds here is dropped with a note.
fn restored_domains(
    cfg: &HostConfig,
    name: &TenantName,
    archived: &[String],
    others: &[Record],
) -> Vec<String> {
    let others: Vec<Record> = others.iter().filter(|r| &r.name != name).cloned().collect();
    archived
        .iter()
        .filter(|d| {
            let ok =
                proxy::check_extra_domains(&cfg.proxy, name, std::slice::from_ref(*d), &others)
                    .is_ok();
            if !ok {
                println!("extra domain {d} is not restored: it is taken or not valid here");
            }
            ok
        })
        .cloned()
        .collect()
}
