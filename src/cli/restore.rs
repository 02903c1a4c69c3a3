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

use crate::backup;
use crate::config::HostConfig;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::privilege;
use crate::provision::remove;
use crate::provision::restore::{self, Restored};
use crate::provision::{Ctx, Start, push_restart};
use crate::secrets;
use crate::systemd::DbusSystemd;
use crate::tenant::{self, TenantName};

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
    let exists = restore::exists(paths, &name)?;
    if exists && !args.force {
        bail!(
            "tenant {name} already exists on this host and restore does not overwrite it: restore under another name with --as OTHER, or replace it with --force"
        );
    }
    if exists && !args.dry_run {
        let _lock = HostLock::acquire(paths)?;
        let sd = DbusSystemd::connect()?;
        let removal = remove::remove(paths, &sd, &name, true, None)
            .with_context(|| format!("removing the existing tenant {name} (--force)"))?;
        if let Some(removed) = removal {
            for line in removed.report() {
                println!("{line}");
            }
        }
    }

    let _lock = HostLock::acquire(paths)?;
    let cfg = HostConfig::load(paths)?;
    let Restored {
        record,
        tier,
        extra_domains,
    } = restore::prepare(paths, &cfg, m, &name, &mut |note| println!("{note}"))?;
    let port = record.port;
    let sd = DbusSystemd::connect()?;
    let ctx = Ctx::new(paths, &cfg, &sd, &record, &tier, &[], extra_domains);
    let archive = &args.file;
    let mut plan = ctx.plan(Start::No, false);
    restore::push_steps(
        &mut plan,
        paths,
        &crate::identity::SYSTEM,
        &contents,
        archive,
        &record,
        args.keep_token,
    );
    push_restart(&mut plan, paths, &sd, &record);

    if args.dry_run {
        let mut title = format!(
            "plan for `ocusers restore` of {} as {name} (port {port}, tier {}, openclaw {}):",
            m.tenant, tier.name, record.runtime
        );
        if exists {
            title.push_str(&format!(
                "\n  (first: remove the existing tenant {name}, --force)"
            ));
        }
        super::print_plan(&title, &plan)?;
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
