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
    // A new tenant may not take a subcommand word (`ocusers invite revoke`)
    // as its name, and nothing is made.
    let out = ocusers(
        dir.path(),
        &["restore", archive.to_str().unwrap(), "--as", "revoke"],
        b"",
    );
    assert_fails(&out, 2, "'revoke' is reserved as a subcommand");
    assert!(!dir.path().join("var/lib/ocusers/tenants").exists());
    // restore verifies first: a damaged archive changes nothing.
    let out = ocusers(dir.path(), &["restore", junk.to_str().unwrap()], b"");
    assert_fails(&out, 1, "junk.tar.gz");
    assert!(!dir.path().join("var/lib/ocusers/tenants").exists());
}

/// Every file under `root` with its content, to prove a refused command
/// changed nothing.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
                out.push((rel, Vec::new()));
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn set_and_domain_refuse_bad_input_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let paths = ocusers::paths::Paths::new(root.path());
    registered(root.path());
    let bob = Record {
        name: TenantName::parse("bob-smith").unwrap(),
        port: 20128,
        domains: vec!["bob.example.org".into()],
        ..record()
    };
    ocusers::tenant::save(&paths, &bob).unwrap();
    // A 3 GiB host with public access at test.internal.
    std::fs::create_dir_all(root.path().join("proc")).unwrap();
    std::fs::write(root.path().join("proc/meminfo"), "MemTotal: 3145728 kB\n").unwrap();
    std::fs::create_dir_all(root.path().join("etc/ocusers")).unwrap();
    std::fs::write(
        root.path().join("etc/ocusers/ocusers.toml"),
        "[proxy]\ndomain = \"test.internal\"\n",
    )
    .unwrap();
    let before = snapshot(root.path());
    for (args, code, needle) in [
        (
            &["set", "nosuch", "--memory-max", "3G"][..],
            1,
            "no tenant named \"nosuch\": see `ocusers list`",
        ),
        (
            &["set", "Alice", "--memory-max", "3G"],
            2,
            "invalid tenant name",
        ),
        (
            &["set", "alice", "--tier", "huge"],
            2,
            "unknown tier \"huge\": choose one of heavy, light, standard",
        ),
        (
            &["set", "alice", "--memory-max", "lots"],
            1,
            "cannot set the limits of tenant alice: memory_max: unknown unit",
        ),
        (
            &["set", "alice", "--memory-max", "1G"],
            1,
            "memory_high (1610612736) must not be above memory_max (1073741824) (tier standard: MemoryHigh 1.5G, MemoryMax 2.0G, CPUQuota 100%, TasksMax 512); change the value, or give `tier` to take the tier's",
        ),
        (
            &["set", "alice", "--cpu-quota", "150"],
            1,
            "cpu_quota: \"150\" is not a percentage like 50%",
        ),
        (
            &["set", "alice", "--tasks-max", "0"],
            1,
            "tasks_max must be positive",
        ),
        (
            &["set", "alice", "--tasks-max", "many"],
            1,
            "not a number of tasks like 512",
        ),
        (
            &["set", "alice", "--memory-max", "8G"],
            1,
            "not enough memory for `ocusers set alice --memory-max 8G`: the tenants' MemoryMax would total 10.0G, above 1.5 x RAM 3.0G = 4.5G",
        ),
        (
            &["set", "alice", "--tier", "heavy"],
            1,
            "not enough memory for `ocusers set alice --tier heavy`",
        ),
        (
            &["domain", "add", "alice", "Bad_Host.org"],
            2,
            "invalid domain \"Bad_Host.org\"",
        ),
        (
            &["domain", "add", "alice", "localhost"],
            2,
            "needs at least two labels",
        ),
        (
            &["domain", "add", "nosuch", "x.example.org"],
            1,
            "no tenant named \"nosuch\"",
        ),
        (
            &["domain", "add", "alice", "bob.example.org"],
            1,
            "domain \"bob.example.org\" already routes to tenant \"bob-smith\": choose another domain",
        ),
        (
            &["domain", "add", "alice", "bob-smith.test.internal"],
            1,
            "already routes to tenant \"bob-smith\"",
        ),
        (
            &["domain", "add", "alice", "alice.test.internal"],
            2,
            "alice gets that name anyway",
        ),
        (
            &["domain", "remove", "alice", "x.example.org"],
            1,
            "tenant \"alice\" has no extra domain \"x.example.org\" (its extra domains: none)",
        ),
        (
            &["domain", "remove", "alice", "alice.test.internal"],
            1,
            "own public name",
        ),
        (
            &["add", "alice", "--domain", "alice.example.org"],
            1,
            "tenant \"alice\" already exists with domains []; to change them use `ocusers domain add alice alice.example.org`",
        ),
        (
            &["add", "alice", "--tier", "heavy"],
            1,
            "to change it use `ocusers set alice --tier heavy`",
        ),
        (
            &["add", "bob", "--domain", "bob.example.org"],
            1,
            "already routes to tenant \"bob-smith\"",
        ),
    ] {
        let out = ocusers(root.path(), args, b"");
        assert_fails(&out, code, needle);
        assert!(
            out.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Nothing to set at all is a usage error.
    let out = ocusers(root.path(), &["set", "alice"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory-max"));
    assert_eq!(
        snapshot(root.path()),
        before,
        "a refused command changed files"
    );
}

#[test]
fn a_new_tenant_may_not_take_an_extra_domain_as_its_name() {
    let root = tempfile::tempdir().unwrap();
    let paths = ocusers::paths::Paths::new(root.path());
    let alice = Record {
        domains: vec!["carol.test.internal".into()],
        ..record()
    };
    ocusers::tenant::save(&paths, &alice).unwrap();
    std::fs::create_dir_all(root.path().join("etc/ocusers")).unwrap();
    std::fs::write(
        root.path().join("etc/ocusers/ocusers.toml"),
        "[proxy]\ndomain = \"test.internal\"\n",
    )
    .unwrap();
    let before = snapshot(root.path());
    let out = ocusers(root.path(), &["add", "carol"], b"");
    assert_fails(
        &out,
        2,
        "its public name carol.test.internal is an extra domain of tenant alice; choose another name or run `ocusers domain remove alice carol.test.internal` first",
    );
    assert_eq!(snapshot(root.path()), before);
}
