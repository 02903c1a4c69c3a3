//! Reading an archive: [`verify`] checks every member against the manifest,
//! then the state members are streamed, re-hashed, to the unpacker.
use super::*;

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
