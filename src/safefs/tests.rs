use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A temporary root: `parent/` (the state directories' parent, ours),
/// `victim/` (a sentinel directory 0755 with a file 0644 in it).
struct Root {
    _t: tempfile::TempDir,
    parent: PathBuf,
    victim: PathBuf,
}

/// mode, uid, gid, content of every file of the sentinel.
fn snapshot(p: &Path) -> Vec<(PathBuf, u32, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let m = std::fs::symlink_metadata(p).unwrap();
    out.push((p.to_path_buf(), m.mode(), m.uid(), m.gid(), Vec::new()));
    if m.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            out.extend(snapshot(&e.path()));
        }
    } else {
        out.last_mut().unwrap().4 = std::fs::read(p).unwrap();
    }
    out
}

fn root() -> Root {
    let t = tempfile::tempdir().unwrap();
    let parent = t.path().join("parent");
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = t.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(victim.join("file"), "sentinel\n").unwrap();
    std::fs::set_permissions(victim.join("file"), std::fs::Permissions::from_mode(0o644)).unwrap();
    Root {
        _t: t,
        parent,
        victim,
    }
}

/// The tenant: another uid when the tests run as root (so a chown is
/// a real change), else ourselves.
fn tenant() -> Owner {
    if nix::unistd::geteuid().is_root() {
        Owner {
            uid: 4242,
            gid: 4242,
        }
    } else {
        Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }
}

fn state(r: &Root) -> Dir {
    Dir::ensure_state(&r.parent, "ana", tenant(), 0o700).unwrap()
}

fn one_line(e: &FsError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "not one line: {s}");
    s
}

#[test]
fn ensure_state_and_dir_set_owner_and_mode_by_descriptor() {
    let r = root();
    let s = state(&r);
    let m = std::fs::metadata(r.parent.join("ana")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o700, tenant().uid));
    std::fs::set_permissions(r.parent.join("ana"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s2 = state(&r);
    let m = std::fs::metadata(r.parent.join("ana")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o700, "repaired");
    s2.ensure_dir(OsStr::new("logs"), tenant(), 0o700).unwrap();
    assert!(s.dir_is(OsStr::new("logs"), tenant(), 0o700));
    let m = std::fs::metadata(r.parent.join("ana/logs")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o700, tenant().uid, tenant().gid)
    );
}

#[test]
fn a_parent_others_can_write_is_refused() {
    let r = root();
    std::fs::set_permissions(&r.parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Dir::ensure_state(&r.parent, "ana", tenant(), 0o700).unwrap_err();
    assert!(matches!(e, FsError::UntrustedParent { .. }), "{e}");
    assert!(!r.parent.join("ana").exists());
}

#[test]
fn a_state_dir_that_is_a_link_is_never_followed() {
    let r = root();
    let before = snapshot(&r.victim);
    std::os::unix::fs::symlink(&r.victim, r.parent.join("ana")).unwrap();
    let e = Dir::ensure_state(&r.parent, "ana", tenant(), 0o700).unwrap_err();
    let line = one_line(&e);
    assert!(line.contains("symlink") && line.contains("ana"), "{line}");
    let e = Dir::open_state(&r.parent, "ana").unwrap_err();
    assert!(matches!(e, FsError::Symlink { .. }), "{e}");
    assert_eq!(snapshot(&r.victim), before);
}

#[test]
fn a_logs_link_to_the_sentinel_is_refused_and_the_sentinel_unchanged() {
    let r = root();
    let before = snapshot(&r.victim);
    let s = state(&r);
    std::os::unix::fs::symlink(&r.victim, r.parent.join("ana/logs")).unwrap();
    let e = s
        .ensure_dir(OsStr::new("logs"), tenant(), 0o700)
        .unwrap_err();
    let line = one_line(&e);
    assert!(
        line.contains("/ana/logs`")
            && line.contains("symlink")
            && line.contains("ocusers exec ana"),
        "{line}"
    );
    assert!(!s.dir_is(OsStr::new("logs"), tenant(), 0o700));
    // A relative link, and a link through a directory, too.
    std::fs::remove_file(r.parent.join("ana/logs")).unwrap();
    std::os::unix::fs::symlink("../../victim", r.parent.join("ana/logs")).unwrap();
    assert!(s.ensure_dir(OsStr::new("logs"), tenant(), 0o700).is_err());
    assert!(s.open_dir(Path::new("logs")).is_err());
    assert!(s.read_file(Path::new("logs/file"), 1 << 20).is_err());
    assert_eq!(snapshot(&r.victim), before);
}

#[test]
fn a_file_where_a_directory_belongs_is_refused() {
    let r = root();
    let s = state(&r);
    std::fs::write(r.parent.join("ana/logs"), "x").unwrap();
    let e = s
        .ensure_dir(OsStr::new("logs"), tenant(), 0o700)
        .unwrap_err();
    assert!(
        one_line(&e).contains("is a regular file, not a directory"),
        "{e}"
    );
}

#[test]
fn write_file_is_atomic_owned_and_replaces_a_link_without_following_it() {
    let r = root();
    let before = snapshot(&r.victim);
    let s = state(&r);
    std::os::unix::fs::symlink(r.victim.join("file"), r.parent.join("ana/openclaw.json")).unwrap();
    s.write_file(OsStr::new("openclaw.json"), b"{}\n", tenant(), 0o600)
        .unwrap();
    let p = r.parent.join("ana/openclaw.json");
    let m = std::fs::symlink_metadata(&p).unwrap();
    assert!(m.is_file());
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, tenant().uid));
    assert_eq!(std::fs::read(&p).unwrap(), b"{}\n");
    assert_eq!(snapshot(&r.victim), before);
    // No temporary file left behind.
    assert_eq!(s.names().unwrap(), vec![OsString::from("openclaw.json")]);
    // A directory of that name is refused, not replaced.
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    assert!(
        s.write_file(OsStr::new("openclaw.json"), b"{}", tenant(), 0o600)
            .is_err()
    );
    assert!(p.is_dir());
    assert_eq!(s.names().unwrap().len(), 1);
}

#[test]
fn reads_refuse_fifos_devices_and_big_files_without_blocking() {
    let r = root();
    let s = state(&r);
    let dir = r.parent.join("ana");
    nix::unistd::mkfifo(&dir.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
    let sparse = std::fs::File::create(dir.join("sparse")).unwrap();
    sparse.set_len(1 << 40).unwrap();
    let sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    std::fs::write(dir.join("ok"), "hello").unwrap();
    let started = Instant::now();
    let e = s.read_file(Path::new("fifo"), 1 << 20).unwrap_err();
    assert!(
        one_line(&e).contains("is a FIFO, not a regular file"),
        "{e}"
    );
    let e = s.read_file(Path::new("zero"), 1 << 20).unwrap_err();
    assert!(one_line(&e).contains("symlink"), "{e}");
    let e = s.read_file(Path::new("sparse"), 1 << 20).unwrap_err();
    assert!(matches!(e, FsError::TooBig { .. }), "{e}");
    let e = s.read_file(Path::new("sock"), 1 << 20).unwrap_err();
    assert!(one_line(&e).contains("is a socket"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s.read_file(Path::new("ok"), 5).unwrap().unwrap(), b"hello");
    assert!(matches!(
        s.read_file(Path::new("ok"), 4),
        Err(FsError::TooBig { .. })
    ));
    assert_eq!(s.read_file(Path::new("missing"), 5).unwrap(), None);
    drop(sock);
}

#[test]
fn a_hard_link_to_a_file_outside_is_never_chowned_or_chmodded() {
    let r = root();
    let before = snapshot(&r.victim);
    let s = state(&r);
    let dir = r.parent.join("ana");
    std::fs::hard_link(r.victim.join("file"), dir.join("openclaw.json")).unwrap();
    // chown_tree names it and leaves it.
    let w = s.chown_tree(tenant(), Limits::default());
    if nix::unistd::geteuid().is_root() {
        assert!(
            w.skipped.iter().any(|e| e.contains("hard links")),
            "{:?}",
            w.skipped
        );
        assert!(w.errors.is_empty(), "{:?}", w.errors);
        // Left alone on purpose, so the rest counts as owned.
        assert!(s.owned_by(tenant(), Limits::default()));
        let h = s.hazards(tenant().uid, &dir, Limits::default());
        assert_eq!(h.count, 1, "{:?}", h.found);
        assert!(h.summary().unwrap().contains("hard links"));
    }
    // Writing over it replaces the name; the inode outside is untouched.
    s.write_file(OsStr::new("openclaw.json"), b"{}", tenant(), 0o600)
        .unwrap();
    assert_eq!(snapshot(&r.victim), before);
    // And the refusal of set_owner_mode_fd itself.
    std::fs::hard_link(r.victim.join("file"), dir.join("again")).unwrap();
    let fd = s
        .open_beneath(Path::new("again"), OFlag::O_RDONLY, 0, true)
        .unwrap();
    let st = fstat(fd.as_fd()).unwrap();
    let e = set_owner_mode_fd(fd.as_fd(), &dir.join("again"), &st, tenant(), 0o600).unwrap_err();
    assert!(matches!(e, FsError::HardLink { links: 2, .. }), "{e}");
    assert_eq!(snapshot(&r.victim), before);
}

#[test]
fn non_utf8_names_are_walked_chowned_and_removed() {
    let r = root();
    let s = state(&r);
    let dir = r.parent.join("ana");
    let bad = OsStr::from_bytes(b"caf\xe9-\xff");
    std::fs::create_dir(dir.join(bad)).unwrap();
    std::fs::write(dir.join(bad).join(bad), "x").unwrap();
    nix::unistd::mkfifo(
        &dir.join(bad).join(OsStr::from_bytes(b"fifo\xfe")),
        Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut seen = Vec::new();
    let w = s.walk(Limits::default(), |e| {
        seen.push(e.rel.as_os_str().as_bytes().to_vec());
        Ok(())
    });
    assert!(w.errors.is_empty() && w.cut.is_none(), "{w:?}");
    assert!(
        seen.contains(&b"caf\xe9-\xff/caf\xe9-\xff".to_vec()),
        "{seen:?}"
    );
    let w = s.chown_tree(tenant(), Limits::default());
    assert!(w.errors.is_empty(), "{w:?}");
    assert!(s.owned_by(tenant(), Limits::default()));
    let h = s.hazards(tenant().uid, &dir, Limits::default());
    assert_eq!(h.count, 1, "{:?}", h.found);
    s.remove_tree(bad).unwrap();
    assert!(s.names().unwrap().is_empty());
}

#[test]
fn hazards_name_links_outside_fifos_and_sockets_but_not_links_inside() {
    let r = root();
    let s = state(&r);
    let dir = r.parent.join("ana");
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::os::unix::fs::symlink(&r.victim, dir.join("logs")).unwrap();
    std::os::unix::fs::symlink("../../../victim", dir.join("a/b/up")).unwrap();
    std::os::unix::fs::symlink("../b", dir.join("a/b/inside")).unwrap();
    std::os::unix::fs::symlink(dir.join("a"), dir.join("abs-inside")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(dir.join("a/sock")).unwrap();
    let h = s.hazards(tenant().uid, &dir, Limits::default());
    assert_eq!(h.count, 3, "{:?}", h.found);
    let line = h.summary().unwrap();
    assert!(line.contains("/ana/logs` is a symlink to"), "{line}");
    assert!(line.contains("a/b/up"), "{line}");
    assert!(line.contains("is a socket"), "{line}");
    assert!(!line.contains("inside"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn walks_are_cut_at_their_limits_and_say_so() {
    let r = root();
    let s = state(&r);
    let dir = r.parent.join("ana");
    for i in 0..50 {
        std::fs::write(dir.join(format!("f{i}")), "").unwrap();
    }
    let mut p = dir.clone();
    for _ in 0..10 {
        p = p.join("d");
        std::fs::create_dir(&p).unwrap();
    }
    let lim = Limits {
        max_entries: 20,
        ..Limits::default()
    };
    let w = s.walk(lim, |_| Ok(()));
    assert_eq!(w.entries, 20);
    assert!(w.cut.as_deref().unwrap().contains("20 entries"));
    let lim = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let w = s.walk(lim, |_| Ok(()));
    assert!(w.cut.as_deref().unwrap().contains("deeper than 3"), "{w:?}");
    let h = s.hazards(tenant().uid, &dir, lim);
    assert!(h.summary().unwrap().contains("the scan did not go deeper"));
}

#[test]
fn link_stays_inside_is_lexical() {
    let home = Path::new("/var/lib/openclaw/ana");
    assert!(link_stays_inside(Path::new("a/l"), Path::new("../x"), home));
    assert!(!link_stays_inside(
        Path::new("a/l"),
        Path::new("../../x"),
        home
    ));
    assert!(!link_stays_inside(Path::new("l"), Path::new("/etc"), home));
    assert!(link_stays_inside(
        Path::new("l"),
        Path::new("/var/lib/openclaw/ana/x"),
        home
    ));
    assert!(!link_stays_inside(
        Path::new("l"),
        Path::new("/var/lib/openclaw/bob"),
        home
    ));
    assert!(!link_stays_inside(
        Path::new("l"),
        Path::new("/var/lib/openclaw/ana/../bob"),
        home
    ));
}

#[test]
fn remove_tree_removes_links_and_never_what_they_point_to() {
    let r = root();
    let before = snapshot(&r.victim);
    let s = state(&r);
    let dir = r.parent.join("ana");
    std::fs::create_dir_all(dir.join("w/x")).unwrap();
    std::os::unix::fs::symlink(&r.victim, dir.join("w/x/v")).unwrap();
    std::os::unix::fs::symlink(&r.victim, dir.join("v")).unwrap();
    for n in s.names().unwrap() {
        s.remove_tree(&n).unwrap();
    }
    assert!(s.names().unwrap().is_empty());
    assert_eq!(snapshot(&r.victim), before);
}

/// A tenant thread swaps `logs` (and a directory deep in the tree)
/// between a real directory and a link to the sentinel, as fast as it
/// can, while root ensures, chowns, walks and removes: root must never
/// act on the sentinel.
#[test]
fn a_directory_swapped_for_a_link_in_a_loop_never_leads_root_outside() {
    let r = root();
    let before = snapshot(&r.victim);
    let s = state(&r);
    let dir = r.parent.join("ana");
    std::fs::create_dir_all(dir.join("deep/er")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, victim) = (stop.clone(), dir.clone(), r.victim.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            let _ = std::fs::create_dir(dir.join("real"));
            let _ = std::os::unix::fs::symlink(&victim, dir.join("link"));
            let _ = std::fs::create_dir(dir.join("deep/real"));
            let _ = std::os::unix::fs::symlink(&victim, dir.join("deep/link"));
            while !stop.load(Ordering::Relaxed) {
                // logs <-> real dir / link, one rename each way.
                let _ = std::fs::rename(dir.join("real"), dir.join("logs"));
                let _ = std::fs::rename(dir.join("logs"), dir.join("real"));
                let _ = std::fs::rename(dir.join("link"), dir.join("logs"));
                let _ = std::fs::rename(dir.join("logs"), dir.join("link"));
                let _ = std::fs::rename(dir.join("deep/real"), dir.join("deep/er2"));
                let _ = std::fs::rename(dir.join("deep/er2"), dir.join("deep/real"));
                let _ = std::fs::rename(dir.join("deep/link"), dir.join("deep/er2"));
                let _ = std::fs::rename(dir.join("deep/er2"), dir.join("deep/link"));
                swaps += 1;
            }
            swaps
        })
    };
    let until = Instant::now() + Duration::from_secs(2);
    let mut rounds = 0;
    while Instant::now() < until {
        let _ = s.ensure_dir(OsStr::new("logs"), tenant(), 0o700);
        let _ = s.read_file(Path::new("logs/file"), 1 << 20);
        let _ = s.write_file(OsStr::new("openclaw.json"), b"{}", tenant(), 0o600);
        let _ = s.chown_tree(tenant(), Limits::default());
        let _ = s.hazards(tenant().uid, &dir, Limits::default());
        if let Ok(d) = s.open_dir(Path::new("deep")) {
            let _ = d.ensure_dir(OsStr::new("er2"), tenant(), 0o700);
        }
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(rounds > 10 && swaps > 10, "rounds {rounds}, swaps {swaps}");
    assert_eq!(snapshot(&r.victim), before);
    // Removing the state while the links are there leaves the sentinel.
    for n in s.names().unwrap() {
        s.remove_tree(&n).unwrap();
    }
    assert_eq!(snapshot(&r.victim), before);
}
