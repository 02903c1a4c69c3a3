//! Day-2 operations on the real systemd with the real gateway (issue #5):
//! secrets, `exec` as the tenant, backup and restore (here and into a fresh
//! container), health-gated upgrade with rollback between two OpenClaw
//! releases from the npm registry, doctor and repair. Runs after the
//! lifecycle trials, which leave alice and bob-smith in place.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::assert::{ensure, wait_for};
use crate::support::nspawn::Container;
use crate::support::process::{check, describe, stderr, stdout};
use crate::support::rootfs;
use crate::support::trials::Figures as _;
use crate::tenants::{Fixture, openclaw_version};

type R = Result<(), String>;

/// The release the upgrade trial moves to and back from (another real
/// release of the same package).
fn other_version() -> String {
    std::env::var("OCUSERS_TEST_OPENCLAW_OTHER_VERSION").unwrap_or_else(|_| "2026.9.5".into())
}

const BACKUPS: &str = "/var/lib/ocusers/backups";

/// Write a file into the container through its root (so the value is in no
/// process's argv), 0600.
pub(crate) fn put(fx: &Fixture, inside: &str, data: &[u8]) -> R {
    use std::os::unix::fs::OpenOptionsExt;
    let path = fx.c.root().join(inside.trim_start_matches('/'));
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, data))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn environ(fx: &Fixture, tenant: &str) -> Result<String, String> {
    let pid = fx.main_pid(tenant)?;
    fx.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"))
}

/// Acceptance 1: a secret set through stdin reaches the gateway's
/// environment after a restart and is in no argv, journal, unit property or
/// `--json` output; injection attempts are refused and leave the file as it
/// was; the journal names tenant, action and key. Also `token rotate`.
pub fn secret_set_via_stdin(fx: &Fixture) -> R {
    let value = format!("sk-ocusers-test-{}", random_hex());
    put(fx, "/root/.secret-value", format!("{value}\n").as_bytes())?;
    let out = fx.ocusers_ok("secret set alice OPENAI_API_KEY < /root/.secret-value")?;
    ensure(out.contains("ocusers restart alice"), || out.clone())?;
    fx.sh("rm /root/.secret-value")?;
    ensure(!environ(fx, "alice")?.contains(&value), || {
        "the value reached the gateway before the restart".into()
    })?;
    let out = fx.ocusers_ok("restart alice")?;
    ensure(out.contains("restart: alice ok"), || out.clone())?;
    ensure(
        environ(fx, "alice")?
            .lines()
            .any(|l| l == format!("OPENAI_API_KEY={value}")),
        || "OPENAI_API_KEY is not in the restarted gateway's environment".into(),
    )?;
    let list = fx.json("secret list alice --json")?;
    ensure(
        list["keys"] == serde_json::json!(["OPENAI_API_KEY"]),
        || format!("secret list: {list}"),
    )?;
    // The journal has the change, with the key name and not the value.
    let rec = fx.sh(
        "journalctl -o json --no-pager SYSLOG_IDENTIFIER=ocusers OCUSERS_TENANT=alice OCUSERS_ACTION=secret-set",
    )?;
    ensure(rec.contains("OPENAI_API_KEY"), || {
        format!("no secret-set record naming the key: {rec}")
    })?;
    let everywhere = [
        ("journal", fx.sh("journalctl -o verbose --no-pager")?),
        ("argv", fx.sh("ps -eo args")?),
        ("unit properties", fx.sh("systemctl show 'openclaw@*'")?),
        ("status --json", fx.ocusers_ok("status --json")?),
        ("list --json", fx.ocusers_ok("list --json")?),
        ("secret list --json", list.to_string()),
        ("doctor --json", stdout(&fx.ocusers("doctor --json"))),
    ];
    for (what, text) in &everywhere {
        ensure(!text.contains(&value), || {
            format!("the secret value leaked into {what}")
        })?;
    }
    // Injections: a newline in the value, a NUL, quoting, ocusers' own keys,
    // a bad key name. Each refused with one line, the file unchanged.
    let env = "/etc/ocusers/tenants/alice.env";
    let before = fx.sh(&format!("sha256sum {env}"))?;
    put(fx, "/root/.evil-1", b"x\nOPENCLAW_GATEWAY_TOKEN=evil\n")?;
    put(fx, "/root/.evil-2", b"x\0y")?;
    put(fx, "/root/.evil-3", b"\"x\" \\")?;
    for (args, want) in [
        ("secret set alice FOO < /root/.evil-1", "contains '\\n'"),
        (
            "secret set alice FOO --file /root/.evil-2",
            "contains '\\0'",
        ),
        ("secret set alice FOO < /root/.evil-3", "cannot hold safely"),
        (
            "secret set alice OPENCLAW_GATEWAY_TOKEN < /root/.evil-3",
            "token rotate",
        ),
        ("secret set alice PATH < /root/.evil-3", "set by ocusers"),
        ("secret set alice bad-key < /root/.evil-3", "invalid key"),
    ] {
        let out = fx.ocusers(args);
        let err = stderr(&out);
        ensure(
            out.status.code() == Some(1) && err.contains(want) && err.trim().lines().count() == 1,
            || format!("`ocusers {args}`: {}", describe(&out)),
        )?;
    }
    fx.sh("rm -f /root/.evil-*")?;
    let after = fx.sh(&format!("sha256sum {env}"))?;
    ensure(before == after, || {
        "a refused secret changed the env file".into()
    })?;
    // unset removes it.
    fx.ocusers_ok("secret unset alice OPENAI_API_KEY --restart")?;
    ensure(!environ(fx, "alice")?.contains("OPENAI_API_KEY"), || {
        "OPENAI_API_KEY still set after unset --restart".into()
    })?;

    // token rotate: a new token, the gateway ready with it, the old refused
    // by the real OpenClaw client.
    let old = fx.token("alice")?;
    let out = fx.ocusers_ok("token rotate alice")?;
    ensure(out.contains("restarted and ready"), || out.clone())?;
    let new = fx.token("alice")?;
    ensure(new != old && new.len() == 64, || "token unchanged".into())?;
    ensure(!out.contains(&new), || {
        "token rotate printed the token".into()
    })?;
    let port = fx.port("alice")?;
    ensure(fx.gateway_health(port, &new)?.status.success(), || {
        "the new token is refused".into()
    })?;
    ensure(!fx.gateway_health(port, &old)?.status.success(), || {
        "the old token still works".into()
    })?;
    // logs: the tenant's journal.
    let logs = fx.ocusers_ok("logs alice -n 20")?;
    ensure(logs.lines().count() >= 5, || format!("logs: {logs}"))
}

/// Acceptance 2: `ocusers exec NAME -- openclaw gateway health --json` is
/// answered by that tenant's own gateway (its state path is in the answer),
/// runs as the tenant and sees the gateway's private /tmp.
pub fn exec_as_tenant(fx: &Fixture) -> R {
    // bob was removed by the lifecycle trials; he comes back for this one.
    let t = Instant::now();
    fx.ocusers_ok("add bob")?;
    fx.figure(
        "ocusers add bob (again)",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    for name in ["alice", "bob"] {
        let out = fx.ocusers(&format!("exec {name} -- openclaw gateway health --json"));
        ensure(out.status.success(), || {
            format!("exec {name} gateway health: {}", describe(&out))
        })?;
        let v: Value = serde_json::from_str(&stdout(&out))
            .map_err(|e| format!("health JSON of {name}: {e}: {}", stdout(&out)))?;
        ensure(v["ok"] == true, || format!("{name}: {v}"))?;
        let text = v.to_string();
        ensure(text.contains(&format!("/var/lib/openclaw/{name}/")), || {
            format!("{name}'s health answer names another tenant's state: {text}")
        })?;
        let other = if name == "alice" { "bob" } else { "alice" };
        ensure(
            !text.contains(&format!("/var/lib/openclaw/{other}/")),
            || format!("{name}'s health answer names {other}: {text}"),
        )?;
        let id = fx.ocusers_ok(&format!("exec {name} -- id -un"))?;
        ensure(id.trim() == format!("oc-{name}"), || format!("id: {id}"))?;
        // A file the gateway sees in its private /tmp is seen by exec, and
        // not by the other tenant's exec.
        let pid = fx.main_pid(name)?;
        let marker = format!("/tmp/ocusers-exec-probe-{name}");
        fx.sh(&format!(
            "nsenter -t {pid} -m sh -c 'echo {name}-probe > {marker}'"
        ))?;
        let seen = fx.ocusers_ok(&format!("exec {name} -- cat {marker}"))?;
        ensure(seen.trim() == format!("{name}-probe"), || {
            format!("exec {name} does not see its gateway's /tmp: {seen}")
        })?;
        let out = fx.ocusers(&format!("exec {other} -- cat {marker}"));
        ensure(!out.status.success(), || {
            format!("{other} sees {name}'s /tmp")
        })?;
        let locks = fx.ocusers_ok(&format!("exec {name} -- ls -A /tmp"))?;
        ensure(locks.contains("openclaw-state-locks-"), || {
            format!("no gateway lock dir in exec's /tmp: {locks}")
        })?;
    }
    // The command's exit status is passed on; its environment is the unit's.
    let out = fx.ocusers("exec alice -- sh -c 'exit 7'");
    ensure(out.status.code() == Some(7), || describe(&out))?;
    let env = fx.ocusers_ok("exec alice -- printenv OPENCLAW_STATE_DIR")?;
    ensure(env.trim() == "/var/lib/openclaw/alice", || env.clone())?;
    // The token travels in the environment, never in argv.
    let token = fx.token("alice")?;
    let out = fx.ocusers_ok("exec alice -- cat /proc/self/cmdline")?;
    ensure(!out.contains(&token), || "token in exec's argv".into())?;
    let out = fx.ocusers("exec nobody-here -- true");
    ensure(
        out.status.code() == Some(1) && stderr(&out).contains("no tenant named"),
        || describe(&out),
    )
}

/// Acceptance 3: back up a running tenant, `remove --purge`, restore: the
/// tenant comes back ready with its state and a new token. The archive
/// verifies, a damaged copy does not, restore refuses to overwrite. Then
/// the same archive is restored into a fresh container.
pub fn backup_and_restore(fx: &Fixture) -> R {
    let note = format!("note-{}", random_hex());
    put(fx, "/root/.note", note.as_bytes())?;
    fx.sh(
        "install -d -o oc-alice -g oc-alice -m 700 /var/lib/openclaw/alice/workspace && \
         install -o oc-alice -g oc-alice -m 600 /root/.note /var/lib/openclaw/alice/workspace/ocusers-note.txt",
    )?;
    let old_token = fx.token("alice")?;
    let port = fx.port("alice")?;
    let t = Instant::now();
    let out = fx.ocusers_ok("backup alice")?;
    fx.figure(
        "ocusers backup alice (running)",
        format!("{:.1} s: {}", t.elapsed().as_secs_f64(), out.trim()),
    );
    backup_timing(fx)?;
    let archive = fx
        .sh(&format!("ls {BACKUPS}/alice-*.tar.gz"))?
        .trim()
        .to_string();
    ensure(
        fx.sh(&format!("stat -c %a {archive}"))?.trim() == "600",
        || "archive is not 0600".into(),
    )?;
    let v = fx.json(&format!("backup verify {archive} --json"))?;
    ensure(v["ok"] == true && v["tenant"] == "alice", || format!("{v}"))?;
    ensure(v["with_secrets"] == false, || format!("{v}"))?;
    // The gateway's SQLite databases went through SQLite, not a byte copy:
    // every one in the state outside the directories backups leave out
    // (OpenClaw's read-only SQLite copy lives in `.cache/openclaw`).
    let prune: String = ocusers::backup::EXCLUDED
        .iter()
        .map(|d| format!("-path ./{d} -prune -o "))
        .collect();
    let dbs = fx.sh(&format!(
        "cd /var/lib/openclaw/alice && find . {prune}-type f -size +0 -print | \
         while read f; do head -c 15 \"$f\" | grep -q 'SQLite format 3' && echo \"${{f#./}}\"; done | sort",
    ))?;
    let mut snap: Vec<String> = v["sqlite"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            s.as_str()
                .and_then(|s| s.strip_prefix("state/"))
                .map(str::to_string)
        })
        .collect();
    snap.sort();
    let live: Vec<String> = dbs.lines().map(str::to_string).collect();
    ensure(
        !live.is_empty() && live.iter().all(|d| snap.contains(d)),
        || format!("live databases {live:?}, snapshotted {snap:?}"),
    )?;
    // A damaged copy fails verification, naming the problem.
    fx.sh(&format!(
        "cp {archive} /root/damaged.tar.gz && printf 'XXXX' | dd of=/root/damaged.tar.gz bs=1 seek=2000 conv=notrunc 2>/dev/null"
    ))?;
    let out = fx.ocusers("backup verify /root/damaged.tar.gz");
    ensure(out.status.code() == Some(1), || describe(&out))?;
    fx.sh("rm /root/damaged.tar.gz")?;

    // `remove` archives the state as a real backup: restoring the file it
    // names brings alice back, her workspace file included.
    let out = fx.ocusers_ok("remove alice")?;
    let removed = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("state archived to "))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| format!("remove printed no archive: {out}"))?
        .to_string();
    ensure(
        fx.sh(&format!("stat -c %a {removed}"))?.trim() == "600",
        || "remove's archive is not 0600".into(),
    )?;
    ensure(!fx.sh("ls /var/lib/openclaw")?.contains("alice"), || {
        "remove left alice's state".into()
    })?;
    let v = fx.json(&format!("backup verify {removed} --json"))?;
    ensure(v["ok"] == true && v["tenant"] == "alice", || format!("{v}"))?;
    let t = Instant::now();
    let out = fx.ocusers_ok(&format!("restore {removed}"))?;
    fx.figure(
        "ocusers restore alice (same host, from remove's archive, to ready)",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    ensure(out.contains("ready"), || out.clone())?;
    ensure(fx.readyz(port)? == "200", || {
        "restored alice not ready".into()
    })?;
    let got = fx.sh("cat /var/lib/openclaw/alice/workspace/ocusers-note.txt")?;
    ensure(got == note, || format!("workspace file: {got:?}"))?;
    let st = fx.sh("stat -c '%U %a' /var/lib/openclaw/alice /var/lib/openclaw/alice/workspace/ocusers-note.txt")?;
    ensure(st == "oc-alice 700\noc-alice 600\n", || st.clone())?;
    let new_token = fx.token("alice")?;
    ensure(new_token != old_token, || "restore kept the token".into())?;
    ensure(
        fx.gateway_health(port, &new_token)?.status.success(),
        || "restored alice refuses its new token".into(),
    )?;
    // An existing tenant is not overwritten.
    let out = fx.ocusers(&format!("restore {archive}"));
    ensure(
        out.status.code() == Some(1) && stderr(&out).contains("--force"),
        || describe(&out),
    )?;
    // --keep-token needs secrets in the archive.
    let out = fx.ocusers(&format!("restore {archive} --as alice2 --keep-token"));
    ensure(
        out.status.code() == Some(1) && stderr(&out).contains("--with-secrets"),
        || describe(&out),
    )?;

    // A fresh host: a second container, the archive bound in.
    let host_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::copy(
        fx.c.root().join(archive.trim_start_matches('/')),
        host_dir.path().join("alice.tar.gz"),
    )
    .map_err(|e| format!("copying the archive out: {e}"))?;
    // The .deb the first container installed, through its mount namespace.
    let deb = fx.sh("ls /mnt/deb/ocusers_*.deb")?.trim().to_string();
    let proc_root = format!("/proc/{}/root", fx.c.leader_pid());
    let deb_name = std::path::Path::new(&deb)
        .file_name()
        .ok_or("no .deb")?
        .to_owned();
    std::fs::copy(format!("{proc_root}{deb}"), host_dir.path().join(&deb_name))
        .map_err(|e| format!("copying the .deb out: {e}"))?;
    let t = Instant::now();
    let base = rootfs::ensure_base_root()?;
    let c2 = Container::boot(
        &base,
        &[(host_dir.path().to_path_buf(), "/mnt/backups".into(), true)],
    )?;
    // Same port pool as the first container: alice's port is taken there
    // (the containers share the host's loopback), so restore must move.
    let pool = std::fs::read_to_string(fx.c.root().join("etc/ocusers/ocusers.toml"))
        .unwrap_or_else(|_| "[ports]\nstart = 20000\n".into());
    std::fs::create_dir_all(c2.root().join("etc/ocusers")).map_err(|e| e.to_string())?;
    std::fs::write(c2.root().join("etc/ocusers/ocusers.toml"), pool).map_err(|e| e.to_string())?;
    // Caddy comes with the .deb (Recommends): masked, as in the first
    // container, so it does not take port 80 of the shared network namespace.
    c2.sh_ok(
        "systemctl mask caddy.service >/dev/null 2>&1; \
         DEBIAN_FRONTEND=noninteractive apt-get install -y /mnt/backups/ocusers_*.deb >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }",
    )?;
    check(
        "runtime install (fresh host)",
        c2.sh(&format!(
            "ocusers runtime install --version {}",
            openclaw_version()
        )),
    )?;
    let out = check(
        "restore (fresh host)",
        c2.sh("ocusers restore /mnt/backups/alice.tar.gz"),
    )
    .map_err(|e| {
        let journal = c2.sh("journalctl -u openclaw@alice -n 25 --no-pager -o cat; grep -n port /var/lib/openclaw/alice/openclaw.json");
        format!("{e}\n--- fresh host's journal of alice ---\n{}", describe(&journal))
    })?;
    fx.figure(
        "fresh container: boot, apt install, runtime install, restore to ready",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    let st: Value = serde_json::from_str(&c2.sh_ok("ocusers status alice --json")?)
        .map_err(|e| e.to_string())?;
    let p2 = st["port"].as_u64().unwrap_or(0) as u16;
    ensure(st["ready"] == true && p2 != port, || {
        format!("fresh-host alice: {st} (restore said: {out})")
    })?;
    ensure(out.contains("port changed"), || out.clone())?;
    let got = c2.sh_ok("cat /var/lib/openclaw/alice/workspace/ocusers-note.txt")?;
    ensure(got == note, || {
        format!("fresh-host workspace file: {got:?}")
    })?;
    // Its config names its new port, so its own CLI reaches it.
    let h = c2.sh("ocusers exec alice -- openclaw gateway health --json");
    ensure(h.status.success(), || {
        let cfg = c2
            .sh("grep -n '\"port\"' /var/lib/openclaw/alice/openclaw.json")
            .stdout;
        format!(
            "fresh-host exec health (gateway on port {p2}, archived port {port}, openclaw.json says {}): {}",
            String::from_utf8_lossy(&cfg).trim(),
            describe(&h)
        )
    })?;
    drop(c2);
    Ok(())
}

/// `backup` of a running tenant, this build against main's (the binary in
/// OCUSERS_TEST_BASELINE_BIN, copied in; the bound: at most 2x):
/// the median of three runs each, into a scratch directory, first of the
/// fresh tenant's state (a few dozen KB, where the fixed cost of the
/// sandboxed packer shows), then with a state of the size a tenant in use
/// has (written by alice herself: 400 session transcripts of 64 KiB, 200
/// workspace files of 128 KiB, and a 16 MiB SQLite database; about 75 MiB
/// in all), which is removed again.
fn backup_timing(fx: &Fixture) -> R {
    let median = |cmd: &str| -> Result<f64, String> {
        let mut t = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            fx.sh(cmd)?;
            t.push(start.elapsed().as_secs_f64());
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Ok(t[1])
    };
    let base_bin = std::env::var("OCUSERS_TEST_BASELINE_BIN").ok();
    if let Some(bin) = &base_bin {
        let inside = fx.c.root().join("root/ocusers-main");
        std::fs::copy(bin, &inside).map_err(|e| format!("copying {bin}: {e}"))?;
        fx.sh("chmod 755 /root/ocusers-main")?;
    }
    let both = |what: &str| -> R {
        let new = median("ocusers backup alice --out /root/timing-new >/dev/null")?;
        let base = match &base_bin {
            Some(_) => Some(median(
                "/root/ocusers-main backup alice --out /root/timing-main >/dev/null",
            )?),
            None => None,
        };
        let size = fx.sh("du -sh /var/lib/openclaw/alice | cut -f1")?;
        fx.figure(
            format!(
                "ocusers backup alice (running, {what}, state {}), median of 3: tenant-side packer vs main",
                size.trim()
            ),
            match base {
                Some(b) => format!("{new:.2} s vs {b:.2} s ({:.2}x)", new / b),
                None => format!("{new:.2} s (set OCUSERS_TEST_BASELINE_BIN for main's)"),
            },
        );
        Ok(())
    };
    both("fresh")?;
    // The fixed part: one sandboxed transient unit as the tenant, doing
    // nothing (what `ocusers exec` and the packer both start).
    let fixed = median("ocusers exec alice -- true")?;
    fx.figure(
        "ocusers exec alice -- true (a sandboxed transient unit as the tenant), median of 3",
        format!("{fixed:.2} s"),
    );
    // alice's own files, written as alice in her sandbox.
    fx.ocusers_ok(
        "exec alice -- sh -c 'cd /var/lib/openclaw/alice && mkdir -p bench-sessions workspace/bench && \
         for i in $(seq 400); do head -c 65536 /dev/urandom | base64 > bench-sessions/s$i.jsonl; done && \
         for i in $(seq 200); do head -c 131072 /dev/urandom > workspace/bench/f$i.bin; done'",
    )?;
    let db = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    {
        let c = rusqlite::Connection::open(db.path()).map_err(|e| e.to_string())?;
        c.execute_batch(
            "CREATE TABLE chunks(id INTEGER PRIMARY KEY, body BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 4096)
             INSERT INTO chunks(body) SELECT randomblob(4096) FROM n;",
        )
        .map_err(|e| e.to_string())?;
    }
    std::fs::copy(db.path(), fx.c.root().join("root/bench.sqlite")).map_err(|e| e.to_string())?;
    fx.sh("install -o oc-alice -g oc-alice -m 600 /root/bench.sqlite /var/lib/openclaw/alice/bench.sqlite && rm /root/bench.sqlite")?;
    let r = both("in use");
    fx.ocusers_ok(
        "exec alice -- rm -rf /var/lib/openclaw/alice/bench-sessions /var/lib/openclaw/alice/workspace/bench /var/lib/openclaw/alice/bench.sqlite",
    )?;
    fx.sh("rm -rf /root/timing-new /root/timing-main /root/ocusers-main")?;
    r
}

/// Poll /readyz of every tenant until stopped; returns, per tenant, the
/// not-ready intervals, and the most tenants seen not ready at once.
struct Watch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(BTreeMap<String, Vec<Duration>>, usize)>,
}

fn watch(ports: Vec<(String, u16)>) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let agent: ureq_like::Agent = ureq_like::Agent::new();
        let mut down_since: BTreeMap<String, Instant> = BTreeMap::new();
        let mut downs: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        let mut max_down = 0;
        while !s.load(Ordering::Relaxed) {
            let mut n = 0;
            for (name, port) in &ports {
                let ready = match agent.ready(*port) {
                    Some(r) => r,
                    // No answer in time: as it was.
                    None => !down_since.contains_key(name),
                };
                if !ready {
                    n += 1;
                    down_since.entry(name.clone()).or_insert_with(Instant::now);
                } else if let Some(t) = down_since.remove(name) {
                    downs.entry(name.clone()).or_default().push(t.elapsed());
                }
            }
            max_down = max_down.max(n);
            std::thread::sleep(Duration::from_millis(100));
        }
        for (name, t) in down_since {
            downs.entry(name).or_default().push(t.elapsed());
        }
        (downs, max_down)
    });
    Watch { stop, handle }
}

/// A readiness probe from the host (the containers share its loopback):
/// `Some(true)` on 200, `Some(false)` when nothing listens or the answer is
/// not 200 (503 while starting), `None` when an accepted connection gets no
/// answer in time (a loaded host, not an outage: the state stays as it was).
mod ureq_like {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub struct Agent;
    impl Agent {
        pub fn new() -> Agent {
            Agent
        }
        pub fn ready(&self, port: u16) -> Option<bool> {
            let mut s = match TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_secs(2),
            ) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
                Err(_) => return Some(false),
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .ok()?;
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Ok(0) => Some(false),
                Ok(n) => Some(
                    buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"),
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    None
                }
                Err(_) => Some(false),
            }
        }
    }
}

fn runtimes_of(fx: &Fixture) -> Result<BTreeMap<String, String>, String> {
    let all = fx.json("status --json")?;
    Ok(all["tenants"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["runtime"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Every tenant answers /readyz 200. A probe on a loaded host can time out
/// (curl gives up after 5 s), so each gets a few tries within a minute.
fn all_ready(fx: &Fixture, tenants: &[&str]) -> R {
    for t in tenants {
        let port = fx.port(t)?;
        wait_for(
            &format!("{t} to answer /readyz 200"),
            Duration::from_secs(60),
            || Ok(fx.readyz(port)? == "200"),
        )?;
    }
    Ok(())
}

/// Acceptance 4 and 6: two tenants on an older real OpenClaw release move
/// to the tier's release one at a time (never more than one down, measured
/// from outside by polling /readyz), all ready on the new one, the others
/// untouched; an upgrade to a runtime that never becomes ready puts the
/// first tenant back and stops, all ready on the old one; rollback moves the
/// three back (OpenClaw migrates its SQLite schemas forward and the older
/// release refuses them, so rollback puts back the pre-upgrade state);
/// prune removes what no one runs.
pub fn upgrade_and_rollback(fx: &Fixture) -> R {
    let movers = ["ursula", "victor"];
    let v_new = openclaw_version();
    let v_old = other_version();
    let rt = "/var/lib/ocusers/runtimes";
    let t = Instant::now();
    fx.ocusers_ok(&format!("runtime install --version {v_old}"))?;
    fx.figure(
        format!("runtime install {v_old} (second runtime)"),
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    for m in movers {
        fx.ocusers_ok(&format!("add {m}"))?;
    }
    let before = runtimes_of(fx)?;
    ensure(
        movers.iter().all(|t| before.get(*t) == Some(&v_old)),
        || format!("new tenants not on {v_old}: {before:?}"),
    )?;
    let bystanders = ["alice", "bob", "bob-smith"];
    let pids: Vec<u32> = bystanders
        .iter()
        .map(|t| fx.main_pid(t))
        .collect::<Result<_, _>>()?;
    let ports: Vec<(String, u16)> = movers
        .iter()
        .map(|t| fx.port(t).map(|p| (t.to_string(), p)))
        .collect::<Result<_, _>>()?;
    all_ready(fx, &movers)?;

    let w = watch(ports.clone());
    let t = Instant::now();
    let out = fx.ocusers(&format!("upgrade --to {v_new} --parallel 1"));
    let total = t.elapsed();
    w.stop.store(true, Ordering::Relaxed);
    let (downs, max_down) = w.handle.join().map_err(|_| "watch thread panicked")?;
    let text = check(&format!("ocusers upgrade --to {v_new}"), out)?;
    ensure(max_down <= 1, || {
        format!("{max_down} tenants were down at once with --parallel 1: {downs:?}")
    })?;
    let after = runtimes_of(fx)?;
    ensure(after.values().all(|v| *v == v_new), || {
        format!("after upgrade: {after:?}\n{text}")
    })?;
    all_ready(fx, &movers)?;
    let now: Vec<u32> = bystanders
        .iter()
        .map(|t| fx.main_pid(t))
        .collect::<Result<_, _>>()?;
    ensure(now == pids, || {
        "a tenant already on the new release was restarted".into()
    })?;
    for t in movers {
        let polled: f64 = downs
            .get(t)
            .map(|v| v.iter().map(Duration::as_secs_f64).sum())
            .unwrap_or(0.0);
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{t}: ")))
            .unwrap_or("")
            .to_string();
        fx.figure(
            format!("upgrade {v_old} -> {v_new}: {t} unavailable"),
            format!("{polled:.1} s polled from outside; ocusers: {line}"),
        );
    }
    fx.figure(
        format!(
            "upgrade {v_old} -> {v_new} of {} tenants, --parallel 1",
            movers.len()
        ),
        format!(
            "{:.1} s in all, at most {max_down} down at once",
            total.as_secs_f64()
        ),
    );
    let rts = fx.json("runtime list --json")?;
    ensure(rts["runtimes"].as_array().map(Vec::len) == Some(2), || {
        format!("old runtime not kept: {rts}")
    })?;
    ensure(
        fx.sh(&format!("readlink {rt}/default"))?.trim() == v_new,
        || "the default is not the new release after a full upgrade".into(),
    )?;

    // A runtime that never becomes ready: a copy of the new release whose
    // gateway entry point idles without listening.
    let broken = format!("{v_new}-broken");
    fx.sh(&format!(
        "cd {rt} && cp -al {v_new} {broken} && \
         rm {broken}/node_modules/openclaw/openclaw.mjs && \
         echo 'setInterval(() => {{}}, 1000);' > {broken}/node_modules/openclaw/openclaw.mjs"
    ))?;
    let all: Vec<&str> = bystanders.iter().chain(movers.iter()).copied().collect();
    let others: Vec<u32> = all[1..]
        .iter()
        .map(|t| fx.main_pid(t))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    let out = fx.ocusers(&format!("upgrade --to {broken} --timeout 20"));
    let err = stderr(&out);
    ensure(out.status.code() == Some(1), || describe(&out))?;
    ensure(
        err.contains(&format!("alice: not ready on {broken} within 20 s"))
            && err.contains(&format!("back on its old runtime and ready on {v_new}"))
            && err.contains(&format!(
                "0 of {} tenants moved, {} not tried",
                all.len(),
                all.len() - 1
            )),
        || format!("broken upgrade said: {err}"),
    )?;
    fx.figure(
        "upgrade to a broken runtime: fail and put alice back",
        format!(
            "{:.1} s (readiness timeout 20 s)",
            t.elapsed().as_secs_f64()
        ),
    );
    let after = runtimes_of(fx)?;
    ensure(after.values().all(|v| *v == v_new), || {
        format!("after the broken upgrade: {after:?}")
    })?;
    all_ready(fx, &all)?;
    let now: Vec<u32> = all[1..]
        .iter()
        .map(|t| fx.main_pid(t))
        .collect::<Result<_, _>>()?;
    ensure(now == others, || {
        "a tenant after alice was touched by the failed upgrade".into()
    })?;

    // rollback: the two back on the old release (with their pre-upgrade
    // state, which the old release accepts), the default too.
    let t = Instant::now();
    let out = fx.ocusers_ok("rollback")?;
    fx.figure(
        format!("rollback of {} tenants {v_new} -> {v_old}", movers.len()),
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    let after = runtimes_of(fx)?;
    ensure(movers.iter().all(|t| after.get(*t) == Some(&v_old)), || {
        format!("after rollback: {after:?}\n{out}")
    })?;
    ensure(
        bystanders.iter().all(|t| after.get(*t) == Some(&v_new)),
        || format!("rollback moved a tenant the upgrade did not: {after:?}"),
    )?;
    all_ready(fx, &all)?;
    ensure(
        fx.sh(&format!("readlink {rt}/default"))?.trim() == v_old,
        || "rollback did not restore the default".into(),
    )?;
    let out = fx.ocusers("rollback");
    ensure(out.status.code() == Some(1), || describe(&out))?;

    // prune: after the two go and the default is the tier's release
    // again, the old release and the broken copy are unused.
    for m in movers {
        fx.ocusers_ok(&format!("remove {m} --purge"))?;
    }
    let out = fx.ocusers_ok("runtime prune --dry-run")?;
    ensure(
        out.contains(&format!("would remove OpenClaw {broken} "))
            && !out.contains(&format!("would remove OpenClaw {v_old} ")),
        || format!("prune --dry-run while {v_old} is the default: {out}"),
    )?;
    fx.sh(&format!(
        "ln -sfn {v_new} {rt}/default.new && mv -T {rt}/default.new {rt}/default"
    ))?;
    let out = fx.ocusers_ok("runtime prune")?;
    ensure(
        out.contains(&format!("removed OpenClaw {v_old} ")) && out.contains(&broken),
        || out.clone(),
    )?;
    let rts = fx.json("runtime list --json")?;
    ensure(
        rts["runtimes"].as_array().map(Vec::len) == Some(1)
            && rts["runtimes"][0]["version"] == v_new.as_str(),
        || format!("after prune: {rts}"),
    )
}

/// Acceptance 5: doctor passes on a good host (the nspawn host's cgroup v1
/// layout is a warning, as it should be) and names the cause of each
/// injected fault; repair fixes the tenant faults.
pub fn doctor_and_repair(fx: &Fixture) -> R {
    let cgroup2 = fx.sh("stat -f -c %T /sys/fs/cgroup")?.trim() == "cgroup2fs";
    let out = fx.ocusers("doctor");
    ensure(out.status.success(), || {
        format!("doctor on a good host: {}", describe(&out))
    })?;
    let text = stdout(&out);
    let want = if cgroup2 {
        "[ ok ] cgroup"
    } else {
        "[warn] cgroup"
    };
    ensure(text.contains(want) && text.contains("fix:"), || {
        text.clone()
    })?;
    let v = fx.json("doctor --json")?;
    ensure(v["ok"] == true && v["failures"] == 0, || format!("{v}"))?;

    let doctor_fails = |cause: &str| -> R {
        let out = fx.ocusers("doctor");
        let all = format!("{}{}", stdout(&out), stderr(&out));
        ensure(out.status.code() == Some(1) && all.contains(cause), || {
            format!("doctor did not name {cause:?}: {}", describe(&out))
        })
    };

    // Fault 1: the default runtime is missing.
    let rt = "/var/lib/ocusers/runtimes";
    fx.sh(&format!(
        "ln -sfn 2099.1.1 {rt}/default.new && mv -T {rt}/default.new {rt}/default"
    ))?;
    let r = doctor_fails("points at 2099.1.1, which is not installed (missing runtime)");
    fx.sh(&format!(
        "ln -sfn {v} {rt}/default.new && mv -T {rt}/default.new {rt}/default",
        v = openclaw_version()
    ))?;
    r?;

    // Fault 2: a unit in failed state (its runtime exits with 78, which
    // systemd does not restart).
    fx.ocusers_ok("add gina --no-start")?;
    let v = openclaw_version();
    fx.sh(&format!(
        "cd {rt} && cp -al {v} {v}-exit78 && rm {v}-exit78/node_modules/openclaw/openclaw.mjs && \
         echo 'process.exit(78);' > {v}-exit78/node_modules/openclaw/openclaw.mjs && \
         ln -sfn ../{v}-exit78 by-tenant/gina && (systemctl start openclaw@gina || true)"
    ))?;
    wait_for("gina to fail", Duration::from_secs(60), || {
        Ok(fx.show("openclaw@gina.service", "ActiveState")? == "failed")
    })?;
    doctor_fails("openclaw@gina.service is in failed state")?;
    let out = fx.ocusers_ok("repair")?;
    ensure(out.contains("repaired tenant gina"), || out.clone())?;
    ensure(fx.readyz(fx.port("gina")?)? == "200", || {
        "gina not ready after repair".into()
    })?;

    // Fault 3: a registry entry without its user.
    fx.ocusers_ok("stop gina")?;
    fx.sh("userdel oc-gina")?;
    doctor_fails("user oc-gina is missing")?;
    let out = fx.ocusers_ok("repair")?;
    ensure(out.contains("repaired tenant gina"), || out.clone())?;
    ensure(fx.readyz(fx.port("gina")?)? == "200", || {
        "gina not ready after the second repair".into()
    })?;
    let out = fx.ocusers("doctor");
    ensure(out.status.success(), || {
        format!("doctor after repair: {}", describe(&out))
    })?;

    // Leftovers without a registry entry are named too.
    fx.sh("rm /var/lib/ocusers/tenants/gina.toml")?;
    doctor_fails("gina: a user, secrets file or state directory without a registry entry")?;
    fx.ocusers_ok("remove gina --purge")?;
    fx.ocusers_ok("runtime prune")?;
    // The day-2 trials leave the tenants as they found them: alice and
    // bob-smith (exec_as_tenant brought bob back).
    fx.ocusers_ok("remove bob --purge")?;
    let out = fx.ocusers("doctor");
    ensure(out.status.success(), || {
        format!("doctor at the end: {}", describe(&out))
    })
}
