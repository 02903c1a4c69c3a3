//! What root expects below a state directory and what it found: the
//! [`Kind`] of a name, the [`FsError`] that names the path and the fix, and
//! the [`Owner`] root gives what it makes.
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod};
use nix::unistd::{Gid, Uid, fchown, fchownat};

use super::Result;

/// What a name below the state directory turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl Kind {
    pub fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Kind::Regular,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFIFO => Kind::Fifo,
            SFlag::S_IFSOCK => Kind::Socket,
            SFlag::S_IFCHR => Kind::CharDevice,
            SFlag::S_IFBLK => Kind::BlockDevice,
            _ => Kind::Other,
        }
    }

    /// "a symlink", "a FIFO", ...: for messages.
    pub fn article(self) -> &'static str {
        match self {
            Kind::Regular => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Other => "an unknown kind of file",
        }
    }
}

/// Why root refused or failed to act below a state directory. Each renders
/// as one line naming the path and, for a refusal, the fix.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("`{path}` is {}, not {}: root will not follow or open it; {fix}", kind.article(), want.article())]
    WrongKind {
        path: PathBuf,
        kind: Kind,
        want: Kind,
        fix: String,
    },
    #[error("`{path}` is a symlink or lies under one: root will not follow it; {fix}")]
    Symlink { path: PathBuf, fix: String },
    #[error(
        "`{path}` is on another filesystem or outside its directory: root will not cross into it; {fix}"
    )]
    Escapes { path: PathBuf, fix: String },
    #[error(
        "`{path}` has {links} hard links: root will not change the owner or mode of a file that may also be outside the state directory; {fix}"
    )]
    HardLink {
        path: PathBuf,
        links: u64,
        fix: String,
    },
    #[error(
        "`{path}` is {size} bytes, more than the {cap} bytes root reads from tenant state; {fix}"
    )]
    TooBig {
        path: PathBuf,
        size: u64,
        cap: u64,
        fix: String,
    },
    #[error(
        "`{path}` is mode {mode:04o} owned by uid {uid}: the parent of the state directories must be root's and not writable by others (`chown root: {path}; chmod 755 {path}`)"
    )]
    UntrustedParent { path: PathBuf, mode: u32, uid: u32 },
    #[error("{what} `{path}`: {errno}")]
    Io {
        what: &'static str,
        path: PathBuf,
        errno: Errno,
    },
}

impl FsError {
    /// A refusal because of what the tenant put there (as opposed to an I/O
    /// error).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, FsError::Io { .. })
    }
}

/// An owner for [`Dir::ensure_dir`] and [`Dir::write_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

pub(super) fn fchown_fd(fd: BorrowedFd<'_>, path: &Path, owner: Owner) -> Result<()> {
    // fchownat(fd, "", AT_EMPTY_PATH) works on an O_PATH descriptor too.
    fchownat(
        fd,
        "",
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|errno| FsError::Io {
        what: "chown",
        path: path.to_path_buf(),
        errno,
    })
}

/// fchown, then fchmod (fchown may clear set-id bits), of an open file or
/// directory, refusing a regular file with several hard links.
pub(super) fn set_owner_mode_fd(
    fd: BorrowedFd<'_>,
    path: &Path,
    st: &FileStat,
    owner: Owner,
    mode: u32,
) -> Result<()> {
    if Kind::of(st) == Kind::Regular && st.st_nlink > 1 {
        return Err(FsError::HardLink {
            path: path.to_path_buf(),
            links: st.st_nlink,
            fix: format!("remove `{}` and re-run", path.display()),
        });
    }
    if st.st_uid != owner.uid || st.st_gid != owner.gid {
        fchown(
            fd,
            Some(Uid::from_raw(owner.uid)),
            Some(Gid::from_raw(owner.gid)),
        )
        .map_err(|errno| FsError::Io {
            what: "chown",
            path: path.to_path_buf(),
            errno,
        })?;
    }
    if st.st_mode & 0o7777 != mode {
        fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|errno| FsError::Io {
            what: "chmod",
            path: path.to_path_buf(),
            errno,
        })?;
    }
    Ok(())
}
