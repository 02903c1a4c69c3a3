//! The invite store: one root-owned JSON file per invite under
//! `/var/lib/ocusers/invites` (0700), each 0600. An open invite is
//! `open/ID.json`; redeeming renames it to `used/ID.json`. rename(2) is
//! atomic: of any number of concurrent redemptions exactly one rename
//! succeeds, the others find no file (the invite is used). Only the SHA-256
//! of the invite's secret is stored; a presented secret is hashed and
//! compared in constant time.
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of an invite id (lowercase hex) and of its secret (lowercase hex).
pub const ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 64;
/// How long the record of a used invite, and of an expired one, is kept.
pub const KEEP_USED: u64 = 30 * 24 * 3600;
pub const KEEP_EXPIRED: u64 = 7 * 24 * 3600;
/// An invite file is small; anything larger is not one of ours.
const MAX_FILE: u64 = 4096;

/// One invite as stored (no secret, only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: String,
    pub tenant: String,
    /// SHA-256 of the secret, lowercase hex.
    pub sha256: String,
    /// Unix seconds.
    pub created: u64,
    pub expires: u64,
    /// Unix seconds of the redemption, once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
}

/// Why an invite cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such invite, or the secret does not match.
    Unknown,
    /// Already redeemed.
    Used,
    Expired,
    /// An invite of another tenant, opened on this tenant's address.
    OtherTenant,
}

impl Refusal {
    /// The HTTP status and the sentence the refusal page shows.
    pub fn page(self) -> (u16, &'static str) {
        match self {
            Refusal::Unknown => (404, "This invite link is not valid. Ask for a new one."),
            Refusal::Used => (
                410,
                "This invite link has already been used. Ask for a new one.",
            ),
            Refusal::Expired => (410, "This invite link has expired. Ask for a new one."),
            Refusal::OtherTenant => (
                403,
                "This invite link is not for this address. Open the link exactly as you received it.",
            ),
        }
    }
}

pub struct Store {
    dir: PathBuf,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Constant-time comparison of two equal-length strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn valid_id(id: &str) -> bool {
    is_hex(id, ID_LEN)
}

pub fn valid_secret(secret: &str) -> bool {
    is_hex(secret, SECRET_LEN)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    Ok(hex(&buf))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    fn open_dir(&self) -> PathBuf {
        self.dir.join("open")
    }

    fn used_dir(&self) -> PathBuf {
        self.dir.join("used")
    }

    fn open_file(&self, id: &str) -> PathBuf {
        self.open_dir().join(format!("{id}.json"))
    }

    fn used_file(&self, id: &str) -> PathBuf {
        self.used_dir().join(format!("{id}.json"))
    }

    fn ensure_dirs(&self) -> Result<()> {
        for d in [&self.dir, &self.open_dir(), &self.used_dir()] {
            match fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!("creating {}", d.display())));
                }
            }
        }
        Ok(())
    }

    /// Drop records nobody needs any more: used invites after
    /// [`KEEP_USED`], expired open ones after [`KEEP_EXPIRED`] (until then
    /// `invite list` shows them as expired and their links say so).
    pub fn prune(&self, now: u64) -> Result<usize> {
        let mut removed = 0;
        for (dir, keep) in [
            (self.used_dir(), KEEP_USED),
            (self.open_dir(), KEEP_EXPIRED),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(Some(inv)) = Self::read(&entry.path()) else {
                    continue;
                };
                let since = if keep == KEEP_USED {
                    inv.used.unwrap_or(inv.expires)
                } else {
                    inv.expires
                };
                if now >= since.saturating_add(keep) && fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// A new invite for `tenant`, valid for `ttl` seconds: the stored
    /// record and the secret (shown once, never stored).
    pub fn create(&self, tenant: &str, ttl: u64) -> Result<(Invite, String)> {
        self.ensure_dirs()?;
        self.prune(now())?;
        let secret = random_hex(SECRET_LEN / 2)?;
        let created = now();
        for _ in 0..8 {
            let id = random_hex(ID_LEN / 2)?;
            if self.used_file(&id).exists() {
                continue;
            }
            let invite = Invite {
                id: id.clone(),
                tenant: tenant.to_string(),
                sha256: hash(&secret),
                created,
                expires: created.saturating_add(ttl),
                used: None,
            };
            let path = self.open_file(&id);
            let mut f = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(
                        anyhow::Error::from(e).context(format!("writing {}", path.display()))
                    );
                }
            };
            f.write_all(serde_json::to_string(&invite)?.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            return Ok((invite, secret));
        }
        bail!("could not find a free invite id in {}", self.dir.display())
    }

    fn read(path: &Path) -> Result<Option<Invite>> {
        let f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!("reading {}", path.display())));
            }
        };
        let mut text = String::new();
        f.take(MAX_FILE)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        let inv: Invite = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an invite record", path.display()))?;
        Ok(Some(inv))
    }

    /// The open (not yet used) invites, of one tenant or all, oldest first.
    pub fn list(&self, tenant: Option<&str>) -> Result<Vec<Invite>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(self.open_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            if let Some(inv) = Self::read(&entry.path())?
                && tenant.is_none_or(|t| t == inv.tenant)
            {
                out.push(inv);
            }
        }
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// Revoke an open invite of `tenant`: false when there is none by that id.
    pub fn revoke(&self, tenant: &str, id: &str) -> Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        match Self::read(&self.open_file(id))? {
            Some(inv) if inv.tenant == tenant => {}
            _ => return Ok(false),
        }
        match fs::remove_file(self.open_file(id)) {
            Ok(()) => Ok(true),
            // Redeemed or revoked in between.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `id`/`secret` is an open invite of `tenant` at `now`, without
    /// changing anything (what GET shows).
    pub fn check(&self, tenant: &str, id: &str, secret: &str, now: u64) -> Result<Invite, Refusal> {
        if !valid_id(id) || !valid_secret(secret) {
            return Err(Refusal::Unknown);
        }
        let inv = match Self::read(&self.open_file(id)) {
            Ok(Some(inv)) => inv,
            Ok(None) => {
                return match Self::read(&self.used_file(id)) {
                    Ok(Some(u)) if same(&u.sha256, &hash(secret)) => Err(Refusal::Used),
                    _ => Err(Refusal::Unknown),
                };
            }
            Err(_) => return Err(Refusal::Unknown),
        };
        if !same(&inv.sha256, &hash(secret)) || inv.id != id {
            return Err(Refusal::Unknown);
        }
        if inv.tenant != tenant {
            return Err(Refusal::OtherTenant);
        }
        if now >= inv.expires {
            return Err(Refusal::Expired);
        }
        Ok(inv)
    }

    /// Redeem: check, then claim the invite by renaming it out of `open/`.
    /// Exactly one of concurrent callers gets `Ok`.
    pub fn redeem(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        now: u64,
    ) -> Result<Invite, Refusal> {
        let mut inv = self.check(tenant, id, secret, now)?;
        match fs::rename(self.open_file(id), self.used_file(id)) {
            Ok(()) => {}
            Err(_) => return Err(Refusal::Used),
        }
        inv.used = Some(now);
        // Best effort: the record of when it was used.
        if let Ok(text) = serde_json::to_string(&inv) {
            let tmp = self.used_dir().join(format!(".{id}.tmp"));
            let written = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            if written.is_ok() {
                let _ = fs::rename(&tmp, self.used_file(id));
            } else {
                let _ = fs::remove_file(&tmp);
            }
        }
        Ok(inv)
    }

    /// Give a claimed invite back (the login could not be started): only
    /// the one caller whose claim succeeded calls this.
    pub fn unclaim(&self, inv: &Invite) -> Result<()> {
        let mut open = inv.clone();
        open.used = None;
        let tmp = self.open_dir().join(format!(".{}.tmp", inv.id));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string(&open)?.as_bytes())?;
        drop(f);
        fs::rename(&tmp, self.open_file(&inv.id))?;
        fs::remove_file(self.used_file(&inv.id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("invites"));
        (d, s)
    }

    #[test]
    fn only_the_hash_is_stored() {
        let (d, s) = store();
        let (inv, secret) = s.create("alice", 60).unwrap();
        assert!(valid_id(&inv.id) && valid_secret(&secret));
        let mut all = String::new();
        for e in walk(d.path()) {
            let m = fs::metadata(&e).unwrap();
            if m.is_dir() {
                assert_eq!(m.permissions().mode() & 0o777, 0o700, "{e:?}");
            } else {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{e:?}");
                all.push_str(&fs::read_to_string(&e).unwrap());
            }
        }
        assert!(!all.contains(&secret), "{all}");
        assert!(all.contains(&hash(&secret)), "{all}");
        assert_eq!(s.list(Some("alice")).unwrap(), std::slice::from_ref(&inv));
        assert!(s.list(Some("bob")).unwrap().is_empty());
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap().flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }

    #[test]
    fn single_use_expiry_tenant_and_secret() {
        let (_d, s) = store();
        let (inv, secret) = s.create("alice", 60).unwrap();
        let t = inv.created;
        let wrong = "0".repeat(SECRET_LEN);
        assert_eq!(s.check("alice", &inv.id, &wrong, t), Err(Refusal::Unknown));
        assert_eq!(s.check("alice", &inv.id, "short", t), Err(Refusal::Unknown));
        assert_eq!(
            s.check("alice", "../../etc/x", &secret, t),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            s.check("bob", &inv.id, &secret, t),
            Err(Refusal::OtherTenant)
        );
        assert_eq!(
            s.redeem("bob", &inv.id, &secret, t),
            Err(Refusal::OtherTenant)
        );
        assert_eq!(
            s.check("alice", &inv.id, &secret, t + 60),
            Err(Refusal::Expired)
        );
        assert_eq!(
            s.redeem("alice", &inv.id, &secret, t + 60),
            Err(Refusal::Expired)
        );
        // Checking changes nothing.
        assert!(s.check("alice", &inv.id, &secret, t).is_ok());
        assert!(s.check("alice", &inv.id, &secret, t).is_ok());
        let used = s.redeem("alice", &inv.id, &secret, t + 1).unwrap();
        assert_eq!(used.used, Some(t + 1));
        assert_eq!(
            s.redeem("alice", &inv.id, &secret, t + 1),
            Err(Refusal::Used)
        );
        assert_eq!(
            s.check("alice", &inv.id, &secret, t + 1),
            Err(Refusal::Used)
        );
        // The used state is shown only to the holder of the secret.
        assert_eq!(
            s.check("alice", &inv.id, &wrong, t + 1),
            Err(Refusal::Unknown)
        );
        assert!(s.list(None).unwrap().is_empty());
        // Given back, it works once more.
        s.unclaim(&used).unwrap();
        assert!(s.redeem("alice", &inv.id, &secret, t + 2).is_ok());
    }

    #[test]
    fn old_records_are_pruned() {
        let (_d, s) = store();
        let (a, sa) = s.create("alice", 60).unwrap();
        let (b, _) = s.create("alice", 60).unwrap();
        s.redeem("alice", &a.id, &sa, a.created).unwrap();
        assert_eq!(s.prune(b.expires + KEEP_EXPIRED - 1).unwrap(), 0);
        assert_eq!(s.prune(b.expires + KEEP_EXPIRED).unwrap(), 1);
        assert!(s.list(None).unwrap().is_empty());
        assert_eq!(s.check("alice", &a.id, &sa, a.created), Err(Refusal::Used));
        assert_eq!(s.prune(a.created + KEEP_USED).unwrap(), 1);
        assert_eq!(
            s.check("alice", &a.id, &sa, a.created),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn revoke() {
        let (_d, s) = store();
        let (inv, secret) = s.create("alice", 60).unwrap();
        assert!(!s.revoke("bob", &inv.id).unwrap());
        assert!(!s.revoke("alice", "nothex").unwrap());
        assert!(s.revoke("alice", &inv.id).unwrap());
        assert!(!s.revoke("alice", &inv.id).unwrap());
        assert_eq!(
            s.redeem("alice", &inv.id, &secret, inv.created),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn exactly_once_under_concurrency() {
        let (_d, s) = store();
        let s = std::sync::Arc::new(s);
        for _ in 0..20 {
            let (inv, secret) = s.create("alice", 60).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (s, b, id, sec) =
                        (s.clone(), barrier.clone(), inv.id.clone(), secret.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        s.redeem("alice", &id, &sec, inv.created).is_ok()
                    })
                })
                .collect();
            let won = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count();
            assert_eq!(won, 1, "invite {} redeemed {won} times", inv.id);
        }
    }
}
