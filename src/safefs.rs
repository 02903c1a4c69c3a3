//! Root's own work below a tenant's state directory, through file
//! descriptors only (threat model, rules 1 and 2).
//!
//! The tenant owns everything under `/var/lib/openclaw/NAME` and can swap any
//! name for a symlink, a FIFO, a hard link or a device between two of root's
//! system calls. So root never hands the kernel a path string that reaches
//! below the state directory: it opens the state directory once (beneath the
//! root-owned parent, `O_NOFOLLOW | O_DIRECTORY`), then opens every child
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
//! | RESOLVE_NO_XDEV)` and `O_NOFOLLOW`, and changes owners and modes with
//! `fchown`/`fchmod` on the descriptor it checked with `fstat`. Names are byte
//! strings ([`OsStr`]), never required to be UTF-8.
//!
//! What this refuses, with one line naming the path and the fix:
//! - a symlink where root expects its own file or directory (never followed);
//! - a FIFO, socket or device where it expects a regular file (never read, so
//!   never blocks);
//! - a regular file with more than one hard link, for a change of owner or
//!   mode (it may be the same inode as a file outside the state);
//! - a file bigger than the caller's cap, for a read.
//!
//! Walks ([`Dir::walk`]) are bounded in entries, depth and time and say when
//! they were cut.
//!
//! Where things go: a new kind of node to refuse in `safefs/kinds.rs`, a
//! walk's bounds in `safefs/walk.rs`; callers in the domain modules
//! (statedir, backup, upgrade) only ever use [`Dir`].
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

/// The resolution every open below a state directory uses.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

type Result<T> = std::result::Result<T, FsError>;

/// A directory opened by descriptor: the state directory or one beneath it.
/// `path` is only for messages; no system call uses it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    /// The tenant whose state this is, for the fix in messages.
    tenant: Option<String>,
}

/// A child's name must be one component: no `/`, not `.` or `..`, not empty.
fn check_name(dir: &Path, name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(FsError::Io {
            what: "invalid name below",
            path: dir.join(name),
            errno: Errno::EINVAL,
        });
    }
    Ok(())
}

/// A relative path of normal components only.
fn check_rel(dir: &Path, rel: &Path) -> Result<()> {
    if rel.as_os_str().is_empty()
        || rel.as_os_str().as_bytes().contains(&0)
        || !rel.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(FsError::Io {
            what: "invalid path below",
            path: dir.join(rel),
            errno: Errno::EINVAL,
        });
    }
    Ok(())
}

fn open_how(flags: OFlag, mode: u32, resolve: ResolveFlag) -> OpenHow {
    // openat2 refuses (EINVAL) O_PATH with flags other than these.
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW
    } else {
        OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY
    };
    OpenHow::new()
        .flags(flags | extra)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(resolve)
}

/// A stat of what an `O_PATH` descriptor refers to.
fn stat_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<FileStat> {
    fstat(fd).map_err(|errno| FsError::Io {
        what: "fstat",
        path: path.to_path_buf(),
        errno,
    })
}

impl Dir {
    /// Open a directory root owns, by path (the parent of the state
    /// directories, `/var/lib/openclaw`): it must be a directory (not a
    /// link), owned by root (or the user running ocusers, for tests), and
    /// writable by nobody else.
    pub fn open_trusted(path: &Path) -> Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| FsError::Io {
            what: "opening",
            path: path.to_path_buf(),
            errno,
        })?;
        let st = stat_fd(fd.as_fd(), path)?;
        let uid = st.st_uid;
        if (uid != 0 && uid != nix::unistd::geteuid().as_raw()) || st.st_mode & 0o022 != 0 {
            return Err(FsError::UntrustedParent {
                path: path.to_path_buf(),
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
            });
        }
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
            tenant: None,
        })
    }

    /// Open the state directory `parent/name` of `tenant`: `parent` as
    /// [`Dir::open_trusted`], `name` beneath it, never through a link.
    pub fn open_state(parent: &Path, name: &str) -> Result<Dir> {
        let p = Dir::open_trusted(parent)?;
        let mut d = p.open_child_dir(OsStr::new(name), false)?;
        d.tenant = Some(name.to_string());
        Ok(d)
    }

    /// Create (or repair) the state directory `parent/name`, owned by `owner`
    /// with `mode`; `parent` must exist and be root's.
    pub fn ensure_state(parent: &Path, name: &str, owner: Owner, mode: u32) -> Result<Dir> {
        let p = Dir::open_trusted(parent)?;
        let mut d = p.ensure_dir_inner(OsStr::new(name), owner, mode, false)?;
        d.tenant = Some(name.to_string());
        Ok(d)
    }

    /// Open the state directory at `state` (`/var/lib/openclaw/NAME`), as
    /// [`Dir::open_state`].
    pub fn open_state_path(state: &Path) -> Result<Dir> {
        let (parent, name) = split(state)?;
        Dir::open_state(parent, name)
    }

    /// Is `parent/name` a real directory (not a link) owned by `owner` with
    /// exactly `mode`? False when anything is in the way.
    pub fn state_dir_is(parent: &Path, name: &str, owner: Owner, mode: u32) -> bool {
        Dir::open_trusted(parent).is_ok_and(|p| p.dir_is(OsStr::new(name), owner, mode))
    }

    /// The refusal for finding `st` at `rel` where root wants `want`, or
    /// nothing when it is what root wants.
    pub fn expect_kind(&self, rel: &Path, st: &FileStat, want: Kind) -> Result<()> {
        match Kind::of(st) {
            k if k == want => Ok(()),
            k => Err(self.wrong(rel, k, want)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// What the tenant should do about a file root refused.
    pub fn fix_for(&self, path: &Path) -> String {
        match &self.tenant {
            Some(t) => format!(
                "remove it as the tenant (`sudo ocusers exec {t} -- rm -r '{}'`) and re-run",
                path.display()
            ),
            None => format!("remove `{}` and re-run", path.display()),
        }
    }

    fn err(&self, rel: &Path, what: &'static str, errno: Errno) -> FsError {
        let path = self.path.join(rel);
        match errno {
            Errno::ELOOP => FsError::Symlink {
                fix: self.fix_for(&path),
                path,
            },
            Errno::EXDEV => FsError::Escapes {
                fix: self.fix_for(&path),
                path,
            },
            errno => FsError::Io { what, path, errno },
        }
    }

    fn wrong(&self, rel: &Path, kind: Kind, want: Kind) -> FsError {
        let path = self.path.join(rel);
        if kind == Kind::Symlink {
            return FsError::Symlink {
                fix: self.fix_for(&path),
                path,
            };
        }
        FsError::WrongKind {
            fix: self.fix_for(&path),
            path,
            kind,
            want,
        }
    }

    fn child(&self, fd: OwnedFd, rel: &Path) -> Dir {
        Dir {
            fd,
            path: self.path.join(rel),
            tenant: self.tenant.clone(),
        }
    }

    /// `openat2` beneath this directory.
    fn open_beneath(&self, rel: &Path, flags: OFlag, mode: u32, xdev: bool) -> Result<OwnedFd> {
        check_rel(&self.path, rel)?;
        let mut resolve = beneath();
        if !xdev {
            resolve.remove(ResolveFlag::RESOLVE_NO_XDEV);
        }
        // EAGAIN: a rename raced the lookup. Retried a bounded number of
        // times, so a tenant renaming in a loop cannot keep root here.
        let mut tries = 0;
        loop {
            match openat2(self.fd.as_fd(), rel, open_how(flags, mode, resolve)) {
                Err(Errno::EAGAIN) | Err(Errno::EINTR) if tries < 64 => tries += 1,
                Err(errno) => return Err(self.err(rel, "opening", errno)),
                Ok(fd) => return Ok(fd),
            }
        }
    }

    /// What `rel` is, without following a link or opening a FIFO or
    /// device (an `O_PATH` descriptor); `None` when it does not exist.
    pub fn stat(&self, rel: &Path) -> Result<Option<FileStat>> {
        match self.open_beneath(rel, OFlag::O_PATH, 0, true) {
            Ok(fd) => stat_fd(fd.as_fd(), &self.path.join(rel)).map(Some),
            Err(FsError::Io {
                errno: Errno::ENOENT,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open the directory `rel` beneath this one.
    pub fn open_dir(&self, rel: &Path) -> Result<Dir> {
        let fd = match self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, true) {
            Err(FsError::Io {
                errno: Errno::ENOTDIR,
                ..
            }) => {
                let kind = self.stat(rel)?.map_or(Kind::Other, |st| Kind::of(&st));
                return Err(self.wrong(rel, kind, Kind::Dir));
            }
            r => r?,
        };
        Ok(self.child(fd, rel))
    }

    fn open_child_dir(&self, name: &OsStr, xdev: bool) -> Result<Dir> {
        check_name(&self.path, name)?;
        let rel = Path::new(name);
        match self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, xdev) {
            Ok(fd) => Ok(self.child(fd, rel)),
            Err(FsError::Io {
                errno: Errno::ENOTDIR,
                ..
            }) => {
                let kind = self.stat(rel)?.map_or(Kind::Other, |st| Kind::of(&st));
                Err(self.wrong(rel, kind, Kind::Dir))
            }
            Err(e) => Err(e),
        }
    }

    /// Make sure the directory `name` exists here, owned by `owner` with
    /// `mode`, set through its descriptor. A link, file or anything else of
    /// that name is refused and left as it is.
    pub fn ensure_dir(&self, name: &OsStr, owner: Owner, mode: u32) -> Result<Dir> {
        self.ensure_dir_inner(name, owner, mode, true)
    }

    fn ensure_dir_inner(&self, name: &OsStr, owner: Owner, mode: u32, xdev: bool) -> Result<Dir> {
        check_name(&self.path, name)?;
        match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(self.err(Path::new(name), "creating", errno)),
        }
        let d = self.open_child_dir(name, xdev)?;
        let st = stat_fd(d.fd(), &d.path)?;
        if Kind::of(&st) != Kind::Dir {
            return Err(self.wrong(Path::new(name), Kind::of(&st), Kind::Dir));
        }
        d.set_owner_mode(&st, owner, mode)?;
        Ok(d)
    }

    /// fchown and fchmod this directory (what it is now, by descriptor).
    fn set_owner_mode(&self, st: &FileStat, owner: Owner, mode: u32) -> Result<()> {
        set_owner_mode_fd(self.fd.as_fd(), &self.path, st, owner, mode)
    }

    /// Is the directory `name` here a real directory (not a link) owned by
    /// `owner` with exactly `mode`?
    pub fn dir_is(&self, name: &OsStr, owner: Owner, mode: u32) -> bool {
        matches!(self.stat(Path::new(name)), Ok(Some(st))
            if Kind::of(&st) == Kind::Dir
                && st.st_uid == owner.uid
                && st.st_gid == owner.gid
                && st.st_mode & 0o7777 == mode)
    }

    /// Write `name` here atomically: a new temporary file (`O_CREAT |
    /// O_EXCL | O_NOFOLLOW`, beneath), written, fsynced, given to `owner`
    /// with `mode` by descriptor, then renamed over `name` within this
    /// directory. Whatever `name` was (a link, a FIFO) is replaced, never
    /// followed; a directory of that name is refused.
    pub fn write_file(&self, name: &OsStr, data: &[u8], owner: Owner, mode: u32) -> Result<()> {
        check_name(&self.path, name)?;
        if let Some(st) = self.stat(Path::new(name))?
            && Kind::of(&st) == Kind::Dir
        {
            return Err(self.wrong(Path::new(name), Kind::Dir, Kind::Regular));
        }
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        let mut rnd = [0u8; 6];
        let _ = getrandom::fill(&mut rnd);
        tmp_name.push(format!(
            ".ocusers-tmp.{}.{}",
            std::process::id(),
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let tmp = Path::new(&tmp_name);
        let fd = self.open_beneath(
            tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o600,
            true,
        )?;
        let result = (|| -> Result<()> {
            let mut f = std::fs::File::from(fd);
            let io = |e: std::io::Error| FsError::Io {
                what: "writing",
                path: self.path.join(tmp),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            };
            f.write_all(data).map_err(io)?;
            let st = stat_fd(f.as_fd(), &self.path.join(tmp))?;
            set_owner_mode_fd(f.as_fd(), &self.path.join(tmp), &st, owner, mode)?;
            fsync(f.as_fd()).map_err(|errno| self.err(tmp, "fsync", errno))?;
            renameat(self.fd.as_fd(), tmp, self.fd.as_fd(), name)
                .map_err(|errno| self.err(Path::new(name), "renaming over", errno))?;
            let _ = fsync(self.fd.as_fd());
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(self.fd.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Read `rel` whole, if it is a regular file of at most `cap` bytes;
    /// `None` when it does not exist. A link is not followed; a FIFO, socket
    /// or device is refused without reading (the open does not block).
    pub fn read_file(&self, rel: &Path, cap: u64) -> Result<Option<Vec<u8>>> {
        let fd = match self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0, true) {
            Ok(fd) => fd,
            Err(FsError::Io {
                errno: Errno::ENOENT,
                ..
            }) => return Ok(None),
            // A socket cannot be opened; say what it is.
            Err(FsError::Io {
                errno: Errno::ENXIO,
                ..
            }) => {
                let kind = self.stat(rel)?.map_or(Kind::Other, |s| Kind::of(&s));
                return Err(self.wrong(rel, kind, Kind::Regular));
            }
            Err(e) => return Err(e),
        };
        let path = self.path.join(rel);
        let st = stat_fd(fd.as_fd(), &path)?;
        if Kind::of(&st) != Kind::Regular {
            return Err(self.wrong(rel, Kind::of(&st), Kind::Regular));
        }
        let size = st.st_size.max(0) as u64;
        if size > cap {
            return Err(FsError::TooBig {
                fix: self.fix_for(&path),
                path,
                size,
                cap,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        // The file may grow meanwhile: never read more than the cap.
        std::fs::File::from(fd)
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| FsError::Io {
                what: "reading",
                path: path.clone(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        if out.len() as u64 > cap {
            return Err(FsError::TooBig {
                fix: self.fix_for(&path),
                path,
                size: out.len() as u64,
                cap,
            });
        }
        Ok(Some(out))
    }

    /// Remove the file, link, FIFO... `name` here (not a directory); one
    /// that is already gone is success.
    pub fn remove_file(&self, name: &OsStr) -> Result<()> {
        check_name(&self.path, name)?;
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(self.err(Path::new(name), "removing", errno)),
        }
    }

    /// Remove `name` here and everything below it, by descriptor (a link is
    /// removed, never followed); one that is already gone is success.
    pub fn remove_tree(&self, name: &OsStr) -> Result<()> {
        self.remove_tree_depth(name, 0)
    }

    fn remove_tree_depth(&self, name: &OsStr, depth: usize) -> Result<()> {
        check_name(&self.path, name)?;
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
            Err(errno) => return Err(self.err(Path::new(name), "removing", errno)),
        }
        if depth >= MAX_DEPTH {
            return Err(FsError::Io {
                what: "too deep to remove",
                path: self.path.join(name),
                errno: Errno::ELOOP,
            });
        }
        let d = match self.open_child_dir(name, true) {
            Ok(d) => d,
            // Swapped meanwhile for something that is not a directory.
            Err(FsError::WrongKind { .. }) | Err(FsError::Symlink { .. }) => {
                return self.remove_tree_depth(name, depth + 1);
            }
            Err(e) => return Err(e),
        };
        for child in d.names()? {
            d.remove_tree_depth(&child, depth + 1)?;
        }
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(self.err(Path::new(name), "removing", errno)),
        }
    }

    /// The names in this directory (without `.` and `..`), as bytes.
    pub fn names(&self) -> Result<Vec<OsString>> {
        self.names_capped(usize::MAX)
    }

    /// A second descriptor of this directory (its own read position).
    fn reopen(&self) -> Result<Dir> {
        let fd = openat2(
            self.fd.as_fd(),
            ".",
            open_how(OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, beneath()),
        )
        .map_err(|errno| self.err(Path::new(""), "opening", errno))?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
            tenant: self.tenant.clone(),
        })
    }

    fn names_capped(&self, cap: usize) -> Result<Vec<OsString>> {
        let fd = self.reopen()?.fd;
        let mut dir = nix::dir::Dir::from_fd(fd)
            .map_err(|errno| self.err(Path::new(""), "reading", errno))?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|errno| self.err(Path::new(""), "reading", errno))?;
            let b = e.file_name().to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            if out.len() >= cap {
                break;
            }
            out.push(OsStr::from_bytes(b).to_os_string());
        }
        Ok(out)
    }
}

/// `/var/lib/openclaw/NAME` as (`/var/lib/openclaw`, `NAME`).
fn split(state: &Path) -> Result<(&Path, &str)> {
    match (state.parent(), state.file_name().and_then(OsStr::to_str)) {
        (Some(p), Some(n)) if !p.as_os_str().is_empty() => Ok((p, n)),
        _ => Err(FsError::Io {
            what: "not a state directory",
            path: state.to_path_buf(),
            errno: Errno::EINVAL,
        }),
    }
}

/// At most this many hazards are listed (the rest are counted).
pub const MAX_REPORTED: usize = 20;
/// Deepest directory level root goes down to.
pub const MAX_DEPTH: usize = 256;

mod kinds;
mod walk;

pub use kinds::{FsError, Kind, Owner};
use kinds::{fchown_fd, set_owner_mode_fd};
pub use walk::{Entry, Hazards, Limits, Walk, link_stays_inside};

#[cfg(test)]
mod tests;
