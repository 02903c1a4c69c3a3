//! The unpacking half: a checked tar stream of state members written into
//! the state directory through descriptors, and the restored config fixed
//! for its new name and port.
use super::*;

/// Changes to `openclaw.json` after unpacking: the archived config names
/// the old state directory (under another name) and the old port.
#[derive(Debug, Clone, Default)]
pub struct ConfigFix {
    /// (old home, new home)
    pub home: Option<(String, String)>,
    pub port: Option<u16>,
}

impl ConfigFix {
    pub fn is_empty(&self) -> bool {
        self.home.is_none() && self.port.is_none()
    }
}

/// Open the parent directory of a checked member, component by component
/// from the state directory, never through a link.
fn open_parent(root: &OwnedFd, parts: &[&[u8]]) -> Result<OwnedFd> {
    let mut fd = nix::unistd::dup(root)?;
    for p in &parts[..parts.len() - 1] {
        fd = nix::fcntl::openat(fd.as_fd(), os(p), dir_flags(), Mode::empty())
            .with_context(|| format!("opening {} (not a directory?)", show(p)))?;
    }
    Ok(fd)
}

fn unlink_if_there(dir: &OwnedFd, name: &[u8], shown: &str) -> Result<()> {
    match nix::unistd::unlinkat(
        dir.as_fd(),
        os(name),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {
            bail!("{shown} exists as a directory and the archive has something else there")
        }
        Err(e) => Err(e).with_context(|| format!("replacing {shown}")),
    }
}

/// Unpack a tar stream of state members (names relative to the state
/// directory, as `pack` writes them) into `state`, refusing what `verify`
/// refuses. With `owner` (root in a test root only) each new file is
/// given to that uid/gid through its descriptor. Returns the members.
pub fn unpack(
    state: &Path,
    input: impl Read,
    owner: Option<(u32, u32)>,
    fix: &ConfigFix,
) -> Result<usize> {
    let root = open_dir(state)?;
    let mut members = check::Members::default();
    let mut tar = tar::Archive::new(input);
    let mut count = 0;
    let mut later: Vec<(Vec<u8>, Mode)> = Vec::new();
    let chown = |fd: &OwnedFd| -> Result<()> {
        if let Some((u, g)) = owner {
            nix::unistd::fchown(
                fd,
                Some(nix::unistd::Uid::from_raw(u)),
                Some(nix::unistd::Gid::from_raw(g)),
            )?;
        }
        Ok(())
    };
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = entry.path_bytes().into_owned();
        let target = entry.link_name_bytes().map(|t| t.into_owned());
        let m = members.check(&name, entry.header(), target.as_deref())?;
        let shown = show(&m.name);
        let parts: Vec<&[u8]> = m.name.split(|b| *b == b'/').collect();
        let parent = open_parent(&root, &parts)?;
        let leaf = parts[parts.len() - 1];
        let mode = Mode::from_bits_truncate(m.mode);
        match m.kind {
            Kind::Dir => {
                let fd = match nix::sys::stat::mkdirat(
                    parent.as_fd(),
                    os(leaf),
                    Mode::from_bits_truncate(0o700),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {
                        match nix::fcntl::openat(
                            parent.as_fd(),
                            os(leaf),
                            dir_flags(),
                            Mode::empty(),
                        ) {
                            Ok(fd) => fd,
                            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                                unlink_if_there(&parent, leaf, &shown)?;
                                nix::sys::stat::mkdirat(
                                    parent.as_fd(),
                                    os(leaf),
                                    Mode::from_bits_truncate(0o700),
                                )?;
                                nix::fcntl::openat(
                                    parent.as_fd(),
                                    os(leaf),
                                    dir_flags(),
                                    Mode::empty(),
                                )?
                            }
                            Err(e) => return Err(e).with_context(|| format!("opening {shown}")),
                        }
                    }
                    Err(e) => return Err(e).with_context(|| format!("creating {shown}")),
                };
                // Writable and searchable until its members are in; its
                // own mode is set at the end.
                nix::sys::stat::fchmod(&fd, mode | Mode::S_IRWXU)?;
                chown(&fd)?;
                if m.mode & 0o700 != 0o700 {
                    later.push((m.name.clone(), mode));
                }
            }
            Kind::File => {
                unlink_if_there(&parent, leaf, &shown)?;
                let fd = nix::fcntl::openat(
                    parent.as_fd(),
                    os(leaf),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .with_context(|| format!("creating {shown}"))?;
                let mut f = File::from(fd);
                let n = std::io::copy(&mut (&mut entry).take(m.size), &mut f)
                    .with_context(|| format!("writing {shown}"))?;
                if n != m.size {
                    bail!("member {shown} is cut short");
                }
                let fd = OwnedFd::from(f);
                nix::sys::stat::fchmod(&fd, mode)?;
                chown(&fd)?;
            }
            Kind::Symlink => {
                unlink_if_there(&parent, leaf, &shown)?;
                nix::unistd::symlinkat(os(&m.target), parent.as_fd(), os(leaf))
                    .with_context(|| format!("creating {shown}"))?;
                if let Some((u, g)) = owner {
                    nix::unistd::fchownat(
                        parent.as_fd(),
                        os(leaf),
                        Some(nix::unistd::Uid::from_raw(u)),
                        Some(nix::unistd::Gid::from_raw(g)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )?;
                }
            }
        }
        count += 1;
    }
    // Deepest first, so a parent's mode never hides a child.
    later.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, mode) in later {
        let parts: Vec<&[u8]> = name.split(|b| *b == b'/').collect();
        let parent = open_parent(&root, &parts)?;
        let fd = nix::fcntl::openat(
            parent.as_fd(),
            os(parts[parts.len() - 1]),
            dir_flags(),
            Mode::empty(),
        )?;
        nix::sys::stat::fchmod(&fd, mode)?;
    }
    if !fix.is_empty() {
        fix_config(&root, fix, owner)?;
    }
    Ok(count)
}

/// The archived config's text for the restored name and port: the old
/// state directory and the old public-origin includes renamed, the port set.
pub fn fixed_config(mut text: String, fix: &ConfigFix) -> Result<String> {
    if let Some((from, to)) = &fix.home {
        text = text.replace(&format!("{from}/"), &format!("{to}/"));
        text = text.replace(&format!("{from}\""), &format!("{to}\""));
        // The public origins' includes name the tenant too (the unit admits
        // only its own directory of them).
        let base = |p: &str| p.rsplit('/').next().unwrap_or_default().to_string();
        let public = crate::paths::Paths::default().public_parent();
        let public = public.display();
        text = text.replace(
            &format!("{public}/{}/", base(from)),
            &format!("{public}/{}/", base(to)),
        );
    }
    if let Some(port) = fix.port {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut v) => {
                v["gateway"]["port"] = port.into();
                text = serde_json::to_string_pretty(&v)? + "\n";
            }
            Err(_) => eprintln!(
                "note: openclaw.json is not plain JSON; set gateway.port to {port} in it by hand"
            ),
        }
    }
    Ok(text)
}

/// Point `openclaw.json` at the restored name and port: read through a
/// descriptor (a regular file, at most 16 MiB), written to a new file and
/// renamed over it.
fn fix_config(root: &OwnedFd, fix: &ConfigFix, owner: Option<(u32, u32)>) -> Result<()> {
    const NAME: &str = "openclaw.json";
    let fd = match nix::fcntl::openat(
        root.as_fd(),
        NAME,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    let f = File::from(fd);
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > 16 << 20 {
        return Ok(());
    }
    let mut text = String::new();
    if f.take(16 << 20).read_to_string(&mut text).is_err() {
        return Ok(());
    }
    let text = fixed_config(text, fix)?;
    let tmp = ".openclaw.json.ocusers-restore";
    let _ = nix::unistd::unlinkat(root.as_fd(), tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let fd = nix::fcntl::openat(
        root.as_fd(),
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut out = File::from(fd);
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    let fd = OwnedFd::from(out);
    if let Some((u, g)) = owner {
        nix::unistd::fchown(
            &fd,
            Some(nix::unistd::Uid::from_raw(u)),
            Some(nix::unistd::Gid::from_raw(g)),
        )?;
    }
    nix::fcntl::renameat(root.as_fd(), tmp, root.as_fd(), NAME)?;
    Ok(())
}
