//! The rules every member of a backup obeys, checked the same way in the
//! three places that read one: `backup verify` (and `restore`, which verifies
//! first), root reading the stream the tenant-side packer writes, and the
//! tenant-side unpacker. An archive is input from anywhere (threat model:
//! "a hostile archive"), so a member that breaks a rule is refused with a
//! one-line error naming it, before anything is created.
use std::collections::BTreeSet;

use anyhow::{Result, bail};

/// A regular file in an archive is at most this big (16 GiB). The packer
/// leaves bigger (and sparse) files out with a line saying so; root and the
/// unpacker refuse a member that claims more.
pub const MAX_FILE: u64 = 16 << 30;
/// The whole state part is at most this many bytes of content (64 GiB).
pub const MAX_TOTAL: u64 = 64 << 30;
/// A member name is at most this long, and this deep.
pub const MAX_NAME: usize = 4096;
pub const MAX_DEPTH: usize = 128;

/// What a member is; everything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

/// A name for messages: any bytes, escaped, so a hostile name cannot
/// break the line or the terminal.
pub fn show(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// Split a member name into its components, refusing absolute names, `..`,
/// `.`, empty components and over-long names. A trailing `/` (tar's
/// directory spelling) is dropped first.
pub fn components(name: &[u8]) -> Result<Vec<&[u8]>> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    if trimmed.is_empty() {
        bail!("member with an empty name");
    }
    if trimmed.starts_with(b"/") {
        bail!("member {} has an absolute path", show(name));
    }
    if name.len() > MAX_NAME || name.contains(&0) {
        bail!("member {} has a name that is too long", show(name));
    }
    let parts: Vec<&[u8]> = trimmed.split(|b| *b == b'/').collect();
    for p in &parts {
        match *p {
            b".." => bail!("member {} has a `..` path", show(name)),
            b"." | b"" => bail!("member {} has a `.` or empty path component", show(name)),
            _ => {}
        }
    }
    if parts.len() > MAX_DEPTH {
        bail!(
            "member {} is nested deeper than {MAX_DEPTH} directories",
            show(name)
        );
    }
    Ok(parts)
}

/// Does a symlink whose parent directory is `depth` levels below the state
/// directory, with this target, stay inside the state? Leading `..`
/// components may climb at most `depth` levels; after the first other
/// component none may follow, and the target is relative. By induction
/// every link then resolves inside the state, even through other links
/// (each of which obeys the same rule), which a purely lexical check of
/// `a/../b` would not guarantee.
pub fn link_stays_inside(depth: usize, target: &[u8]) -> bool {
    if target.is_empty() || target.starts_with(b"/") || target.contains(&0) {
        return false;
    }
    if target.len() > MAX_NAME {
        return false;
    }
    let mut up = 0;
    let mut down = false;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if !down => up += 1,
            b".." => return false,
            _ => down = true,
        }
    }
    up <= depth
}

/// Checks members one after another: names, types, modes, duplicates,
/// members below a symlink, parents before children, sizes.
#[derive(Default)]
pub struct Members {
    seen: BTreeSet<Vec<u8>>,
    dirs: BTreeSet<Vec<u8>>,
    links: BTreeSet<Vec<u8>>,
    total: u64,
}

/// One member as checked: its name (no trailing `/`), kind, permission
/// bits, size and, for a symlink, its target.
#[derive(Debug, Clone)]
pub struct Checked {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub size: u64,
    pub target: Vec<u8>,
}

impl Members {
    /// Check one member of a state tree (names relative to the state
    /// directory). `header` is the member's tar header, `target` its link
    /// name (for a symlink).
    pub fn check(
        &mut self,
        name: &[u8],
        header: &tar::Header,
        target: Option<&[u8]>,
    ) -> Result<Checked> {
        let parts = components(name)?;
        let clean = parts.join(&b'/');
        let shown = show(&clean);
        let t = header.entry_type();
        let kind = if t.is_file() {
            Kind::File
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_hard_link() {
            bail!("member {shown} is a hard link, which a backup never holds");
        } else if t.is_character_special() || t.is_block_special() {
            bail!("member {shown} is a device node, which a backup never holds");
        } else if t.is_fifo() {
            bail!("member {shown} is a FIFO, which a backup never holds");
        } else {
            bail!(
                "member {shown} has tar type {:?}, which a backup never holds",
                t.as_byte() as char
            );
        };
        let mode = header.mode().unwrap_or(0);
        if mode & 0o7000 != 0 {
            bail!(
                "member {shown} has the setuid, setgid or sticky bit (mode {mode:o}), which a backup never holds"
            );
        }
        if !self.seen.insert(clean.clone()) {
            bail!("member {shown} appears twice");
        }
        for i in 1..parts.len() {
            let prefix = parts[..i].join(&b'/');
            if self.links.contains(&prefix) {
                bail!(
                    "member {shown} lies below the symlink member {}",
                    show(&prefix)
                );
            }
        }
        if parts.len() > 1 {
            let parent = parts[..parts.len() - 1].join(&b'/');
            if !self.dirs.contains(&parent) {
                bail!("member {shown} comes before its directory in the archive");
            }
        }
        let size = header.size().unwrap_or(u64::MAX);
        let mut link = Vec::new();
        match kind {
            Kind::File => {
                if size > MAX_FILE {
                    bail!("member {shown} is larger than {} GiB", MAX_FILE >> 30);
                }
                self.total = self.total.saturating_add(size);
                if self.total > MAX_TOTAL {
                    bail!("the state holds more than {} GiB", MAX_TOTAL >> 30);
                }
            }
            Kind::Dir => {
                self.dirs.insert(clean.clone());
            }
            Kind::Symlink => {
                let target = target.unwrap_or_default();
                if !link_stays_inside(parts.len() - 1, target) {
                    bail!(
                        "member {shown} is a symlink to {} outside the state directory",
                        show(target)
                    );
                }
                link = target.to_vec();
                self.links.insert(clean.clone());
            }
        }
        Ok(Checked {
            name: clean,
            kind,
            mode: mode & 0o777,
            size: if kind == Kind::File { size } else { 0 },
            target: link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    #[test]
    fn names() {
        assert!(components(b"a/b").is_ok());
        assert!(components(b"a/b/").is_ok());
        for bad in [&b"/etc"[..], b"../x", b"a/../b", b"a//b", b"./a", b"", b"/"] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        // Any bytes are a name.
        assert!(components(b"caf\xe9").is_ok());
    }

    #[test]
    fn links() {
        assert!(link_stays_inside(0, b"note.txt"));
        assert!(link_stays_inside(1, b"../x/y"));
        assert!(!link_stays_inside(0, b"../x"));
        assert!(!link_stays_inside(3, b"/etc/passwd"));
        assert!(!link_stays_inside(3, b"a/../../x"));
        assert!(!link_stays_inside(3, b""));
    }

    #[test]
    fn members() {
        let dir = header(tar::EntryType::Directory, 0o700, 0);
        let file = header(tar::EntryType::Regular, 0o600, 3);
        let link = header(tar::EntryType::Symlink, 0o777, 0);
        let mut m = Members::default();
        m.check(b"w/", &dir, None).unwrap();
        m.check(b"w/a", &file, None).unwrap();
        assert!(
            m.check(b"w/a", &file, None)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        m.check(b"w/l", &link, Some(b"a")).unwrap();
        assert!(
            m.check(b"w/l/x", &file, None)
                .unwrap_err()
                .to_string()
                .contains("below")
        );
        assert!(m.check(b"w/e", &link, Some(b"../../x")).is_err());
        assert!(
            m.check(b"z/a", &file, None)
                .unwrap_err()
                .to_string()
                .contains("before")
        );
        let suid = header(tar::EntryType::Regular, 0o4755, 0);
        assert!(
            m.check(b"w/s", &suid, None)
                .unwrap_err()
                .to_string()
                .contains("setuid")
        );
        for (t, word) in [
            (tar::EntryType::Link, "hard link"),
            (tar::EntryType::Char, "device"),
            (tar::EntryType::Block, "device"),
            (tar::EntryType::Fifo, "FIFO"),
        ] {
            let e = m.check(b"w/q", &header(t, 0o600, 0), None).unwrap_err();
            assert!(e.to_string().contains(word), "{e}");
        }
        let huge = header(tar::EntryType::Regular, 0o600, MAX_FILE + 1);
        assert!(m.check(b"w/h", &huge, None).is_err());
    }
}
