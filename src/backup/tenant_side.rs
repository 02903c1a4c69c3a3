//! The two halves of a backup that touch a tenant's files: packing its
//! state into a tar stream and unpacking a tar stream into it. On a host
//! both run as the tenant's own uid inside the tenant's sandbox (see
//! `helper`): `ocusers internal pack-state` / `unpack-state`, so whatever
//! the tenant prepared in its state directory (links, FIFOs, swapped
//! directories, SQLite triggers) can reach only what the tenant could
//! reach anyway. They are also written as if they ran as root: every file
//! is opened relative to an open directory with `O_NOFOLLOW`, its type
//! taken from `fstat` of that descriptor, never a path checked then opened.
//!
//! Bounded work: FIFOs, sockets and devices are skipped with a line;
//! regular files are streamed (never read whole) for exactly the size
//! `fstat` gave; files over [`check::MAX_FILE`] and sparse files over
//! 64 MiB that have less than half their size allocated are left out with
//! a line (a 64 TiB sparse file costs nothing); names are byte strings.
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use super::check::{self, Kind, MAX_DEPTH, MAX_FILE, show};

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Sparse files above this apparent size are left out when less than half
/// of them is allocated.
const SPARSE_MIN: u64 = 64 << 20;

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, dir_flags(), Mode::empty())
        .with_context(|| format!("opening {}", path.display()))
}

/// Names in a directory (not `.` and `..`), sorted.
fn list(dir: &OwnedFd) -> Result<Vec<Vec<u8>>> {
    let mut d = nix::dir::Dir::openat(dir.as_fd(), ".", dir_flags(), Mode::empty())?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// The header of one member, owned by root in the archive (the restored
/// owner is the tenant's, whoever packed it).
fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o777);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime.max(0) as u64);
    h
}

/// A reader giving exactly `size` bytes: the file's, cut or padded with
/// zeros if it changed size since `fstat` (tar needs the size up front).
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(1 << 20) as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

struct Packer<'a, W: Write> {
    state: PathBuf,
    tar: tar::Builder<W>,
    log: &'a mut dyn FnMut(String),
    tmp: PathBuf,
    snapshots: u32,
}

/// Write the state directory `state` as a tar stream (names relative to
/// it, directories before their contents) into `out`. `log` gets one line
/// per thing left out. Top-level caches in `excluded` are left out.
pub fn pack(
    state: &Path,
    out: impl Write,
    excluded: &[&str],
    log: &mut dyn FnMut(String),
) -> Result<()> {
    let root = open_dir(state)?;
    let tmp = nix::unistd::mkdtemp(&std::env::temp_dir().join("ocusers-pack-XXXXXX"))
        .context("making a private directory for SQLite snapshots")?;
    let mut p = Packer {
        state: state.to_path_buf(),
        tar: tar::Builder::new(out),
        log,
        tmp: tmp.clone(),
        snapshots: 0,
    };
    let result = p.walk(&root, &[], excluded).and_then(|()| {
        p.tar.finish()?;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

impl<W: Write> Packer<'_, W> {
    fn walk(&mut self, dir: &OwnedFd, prefix: &[u8], excluded: &[&str]) -> Result<()> {
        let depth = if prefix.is_empty() {
            0
        } else {
            prefix.split(|b| *b == b'/').count()
        };
        let names = list(dir)?;
        // Databases first, so their sidecars are known before they are met.
        let mut dbs: Vec<&[u8]> = Vec::new();
        for n in &names {
            if let Ok(fd) = nix::fcntl::openat(
                dir.as_fd(),
                os(n),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                let f = File::from(fd);
                let mut buf = [0u8; 16];
                let regular = f.metadata().is_ok_and(|m| m.is_file());
                if regular && f.read_exact_at(&mut buf, 0).is_ok() && &buf == SQLITE_MAGIC {
                    dbs.push(n);
                }
            }
        }
        for name in &names {
            let rel: Vec<u8> = if prefix.is_empty() {
                name.clone()
            } else {
                [prefix, b"/", name].concat()
            };
            let shown = show(&rel);
            if depth == 0 && excluded.iter().any(|e| e.as_bytes() == name.as_slice()) {
                continue;
            }
            let sidecar = [&b"-wal"[..], b"-shm", b"-journal"].iter().any(|s| {
                name.strip_suffix(*s)
                    .is_some_and(|base| dbs.contains(&base))
            });
            if sidecar {
                continue;
            }
            let fd = match nix::fcntl::openat(
                dir.as_fd(),
                os(name),
                OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_CLOEXEC
                    | OFlag::O_NOCTTY,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::ELOOP) => {
                    self.link(dir, name, &rel, depth)?;
                    continue;
                }
                // Gone since the listing: not part of the state.
                Err(Errno::ENOENT) => continue,
                Err(Errno::ENXIO) => {
                    (self.log)(format!("left out {shown}: a socket"));
                    continue;
                }
                Err(e) => {
                    (self.log)(format!("left out {shown}: {e}"));
                    continue;
                }
            };
            let st = nix::sys::stat::fstat(&fd)?;
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            let mode = st.st_mode & 0o777;
            if kind == SFlag::S_IFDIR {
                if depth + 1 >= MAX_DEPTH {
                    (self.log)(format!("left out {shown}: nested deeper than {MAX_DEPTH}"));
                    continue;
                }
                let mut h = header(tar::EntryType::Directory, mode, 0, st.st_mtime);
                let mut dname = rel.clone();
                dname.push(b'/');
                self.tar
                    .append_data(&mut h, os(&dname), std::io::empty())
                    .with_context(|| format!("adding {shown}"))?;
                self.walk(&fd, &rel, &[])?;
            } else if kind == SFlag::S_IFREG {
                let size = st.st_size as u64;
                let allocated = (st.st_blocks as u64).saturating_mul(512);
                if size > MAX_FILE {
                    (self.log)(format!(
                        "left out {shown}: {size} bytes, larger than {} GiB",
                        MAX_FILE >> 30
                    ));
                    continue;
                }
                if size > SPARSE_MIN && allocated < size / 2 {
                    (self.log)(format!(
                        "left out {shown}: a sparse file ({size} bytes, {allocated} allocated)"
                    ));
                    continue;
                }
                if dbs.contains(&name.as_slice()) {
                    let snap = self
                        .snapshot(&rel)
                        .with_context(|| format!("snapshotting SQLite database {shown}"))?;
                    let size = snap.metadata()?.len();
                    let mut h = header(tar::EntryType::Regular, mode, size, st.st_mtime);
                    self.tar
                        .append_data(
                            &mut h,
                            os(&rel),
                            Exactly {
                                inner: snap,
                                left: size,
                            },
                        )
                        .with_context(|| format!("adding {shown}"))?;
                } else {
                    let mut h = header(tar::EntryType::Regular, mode, size, st.st_mtime);
                    let f = File::from(fd);
                    self.tar
                        .append_data(
                            &mut h,
                            os(&rel),
                            Exactly {
                                inner: f,
                                left: size,
                            },
                        )
                        .with_context(|| format!("adding {shown}"))?;
                }
            } else {
                let what = match kind {
                    SFlag::S_IFIFO => "a FIFO",
                    SFlag::S_IFSOCK => "a socket",
                    SFlag::S_IFCHR | SFlag::S_IFBLK => "a device node",
                    _ => "of an unknown type",
                };
                (self.log)(format!("left out {shown}: {what}"));
            }
        }
        Ok(())
    }

    fn link(&mut self, dir: &OwnedFd, name: &[u8], rel: &[u8], depth: usize) -> Result<()> {
        let shown = show(rel);
        let target = match nix::fcntl::readlinkat(dir.as_fd(), os(name)) {
            Ok(t) => t,
            // Swapped for something else since: left out, not followed.
            Err(e) => {
                (self.log)(format!("left out {shown}: {e}"));
                return Ok(());
            }
        };
        let target = target.as_bytes();
        if !check::link_stays_inside(depth, target) {
            (self.log)(format!(
                "left out {shown}: a symlink to {} outside the state",
                show(target)
            ));
            return Ok(());
        }
        let st = nix::sys::stat::fstatat(dir.as_fd(), os(name), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|s| s.st_mtime)
            .unwrap_or(0);
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, st);
        self.tar
            .append_link(&mut h, os(rel), os(target))
            .with_context(|| format!("adding {shown}"))?;
        Ok(())
    }

    /// A consistent copy of a live SQLite database through SQLite itself
    /// (`VACUUM INTO` reads in one transaction, WAL included), made in a
    /// private directory, without the gateway's leases; returned open and
    /// already unlinked.
    fn snapshot(&mut self, rel: &[u8]) -> Result<File> {
        self.snapshots += 1;
        let out = self.tmp.join(format!("snapshot-{}.sqlite", self.snapshots));
        let db = self.state.join(os(rel));
        let conn = rusqlite::Connection::open_with_flags(
            &db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        harden(&conn)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute("VACUUM INTO ?1", [out.to_string_lossy()])?;
        drop(conn);
        drop_leases(&out)?;
        let f = File::open(&out)?;
        std::fs::remove_file(&out)?;
        Ok(f)
    }
}

/// No SQL of the database's own runs: no triggers, no functions in views
/// or defaults that the schema asks for, no writes to the schema.
pub fn harden(conn: &rusqlite::Connection) -> Result<()> {
    use rusqlite::config::DbConfig;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.execute_batch("PRAGMA trusted_schema = OFF;")?;
    Ok(())
}

/// Empty OpenClaw's `state_leases` table in a snapshot. A lease belongs to
/// the live process that holds it (the running gateway's owner lease above
/// all): in a copy it makes the restored gateway refuse to start ("Another
/// Gateway owner lease is still active for this state directory") until it
/// expires, five minutes after the backup, on any host where the recorded
/// owner cannot be proven dead. Triggers are off. Returns the rows removed.
pub fn drop_leases(db: &Path) -> Result<usize> {
    let conn = rusqlite::Connection::open(db)?;
    harden(&conn)?;
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

mod unpack;

pub use unpack::{ConfigFix, fixed_config, unpack};
