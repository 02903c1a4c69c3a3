//! Tenant backups: one gzip-compressed tar archive per tenant with its
//! state directory, its registry entry, optionally its secrets file, and a
//! manifest (last entry) listing every member with its size and SHA-256, so
//! `ocusers backup verify` can check an archive without restoring it.
//!
//! Privilege separation (threat model rule 1): root never opens a file
//! below a tenant's state directory. The state part is packed by the
//! tenant's own uid inside its sandbox (`ocusers internal pack-state`, see
//! `helper` and `tenant_side`) and written to a pipe; root reads that
//! stream as untrusted input, checks every member (`check`), hashes it
//! while copying it into the archive, and adds the registry entry, the
//! secrets and the manifest, all its own files. Restore verifies the
//! archive strictly, then streams the state members, re-hashed against the
//! manifest, to `ocusers internal unpack-state` running as the tenant.
//!
//! Consistency while the gateway runs: OpenClaw keeps SQLite databases in
//! the state directory. Every file that starts with SQLite's header is not
//! copied byte by byte (that could capture a torn page, or a database
//! without the transactions still in its WAL) but snapshotted through SQLite
//! itself with `VACUUM INTO` (by the tenant's uid, triggers and the
//! schema's functions off), which reads inside one read transaction and so
//! writes a consistent copy, WAL included; the `-wal`, `-shm` and `-journal`
//! files beside it are left out. This never stops the gateway. Other files
//! are read once each; OpenClaw replaces its JSON files by rename, so each
//! is whole.
//!
//! Archives are always 0600: they hold the tenant's conversations and
//! config, and with `--with-secrets` its provider keys and gateway token.
//!
//! Where things go: what root reads and writes (the archive file, the
//! registry entry) here and in `read.rs`/`record.rs`; anything that opens a
//! file in the tenant's state in `tenant_side/` (it runs as the tenant);
//! archive checks before any extraction in `check.rs`.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::Account;
use crate::paths;
use crate::tenant::{Record, TenantName};

pub mod check;
pub mod helper;
mod read;
pub mod record;
pub mod removal;
pub mod tenant_side;

pub use read::{Contents, extract_state, extract_verified, verify};

pub use record::check_record;
pub use tenant_side::ConfigFix;

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
/// The manifest, registry entry and secrets are small: at most this.
const MAX_META: u64 = 64 << 20;

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
    /// The member's name (`U+FFFD` for bytes that are not UTF-8: then
    /// `raw` holds the exact name, hex-encoded).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    pub mode: u32,
    pub size: u64,
    /// SHA-256 of the content (of the link target for a symlink).
    pub sha256: String,
}

impl Entry {
    /// The member's exact name.
    pub fn name_bytes(&self) -> Result<Vec<u8>> {
        match &self.raw {
            None => Ok(self.path.as_bytes().to_vec()),
            Some(hex) => from_hex(hex)
                .with_context(|| format!("manifest entry {:?} has a bad raw name", self.path)),
        }
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `NAME-20261123T080102Z.tar.gz`
pub fn file_name(tenant: &str) -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    format!("{tenant}-{t}.tar.gz")
}

fn entry(name: &[u8], kind: check::Kind, mode: u32, size: u64, sha256: String) -> Entry {
    let (path, raw) = match std::str::from_utf8(name) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (String::from_utf8_lossy(name).into_owned(), Some(hex(name))),
    };
    Entry {
        path,
        raw,
        kind: kind.as_str().into(),
        mode,
        size,
        sha256,
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A reader that hashes what passes through and keeps the first 16 bytes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
    head: Vec<u8>,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            n: 0,
            head: Vec::new(),
        }
    }
    fn done(self) -> (u64, String, Vec<u8>) {
        (self.n, hex(&self.hash.finalize()), self.head)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        if self.head.len() < 16 {
            let take = (16 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        self.n += n as u64;
        Ok(n)
    }
}

/// Should the state of `record` be packed by the tenant's uid in its
/// sandbox? On a host (root, the tenant's real state directory): always.
/// In a test root (`OCUSERS_ROOT`) or as a plain user the same packer runs
/// in this process.
fn as_tenant(name: &TenantName, state_dir: &Path) -> bool {
    nix::unistd::geteuid().is_root() && state_dir == paths::home_dir(name)
}

/// Write the archive of one tenant into `out_dir`; returns its path.
pub fn create(
    record: &Record,
    state_dir: &Path,
    registry_text: &str,
    secrets: Option<&[u8]>,
    out_dir: &Path,
) -> Result<PathBuf> {
    let path = out_dir.join(file_name(record.name.as_str()));
    create_at(record, state_dir, registry_text, secrets, &path)?;
    Ok(path)
}

/// Write the archive of one tenant to `final_path` (atomically, 0600, its
/// directory made 0700 if missing).
pub fn create_at(
    record: &Record,
    state_dir: &Path,
    registry_text: &str,
    secrets: Option<&[u8]>,
    final_path: &Path,
) -> Result<()> {
    let out_dir = final_path
        .parent()
        .context("archive path has no directory")?;
    if !out_dir.exists() {
        crate::fsutil::ensure_dir(out_dir, 0o700)?;
    }
    let tmp = out_dir.join(format!(".{}.partial", record.name));
    let result = (|| -> Result<()> {
        let _ = fs::remove_file(&tmp);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let gz = if as_tenant(&record.name, state_dir) {
            let mut run = helper::spawn(
                &record.name,
                &["pack-state".to_string(), state_dir.display().to_string()],
                false,
            )?;
            let stdout = run.child.stdout.take().context("no stdout pipe")?;
            let written = write_archive(record, registry_text, secrets, stdout, gz);
            let packed = run.finish("packing the state");
            match written {
                Ok(gz) => {
                    packed?;
                    gz
                }
                Err(e) => return Err(cause(e, packed)),
            }
        } else {
            let (reader, writer) = std::io::pipe()?;
            let dir = state_dir.to_path_buf();
            let packer = std::thread::spawn(move || {
                tenant_side::pack(&dir, writer, EXCLUDED, &mut |l| eprintln!("{l}"))
            });
            let written = write_archive(record, registry_text, secrets, reader, gz);
            let packed = packer
                .join()
                .map_err(|_| anyhow::anyhow!("the packer panicked"))?;
            match written {
                Ok(gz) => {
                    packed?;
                    gz
                }
                Err(e) => return Err(cause(e, packed)),
            }
        };
        let file = gz.finish()?;
        file.sync_all()?;
        fs::rename(&tmp, final_path)
            .with_context(|| format!("renaming to {}", final_path.display()))?;
        File::open(out_dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing the backup of tenant {}", record.name))
}

/// The archive from its parts: the registry entry, the secrets, the state
/// members read from `state` (an untrusted tar stream: every member checked
/// as `verify` checks it, hashed while copied), then the manifest.
fn write_archive<W: Write>(
    record: &Record,
    registry_text: &str,
    secrets: Option<&[u8]>,
    state: impl Read,
    out: W,
) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut entries = Vec::new();
    let mut sqlite = Vec::new();
    meta(
        &mut tar,
        &mut entries,
        REGISTRY,
        registry_text.as_bytes(),
        0o644,
    )?;
    if let Some(s) = secrets {
        meta(&mut tar, &mut entries, SECRETS, s, 0o600)?;
    }
    let mut h = header(tar::EntryType::Directory, 0o700, 0, now_secs());
    tar.append_data(&mut h, format!("{STATE}/"), std::io::empty())?;
    entries.push(entry(
        STATE.as_bytes(),
        check::Kind::Dir,
        0o700,
        0,
        String::new(),
    ));

    let mut members = check::Members::default();
    let mut input = tar::Archive::new(state);
    for member in input.entries().context("reading the state stream")? {
        let mut member = member.context("reading the state stream")?;
        let name = member.path_bytes().into_owned();
        let target = member.link_name_bytes().map(|t| t.into_owned());
        let m = members
            .check(&name, member.header(), target.as_deref())
            .context("the packed state is not acceptable")?;
        let full = [STATE.as_bytes(), b"/", &m.name].concat();
        let mtime = member.header().mtime().unwrap_or(0);
        match m.kind {
            check::Kind::Dir => {
                let mut h = header(tar::EntryType::Directory, m.mode, 0, mtime);
                let mut dname = full.clone();
                dname.push(b'/');
                tar.append_data(&mut h, os(&dname), std::io::empty())?;
                entries.push(entry(&full, m.kind, m.mode, 0, String::new()));
            }
            check::Kind::Symlink => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
                tar.append_link(&mut h, os(&full), os(&m.target))?;
                entries.push(entry(&full, m.kind, 0o777, 0, sha256_hex(&m.target)));
            }
            check::Kind::File => {
                let mut h = header(tar::EntryType::Regular, m.mode, m.size, mtime);
                let mut r = Hashing::new((&mut member).take(m.size));
                tar.append_data(&mut h, os(&full), &mut r)
                    .with_context(|| format!("adding {}", check::show(&full)))?;
                let (n, sha, head) = r.done();
                if n != m.size {
                    bail!("the state stream was cut short in {}", check::show(&full));
                }
                if head == SQLITE_MAGIC {
                    sqlite.push(String::from_utf8_lossy(&full).into_owned());
                }
                entries.push(entry(&full, m.kind, m.mode, n, sha));
            }
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        tenant: record.name.to_string(),
        created: crate::display::now_rfc3339(),
        ocusers_version: env!("CARGO_PKG_VERSION").to_string(),
        record: record.clone(),
        with_secrets: secrets.is_some(),
        sqlite,
        entries,
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    let mut h = header(
        tar::EntryType::Regular,
        0o644,
        text.len() as u64,
        now_secs(),
    );
    tar.append_data(&mut h, MANIFEST, text.as_slice())?;
    Ok(tar.into_inner()?)
}

fn meta<W: Write>(
    tar: &mut tar::Builder<W>,
    entries: &mut Vec<Entry>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64, now_secs());
    tar.append_data(&mut h, name, data)
        .with_context(|| format!("adding {name}"))?;
    entries.push(entry(
        name.as_bytes(),
        check::Kind::File,
        mode,
        data.len() as u64,
        sha256_hex(data),
    ));
    Ok(())
}

/// The reader's error, unless the writer's says more.
fn cause(reader: anyhow::Error, writer: Result<()>) -> anyhow::Error {
    match first_cause(Err(reader), writer) {
        Err(e) => e,
        Ok(()) => anyhow::anyhow!("unreachable"),
    }
}

/// Of two errors of the two ends of a pipe, the one that says why: the
/// other end's is then only "Broken pipe" or a cut stream.
fn first_cause(reader: Result<()>, writer: Result<()>) -> Result<()> {
    match (reader, writer) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(r), Err(w)) => {
            if format!("{w:#}").contains("Broken pipe") {
                Err(r)
            } else {
                Err(w)
            }
        }
    }
}

fn os(name: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name)
}

#[cfg(test)]
mod tests;
