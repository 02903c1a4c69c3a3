//! The command line through the built binary: every bad input gets a
//! one-line error, a non-zero exit status, and changes nothing. These run
//! anywhere (root or not): the binary works in a temporary root
//! (`OCUSERS_ROOT`) and never gets as far as creating users or units.
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn ocusers(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocusers"))
        .args(args)
        .env("OCUSERS_ROOT", root)
        .env_remove("OCUSERS_LOG")
        .output()
        .expect("run ocusers")
}

/// Every file under `root`, to prove a failed command left nothing behind.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn passwd() -> String {
    std::fs::read_to_string("/etc/passwd").unwrap()
        + &std::fs::read_to_string("/etc/group").unwrap()
}

/// Assert a failure with one line on stderr that contains `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status; stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("ocusers: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr:?}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_tenant_names_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let users_before = passwd();
    let long = "a".repeat(30);
    let bad = [
        ("", "empty"),
        (long.as_str(), "longer than 29"),
        ("Alice", "upper-case"),
        ("1alice", "start with a letter"),
        ("-alice", "start with a letter"),
        ("..", "not allowed"),
        ("a/b", "not allowed"),
        ("../etc", "not allowed"),
        ("a b", "not allowed"),
        ("a;rm -rf", "not allowed"),
        ("$(id)", "not allowed"),
        ("a`b`", "not allowed"),
        ("a|b", "not allowed"),
        ("a&b", "not allowed"),
        ("a*", "not allowed"),
        ("ålice", "not allowed"),
        ("алиса", "not allowed"),
        ("a\nb", "not allowed"),
        ("alice-", "end with '-'"),
        ("root", "reserved"),
        ("daemon", "reserved"),
        ("nobody", "reserved"),
        ("admin", "reserved"),
        ("www", "reserved"),
        ("oc", "reserved"),
        ("verify", "reserved"),
        ("help", "reserved"),
        ("oc-alice", "reserved"),
    ];
    for (name, why) in bad {
        for cmd in [
            // `--` so that "-alice" reaches the name check instead of clap.
            vec!["add", "--", name],
            vec!["add", "--dry-run", "--", name],
            vec!["remove", "--", name],
            vec!["status", "--", name],
            vec!["start", "--", name],
        ] {
            let out = ocusers(root.path(), &cmd);
            assert_fails(&out, 2, "invalid tenant name");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(why),
                "{cmd:?}: expected {why:?} in {stderr}"
            );
        }
    }
    assert!(tree(root.path()).is_empty(), "{:?}", tree(root.path()));
    assert_eq!(passwd(), users_before, "no user or group was made");
}

/// `ocusers invite list NAME`, `ocusers devices NAME approve ID`: clap reads
/// these words as subcommands, so a tenant by such a name could never be
/// invited or shown its devices. New tenants may not take them, by `add`,
/// `apply` or `restore --as` (day2_cli.rs); the refusal names the word and
/// the command, in one line, and changes nothing.
#[test]
fn subcommand_words_are_refused_as_new_tenant_names() {
    let root = tempfile::tempdir().unwrap();
    let users_before = passwd();
    for (word, command) in [
        ("list", "`ocusers invite list`"),
        ("revoke", "`ocusers invite revoke`"),
        ("approve", "`ocusers devices NAME approve`"),
        ("verify", "`ocusers backup verify`"),
        ("help", "`ocusers invite help`"),
    ] {
        for cmd in [vec!["add", word], vec!["add", "--dry-run", word]] {
            let out = ocusers(root.path(), &cmd);
            assert_fails(&out, 2, &format!("invalid tenant name \"{word}\""));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("'{word}' is reserved"))
                    && stderr.contains(command)
                    && stderr.contains("choose another name"),
                "{cmd:?}: {stderr}"
            );
        }
        let file = root.path().join("tenants.toml");
        std::fs::write(&file, format!("[tenants.{word}]\n")).unwrap();
        let out = ocusers(root.path(), &["apply", file.to_str().unwrap()]);
        assert_fails(&out, 1, &format!("[tenants.{word}]"));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(command),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&file).unwrap();
    }
    assert!(tree(root.path()).is_empty(), "{:?}", tree(root.path()));
    assert_eq!(passwd(), users_before, "no user or group was made");
}

/// A tenant made before `revoke` became a command word keeps working: its
/// registry entry loads and every command that does not read the word as a
/// subcommand addresses it.
#[test]
fn an_existing_tenant_named_like_a_new_command_word_still_loads() {
    let root = tempfile::tempdir().unwrap();
    let reg = root.path().join("var/lib/ocusers/tenants");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(
        reg.join("revoke.toml"),
        "name = \"revoke\"\nport = 20000\nblock = 128\ntier = \"standard\"\nruntime = \"2026.9.6\"\ncreated = \"2026-11-22T23:00:00Z\"\n",
    )
    .unwrap();
    let out = ocusers(root.path(), &["export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[tenants.revoke]"));
    // `add` of the existing tenant is no new name: not refused as one.
    let out = ocusers(root.path(), &["add", "--dry-run", "revoke"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("is reserved"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn names_of_existing_accounts_are_refused() {
    // Every Debian system has these accounts; none is in the reserved list.
    let root = tempfile::tempdir().unwrap();
    for name in ["sys", "bin"] {
        let out = ocusers(root.path(), &["add", name]);
        assert_eq!(out.status.code(), Some(2), "{name}");
    }
}

#[test]
fn bad_idle_stop_names_the_value_and_the_fix() {
    let root = tempfile::tempdir().unwrap();
    for (value, needle) in [
        (
            "soon",
            "idle_stop \"soon\" is not a duration: write a duration like 15m",
        ),
        (
            "5s",
            "idle_stop \"5s\" is shorter than 10s: use at least 10s",
        ),
    ] {
        let out = ocusers(root.path(), &["add", "alice", "--idle-stop", value]);
        assert_fails(&out, 1, needle);
    }
    assert!(tree(root.path()).is_empty());
}

#[test]
fn unknown_tier_lists_the_tiers() {
    let root = tempfile::tempdir().unwrap();
    let out = ocusers(root.path(), &["add", "alice", "--tier", "huge"]);
    assert_fails(
        &out,
        2,
        "unknown tier \"huge\": choose one of heavy, light, standard",
    );
    assert!(tree(root.path()).is_empty());
}

#[test]
fn ports_outside_the_pool_or_taken_are_refused() {
    let root = tempfile::tempdir().unwrap();
    for port in ["80", "6175", "32700", "65535"] {
        let out = ocusers(root.path(), &["add", "alice", "--port", port]);
        assert_fails(&out, 2, "outside the port pool 6176-32640");
    }
    let out = ocusers(root.path(), &["add", "alice", "--port", "70000"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses a non-u16");
    assert!(tree(root.path()).is_empty());

    // A registered tenant's block is taken.
    let reg = root.path().join("var/lib/ocusers/tenants");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(
        reg.join("alice.toml"),
        "name = \"alice\"\nport = 20000\nblock = 128\ntier = \"standard\"\nruntime = \"1\"\ncreated = \"x\"\n",
    )
    .unwrap();
    let before = tree(root.path());
    for port in ["20000", "20100"] {
        let out = ocusers(root.path(), &["add", "bob", "--port", port]);
        assert_fails(&out, 1, "is taken: tenant alice has ports 20000-20127");
    }
    // The existing tenant keeps its port; asking for another is a conflict.
    let out = ocusers(root.path(), &["add", "alice", "--port", "20128"]);
    assert_fails(&out, 1, "already exists with port 20000");
    let out = ocusers(root.path(), &["add", "alice", "--tier", "heavy"]);
    assert_fails(&out, 1, "already exists with tier standard");
    assert_eq!(tree(root.path()), before);
}

#[test]
fn bad_host_config_is_named() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/ocusers");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("ocusers.toml"), "[ports]\nstart = \"x\"\n").unwrap();
    let out = ocusers(root.path(), &["add", "alice"]);
    assert_fails(&out, 1, "ocusers.toml");
}

#[test]
fn changing_commands_need_root_and_say_how() {
    let root = tempfile::tempdir().unwrap();
    // `runtime install` looks for npm before the privilege check; give it one
    // (never run: the command stops at the privilege check).
    let bin = tempfile::tempdir().unwrap();
    let npm = bin.path().join("npm");
    std::fs::write(&npm, "#!/bin/sh\nexit 99\n").unwrap();
    std::fs::set_permissions(&npm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        bin.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocusers"));
        cmd.args(args)
            .env("OCUSERS_ROOT", root.path())
            .env("PATH", bin.path());
        if nix::unistd::geteuid().is_root() {
            // Drop to nobody (65534), as an unprivileged operator would be;
            // std clears the supplementary groups when it sets the uid.
            cmd.uid(65534).gid(65534);
        }
        cmd.output().unwrap()
    };
    for (args, verb) in [
        (vec!["add", "alice"], "add"),
        (vec!["remove", "alice"], "remove"),
        (vec!["start", "--all"], "start"),
        (vec!["stop", "alice"], "stop"),
        (vec!["restart", "alice"], "restart"),
        (vec!["runtime", "install"], "runtime install"),
        (vec!["audit"], "audit"),
    ] {
        let out = as_nobody(&args);
        assert_fails(
            &out,
            1,
            &format!("`ocusers {verb}` must run as root: try `sudo ocusers {verb}"),
        );
    }
    assert!(tree(root.path()).is_empty(), "{:?}", tree(root.path()));
    // Reading needs no root.
    let out = as_nobody(&["list"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no tenants yet"));
    let out = as_nobody(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"tenants": []}));
    let out = as_nobody(&["runtime", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"runtimes": []}));
}

#[test]
fn usage_errors_exit_2() {
    let root = tempfile::tempdir().unwrap();
    for args in [
        vec!["add"],
        vec!["frobnicate"],
        vec!["start"],
        vec!["start", "alice", "--all"],
    ] {
        let out = ocusers(root.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = ocusers(root.path(), &["status", "nosuch"]);
    assert_fails(&out, 1, "no tenant named \"nosuch\": see `ocusers list`");
    let out = ocusers(root.path(), &["audit", "Bad!"]);
    assert_fails(&out, 2, "invalid tenant name \"Bad!\"");
}

#[test]
fn runtime_install_without_npm_says_how_to_get_it() {
    let root = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ocusers"))
        .args(["runtime", "install"])
        .env("OCUSERS_ROOT", root.path())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        "npm is not installed, and ocusers uses it to fetch the OpenClaw runtime: install it with `sudo apt install npm`",
    );
    assert!(tree(root.path()).is_empty());
}

#[test]
fn apply_refuses_bad_files_before_anything_changes() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("tenants.toml");
    let cases = [
        ("[tenants.Alice]\n", "invalid tenant name"),
        ("[tenants.alice]\ntier = \"huge\"\n", "unknown tier"),
        (
            "[tenants.alice]\nsecrets = { OPENAI_API_KEY = \"sk-live-secret\" }\n",
            "a value in the file is not allowed",
        ),
        (
            "[tenants.alice]\nsecrets = { OPENAI_API_KEY = { file = \"/nonexistent/key\" } }\n",
            "cannot read /nonexistent/key",
        ),
        ("[tenants.alice]\nmemory_max = \"512M\"\n", "memory_high"),
        ("[tenant.alice]\n", "unknown field"),
    ];
    for (text, needle) in cases {
        std::fs::write(&file, text).unwrap();
        let before = tree(root.path());
        let out = ocusers(root.path(), &["apply", file.to_str().unwrap()]);
        assert_fails(&out, 1, needle);
        assert!(String::from_utf8_lossy(&out.stderr).contains("tenants.toml"));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-live-secret"));
        assert_eq!(tree(root.path()), before, "{text}");
    }
    let out = ocusers(root.path(), &["apply", "/nonexistent/tenants.toml"]);
    assert_fails(&out, 1, "reading /nonexistent/tenants.toml");
}

#[test]
fn export_and_metrics_of_an_empty_host() {
    let root = tempfile::tempdir().unwrap();
    let out = ocusers(root.path(), &["export"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("# ocusers export"), "{text}");
    assert!(!text.contains("[tenants."), "{text}");
    let out = ocusers(root.path(), &["export", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenants"], serde_json::json!({}));
    let out = ocusers(root.path(), &["metrics"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nocusers_tenants 0\n"), "{text}");
    assert!(
        text.contains("# TYPE ocusers_host_memory_bytes gauge"),
        "{text}"
    );
    let prom = root.path().join("textfile/ocusers.prom");
    let out = ocusers(
        root.path(),
        &["metrics", "--textfile", prom.to_str().unwrap()],
    );
    assert!(out.status.success() && out.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&prom).unwrap(), text);
}

/// `ocusers export | head -0`: a reader that went away ends a read command
/// quietly (SIGPIPE), not with a panic on stderr.
#[test]
fn a_closed_stdout_ends_a_read_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let root = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_ocusers"))
        .arg("export")
        .env("OCUSERS_ROOT", root.path())
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}

/// Public access: a bad extra domain is a usage error; a proxy that is not
/// installed is named with how to get it, before anything changes; bad
/// `[proxy]` settings name the file and the fix.
#[test]
fn proxy_settings_and_domains_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/ocusers");
    std::fs::create_dir_all(&etc).unwrap();
    let before = tree(root.path());
    for (domain, needle) in [
        ("Alice.Example.org", "invalid domain \"Alice.Example.org\""),
        ("org", "at least two labels"),
        ("a_b.example.org", "lower-case letters"),
    ] {
        let out = ocusers(root.path(), &["add", "alice", "--domain", domain]);
        assert_fails(&out, 2, needle);
    }
    assert_eq!(tree(root.path()), before);

    // nginx with a certificate, but no nginx on PATH.
    std::fs::write(
        etc.join("ocusers.toml"),
        "[proxy]\ndomain = \"example.com\"\nkind = \"nginx\"\ntls = \"files\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n",
    )
    .unwrap();
    let before = tree(root.path());
    for args in [&["add", "alice"][..], &["proxy", "sync"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ocusers"))
            .args(args)
            .env("OCUSERS_ROOT", root.path())
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_fails(
            &out,
            1,
            "nginx is not installed: install it with `sudo apt install nginx`, or set [proxy] kind = \"none\"",
        );
    }
    assert_eq!(tree(root.path()), before);

    for (config, needle) in [
        (
            "[proxy]\ndomain = \"example.com\"\nkind = \"nginx\"\n",
            "kind = \"nginx\" needs tls = \"files\"",
        ),
        ("[proxy]\ndomain = \"Example.com\"\n", "[proxy] domain"),
        ("[proxy]\nlisten = [\"localhost\"]\n", "not an IP address"),
        ("[proxy]\nkind = \"apache\"\n", "unknown variant"),
    ] {
        std::fs::write(etc.join("ocusers.toml"), config).unwrap();
        let out = ocusers(root.path(), &["proxy", "show"]);
        assert_fails(&out, 1, needle);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("ocusers.toml"),
            "{out:?}"
        );
    }
}
