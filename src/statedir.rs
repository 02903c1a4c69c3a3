//! What root itself makes in a tenant's state directory, `add`'s steps:
//! the directory, `logs/` and `openclaw.json`. Everything goes through
//! [`crate::safefs`] (descriptors, never a path below the state directory).
//!
//! When the tenant has put something else where one of these belongs (a
//! symlink to `/srv/victim` as `logs`, a FIFO or a link to `/dev/zero` as
//! `openclaw.json`), root does not follow it, open it or replace it: the step
//! is refused with one line naming the path and the fix (the tenant removes
//! it, the operator re-runs), and nothing outside the state changes.
use std::ffi::OsStr;
use std::path::Path;

use anyhow::Result;

use crate::identity::Account;
use crate::paths::Paths;
use crate::safefs::{Dir, Kind, Limits};
use crate::tenant::TenantName;

pub const CONFIG: &str = "openclaw.json";
pub const LOGS: &str = "logs";
/// The most root reads of a tenant's `openclaw.json` (ocusers writes about
/// 700 bytes; the gateway adds channels and agents).
pub const CONFIG_CAP: u64 = 1 << 20;

/// Is the state directory there, a real directory, `account`'s, 0700?
pub fn state_is(paths: &Paths, name: &TenantName, account: &Account) -> bool {
    Dir::state_dir_is(&paths.state_parent(), name.as_str(), account.into(), 0o700)
}

/// Does the state directory exist (as anything, link included)?
pub fn state_exists(paths: &Paths, name: &TenantName) -> bool {
    Dir::open_trusted(&paths.state_parent())
        .is_ok_and(|p| matches!(p.stat(Path::new(name.as_str())), Ok(Some(_))))
}

/// Create the state directory (or give it back to the tenant with 0700).
pub fn ensure_state(paths: &Paths, name: &TenantName, account: &Account) -> Result<Dir> {
    crate::fsutil::ensure_dir(&paths.state_parent(), 0o755)?;
    Ok(Dir::ensure_state(
        &paths.state_parent(),
        name.as_str(),
        account.into(),
        0o700,
    )?)
}

/// Remove the state directory and all below it, by descriptor.
pub fn remove_state(paths: &Paths, name: &TenantName) -> Result<()> {
    let parent = paths.state_parent();
    if !crate::fsutil::exists(&parent) {
        return Ok(());
    }
    Ok(Dir::open_trusted(&parent)?.remove_tree(OsStr::new(name.as_str()))?)
}

/// Are `openclaw.json` (a regular file) and `logs/` (a directory) there?
pub fn config_is_there(paths: &Paths, name: &TenantName) -> bool {
    let Ok(d) = Dir::open_state(&paths.state_parent(), name.as_str()) else {
        return false;
    };
    let kind = |n: &str| d.stat(Path::new(n)).ok().flatten().map(|st| Kind::of(&st));
    kind(CONFIG) == Some(Kind::Regular) && kind(LOGS) == Some(Kind::Dir)
}

/// Make `logs/` (0700, the tenant's) and, if there is none, write `text` as
/// `openclaw.json` (0600, the tenant's). A config that is there is the
/// tenant's own and stays as it is. Returns whether the config was written.
pub fn ensure_config(
    paths: &Paths,
    name: &TenantName,
    account: &Account,
    text: &str,
) -> Result<bool> {
    let d = Dir::open_state(&paths.state_parent(), name.as_str())?;
    d.ensure_dir(OsStr::new(LOGS), account.into(), 0o700)?;
    match d.stat(Path::new(CONFIG))? {
        None => {
            d.write_file(OsStr::new(CONFIG), text.as_bytes(), account.into(), 0o600)?;
            Ok(true)
        }
        Some(st) => {
            d.expect_kind(Path::new(CONFIG), &st, Kind::Regular)?;
            Ok(false)
        }
    }
}

/// Remove `openclaw.json` (for a revert).
pub fn remove_config(paths: &Paths, name: &TenantName) -> Result<()> {
    match Dir::open_state(&paths.state_parent(), name.as_str()) {
        Ok(d) => Ok(d.remove_file(OsStr::new(CONFIG))?),
        Err(crate::safefs::FsError::Io {
            errno: nix::errno::Errno::ENOENT,
            ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The tenant's `openclaw.json`, read by descriptor with a cap; `Ok(None)`
/// when there is none, an error (one line) when it is a link, a FIFO, a
/// device or too big.
pub fn read_config(paths: &Paths, name: &TenantName) -> Result<Option<String>> {
    let d = Dir::open_state(&paths.state_parent(), name.as_str())?;
    Ok(d.read_file(Path::new(CONFIG), CONFIG_CAP)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// The bounds of doctor's and audit's scan of one tenant's state.
pub fn scan_limits() -> Limits {
    Limits {
        max_entries: 100_000,
        max_depth: 64,
        max_time: std::time::Duration::from_secs(3),
    }
}

/// The bounds of `repair`'s ownership fix (it must reach every file).
pub fn chown_limits() -> Limits {
    Limits {
        max_entries: 2_000_000,
        max_depth: crate::safefs::MAX_DEPTH,
        max_time: std::time::Duration::from_secs(120),
    }
}

/// Is the state directory and all in it the tenant's (but for what
/// [`give_back`] leaves alone)?
pub fn state_owned_by(paths: &Paths, name: &TenantName, account: &Account) -> bool {
    Dir::open_state(&paths.state_parent(), name.as_str())
        .is_ok_and(|d| d.owned_by(account.into(), chown_limits()))
}

/// `repair`'s ownership fix: give the state directory and everything in it
/// to the tenant, by descriptor (links are not followed, files with several
/// hard links are left alone). Returns one note for each file left alone,
/// and for a walk cut short; fails when a file could not be changed.
pub fn give_back(paths: &Paths, name: &TenantName, account: &Account) -> Result<Vec<String>> {
    let d = Dir::open_state(&paths.state_parent(), name.as_str())?;
    let w = d.chown_tree(account.into(), chown_limits());
    if let Some(first) = w.errors.first() {
        anyhow::bail!(
            "could not give {} back to its tenant ({} error(s), first: {first})",
            d.path().display(),
            w.errors.len()
        );
    }
    let mut notes = w.skipped;
    if let Some(cut) = w.cut {
        notes.push(format!("giving {} back {cut}", d.path().display()));
    }
    Ok(notes)
}

/// One line on what in the tenant's state root will not follow or open
/// (links outside, FIFOs, sockets, devices, hard links to others' files),
/// for doctor and audit; `None` when there is nothing to say or the state
/// cannot be opened (reported elsewhere).
/// `max_time` shortens [`scan_limits`]'s time (a caller's budget).
pub fn hazards(
    paths: &Paths,
    name: &TenantName,
    account: &Account,
    max_time: std::time::Duration,
) -> Option<String> {
    let d = Dir::open_state(&paths.state_parent(), name.as_str()).ok()?;
    let mut limits = scan_limits();
    limits.max_time = limits.max_time.min(max_time);
    d.hazards(account.uid, &crate::paths::home_dir(name), limits)
        .summary()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, Paths, TenantName, Account) {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::new(t.path());
        let name = TenantName::parse("ana").unwrap();
        let account = Account {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: crate::paths::home_dir(&name),
        };
        ensure_state(&paths, &name, &account).unwrap();
        (t, paths, name, account)
    }

    #[test]
    fn add_steps_make_state_logs_and_config_once() {
        let (_t, paths, name, account) = setup();
        assert!(state_is(&paths, &name, &account));
        assert!(!config_is_there(&paths, &name));
        assert!(ensure_config(&paths, &name, &account, "{}\n").unwrap());
        assert!(config_is_there(&paths, &name));
        // The tenant's own config stays as it is.
        std::fs::write(paths.state_dir(&name).join(CONFIG), "mine").unwrap();
        assert!(!ensure_config(&paths, &name, &account, "{}\n").unwrap());
        assert_eq!(read_config(&paths, &name).unwrap().unwrap(), "mine");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&paths.state_dir(&name)), 0o700);
        assert_eq!(mode(&paths.state_dir(&name).join(LOGS)), 0o700);
        remove_config(&paths, &name).unwrap();
        remove_state(&paths, &name).unwrap();
        assert!(!state_exists(&paths, &name));
    }

    #[test]
    fn a_planted_logs_link_or_fifo_config_is_refused_in_one_line() {
        let (t, paths, name, account) = setup();
        let victim = t.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = paths.state_dir(&name);
        std::os::unix::fs::symlink(&victim, state.join(LOGS)).unwrap();
        let e = ensure_config(&paths, &name, &account, "{}").unwrap_err();
        let line = format!("{e:#}");
        assert!(
            line.contains(&format!("`{}`", state.join(LOGS).display()))
                && line.contains("symlink")
                && line.contains("ocusers exec ana -- rm")
                && !line.contains('\n'),
            "{line}"
        );
        assert!(!state.join(CONFIG).exists());
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        std::fs::remove_file(state.join(LOGS)).unwrap();
        nix::unistd::mkfifo(
            &state.join(CONFIG),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let e = ensure_config(&paths, &name, &account, "{}").unwrap_err();
        assert!(
            format!("{e:#}").contains("is a FIFO, not a regular file"),
            "{e:#}"
        );
        let e = read_config(&paths, &name).unwrap_err();
        assert!(format!("{e:#}").contains("is a FIFO"), "{e:#}");
        assert!(!config_is_there(&paths, &name));
        let h = hazards(&paths, &name, &account, std::time::Duration::from_secs(3)).unwrap();
        assert!(h.contains("is a FIFO"), "{h}");
    }
}

/// The tenant's compile cache (`CacheDirectory=`, made by systemd at the
/// gateway's first start) as `audit` and `doctor` judge it, from lstat (a
/// link is named, never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDir {
    /// Not made yet.
    Missing,
    /// A link, file or anything else but a directory.
    NotDir,
    /// A directory with this mode (permission bits) and owner.
    Dir { mode: u32, uid: u32 },
}

impl CacheDir {
    /// A 0700 directory of `account`'s own.
    pub fn is_sound_for(self, account: &Account) -> bool {
        self == CacheDir::Dir {
            mode: 0o700,
            uid: account.uid,
        }
    }
}

pub fn cache_dir(paths: &Paths, name: &TenantName) -> CacheDir {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(paths.cache_dir(name)) {
        Err(_) => CacheDir::Missing,
        Ok(m) if !m.is_dir() => CacheDir::NotDir,
        Ok(m) => CacheDir::Dir {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
        },
    }
}

#[cfg(test)]
mod cache_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn cache_dir_is_judged_from_lstat() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let name = TenantName::parse("alice").unwrap();
        let me = Account {
            uid: nix::unistd::geteuid().as_raw(),
            gid: 0,
            home: "/".into(),
        };
        assert_eq!(cache_dir(&paths, &name), CacheDir::Missing);
        std::fs::create_dir_all(paths.cache_parent()).unwrap();
        std::os::unix::fs::symlink("/etc", paths.cache_dir(&name)).unwrap();
        assert_eq!(cache_dir(&paths, &name), CacheDir::NotDir);
        std::fs::remove_file(paths.cache_dir(&name)).unwrap();
        std::fs::create_dir(paths.cache_dir(&name)).unwrap();
        let set = |m| {
            std::fs::set_permissions(paths.cache_dir(&name), std::fs::Permissions::from_mode(m))
                .unwrap()
        };
        set(0o755);
        let c = cache_dir(&paths, &name);
        assert_eq!(
            c,
            CacheDir::Dir {
                mode: 0o755,
                uid: me.uid
            }
        );
        assert!(!c.is_sound_for(&me));
        set(0o700);
        let c = cache_dir(&paths, &name);
        assert!(c.is_sound_for(&me));
        assert!(!c.is_sound_for(&Account {
            uid: me.uid + 1,
            ..me.clone()
        }));
    }
}
