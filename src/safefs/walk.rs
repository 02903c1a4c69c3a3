//! Bounded walks below a state directory ([`Dir::walk`]): giving a tree to
//! its tenant, checking its owner, listing the hazards in it.
use super::*;

impl Dir {
    /// Walk everything below this directory, depth first, never following a
    /// link nor crossing a mount, within `limits`. `visit` sees each entry
    /// with an `O_PATH` descriptor of it (nothing is opened for reading).
    pub fn walk(
        &self,
        limits: Limits,
        mut visit: impl FnMut(&Entry<'_>) -> std::result::Result<(), FsError>,
    ) -> Walk {
        let start = Instant::now();
        let mut walk = Walk::default();
        // (directory, its path relative to self, depth)
        let mut stack: Vec<(std::rc::Rc<Dir>, PathBuf, usize)> = Vec::new();
        let root = match self.reopen() {
            Ok(d) => d,
            Err(e) => {
                walk.errors.push(e.to_string());
                return walk;
            }
        };
        stack.push((std::rc::Rc::new(root), PathBuf::new(), 0));
        while let Some((dir, rel, depth)) = stack.pop() {
            let left = limits.max_entries.saturating_sub(walk.entries);
            let names = match dir.names_capped(left + 1) {
                Ok(n) => n,
                Err(e) => {
                    walk.errors.push(e.to_string());
                    continue;
                }
            };
            for name in names {
                if walk.entries >= limits.max_entries {
                    walk.cut = Some(format!("stopped after {} entries", limits.max_entries));
                    return walk;
                }
                if start.elapsed() > limits.max_time {
                    walk.cut = Some(format!(
                        "stopped after {} s ({} entries)",
                        limits.max_time.as_secs(),
                        walk.entries
                    ));
                    return walk;
                }
                walk.entries += 1;
                let child_rel = rel.join(&name);
                let fd = match dir.open_beneath(Path::new(&name), OFlag::O_PATH, 0, true) {
                    Ok(fd) => fd,
                    Err(FsError::Io {
                        errno: Errno::ENOENT,
                        ..
                    }) => continue,
                    Err(e) => {
                        walk.errors.push(e.to_string());
                        continue;
                    }
                };
                let st = match fstat(fd.as_fd()) {
                    Ok(st) => st,
                    Err(errno) => {
                        walk.errors
                            .push(dir.err(Path::new(&name), "fstat", errno).to_string());
                        continue;
                    }
                };
                let kind = Kind::of(&st);
                let entry = Entry {
                    parent: &dir,
                    name: &name,
                    rel: &child_rel,
                    fd: fd.as_fd(),
                    stat: st,
                    kind,
                };
                if let Err(e) = visit(&entry) {
                    walk.errors.push(e.to_string());
                }
                if kind == Kind::Dir {
                    if depth + 1 >= limits.max_depth {
                        walk.cut = Some(format!(
                            "did not go deeper than {} levels (at `{}`)",
                            limits.max_depth,
                            self.path.join(&child_rel).display()
                        ));
                        continue;
                    }
                    match dir.open_child_dir(&name, true) {
                        Ok(d) => {
                            // Swapped since the O_PATH open: skip it.
                            match fstat(d.fd()) {
                                Ok(s2) if s2.st_ino == st.st_ino && s2.st_dev == st.st_dev => {
                                    stack.push((std::rc::Rc::new(d), child_rel, depth + 1))
                                }
                                _ => walk.errors.push(format!(
                                    "`{}` changed during the walk: skipped",
                                    self.path.join(&child_rel).display()
                                )),
                            }
                        }
                        Err(e) => walk.errors.push(e.to_string()),
                    }
                }
            }
        }
        walk
    }

    /// Give everything below this directory (and itself) to `owner`, by
    /// descriptor: links are left alone (never followed), and a regular
    /// file with several hard links that is not already `owner`'s is not
    /// changed (it may be a file outside) and is named in the result.
    pub fn chown_tree(&self, owner: Owner, limits: Limits) -> Walk {
        let mut skipped = Vec::new();
        let mut top = Walk::default();
        match fstat(self.fd()) {
            Ok(st) if st.st_uid != owner.uid || st.st_gid != owner.gid => {
                if let Err(e) = fchown_fd(self.fd(), &self.path, owner) {
                    top.errors.push(e.to_string());
                }
            }
            Ok(_) => {}
            Err(errno) => top
                .errors
                .push(self.err(Path::new(""), "fstat", errno).to_string()),
        }
        let mut w = self.walk(limits, |e| {
            if e.stat.st_uid == owner.uid && e.stat.st_gid == owner.gid {
                return Ok(());
            }
            match e.kind {
                Kind::Symlink => Ok(()),
                Kind::Regular if e.stat.st_nlink > 1 => {
                    let path = self.path.join(e.rel);
                    skipped.push(
                        FsError::HardLink {
                            fix: self.fix_for(&path),
                            path,
                            links: e.stat.st_nlink,
                        }
                        .to_string(),
                    );
                    Ok(())
                }
                _ => fchown_fd(e.fd, &self.path.join(e.rel), owner),
            }
        });
        w.errors.splice(0..0, top.errors);
        w.skipped = skipped;
        w
    }

    /// Is this directory and everything below it (within `limits`) owned by
    /// `owner`, but for what [`Dir::chown_tree`] leaves alone (links, and
    /// regular files with several hard links)?
    pub fn owned_by(&self, owner: Owner, limits: Limits) -> bool {
        let ours = |st: &FileStat| st.st_uid == owner.uid && st.st_gid == owner.gid;
        if !fstat(self.fd()).is_ok_and(|st| ours(&st)) {
            return false;
        }
        let mut all = true;
        let w = self.walk(limits, |e| {
            let left_alone =
                e.kind == Kind::Symlink || (e.kind == Kind::Regular && e.stat.st_nlink > 1);
            if !left_alone && !ours(&e.stat) {
                all = false;
            }
            Ok(())
        });
        all && w.errors.is_empty() && w.cut.is_none()
    }

    /// What in this tree root will not follow or open, for `doctor` and
    /// `audit`: links that point outside it, FIFOs, sockets, devices, and
    /// files with several hard links that the tenant does not own.
    pub fn hazards(&self, tenant_uid: u32, home: &Path, limits: Limits) -> Hazards {
        let mut found = Vec::new();
        let mut count = 0usize;
        let w = self.walk(limits, |e| {
            let path = self.path.join(e.rel);
            let line = match e.kind {
                Kind::Symlink => {
                    let target = readlinkat(e.parent.fd(), e.name).unwrap_or_default();
                    if link_stays_inside(e.rel, Path::new(&target), home) {
                        None
                    } else {
                        Some(format!(
                            "`{}` is a symlink to `{}`, outside the state directory",
                            path.display(),
                            Path::new(&target).display()
                        ))
                    }
                }
                Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                    Some(format!("`{}` is {}", path.display(), e.kind.article()))
                }
                Kind::Regular if e.stat.st_nlink > 1 && e.stat.st_uid != tenant_uid => {
                    Some(format!(
                        "`{}` has {} hard links and is owned by uid {} (a file from outside)",
                        path.display(),
                        e.stat.st_nlink,
                        e.stat.st_uid
                    ))
                }
                _ => None,
            };
            if let Some(l) = line {
                count += 1;
                if found.len() < MAX_REPORTED {
                    found.push(l);
                }
            }
            Ok(())
        });
        Hazards {
            found,
            count,
            walk: w,
        }
    }
}

/// Does a link at `rel` (relative to the state directory) with `target`
/// stay inside it? Lexically: an absolute target must be under `home` (the
/// state directory as the tenant sees it), a relative one must not climb
/// above the top.
pub fn link_stays_inside(rel: &Path, target: &Path, home: &Path) -> bool {
    let mut parts: Vec<&OsStr> = Vec::new();
    let target = if target.is_absolute() {
        match target.strip_prefix(home) {
            Ok(t) => t,
            Err(_) => return false,
        }
    } else {
        if let Some(parent) = rel.parent() {
            parts.extend(parent.components().filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            }));
        }
        target
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    true
}

/// One entry of a [`Dir::walk`].
pub struct Entry<'a> {
    /// The directory it is in.
    pub parent: &'a Dir,
    pub name: &'a OsStr,
    /// Relative to the walked directory.
    pub rel: &'a Path,
    /// An `O_PATH` descriptor of the entry itself (a link's own).
    pub fd: BorrowedFd<'a>,
    pub stat: FileStat,
    pub kind: Kind,
}

/// Bounds of a walk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_depth: usize,
    pub max_time: Duration,
}

impl Default for Limits {
    /// 100 000 entries, 64 levels, 5 seconds.
    fn default() -> Limits {
        Limits {
            max_entries: 100_000,
            max_depth: 64,
            max_time: Duration::from_secs(5),
        }
    }
}

/// What a walk saw.
#[derive(Debug, Default)]
pub struct Walk {
    pub entries: usize,
    /// Set when a limit stopped the walk, saying which.
    pub cut: Option<String>,
    /// One line each: what could not be read or was refused.
    pub errors: Vec<String>,
    /// One line each: what root left alone on purpose (hard links).
    pub skipped: Vec<String>,
}

/// What [`Dir::hazards`] found.
#[derive(Debug, Default)]
pub struct Hazards {
    /// At most [`MAX_REPORTED`] lines.
    pub found: Vec<String>,
    /// How many in all.
    pub count: usize,
    pub walk: Walk,
}

impl Hazards {
    /// One line for doctor and audit, `None` when there is nothing to say.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.count > 0 {
            let more = self.count - self.found.len();
            parts.push(format!(
                "root will not follow or open {} thing(s) in the state: {}{}",
                self.count,
                self.found.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if let Some(cut) = &self.walk.cut {
            parts.push(format!("the scan {cut}"));
        }
        if !self.walk.errors.is_empty() {
            parts.push(format!(
                "{} part(s) could not be scanned (first: {})",
                self.walk.errors.len(),
                self.walk.errors[0]
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}
