//! `ocusers backup NAME|--all [--out DIR] [--with-secrets]` and
//! `ocusers backup verify FILE`: archives of running tenants (see
//! `crate::backup` for the format and why SQLite files are consistent).
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::print_json;
use crate::backup;
use crate::lock::HostLock;
use crate::paths::Paths;
use crate::privilege;
use crate::tenant::{self, Record, TenantName};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub verify: Option<BackupCommand>,
    /// Tenant to back up.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every tenant, one archive each.
    #[arg(long)]
    pub all: bool,
    /// Directory for the archives (default /var/lib/ocusers/backups).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Include the tenant's secrets file (gateway token, provider keys).
    /// Archives are 0600 root in any case.
    #[arg(long)]
    pub with_secrets: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check every member of an archive against its manifest (SHA-256, size).
    Verify {
        file: PathBuf,
        /// Print the manifest's summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(paths: &Paths, args: BackupArgs) -> Result<()> {
    if let Some(BackupCommand::Verify { file, json }) = args.verify {
        return verify(paths, &file, json);
    }
    let name = args.name.as_deref().map(TenantName::parse).transpose()?;
    let records = tenant::one_or_all(paths, name.as_ref())?;
    privilege::require_root("backup")?;
    let _lock = HostLock::acquire(paths)?;
    let out = args.out.unwrap_or_else(|| paths.backups_dir());
    if records.is_empty() {
        bail!("no tenants to back up: see `ocusers list`");
    }
    // One tenant's failure (a bad file in its state, a helper that timed
    // out) does not stop the others: each is reported, the exit status says.
    let mut failed = Vec::new();
    for r in &records {
        if let Err(e) = one(paths, r, &out, args.with_secrets) {
            if records.len() == 1 {
                return Err(e);
            }
            eprintln!("ocusers: {}", crate::error::render_chain(&e));
            failed.push(r.name.to_string());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} backups failed ({}): see the lines above",
            failed.len(),
            records.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn one(paths: &Paths, r: &Record, out: &std::path::Path, with_secrets: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let state = paths.state_dir(&r.name);
    let registry = std::fs::read_to_string(paths.registry_file(&r.name))
        .with_context(|| format!("reading the registry entry of {}", r.name))?;
    let secrets = if with_secrets {
        Some(
            std::fs::read(paths.secrets_file(&r.name))
                .with_context(|| format!("reading the secrets file of {}", r.name))?,
        )
    } else {
        None
    };
    let path = backup::create(r, &state, &registry, secrets.as_deref(), out)?;
    crate::logging::record(
        r.name.as_str(),
        "backup",
        &format!(
            "wrote {}{}",
            path.display(),
            if with_secrets { " (with secrets)" } else { "" }
        ),
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} ({}, {:.1} s{})",
        r.name,
        path.display(),
        crate::display::human_bytes(Some(size)),
        started.elapsed().as_secs_f64(),
        if with_secrets { ", with secrets" } else { "" }
    );
    Ok(())
}

fn verify(paths: &Paths, file: &std::path::Path, json: bool) -> Result<()> {
    let c = backup::verify(file)?;
    backup::check_record(paths, &c)?;
    let m = &c.manifest;
    let files = m.entries.iter().filter(|e| e.kind == "file").count();
    let bytes: u64 = m.entries.iter().map(|e| e.size).sum();
    if json {
        return print_json(&serde_json::json!({
            "ok": true,
            "file": file,
            "tenant": m.tenant,
            "created": m.created,
            "runtime": m.record.runtime,
            "port": m.record.port,
            "tier": m.record.tier,
            "with_secrets": m.with_secrets,
            "files": files,
            "bytes": bytes,
            "sqlite": m.sqlite,
        }));
    }
    println!(
        "{}: ok, tenant {} from {} ({} files, {}, {} SQLite database(s) snapshotted, {})",
        file.display(),
        m.tenant,
        m.created,
        files,
        crate::display::human_bytes(Some(bytes)),
        m.sqlite.len(),
        if m.with_secrets {
            "with secrets"
        } else {
            "without secrets"
        }
    );
    Ok(())
}
