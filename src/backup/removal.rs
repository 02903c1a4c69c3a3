//! What `remove` leaves of a tenant's state: an `ocusers backup` archive, or
//! the state directory moved aside when no manifest can describe it.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::fsutil;
use crate::paths::Paths;
use crate::tenant::{self, TenantName};

/// The archive `remove` leaves: a real `ocusers backup` of the tenant
/// (manifest, registry entry, secrets; the state packed by the tenant's own
/// uid in its sandbox), so `ocusers restore FILE` brings the tenant back.
/// A tenant with no registry entry or no user (the leftovers of a failed
/// add) cannot be described by a manifest: its state directory is moved
/// aside whole, by one rename of a path root owns, next to where the
/// archive would be.
/// `ours`: the tenant's user exists and is ocusers' (its home is the
/// tenant's state directory).
pub fn archive_state(
    p: &Paths,
    name: &TenantName,
    state: &Path,
    archive: &Path,
    ours: bool,
) -> Result<()> {
    let record = tenant::load(p, name)?;
    match (record, ours) {
        (Some(record), true) => {
            let registry = std::fs::read_to_string(p.registry_file(name))
                .with_context(|| format!("reading the registry entry of {name}"))?;
            let secrets = match std::fs::read(p.secrets_file(name)) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).context("reading the secrets file"),
            };
            super::create_at(&record, state, &registry, secrets.as_deref(), archive)
                .context(
                    "archiving the state before removal failed (the state is kept; `ocusers remove --purge` deletes it without an archive)",
                )
        }
        _ => {
            let aside = moved_aside(archive);
            let parent = aside.parent().context("archive path has no parent")?;
            fsutil::ensure_dir(parent, 0o700)?;
            std::fs::rename(state, &aside)
                .with_context(|| format!("moving {} to {}", state.display(), aside.display()))
        }
    }
}

/// Where the state of a tenant without registry entry or user goes.
pub fn moved_aside(archive: &Path) -> PathBuf {
    let s = archive.display().to_string();
    PathBuf::from(format!("{}.state", s.trim_end_matches(".tar.gz")))
}
