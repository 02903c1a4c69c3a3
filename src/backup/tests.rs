use super::*;
use std::os::unix::fs::PermissionsExt;

use crate::tenant::TenantName;

fn record() -> Record {
    Record {
        name: TenantName::parse("alice").unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "2026-11-22T00:00:00Z".into(),
        domains: Vec::new(),
        limits: Default::default(),
    }
}

fn me(home: &Path) -> Account {
    Account {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        home: home.to_path_buf(),
    }
}

#[test]
fn snapshots_carry_no_leases_and_run_no_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("alice");
    fs::create_dir(&state).unwrap();
    let db = state.join("openclaw.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT NOT NULL,
               expires_at INTEGER, heartbeat_at INTEGER, payload_json TEXT, created_at INTEGER NOT NULL,
               updated_at INTEGER NOT NULL, PRIMARY KEY (scope, lease_key)) STRICT;
             INSERT INTO state_leases VALUES ('gateway-owner', 'global', 'x', 99999999999999, 0, '{}', 0, 0);
             CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('note');
             CREATE TABLE fired (v TEXT);
             CREATE TRIGGER t BEFORE DELETE ON state_leases BEGIN INSERT INTO fired VALUES ('ran'); END;",
        )
        .unwrap();
    let archive = create(&record(), &state, "r", None, &dir.path().join("out")).unwrap();
    let c = verify(&archive).unwrap();
    assert_eq!(c.manifest.sqlite, ["state/openclaw.sqlite"]);
    let dest = dir.path().join("restored");
    fs::create_dir(&dest).unwrap();
    extract_state(&archive, &dest, &me(&dest)).unwrap();
    let copy = rusqlite::Connection::open(dest.join("openclaw.sqlite")).unwrap();
    let count = |t: &str| -> i64 {
        copy.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(
        (count("state_leases"), count("kept"), count("fired")),
        (0, 1, 0)
    );
    // The live database keeps its lease.
    let live: i64 = conn
        .query_row("SELECT count(*) FROM state_leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(live, 1);
}

#[test]
fn round_trip_with_a_live_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("alice");
    fs::create_dir_all(state.join("workspace")).unwrap();
    fs::write(state.join("workspace/note.txt"), "hello").unwrap();
    fs::write(state.join("workspace/caf\u{e9}.txt"), "utf8").unwrap();
    fs::write(
        state.join(std::ffi::OsStr::from_bytes(b"workspace/raw\xff")),
        "bytes",
    )
    .unwrap();
    std::os::unix::fs::symlink("note.txt", state.join("workspace/link")).unwrap();
    // A directory its owner cannot write: its members still unpack.
    fs::create_dir(state.join("workspace/ro")).unwrap();
    fs::write(state.join("workspace/ro/f"), "ro").unwrap();
    fs::set_permissions(
        state.join("workspace/ro"),
        fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    let db = state.join("memory.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
    )
    .unwrap();
    // The writer keeps its connection open: the rows may sit in the WAL.
    let out = dir.path().join("out");
    let archive = create(&record(), &state, "name = 'alice'\n", Some(b"K=v\n"), &out).unwrap();
    let mode = fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let c = verify(&archive).unwrap();
    assert_eq!(c.manifest.tenant, "alice");
    assert_eq!(c.manifest.sqlite, ["state/memory.sqlite"]);
    assert!(c.manifest.entries.iter().all(|e| !e.path.ends_with("-wal")));
    assert!(c.manifest.entries.iter().any(|e| e.raw.is_some()));
    assert_eq!(c.secrets.as_deref(), Some(&b"K=v\n"[..]));
    drop(conn);

    let dest = dir.path().join("restored");
    fs::create_dir_all(&dest).unwrap();
    extract_state(&archive, &dest, &me(&dest)).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("workspace/note.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        fs::read(dest.join(std::ffi::OsStr::from_bytes(b"workspace/raw\xff"))).unwrap(),
        b"bytes"
    );
    assert_eq!(
        fs::read_link(dest.join("workspace/link")).unwrap(),
        Path::new("note.txt")
    );
    assert_eq!(
        fs::read_to_string(dest.join("workspace/ro/f")).unwrap(),
        "ro"
    );
    let ro = fs::metadata(dest.join("workspace/ro"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(ro, 0o500);
    for d in [&state, &dest] {
        fs::set_permissions(d.join("workspace/ro"), fs::Permissions::from_mode(0o700)).unwrap();
    }
    let restored = rusqlite::Connection::open(dest.join("memory.sqlite")).unwrap();
    let n: i64 = restored
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

use std::os::unix::ffi::OsStrExt;

#[test]
fn hostile_state_is_left_out_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "OTHER-TENANT-SECRET").unwrap();
    let state = dir.path().join("alice");
    fs::create_dir(&state).unwrap();
    std::os::unix::fs::symlink(&outside, state.join("logs")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", state.join("up")).unwrap();
    nix::unistd::mkfifo(
        &state.join("openclaw.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A sparse file of 1 TiB costs nothing and is left out.
    let f = File::create(state.join("sparse")).unwrap();
    f.set_len(1 << 40).unwrap();
    fs::write(state.join("kept.txt"), "kept").unwrap();
    let started = std::time::Instant::now();
    let archive = create(&record(), &state, "r", None, &dir.path().join("out")).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let c = verify(&archive).unwrap();
    let names: Vec<&str> = c.manifest.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, [REGISTRY, STATE, "state/kept.txt"]);
    let bytes = {
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(File::open(&archive).unwrap())
            .read_to_end(&mut v)
            .unwrap();
        v
    };
    assert!(!bytes.windows(19).any(|w| w == b"OTHER-TENANT-SECRET"));

    // Unpacking over a link replaces the link, never writes through it.
    let dest = dir.path().join("dest");
    fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("kept.txt")).unwrap();
    extract_state(&archive, &dest, &me(&dest)).unwrap();
    assert_eq!(fs::read_to_string(dest.join("kept.txt")).unwrap(), "kept");
    assert_eq!(
        fs::read_to_string(outside.join("secret")).unwrap(),
        "OTHER-TENANT-SECRET"
    );
    assert!(outside.join("secret").exists() && !outside.join("kept.txt").exists());
}

#[test]
fn remove_dir_all_does_not_follow_links() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("f"), "x").unwrap();
    let state = dir.path().join("alice");
    fs::create_dir_all(state.join("a/b")).unwrap();
    std::os::unix::fs::symlink(&outside, state.join("a/b/l")).unwrap();
    std::os::unix::fs::symlink(outside.join("f"), state.join("fl")).unwrap();
    crate::fsutil::remove_tree(&state).unwrap();
    assert!(!state.exists());
    assert_eq!(fs::read_to_string(outside.join("f")).unwrap(), "x");
}

#[test]
fn damage_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("alice");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("a.txt"), "x".repeat(1000)).unwrap();
    let archive = create(&record(), &state, "r", None, &dir.path().join("o")).unwrap();
    // Cut the archive short.
    let data = fs::read(&archive).unwrap();
    fs::write(&archive, &data[..data.len() / 2]).unwrap();
    assert!(verify(&archive).is_err());
}
