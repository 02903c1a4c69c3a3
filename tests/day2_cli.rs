//! Day-2 commands through the built binary: bad input is refused with one
//! line and changes nothing; `backup verify` checks a real archive and
//! names damage. Runs anywhere, root or not (a temporary `OCUSERS_ROOT`).
use std::path::Path;
use std::process::{Command, Output};

use ocusers::tenant::{Record, TenantName};

fn ocusers(root: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocusers"))
        .args(args)
        .env("OCUSERS_ROOT", root)
        .env_remove("OCUSERS_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ocusers");
    // A command that refuses its arguments exits without reading stdin:
    // the write then fails with a broken pipe, which is no test failure.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr:?}");
}

fn registered(root: &Path) {
    let paths = ocusers::paths::Paths::new(root);
    ocusers::tenant::save(&paths, &record()).unwrap();
}

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

#[test]
fn secret_input_is_checked_before_anything() {
    let root = tempfile::tempdir().unwrap();
    registered(root.path());
    for (args, needle) in [
        (&["secret", "set", "alice", "bad-key"][..], "invalid key"),
        (
            &["secret", "set", "alice", "OPENCLAW_GATEWAY_TOKEN"],
            "token rotate",
        ),
        (
            &["secret", "set", "alice", "NODE_OPTIONS"],
            "set by ocusers",
        ),
        (&["secret", "set", "alice", "LD_PRELOAD"], "set by ocusers"),
        (&["secret", "unset", "alice", "PATH"], "set by ocusers"),
        (
            &["secret", "set", "nobody-here", "API_KEY"],
            "no tenant named",
        ),
        (&["exec", "nobody-here", "--", "true"], "no tenant named"),
        (&["token", "rotate", "nobody-here"], "no tenant named"),
        (&["logs", "nobody-here"], "no tenant named"),
    ] {
        let out = ocusers(root.path(), args, b"value\n");
        assert_fails(&out, 1, needle);
    }
    // Nothing was written for alice.
    assert!(!root.path().join("etc/ocusers/tenants/alice.env").exists());
}

#[test]
fn usage_errors_exit_2() {
    let root = tempfile::tempdir().unwrap();
    for args in [
        &["upgrade", "--parallel", "0"][..],
        &["exec", "alice"],
        &["backup"],
        &["secret", "set", "alice"],
    ] {
        let out = ocusers(root.path(), args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn backup_verify_checks_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("alice");
    std::fs::create_dir_all(state.join("workspace")).unwrap();
    std::fs::write(state.join("workspace/a.txt"), "x".repeat(5000)).unwrap();
    // The registry entry as `add` writes it: `verify` checks that it is
    // the manifest's record.
    let registry = toml::to_string(&record()).unwrap();
    let archive =
        ocusers::backup::create(&record(), &state, &registry, None, &dir.path().join("out"))
            .unwrap();
    let out = ocusers(
        dir.path(),
        &["backup", "verify", archive.to_str().unwrap(), "--json"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["tenant"], "alice");
    assert_eq!(v["with_secrets"], false);

    // Not an archive; cut short.
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, "not a backup").unwrap();
    let out = ocusers(
        dir.path(),
        &["backup", "verify", junk.to_str().unwrap()],
        b"",
    );
    assert_fails(&out, 1, "junk.tar.gz");
    let data = std::fs::read(&archive).unwrap();
    std::fs::write(&junk, &data[..data.len() - 200]).unwrap();
    let out = ocusers(
        dir.path(),
        &["backup", "verify", junk.to_str().unwrap()],
        b"",
    );
    assert_fails(&out, 1, "junk.tar.gz");
    // restore verifies first: a damaged archive changes nothing.
    let out = ocusers(dir.path(), &["restore", junk.to_str().unwrap()], b"");
    assert_fails(&out, 1, "junk.tar.gz");
    assert!(!dir.path().join("var/lib/ocusers/tenants").exists());
}
