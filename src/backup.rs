//! Tenant backups: one gzip-compressed tar archive per tenant with its
//! state directory, its registry entry, optionally its secrets file, and a
//! manifest (last entry) listing every member with its size and SHA-256, so
//! `ocusers backup verify` can check an archive without restoring it.
//!
//! Consistency while the gateway runs: OpenClaw keeps SQLite databases in
//! the state directory. Every file that starts with SQLite's header is not
//! copied byte by byte (that could capture a torn page, or a database
//! without the transactions still in its WAL) but snapshotted through SQLite
//! itself with `VACUUM INTO`, which reads inside one read transaction and so
//! writes a consistent copy, WAL included; the `-wal`, `-shm` and `-journal`
//! files beside it are left out. This works on any cgroup layout (freezing
//! the unit with `systemctl freeze` needs cgroup v2) and never stops the
//! gateway. Other files are read once each; OpenClaw replaces its JSON files
//! by rename, so each is whole.
//!
//! Archives are always 0600: they hold the tenant's conversations and
//! config, and with `--with-secrets` its provider keys and gateway token.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::identity::Account;
use crate::tenant::Record;

pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const REGISTRY: &str = "registry.toml";
pub const SECRETS: &str = "secrets.env";
/// State files live under this prefix in the archive.
pub const STATE: &str = "state";
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Top-level entries of the state directory that are caches or scratch
/// space the gateway rebuilds (its model/plugin cache, npm's logs, lock
/// files under its own tmp): not state, and most of the bytes.
pub const EXCLUDED: &[&str] = &["cache", ".cache", ".npm", "tmp"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tenant: String,
    pub created: String,
    pub ocusers_version: String,
    pub record: Record,
    pub with_secrets: bool,
    /// State files that were snapshotted through SQLite.
    pub sqlite: Vec<String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    pub mode: u32,
    pub size: u64,
    /// SHA-256 of the content (of the link target for a symlink).
    pub sha256: String,
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `NAME-20261123T080102Z.tar.gz`
pub fn file_name(tenant: &str) -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    format!("{tenant}-{t}.tar.gz")
}

struct Writer {
    tar: tar::Builder<flate2::write::GzEncoder<File>>,
    entries: Vec<Entry>,
}

impl Writer {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        h
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .with_context(|| format!("adding {path}"))?;
        self.entries.push(Entry {
            path: path.to_string(),
            kind: "file".into(),
            mode,
            size: data.len() as u64,
            sha256: sha256_hex(data),
        });
        Ok(())
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .with_context(|| format!("adding {path}"))?;
        self.entries.push(Entry {
            path: path.to_string(),
            kind: "dir".into(),
            mode,
            size: 0,
            sha256: String::new(),
        });
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .with_context(|| format!("adding {path}"))?;
        self.entries.push(Entry {
            path: path.to_string(),
            kind: "symlink".into(),
            mode: 0o777,
            size: 0,
            sha256: sha256_hex(target.as_bytes()),
        });
        Ok(())
    }
}

fn is_sqlite(path: &Path) -> bool {
    let mut buf = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
        && &buf == SQLITE_MAGIC
}

/// Empty OpenClaw's `state_leases` table in a snapshot. A lease belongs to
/// the live process that holds it (the running gateway's owner lease above
/// all): in a copy it makes the restored gateway refuse to start ("Another
/// Gateway owner lease is still active for this state directory") until it
/// expires, five minutes after the backup, on any host where the recorded
/// owner cannot be proven dead. Returns the rows removed.
fn drop_leases(db: &Path) -> Result<usize> {
    let conn = rusqlite::Connection::open(db)?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'state_leases'",
        [],
        |r| r.get(0),
    )?;
    if tables == 0 {
        return Ok(0);
    }
    Ok(conn.execute("DELETE FROM state_leases", [])?)
}

/// A consistent copy of a live SQLite database, through SQLite.
fn sqlite_snapshot(db: &Path, staging: &Path) -> Result<Vec<u8>> {
    let out = staging.join("snapshot.sqlite");
    fsutil::remove_file(&out)?;
    // Sidecar files SQLite may create when it opens a WAL database; if it
    // makes one here (as root) it must end up the tenant's, as before.
    let sidecars: Vec<PathBuf> = ["-wal", "-shm"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .collect();
    let existed: Vec<bool> = sidecars.iter().map(|p| fsutil::exists(p)).collect();
    let result = (|| -> Result<()> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute("VACUUM INTO ?1", [out.to_string_lossy()])?;
        drop(conn);
        drop_leases(&out)?;
        Ok(())
    })();
    if let Ok(meta) = fs::metadata(db) {
        for (p, existed) in sidecars.iter().zip(existed) {
            if !existed && fsutil::exists(p) {
                let _ = nix::unistd::chown(
                    p,
                    Some(nix::unistd::Uid::from_raw(meta.uid())),
                    Some(nix::unistd::Gid::from_raw(meta.gid())),
                );
            }
        }
    }
    result.with_context(|| format!("snapshotting SQLite database {}", db.display()))?;
    let data = fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    fsutil::remove_file(&out)?;
    Ok(data)
}

/// Write the archive of one tenant into `out_dir`; returns its path.
pub fn create(
    record: &Record,
    state_dir: &Path,
    registry_text: &str,
    secrets: Option<&[u8]>,
    out_dir: &Path,
) -> Result<PathBuf> {
    fsutil::ensure_dir(out_dir, 0o700)?;
    let final_path = out_dir.join(file_name(record.name.as_str()));
    let tmp = out_dir.join(format!(".{}.partial", record.name));
    let staging = out_dir.join(format!(".{}.staging", record.name));
    fsutil::remove_tree(&staging)?;
    fsutil::ensure_dir(&staging, 0o700)?;
    let result = (|| -> Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        let mut w = Writer {
            tar: tar::Builder::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            entries: Vec::new(),
        };
        let mut sqlite = Vec::new();
        w.file(REGISTRY, registry_text.as_bytes(), 0o644)?;
        if let Some(s) = secrets {
            w.file(SECRETS, s, 0o600)?;
        }
        let mode = fs::metadata(state_dir)
            .with_context(|| format!("reading {}", state_dir.display()))?
            .mode()
            & 0o7777;
        w.dir(STATE, mode)?;
        add_tree(&mut w, state_dir, STATE, &staging, &mut sqlite, EXCLUDED)?;
        let manifest = Manifest {
            format: FORMAT,
            tenant: record.name.to_string(),
            created: crate::runtime::now_rfc3339(),
            ocusers_version: env!("CARGO_PKG_VERSION").to_string(),
            record: record.clone(),
            with_secrets: secrets.is_some(),
            sqlite,
            entries: std::mem::take(&mut w.entries),
        };
        let text = serde_json::to_vec_pretty(&manifest)?;
        let mut h = Writer::header(tar::EntryType::Regular, 0o644, text.len() as u64);
        w.tar.append_data(&mut h, MANIFEST, text.as_slice())?;
        let gz = w.tar.into_inner()?;
        let file = gz.finish()?;
        file.sync_all()?;
        fs::rename(&tmp, &final_path)
            .with_context(|| format!("renaming to {}", final_path.display()))?;
        File::open(out_dir)?.sync_all()?;
        Ok(())
    })();
    let _ = fsutil::remove_tree(&staging);
    if result.is_err() {
        let _ = fsutil::remove_file(&tmp);
    }
    result.with_context(|| format!("writing the backup of tenant {}", record.name))?;
    Ok(final_path)
}

fn add_tree(
    w: &mut Writer,
    dir: &Path,
    prefix: &str,
    staging: &Path,
    sqlite: &mut Vec<String>,
    exclude: &[&str],
) -> Result<()> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort();
    // Databases first, so their sidecars are known before they are met.
    let dbs: Vec<PathBuf> = names
        .iter()
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) && is_sqlite(p))
        .cloned()
        .collect();
    for path in &names {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has a name that is not UTF-8", path.display()))?;
        let rel = format!("{prefix}/{name}");
        let is_sidecar = ["-wal", "-shm", "-journal"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| dbs.iter().any(|d| d.file_name() == Some(base.as_ref())))
        });
        if is_sidecar || exclude.contains(&name) {
            continue;
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            // Deleted by the gateway since the listing: not part of the state.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            w.dir(&rel, mode)?;
            add_tree(w, path, &rel, staging, sqlite, &[])?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(path)?;
            w.symlink(&rel, &target.to_string_lossy())?;
        } else if meta.is_file() {
            let data = if dbs.contains(path) {
                sqlite.push(rel.clone());
                sqlite_snapshot(path, staging)?
            } else {
                match fs::read(path) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                }
            };
            w.file(&rel, &data, mode)?;
        }
        // Sockets and FIFOs are runtime objects, not state.
    }
    Ok(())
}

/// What an archive holds, read and checked member by member.
pub struct Contents {
    pub manifest: Manifest,
    pub registry: String,
    pub secrets: Option<Vec<u8>>,
}

/// A member name that stays inside its destination.
fn safe_rel(path: &str) -> Result<&Path> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Ok(p)
    } else {
        bail!("member {path:?} would escape its directory")
    }
}

/// Read every member, check each against the manifest (size, SHA-256, no
/// member missing or extra). Returns the manifest, registry and secrets.
pub fn verify(archive: &Path) -> Result<Contents> {
    let what = || format!("archive {}", archive.display());
    let file = File::open(archive).with_context(what)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut seen: BTreeMap<String, Entry> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut registry = None;
    let mut secrets = None;
    for entry in tar.entries().with_context(what)? {
        let mut entry = entry.with_context(what)?;
        let path = entry
            .path()
            .with_context(what)?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        safe_rel(&path).with_context(what)?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0);
        let (kind_name, data) = if kind.is_dir() {
            ("dir", Vec::new())
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .with_context(what)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            ("symlink", target.into_bytes())
        } else if kind.is_file() {
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .with_context(|| format!("{}: reading {path}", what()))?;
            ("file", data)
        } else {
            bail!("{}: unexpected member type of {path}", what());
        };
        if path == MANIFEST {
            manifest = Some(
                serde_json::from_slice(&data)
                    .with_context(|| format!("{}: bad manifest", what()))?,
            );
            continue;
        }
        if path == REGISTRY {
            registry = Some(String::from_utf8_lossy(&data).into_owned());
        } else if path == SECRETS {
            secrets = Some(data.clone());
        }
        seen.insert(
            path.clone(),
            Entry {
                path,
                kind: kind_name.into(),
                mode,
                size: if kind_name == "file" {
                    data.len() as u64
                } else {
                    0
                },
                sha256: if kind_name == "dir" {
                    String::new()
                } else {
                    sha256_hex(&data)
                },
            },
        );
    }
    let manifest = manifest.with_context(|| {
        format!(
            "{}: no {MANIFEST} (not an ocusers backup, or cut short)",
            what()
        )
    })?;
    if manifest.format != FORMAT {
        bail!(
            "{}: backup format {} is not supported by this ocusers (format {FORMAT})",
            what(),
            manifest.format
        );
    }
    for e in &manifest.entries {
        match seen.remove(&e.path) {
            None => bail!(
                "{}: {} is listed in the manifest but missing",
                what(),
                e.path
            ),
            Some(got) if got.sha256 != e.sha256 || got.size != e.size || got.kind != e.kind => {
                bail!(
                    "{}: {} does not match the manifest (SHA-256 or size differs): the archive is damaged",
                    what(),
                    e.path
                )
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        bail!("{}: {extra} is not in the manifest", what());
    }
    if manifest.with_secrets != secrets.is_some() {
        bail!("{}: secrets member disagrees with the manifest", what());
    }
    let registry = registry.with_context(|| format!("{}: no {REGISTRY}", what()))?;
    Ok(Contents {
        manifest,
        registry,
        secrets,
    })
}

/// Unpack the `state/` members into `dest` (which must exist), owned by
/// `owner`. Call [`verify`] first.
pub fn extract_state(archive: &Path, dest: &Path, owner: &Account) -> Result<usize> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let uid = Some(nix::unistd::Uid::from_raw(owner.uid));
    let gid = Some(nix::unistd::Gid::from_raw(owner.gid));
    let mut count = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_end_matches('/');
        let Some(rel) = path.strip_prefix(&format!("{STATE}/")) else {
            continue;
        };
        let target = dest.join(safe_rel(rel)?);
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o600) & 0o7777;
        if kind.is_dir() {
            fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            fsutil::remove_file(&target)?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("creating {}", target.display()))?;
        } else if kind.is_file() {
            fsutil::remove_file(&target)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            std::io::copy(&mut entry, &mut f)
                .with_context(|| format!("writing {}", target.display()))?;
            f.flush()?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        } else {
            continue;
        }
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &target,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("chown {}", target.display()))?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_carry_no_leases() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("openclaw.sqlite");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT NOT NULL,
               expires_at INTEGER, heartbeat_at INTEGER, payload_json TEXT, created_at INTEGER NOT NULL,
               updated_at INTEGER NOT NULL, PRIMARY KEY (scope, lease_key)) STRICT;
             INSERT INTO state_leases VALUES ('gateway-owner', 'global', 'x', 99999999999999, 0, '{}', 0, 0);
             CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('note');",
        )
        .unwrap();
        let staging = dir.path().join("staging");
        fs::create_dir(&staging).unwrap();
        let bytes = sqlite_snapshot(&db, &staging).unwrap();
        let copy = dir.path().join("copy.sqlite");
        fs::write(&copy, bytes).unwrap();
        let c = rusqlite::Connection::open(&copy).unwrap();
        let leases: i64 = c
            .query_row("SELECT count(*) FROM state_leases", [], |r| r.get(0))
            .unwrap();
        let kept: String = c.query_row("SELECT v FROM kept", [], |r| r.get(0)).unwrap();
        assert_eq!((leases, kept.as_str()), (0, "note"));
        // The live database keeps its lease.
        let live: i64 = conn
            .query_row("SELECT count(*) FROM state_leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(live, 1);
    }
    use crate::tenant::TenantName;

    fn record() -> Record {
        Record {
            name: TenantName::parse("alice").unwrap(),
            port: 20000,
            block: 128,
            tier: "standard".into(),
            runtime: "2026.9.6".into(),
            created: "2026-11-22T00:00:00Z".into(),
            domains: Vec::new(),
            limits: Default::default(),
        }
    }

    #[test]
    fn round_trip_with_a_live_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("alice");
        fs::create_dir_all(state.join("workspace")).unwrap();
        fs::write(state.join("workspace/note.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("note.txt", state.join("workspace/link")).unwrap();
        let db = state.join("memory.sqlite");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
        )
        .unwrap();
        // The writer keeps its connection open: the rows may sit in the WAL.
        let out = dir.path().join("out");
        let archive = create(&record(), &state, "name = 'alice'\n", Some(b"K=v\n"), &out).unwrap();
        let mode = fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let c = verify(&archive).unwrap();
        assert_eq!(c.manifest.tenant, "alice");
        assert_eq!(c.manifest.sqlite, ["state/memory.sqlite"]);
        assert!(c.manifest.entries.iter().all(|e| !e.path.ends_with("-wal")));
        assert_eq!(c.secrets.as_deref(), Some(&b"K=v\n"[..]));
        drop(conn);

        let dest = dir.path().join("restored");
        fs::create_dir_all(&dest).unwrap();
        let me = Account {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            home: dest.clone(),
        };
        extract_state(&archive, &dest, &me).unwrap();
        assert_eq!(
            fs::read_to_string(dest.join("workspace/note.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_link(dest.join("workspace/link")).unwrap(),
            Path::new("note.txt")
        );
        let restored = rusqlite::Connection::open(dest.join("memory.sqlite")).unwrap();
        let n: i64 = restored
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("alice");
        fs::create_dir_all(&state).unwrap();
        fs::write(state.join("a.txt"), "x".repeat(1000)).unwrap();
        let archive = create(&record(), &state, "r", None, &dir.path().join("o")).unwrap();
        // Cut the archive short.
        let data = fs::read(&archive).unwrap();
        fs::write(&archive, &data[..data.len() / 2]).unwrap();
        assert!(verify(&archive).is_err());
        assert!(safe_rel("../etc/passwd").is_err());
        assert!(safe_rel("/etc/passwd").is_err());
        assert!(safe_rel("state/a").is_ok());
    }
}
