//! The host lock: one ocusers change at a time.
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::paths::Paths;

pub struct HostLock {
    _lock: Flock<std::fs::File>,
}

impl HostLock {
    /// Take the lock, or fail at once naming the holder's state: another
    /// ocusers change is running.
    pub fn acquire(paths: &Paths) -> Result<HostLock> {
        let path = paths.lock_file();
        let file = open(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(HostLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "another ocusers change is running (lock {} is held): wait for it to finish and retry",
                path.display()
            ),
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

/// A root-only (0600) lock file, made with its parent when missing (only
/// under a test root: /run always is); the caller flocks it.
pub fn open(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}
