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
pub mod record;
pub mod removal;
pub mod tenant_side;

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
        created: crate::runtime::now_rfc3339(),
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

/// What an archive holds, read and checked member by member.
pub struct Contents {
    pub manifest: Manifest,
    pub registry: String,
    pub secrets: Option<Vec<u8>>,
}

/// What a member of an archive is, as read.
#[derive(PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    size: u64,
    sha256: String,
}

/// Read every member, check each (names, types, modes, links, duplicates:
/// see `check`) and against the manifest (kind, mode, size, SHA-256, no
/// member missing or extra). Returns the manifest, registry and secrets.
/// The values in the manifest's record are checked by [`check_record`].
pub fn verify(archive: &Path) -> Result<Contents> {
    let what = || format!("archive {}", archive.display());
    let file = File::open(archive).with_context(what)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut seen: BTreeMap<Vec<u8>, Seen> = BTreeMap::new();
    let mut top: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut members = check::Members::default();
    let mut state_seen = false;
    let mut manifest: Option<Manifest> = None;
    let mut registry = None;
    let mut secrets = None;
    for member in tar.entries().with_context(what)? {
        let mut member = member.with_context(what)?;
        let raw = member.path_bytes().into_owned();
        check::components(&raw).with_context(what)?;
        let name = raw.strip_suffix(b"/").unwrap_or(&raw).to_vec();
        let t = member.header().entry_type();
        let mode = member.header().mode().unwrap_or(0);
        let state_rel = name.strip_prefix(format!("{STATE}/").as_bytes());
        if let Some(rel) = state_rel {
            if !state_seen {
                bail!(
                    "{}: member {} comes before the state directory",
                    what(),
                    check::show(&name)
                );
            }
            let target = member.link_name_bytes().map(|t| t.into_owned());
            let m = members
                .check(rel, member.header(), target.as_deref())
                .with_context(what)?;
            let (size, sha) = match m.kind {
                check::Kind::Dir => (0, String::new()),
                check::Kind::Symlink => (0, sha256_hex(&m.target)),
                check::Kind::File => {
                    let mut r = Hashing::new(&mut member);
                    std::io::copy(&mut r, &mut std::io::sink())
                        .with_context(|| format!("{}: reading {}", what(), check::show(&name)))?;
                    let (n, sha, _) = r.done();
                    (n, sha)
                }
            };
            seen.insert(
                name,
                Seen {
                    kind: m.kind.as_str(),
                    mode,
                    size,
                    sha256: sha,
                },
            );
            continue;
        }
        // The four members outside the state, each once.
        if !top.insert(name.clone()) {
            bail!("{}: member {} appears twice", what(), check::show(&name));
        }
        if mode & 0o7000 != 0 {
            bail!(
                "{}: member {} has the setuid, setgid or sticky bit (mode {mode:o}), which a backup never holds",
                what(),
                check::show(&name)
            );
        }
        if name == STATE.as_bytes() {
            if !t.is_dir() {
                bail!("{}: member {STATE} is not a directory", what());
            }
            state_seen = true;
            seen.insert(
                name,
                Seen {
                    kind: "dir",
                    mode,
                    size: 0,
                    sha256: String::new(),
                },
            );
            continue;
        }
        let known = [MANIFEST, REGISTRY, SECRETS]
            .iter()
            .any(|k| k.as_bytes() == name.as_slice());
        if !known {
            bail!(
                "{}: member {} is not part of an ocusers backup",
                what(),
                check::show(&name)
            );
        }
        if !t.is_file() {
            bail!(
                "{}: member {} is not a regular file",
                what(),
                check::show(&name)
            );
        }
        let mut data = Vec::new();
        (&mut member)
            .take(MAX_META)
            .read_to_end(&mut data)
            .with_context(|| format!("{}: reading {}", what(), check::show(&name)))?;
        if data.len() as u64 >= MAX_META {
            bail!("{}: member {} is too large", what(), check::show(&name));
        }
        if name == MANIFEST.as_bytes() {
            manifest = Some(
                serde_json::from_slice(&data)
                    .with_context(|| format!("{}: bad manifest", what()))?,
            );
            continue;
        }
        if name == REGISTRY.as_bytes() {
            registry = Some(
                String::from_utf8(data.clone())
                    .map_err(|_| anyhow::anyhow!("{}: {REGISTRY} is not UTF-8", what()))?,
            );
        } else {
            secrets = Some(data.clone());
        }
        seen.insert(
            name,
            Seen {
                kind: "file",
                mode,
                size: data.len() as u64,
                sha256: sha256_hex(&data),
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
    let mut listed = BTreeSet::new();
    for e in &manifest.entries {
        let name = e.name_bytes().with_context(what)?;
        if !listed.insert(name.clone()) {
            bail!("{}: {} is listed twice in the manifest", what(), e.path);
        }
        match seen.remove(&name) {
            None => bail!(
                "{}: {} is listed in the manifest but missing",
                what(),
                e.path
            ),
            Some(got)
                if got.sha256 != e.sha256
                    || got.size != e.size
                    || got.kind != e.kind
                    || got.mode != e.mode =>
            {
                bail!(
                    "{}: {} does not match the manifest (SHA-256, size, type or mode differs): the archive is damaged",
                    what(),
                    e.path
                )
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        bail!("{}: {} is not in the manifest", what(), check::show(extra));
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

/// Write the `state/` members of a verified archive as a tar stream of
/// names relative to the state directory (what the unpacker reads), each
/// re-hashed against the manifest as it passes: an archive changed since
/// [`verify`] stops the stream.
fn state_stream(archive: &Path, manifest: &Manifest, out: impl Write) -> Result<()> {
    let want: BTreeMap<Vec<u8>, &Entry> = manifest
        .entries
        .iter()
        .filter_map(|e| e.name_bytes().ok().map(|n| (n, e)))
        .collect();
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut input = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut tar = tar::Builder::new(out);
    for member in input.entries()? {
        let mut member = member?;
        let raw = member.path_bytes().into_owned();
        let name = raw.strip_suffix(b"/").unwrap_or(&raw).to_vec();
        let Some(rel) = name.strip_prefix(format!("{STATE}/").as_bytes()) else {
            continue;
        };
        let e = want
            .get(&name)
            .with_context(|| format!("{} is not in the manifest", check::show(&name)))?;
        let mut h = member.header().clone();
        let changed = || anyhow::anyhow!("{} changed since it was verified", archive.display());
        match e.kind.as_str() {
            "file" => {
                let mut r = Hashing::new((&mut member).take(e.size));
                tar.append_data(&mut h, os(rel), &mut r)?;
                let (n, sha, _) = r.done();
                if n != e.size || sha != e.sha256 {
                    return Err(changed());
                }
            }
            "dir" => {
                let mut d = rel.to_vec();
                d.push(b'/');
                tar.append_data(&mut h, os(&d), std::io::empty())?;
            }
            _ => {
                let target = member
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if sha256_hex(&target) != e.sha256 {
                    return Err(changed());
                }
                tar.append_link(&mut h, os(rel), os(&target))?;
            }
        }
    }
    tar.finish()?;
    Ok(())
}

/// Unpack the `state/` members into `dest` (which must exist), owned by
/// `owner`. Verifies the archive first.
pub fn extract_state(archive: &Path, dest: &Path, owner: &Account) -> Result<usize> {
    let contents = verify(archive)?;
    extract_verified(
        archive,
        &contents.manifest,
        dest,
        owner,
        &ConfigFix::default(),
    )
}

/// Unpack the `state/` members of an archive [`verify`] accepted into
/// `dest`, then apply `fix` to its `openclaw.json`. On a host (root, the
/// tenant's real state directory) this runs as the tenant in its sandbox,
/// reading the members from a pipe; root opens nothing below `dest`.
pub fn extract_verified(
    archive: &Path,
    manifest: &Manifest,
    dest: &Path,
    owner: &Account,
    fix: &ConfigFix,
) -> Result<usize> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| TenantName::parse(n).ok());
    let files = manifest
        .entries
        .iter()
        .filter(|e| e.path.starts_with("state/"))
        .count();
    match name.filter(|n| as_tenant(n, dest)) {
        Some(name) => {
            let mut args = vec!["unpack-state".to_string(), dest.display().to_string()];
            if let Some((from, to)) = &fix.home {
                args.extend([
                    "--home-from".into(),
                    from.clone(),
                    "--home-to".into(),
                    to.clone(),
                ]);
            }
            if let Some(port) = fix.port {
                args.extend(["--port".into(), port.to_string()]);
            }
            let mut run = helper::spawn(&name, &args, true)?;
            let stdin = run.child.stdin.take().context("no stdin pipe")?;
            let streamed = state_stream(archive, manifest, stdin);
            first_cause(run.finish("unpacking the state"), streamed)?;
        }
        None => {
            let (reader, writer) = std::io::pipe()?;
            let archive = archive.to_path_buf();
            let manifest = manifest.clone();
            let streamer = std::thread::spawn(move || state_stream(&archive, &manifest, writer));
            let me = nix::unistd::geteuid().as_raw();
            let owner = (owner.uid != me).then_some((owner.uid, owner.gid));
            let unpacked = tenant_side::unpack(dest, reader, owner, fix).map(|_| ());
            let streamed = streamer
                .join()
                .map_err(|_| anyhow::anyhow!("the archive reader panicked"))?;
            first_cause(unpacked, streamed)?;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
